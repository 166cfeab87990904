package host_test

import (
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/storage"
	"ftvm/vmm"
)

// lines parses the numbers a host's ft-lines guest printed, labeled with
// its VM's name or not; a last line cut short is left out.
func lines(out string) []uint64 {
	var ns []uint64
	for l := range strings.Lines(out) {
		l = strings.TrimPrefix(l, "lines| ")
		if n, err := strconv.ParseUint(strings.TrimRight(l, ".\n"), 10, 64); err == nil && strings.HasSuffix(l, "\n") {
			ns = append(ns, n)
		}
	}
	return ns
}

// missing returns the numbers from 1 to last that neither a nor b holds.
func missing(last uint64, a, b []uint64) []uint64 {
	have := map[uint64]bool{}
	for _, n := range append(a, b...) {
		have[n] = true
	}
	var out []uint64
	for n := uint64(1); n <= last; n++ {
		if !have[n] {
			out = append(out, n)
		}
	}
	return out
}

// TestFailoverLosesNoHeldOutput: the primary's host writes its stdout to a
// pipe no one reads yet, so the guest's output piles up, held, in its
// gate; then the primary is killed. The backup, which kept what it
// replayed beyond the primary's last report, writes it. Two cases: the
// guest printing without end (the primary holds its guest back once it
// holds 8 MiB, so the backup, which keeps 16 MiB, has it all), and the
// guest having printed its last line and exited (the backup, its replay
// at the end, waits for the primary to write everything, and writes it
// itself when the primary dies instead).
func TestFailoverLosesNoHeldOutput(t *testing.T) {
	guest := guesttest.BuildC(t, "ft-lines")
	for _, c := range []struct {
		name  string
		args  []string
		lines uint64
	}{
		{"without-end", []string{"ft-lines", "0", "0", "1000"}, 0},
		{"guest-exited", []string{"ft-lines", "0", "3000", "1000"}, 3000},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := newCluster(t)
			cl.args = append(cl.args, "--label-output") // as ftvm host labels them
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			cl.startHostWith("h1", w)
			w.Close()
			cl.startHost("h2")
			cl.startVM("lines", guest, storage.VMSpec{Primary: "h1", Backup: "h2", Args: c.args})
			cl.waitFor(30*time.Second, "output held by the primary", func() bool {
				return cl.status("lines", "h1").HeldBytes > 1<<20
			})
			if c.lines > 0 {
				cl.waitFor(30*time.Second, "the backup at the guest's end", func() bool {
					return strings.Contains(cl.hosts["h2"].logs.String(), "guest ended; waiting for the primary")
				})
			} else {
				time.Sleep(2 * time.Second) // let it pile up to the bound
			}
			held := cl.status("lines", "h1").HeldBytes
			cl.signal("h1", syscall.SIGKILL)
			primary, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			a := lines(string(primary))
			var b []uint64
			cl.waitFor(30*time.Second, "the survivor's output", func() bool {
				b = lines(cl.hosts["h2"].out.String())
				return len(b) > 0 && (c.lines == 0 || b[len(b)-1] == c.lines)
			})
			if held > 2*vmm.MaxHeldOutput {
				t.Errorf("the primary held %d bytes of output, beyond twice its bound %d", held, vmm.MaxHeldOutput)
			}
			last := b[len(b)-1]
			if gone := missing(last, a, b); len(gone) > 0 {
				t.Fatalf("lost %d lines, from %d (the primary wrote %d lines up to %d, holding %d bytes; the survivor wrote from %d)",
					len(gone), gone[0], len(a), a[len(a)-1], held, b[0])
			}
			t.Logf("the primary wrote %d lines, holding %d bytes when killed; the survivor wrote lines %d to %d", len(a), held, b[0], last)
		})
	}
}

