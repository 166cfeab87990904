package host_test

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// stampedOut is a host's stdout that notes when each line came.
type stampedOut struct {
	mu      sync.Mutex
	partial []byte
	at      []time.Time
}

func (s *stampedOut) Write(b []byte) (int, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, b...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.partial = s.partial[i+1:]
		s.at = append(s.at, now)
	}
	return len(b), nil
}

// since counts the lines that came after t.
func (s *stampedOut) since(t time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, at := range s.at {
		if at.After(t) {
			n++
		}
	}
	return n
}

// TestStaleHostsAreFencedBeforeARestart: both hosts of a pair lose the
// shared storage, and go on running. A third host sees their registry
// entries go stale, takes the VM for lost, and starts it again from its
// disk. The old primary must have gone silent first: it cannot learn of
// the restart (it cannot read the storage), so only its lease keeps it
// from printing beside the restarted VM. Once the storage comes back, it
// finds the restart before it lets out what it held, and halts; the old
// backup never goes live.
func TestStaleHostsAreFencedBeforeARestart(t *testing.T) {
	guest := guesttest.BuildC(t, "ft-lines")
	c := newCluster(t)
	outs := map[string]*stampedOut{}
	for _, h := range []string{"h1", "h2", "h3"} {
		outs[h] = &stampedOut{}
		c.startHostWith(h, outs[h])
	}
	c.startVM("lines", guest, storage.VMSpec{Primary: "h1", Backup: "h2", Args: []string{"ft-lines", "5000"}})
	before := c.owner("lines")
	c.waitFor(30*time.Second, "h1 printing", func() bool { return outs["h1"].since(time.Time{}) > 50 })
	c.failpoint("h1", "storage=unreachable")
	c.failpoint("h2", "storage=unreachable")
	cut := time.Now()
	c.waitFor(time.Minute, "the vm restarted on h3", func() bool {
		o, ok, err := c.store.Latest("lines")
		return err == nil && ok && o.Generation > before.Generation && o.Host == "h3"
	})
	claim := c.owner("lines")
	if claim.Reason != "restart" {
		t.Fatalf("generation %d claimed by %+v, want a restart", claim.Generation, claim)
	}
	c.waitFor(30*time.Second, "h3 printing", func() bool { return outs["h3"].since(time.Time{}) > 50 })
	if n := outs["h1"].since(claim.Time); n > 0 {
		t.Fatalf("the stale primary printed %d lines after the restart's claim at %s", n, claim.Time.Format(time.TimeOnly+".000"))
	}
	if outs["h1"].since(cut) == outs["h1"].since(time.Time{}) {
		t.Log("h1 printed nothing after the storage went")
	}

	back := time.Now()
	c.failpoint("h1", "")
	c.failpoint("h2", "")
	c.waitFor(30*time.Second, "h1 and h2 halted", func() bool {
		return grepLines(c.hosts["h1"].logs.String(), "a later generation was claimed") != "" &&
			grepLines(c.hosts["h2"].logs.String(), "lost generation, halting") != ""
	})
	time.Sleep(200 * time.Millisecond) // what h1 would let out, if it did
	if n := outs["h1"].since(claim.Time); n > 0 {
		t.Errorf("the old primary let out %d held lines after the storage came back", n)
	}
	if n := outs["h2"].since(time.Time{}); n > 0 {
		t.Errorf("the old backup printed %d lines", n)
	}
	if grepLines(c.hosts["h1"].logs.String(), "lease ran out") == "" {
		t.Errorf("h1 did not say its lease ran out")
	}
	if o := c.owner("lines"); o.Generation < claim.Generation {
		t.Fatalf("owner %+v went back", o)
	}
	t.Logf("storage cut at %s, restart claimed %s later, storage back %s later",
		cut.Format(time.TimeOnly+".000"), claim.Time.Sub(cut).Round(time.Millisecond), back.Sub(cut).Round(time.Millisecond))
}

// TestCutPrimaryServesOnVouchedByItsBackup: the primary's host alone loses
// the shared storage. Its lease runs out, but its backup, fresh in the
// registry, vouches for it in its heartbeats (nobody restarts a VM while a
// replica of it is alive in the registry), so it goes on letting its
// outputs out: nothing fails over, nothing is restarted, and once the
// storage is back the pair goes on as before.
func TestCutPrimaryServesOnVouchedByItsBackup(t *testing.T) {
	guest := guesttest.BuildC(t, "ft-lines")
	c := newCluster(t)
	outs := map[string]*stampedOut{}
	for _, h := range []string{"h1", "h2", "h3"} {
		outs[h] = &stampedOut{}
		c.startHostWith(h, outs[h])
	}
	c.startVM("lines", guest, storage.VMSpec{Primary: "h1", Backup: "h2", Args: []string{"ft-lines", "5000"}})
	c.waitFor(30*time.Second, "the backup running", func() bool { return c.status("lines", "h2").State == "running" })
	before := c.owner("lines")
	c.waitFor(30*time.Second, "h1 printing", func() bool { return outs["h1"].since(time.Time{}) > 50 })
	c.failpoint("h1", "storage=unreachable")
	var lapsed time.Time
	c.waitFor(time.Minute, "h1's lease to run out", func() bool {
		if grepLines(c.hosts["h1"].logs.String(), "lease ran out") == "" {
			return false
		}
		lapsed = time.Now()
		return true
	})
	c.waitFor(30*time.Second, "h1 printing after its lease ran out", func() bool { return outs["h1"].since(lapsed) > 50 })
	c.failpoint("h1", "")
	c.waitFor(30*time.Second, "h1's lease renewed", func() bool {
		return grepLines(c.hosts["h1"].logs.String(), "lease renewed") != ""
	})
	back := time.Now()
	c.waitFor(30*time.Second, "h1 printing after the storage came back", func() bool { return outs["h1"].since(back) > 50 })
	if o := c.owner("lines"); o.Generation != before.Generation || o.Host != "h1" {
		t.Fatalf("owner %+v, want generation %d on h1 still: the cut primary was replaced", o, before.Generation)
	}
	for _, h := range []string{"h2", "h3"} {
		if n := outs[h].since(time.Time{}); n > 0 {
			t.Errorf("%s printed %d lines", h, n)
		}
	}
}
