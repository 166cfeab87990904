package host_test

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftvm/host"
	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// move runs a planned move as ftvm move does and fails the test on error.
func (c *cluster) move(vm, to string, primary bool) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := host.MoveVM(ctx, c.store, vm, to, primary, c.logProgress); err != nil {
		c.t.Fatalf("move %s to %s (primary %v): %v", vm, to, primary, err)
	}
}

func (c *cluster) logProgress(p host.MoveProgress) {
	if p.Clone == nil {
		c.t.Log(p.Step)
	}
}

// spareOf returns a live host that is neither o's primary nor its backup.
func (c *cluster) spareOf(o storage.Owner) string {
	c.t.Helper()
	hs, err := host.Hosts(c.store, time.Now())
	if err != nil {
		c.t.Fatal(err)
	}
	for _, h := range hs {
		if h.Alive && !h.Draining && h.Name != o.Host && h.Name != o.Backup {
			return h.Name
		}
	}
	c.t.Fatalf("no spare besides %s and %s", o.Host, o.Backup)
	return ""
}

// TestMoveUnderLoad: three hosts run the Go counter with its disk while 16
// clients increment it. The backup moves to the spare (no client sees
// anything), the primary is handed over to its backup, then moved to the
// spare (the backup moves there first), then the primary's host is
// drained; each time the VM ends up where it was sent and protected.
// Nothing a client saw is lost or repeated, and memory and disk agree.
func TestMoveUnderLoad(t *testing.T) {
	c, addr := newCounterCluster(t)
	l := startLoad(addr, 16)
	l.waitReplies(t, 50, 20*time.Second)

	// The backup: a clone onto h3 while the guest runs.
	_, errs := l.snapshot()
	c.move("counter", "h3", false)
	o := c.protected("counter", 1, 30*time.Second)
	if o.Host != "h1" || o.Backup != "h3" {
		t.Fatalf("after moving the backup: primary %s, backup %s; want h1, h3", o.Host, o.Backup)
	}
	l.waitReplies(t, 50, 20*time.Second)
	if _, e := l.snapshot(); e != errs {
		t.Errorf("moving the backup broke %d requests; the clients should not notice it", e-errs)
	}

	// The primary, to its backup: a switchover, which swaps the roles in
	// one generation (the old primary follows as the backup, no clone).
	c.move("counter", "h3", true)
	before := o.Generation
	o = c.protected("counter", o.Generation, 30*time.Second)
	if o.Host != "h3" || o.Backup != "h1" || o.Generation != before+1 {
		t.Fatalf("after the switchover: primary %s, backup %s, generation %d; want h3, h1, %d", o.Host, o.Backup, o.Generation, before+1)
	}
	l.waitReplies(t, 50, 20*time.Second)

	// The primary, to a host that is not its backup.
	to := c.spareOf(o)
	c.move("counter", to, true)
	o = c.protected("counter", o.Generation, 30*time.Second)
	if o.Host != to {
		t.Fatalf("after moving the primary to %s it is on %s", to, o.Host)
	}
	l.waitReplies(t, 50, 20*time.Second)

	// A drain of the primary's host.
	drained := o.Host
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := host.DrainVMs(ctx, c.store, drained, false, c.logProgress); err != nil {
		t.Fatal(err)
	}
	o = c.protected("counter", o.Generation, 30*time.Second)
	if o.Host == drained || o.Backup == drained {
		t.Fatalf("after draining %s the VM runs on %s and %s", drained, o.Host, o.Backup)
	}
	hs, _ := host.Hosts(c.store, time.Now())
	for _, h := range hs {
		if h.Draining != (h.Name == drained) {
			t.Errorf("host %s draining %v", h.Name, h.Draining)
		}
	}
	l.waitReplies(t, 50, 20*time.Second)
	if err := host.DrainVMs(ctx, c.store, drained, true, c.logProgress); err != nil {
		t.Fatal(err)
	}
	c.waitFor(10*time.Second, "the drain undone", func() bool {
		hs, _ := host.Hosts(c.store, time.Now())
		h, _ := findHostState(hs, drained)
		return !h.Draining
	})

	c.finishCounter(t, l, addr)
}