// TestFailoverLosesNoOutput: a guest prints numbered lines to stdout
// without pause; its primary's host is killed at a random moment. The
// outputs the primary had not written when it died (released, or held for
// an acknowledgement) are written by the survivor when it goes live: the
// two hosts' stdout together hold every number up to the last, in order
// on each host. A few may be printed by both (the primary's report of
// what it wrote trails its writes), never none.
func TestFailoverLosesNoOutput(t *testing.T) {
	guest := guesttest.BuildC(t, "ft-lines")
	runs := 5
	if testing.Short() {
		runs = 2
	}
	for i := range runs {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			c := newCluster(t)
			c.args = append(c.args, "--label-output") // as ftvm host labels them
			c.startHost("h1")
			c.startHost("h2")
			c.startVM("lines", guest, storage.VMSpec{Primary: "h1", Backup: "h2", Args: []string{"ft-lines", "100"}})
			c.waitFor(20*time.Second, "h1 printed 300 lines", func() bool { return len(lines(c.hosts["h1"].out.String())) >= 300 })
			time.Sleep(randDuration(t, 0, 100*time.Millisecond))
			c.signal("h1", syscall.SIGKILL)
			c.waitFor(20*time.Second, "h2 printed 300 lines", func() bool { return len(lines(c.hosts["h2"].out.String())) >= 300 })
			a, b := lines(c.hosts["h1"].out.String()), lines(c.hosts["h2"].out.String())
			for name, ns := range map[string][]uint64{"h1": a, "h2": b} {
				for j := 1; j < len(ns); j++ {
					if ns[j] != ns[j-1]+1 {
						t.Fatalf("%s printed %d after %d", name, ns[j], ns[j-1])
					}
				}
			}
			if a[0] != 1 {
				t.Fatalf("h1's first line is %d", a[0])
			}
			last := a[len(a)-1]
			switch {
			case b[0] > last+1:
				t.Fatalf("lost lines %d to %d: the primary printed up to %d, the survivor from %d", last+1, b[0]-1, last, b[0])
			case b[0] <= last:
				t.Logf("lines %d to %d printed by both hosts", b[0], last)
			default:
				t.Logf("the survivor went on at %d, right after the primary's %d", b[0], last)
			}
		})
	}
}

// TestNoLineLostAcrossPrimaryKills: a guest prints numbered lines to stdout
// on three hosts while the host that is primary is killed twenty times
// (and started again as a spare). Every host process's stdout together
// holds every number up to the last one printed: none is lost at any of
// the failovers.
func TestNoLineLostAcrossPrimaryKills(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 3
	}
	guest := guesttest.BuildC(t, "ft-lines")
	c := newCluster(t)
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h)
	}
	c.startVM("lines", guest, storage.VMSpec{Primary: "h1", Backup: "h2", Args: []string{"ft-lines", "200"}})
	var dead []uint64 // what the killed host processes printed
	printed := func() int {
		n := len(dead)
		for _, h := range c.hosts {
			n += len(lines(h.out.String()))
		}
		return n
	}
	gen := uint64(0)
	for i := range rounds {
		o := c.protected("lines", gen, time.Minute)
		gen = o.Generation
		want := printed() + 200
		c.waitFor(30*time.Second, "200 more lines", func() bool { return printed() >= want })
		time.Sleep(randDuration(t, 0, 50*time.Millisecond))
		c.signal(o.Host, syscall.SIGKILL)
		<-c.hosts[o.Host].done
		dead = append(dead, lines(c.hosts[o.Host].out.String())...)
		t.Logf("round %d: killed %s (generation %d)", i, o.Host, o.Generation)
		c.startHost(o.Host)
	}
	o := c.protected("lines", gen, time.Minute)
	want := printed() + 200
	c.waitFor(30*time.Second, "200 more lines after the last kill", func() bool { return printed() >= want })
	all := slices.Clone(dead)
	for _, h := range c.hosts {
		all = append(all, lines(h.out.String())...)
	}
	last := slices.Max(all)
	if gone := missing(last, all, nil); len(gone) > 0 {
		t.Fatalf("%d lines lost across %d primary kills, the first %d", len(gone), rounds, gone[0])
	}
	t.Logf("%d kills, generation %d: lines 1 to %d all printed (%d printed in all, %d twice)", rounds, o.Generation, last, len(all), len(all)-int(last))
}
