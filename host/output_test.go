package host_test

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// lines parses the numbers a host's ft-lines guest printed; a last line
// cut short is left out.
func lines(out string) []uint64 {
	var ns []uint64
	for l := range strings.Lines(out) {
		if n, err := strconv.ParseUint(strings.TrimSuffix(l, "\n"), 10, 64); err == nil && strings.HasSuffix(l, "\n") {
			ns = append(ns, n)
		}
	}
	return ns
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