func findHostState(hs []host.HostState, name string) (host.HostState, bool) {
	for _, h := range hs {
		if h.Name == name {
			return h, true
		}
	}
	return host.HostState{}, false
}

// TestMoveRefusesBadRequests: a move to an unknown, dead or draining host,
// or to where the VM already is, a move of an unknown VM, and a drain of
// the last live host each fail with a clear error, and nothing changes.
func TestMoveRefusesBadRequests(t *testing.T) {
	c := newCluster(t)
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h)
	}
	addr := guesttest.FreeAddr(t)
	c.startVM("counter", counterGuest(t), storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2", Args: []string{"ft-counter"}})
	before := c.owner("counter")
	ctx := context.Background()
	quiet := func(host.MoveProgress) {}
	refused := func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want one saying %q", what, err, want)
		}
	}
	refused("unknown host", host.MoveVM(ctx, c.store, "counter", "h9", false, quiet), `no host "h9"`)
	refused("unknown vm", host.MoveVM(ctx, c.store, "nosuch", "h3", false, quiet), `no vm "nosuch"`)
	refused("backup to the primary", host.MoveVM(ctx, c.store, "counter", "h1", false, quiet), "is counter's primary")
	refused("primary to the primary", host.MoveVM(ctx, c.store, "counter", "h1", true, quiet), "already counter's primary")
	refused("backup to the backup", host.MoveVM(ctx, c.store, "counter", "h2", false, quiet), "already counter's backup")

	// h3 draining: no move goes there; undone, it takes VMs again.
	if err := host.DrainVMs(ctx, c.store, "h3", false, quiet); err != nil {
		t.Fatalf("drain h3 (no vm on it): %v", err)
	}
	refused("move to a draining host", host.MoveVM(ctx, c.store, "counter", "h3", false, quiet), "h3 is draining")
	if err := host.DrainVMs(ctx, c.store, "h3", true, quiet); err != nil {
		t.Fatalf("undo the drain of h3: %v", err)
	}

	c.signal("h3", syscall.SIGKILL)
	refused("dead host", host.MoveVM(ctx, c.store, "counter", "h3", false, quiet), "h3 is down")
	refused("drain a dead host", host.DrainVMs(ctx, c.store, "h3", false, quiet), "h3 is down")
	// With h3 dead the backup on h2 has nowhere to go.
	refused("drain with nowhere to go", host.DrainVMs(ctx, c.store, "h2", false, quiet), "counter has nowhere to go")
	// The primary on h1 would hand over to h2, with no host left for a
	// new backup.
	refused("drain leaving a vm unprotected", host.DrainVMs(ctx, c.store, "h1", false, quiet), "counter would run unprotected")
	if after := c.owner("counter"); after.Generation != before.Generation {
		t.Errorf("a refused request changed the owner: generation %d, then %d", before.Generation, after.Generation)
	}
	hs, _ := host.Hosts(c.store, time.Now())
	for _, h := range hs {
		if h.Draining {
			t.Errorf("host %s draining after refused drains", h.Name)
		}
	}
	if v := get(t, addr, 10*time.Second); v != 0 {
		t.Errorf("the counter is %d, want 0: nothing ran it", v)
	}

	// With the VM stopped, h2 drains at once, and h1 is the last live
	// host that is not draining.
	if err := host.StopVM(c.store, "counter"); err != nil {
		t.Fatal(err)
	}
	c.waitFor(10*time.Second, "counter stopped", func() bool { return c.status("counter", "h1").State == "stopped" })
	if err := host.DrainVMs(ctx, c.store, "h2", false, quiet); err != nil {
		t.Fatalf("drain h2: %v", err)
	}
	refused("drain the last live host", host.DrainVMs(ctx, c.store, "h1", false, quiet), "last live host")
	hs, _ = host.Hosts(c.store, time.Now())
	if h, _ := findHostState(hs, "h1"); h.Draining {
		t.Errorf("h1 draining after its drain was refused")
	}
}

