package host_test

import (
	"syscall"
	"testing"
	"time"

	"ftvm/host"
	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// TestEtcdStore: three hosts keep the cluster's records in etcd, sharing
// no directory: the VM starts, its primary is killed three times (each
// time started again as a spare), and every failover and clone goes
// through etcd's claims and leases. Clients through a proxy (which finds
// the primary in etcd) see every reply once, on one connection each.
func TestEtcdStore(t *testing.T) {
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	c := newEtcdCluster(t)
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h)
	}
	addr := guesttest.FreeAddr(t)
	c.startVM("counter", counterGuest(t), storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2", Args: []string{"ft-counter"}})
	get(t, addr, 30*time.Second)
	sl := startSessionLoad(t, c.startProxy("counter"), 4)
	sl.waitReplies(t, 20, 30*time.Second)
	gen := uint64(0)
	for i := range rounds {
		o := c.protected("counter", gen, time.Minute)
		gen = o.Generation
		t.Logf("round %d: generation %d, primary %s, backup %s", i, o.Generation, o.Host, o.Backup)
		sl.waitReplies(t, 10, 30*time.Second)
		c.signal(o.Host, syscall.SIGKILL)
		sl.waitReplies(t, 10, time.Minute)
		c.startHost(o.Host)
	}
	c.protected("counter", gen, time.Minute)
	sl.finish(t, addr)
}

// TestEtcdPrimaryFrozenThaws: the fencing of a primary on another machine,
// with etcd as the store. Its backup cannot fence it (fence=off: as across
// machines, no signal or socket reaches it), so the frozen primary
// (SIGSTOP) wakes up after its backup went live. It lets nothing out: its
// outputs wait for acknowledgements from a backup that left, and the
// claim it then makes of the next generation is a transaction that etcd
// refuses, since the survivor holds that generation: it halts. The
// clients, through a proxy and plain, saw nothing repeated or lost.
func TestEtcdPrimaryFrozenThaws(t *testing.T) {
	c := newEtcdCluster(t)
	addr := counterPair(t, c, false, host.EnvFailpoints+"=fence=off")
	sl := startSessionLoad(t, c.startProxy("counter"), 2)
	sl.waitReplies(t, 20, 30*time.Second)
	c.signal("h1", syscall.SIGSTOP)
	c.waitFor(10*time.Second, "the backup goes live", func() bool {
		o := c.owner("counter")
		return o.Generation == 2 && o.Host == "h2"
	})
	sl.waitReplies(t, 20, 30*time.Second)
	c.signal("h1", syscall.SIGCONT)
	c.waitFor(10*time.Second, "the thawed primary halts", func() bool {
		return c.status("counter", "h1").State == "halted"
	})
	sl.waitReplies(t, 20, 30*time.Second)
	sl.finish(t, addr)
}
