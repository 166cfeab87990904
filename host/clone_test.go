package host_test

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftvm/storage"
)

// protected waits until vm's latest generation has a primary and a backup
// on live hosts, both running and connected, and returns that owner.
func (c *cluster) protected(vm string, after uint64, max time.Duration) storage.Owner {
	c.t.Helper()
	var o storage.Owner
	c.waitFor(max, vm+" protected again", func() bool {
		var ok bool
		var err error
		if o, ok, err = c.store.Latest(vm); err != nil || !ok || o.Generation <= after || o.Backup == "" {
			return false
		}
		p, b := c.status(vm, o.Host), c.status(vm, o.Backup)
		return p.Generation == o.Generation && p.Role == "primary" && p.Connected &&
			b.Generation == o.Generation && b.Role == "backup" && b.Connected
	})
	return o
}

// TestCloneAfterEachPrimaryKill: three hosts run the Go counter with its
// disk under load; ten times over, the host that is primary is killed
// (SIGKILL) and started again a second later, as a repaired server that
// rejoins as a spare. After each kill the survivor goes live and clones a
// new backup onto a spare: the VM is protected again, and goes on through
// the next kill with nothing a client saw lost or repeated; at the end the
// counter in memory and on the disk agree.
func TestCloneAfterEachPrimaryKill(t *testing.T) {
	rounds := 10
	if testing.Short() {
		rounds = 3
	}
	c := newCluster(t)
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h)
	}
	addr := freeAddr(t)
	c.startVM("counter", counterGuest(t), storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2",
		Disk: true, Args: []string{"ft-counter", "-file", "/disk/counter"}})
	l := startLoad(addr, 4)
	l.waitReplies(t, 20, 20*time.Second)
	gen := uint64(0)
	for i := range rounds {
		o := c.protected("counter", gen, 30*time.Second)
		gen = o.Generation
		t.Logf("round %d: generation %d, primary %s, backup %s", i, o.Generation, o.Host, o.Backup)
		l.waitReplies(t, 10, 20*time.Second)
		time.Sleep(randDuration(t, 0, 200*time.Millisecond))
		c.signal(o.Host, syscall.SIGKILL)
		l.waitReplies(t, 10, 30*time.Second)
		time.Sleep(time.Second)
		c.startHost(o.Host)
	}
	c.protected("counter", gen, 30*time.Second)
	l.waitReplies(t, 10, 20*time.Second)
	seen, lost := l.finish()
	final := get(t, addr, 10*time.Second)
	checkCounter(t, seen, final)
	disk := strings.TrimSpace(readDisk(t, c.dir+"/vms/counter/disk", "counter"))
	if v, err := strconv.ParseUint(disk, 10, 64); err != nil || v != final {
		t.Errorf("the disk holds %q, the counter's memory %d", disk, final)
	}
	t.Logf("%d replies, %d unanswered, final %d", len(seen), lost, final)
}