// TestSwitchoverToABackupThatDies: the primary hands the VM over to its
// backup, which dies on hearing it, before its claim. The old primary,
// paused, finds the backup silent, claims the next generation itself and
// goes on where it paused: the move fails, the VM is not lost, it is
// protected again on the spare, and nothing a client saw is lost or
// repeated.
func TestSwitchoverToABackupThatDies(t *testing.T) {
	c, addr := newCounterCluster(t)
	l := startLoad(addr, 8)
	l.waitReplies(t, 50, 20*time.Second)
	before := c.owner("counter")
	c.failpoint("h2", "crash-on=handover")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := host.MoveVM(ctx, c.store, "counter", "h2", true, c.logProgress)
	if err == nil || !strings.Contains(err.Error(), "did not take over") {
		t.Fatalf("switchover to a backup that died: err %v, want one saying it did not take over", err)
	}
	t.Logf("move: %v", err)
	o := c.protected("counter", before.Generation+1, time.Minute)
	if o.Host != "h1" || o.Backup != "h3" {
		t.Fatalf("after the failed switchover: primary %s, backup %s; want h1, h3", o.Host, o.Backup)
	}
	if won, ok, err := c.store.Owner("counter", before.Generation+1); err != nil || !ok || won.Host != "h1" {
		t.Errorf("generation %d went to %+v, want h1's claim", before.Generation+1, won)
	}
	l.waitReplies(t, 50, 20*time.Second)
	c.finishCounter(t, l, addr)
}

// TestSwitchoverThenNewPrimaryDies: right after a switchover, long before
// a clone could complete, the new primary is killed. The old primary,
// which followed as its backup, takes over: the VM keeps its memory, and
// nothing a client saw is lost or repeated.
func TestSwitchoverThenNewPrimaryDies(t *testing.T) {
	c, addr := newCounterCluster(t)
	l := startLoad(addr, 8)
	l.waitReplies(t, 50, 20*time.Second)
	before := c.owner("counter")
	c.move("counter", "h2", true)
	o := c.protected("counter", before.Generation, 30*time.Second)
	if o.Host != "h2" || o.Backup != "h1" {
		t.Fatalf("after the switchover: primary %s, backup %s; want h2, h1", o.Host, o.Backup)
	}
	l.waitReplies(t, 50, 20*time.Second)
	c.signal("h2", syscall.SIGKILL)
	o = c.protected("counter", o.Generation, time.Minute)
	if o.Host != "h1" || o.Reason == "restart" {
		t.Fatalf("after the new primary died: primary %s (%s), want h1 with the VM's memory", o.Host, o.Reason)
	}
	l.waitReplies(t, 50, 20*time.Second)
	c.finishCounter(t, l, addr)
}

// TestSwitchoverNewPrimaryDiesAtOnce: the backup handed the VM over wins
// its claim, goes live, and dies before its first heartbeat. The old
// primary, named its backup, follows it, finds it silent and takes over
// with the VM's memory; ftvm move reports what happened at once instead of
// waiting for a primary that is gone.
func TestSwitchoverNewPrimaryDiesAtOnce(t *testing.T) {
	c, addr := newCounterCluster(t)
	l := startLoad(addr, 8)
	l.waitReplies(t, 50, 20*time.Second)
	before := c.owner("counter")
	c.failpoint("h2", "crash-on=switched")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := host.MoveVM(ctx, c.store, "counter", "h2", true, c.logProgress)
	if err == nil || !strings.Contains(err.Error(), "then failed over to h1") {
		t.Fatalf("switchover to a new primary that died: err %v, want one saying it failed over back to h1", err)
	}
	t.Logf("move: %v", err)
	o := c.protected("counter", before.Generation+1, time.Minute)
	if o.Host != "h1" || o.Reason == "restart" {
		t.Fatalf("after the new primary died: primary %s (%s), want h1 with the VM's memory", o.Host, o.Reason)
	}
	l.waitReplies(t, 50, 20*time.Second)
	c.finishCounter(t, l, addr)
}
