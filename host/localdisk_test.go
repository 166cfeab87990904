package host_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftvm/host"
	"ftvm/internal/guesttest"
	"ftvm/storage"
	"ftvm/storage/backend"
)

// startLocalCounter starts hosts h1, h2 and h3, each with a data directory
// of its own, and the Go counter with a local disk: alone on h1, until a
// clone gives it its backup.
func startLocalCounter(t *testing.T) (*cluster, string) {
	t.Helper()
	return startLocalCounterOn(t, newCluster(t))
}

func startLocalCounterOn(t *testing.T, c *cluster, env ...string) (*cluster, string) {
	t.Helper()
	return c, startLocalVM(t, c, counterGuest(t), []string{"ft-counter", "-file", "/disk/counter"}, env...)
}

// startLocalVM starts hosts h1, h2 and h3 on c and the guest as the VM
// "counter" with a local disk, and waits until it is protected; it
// returns the guest's address.
func startLocalVM(t *testing.T, c *cluster, guest []byte, args []string, env ...string) string {
	t.Helper()
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h, env...)
	}
	addr := guesttest.FreeAddr(t)
	spec := storage.VMSpec{Name: "counter", Listeners: []string{addr}, Primary: "h1", Disk: true, DiskKind: storage.DiskLocal, Args: args}
	if _, _, err := host.StartVM(c.store, spec, guest, time.Now()); err != nil {
		t.Fatal(err)
	}
	c.protected("counter", 0, time.Minute)
	return addr
}

// localCopy is host's copy of the counter's local disk (ftvm host's
// default data directory on a directory store).
func (c *cluster) localCopy(hostName string) string {
	if backend.IsEtcd(c.loc) {
		return filepath.Join(c.dir, "data", hostName, "vms", "counter", "disk")
	}
	return filepath.Join(c.dir, "local", hostName, "vms", "counter", "disk")
}

// stopCounter stops the counter, waits until its primary on host says so,
// and returns its spec.
func (c *cluster) stopCounter(primary string) storage.VMSpec {
	c.t.Helper()
	if err := host.StopVM(c.store, "counter"); err != nil {
		c.t.Fatal(err)
	}
	c.waitFor(20*time.Second, "counter stopped", func() bool { return c.status("counter", primary).State == "stopped" })
	spec, err := c.store.VM("counter")
	if err != nil {
		c.t.Fatal(err)
	}
	return spec
}

// copyHolds waits until host's copy of the disk holds want.
func (c *cluster) copyHolds(hostName string, want uint64) {
	c.t.Helper()
	var got string
	defer func() {
		if c.t.Failed() {
			ents, _ := os.ReadDir(c.localCopy(hostName))
			c.t.Logf("%s's copy holds %q; entries %v", hostName, got, ents)
		}
	}()
	c.waitFor(20*time.Second, hostName+"'s copy holding "+strconv.FormatUint(want, 10), func() bool {
		b, _ := os.ReadFile(filepath.Join(c.localCopy(hostName), "counter"))
		got = strings.TrimSpace(string(b))
		v, err := strconv.ParseUint(got, 10, 64)
		return err == nil && v == want
	})
}

// TestLocalDiskAcrossPrimaryKills: the Go counter persists its count on a
// local disk: each replica keeps its own copy, the backup performing the
// primary's writes as it replays them. Under load, the primary's host is
// killed again and again (and started again as a spare): each time the
// backup goes live on its own copy and a clone, disk included, makes a new
// backup on a spare. Nothing a client saw is lost or repeated, and at the
// end the counter's memory, the primary's copy and the backup's copy
// agree. No copy is ever shared: the store holds no disk.
func TestLocalDiskAcrossPrimaryKills(t *testing.T) {
	rounds := 5
	if testing.Short() {
		rounds = 2
	}
	c, addr := startLocalCounter(t)
	l := startLoad(addr, 4)
	o := c.killRounds(l, rounds, true)
	seen, lost := l.finish()
	final := get(t, addr, 10*time.Second)
	checkCounter(t, seen, final)
	c.copyHolds(o.Host, final)
	c.copyHolds(o.Backup, final)
	if fi, err := os.Stat(c.store.DiskDir("counter")); err == nil {
		if ents, _ := os.ReadDir(c.store.DiskDir("counter")); len(ents) != 0 {
			t.Errorf("the shared disk directory %s holds %d entries: a local disk must not be shared", fi.Name(), len(ents))
		}
	}
	t.Logf("%d replies, %d unanswered, final %d, generation %d", len(seen), lost, final, c.owner("counter").Generation)
}

// TestLocalDiskStoppedAndStartedAgain: a VM with a local disk, stopped
// and started again, starts on the host that ran it last, from its copy
// (the count goes on), and is cloned onto a backup again. A start that
// names another host as the primary starts from that host's own copy (the
// operator's choice): here the former backup's, which mirrored every
// write, so the count goes on from it too.
func TestLocalDiskStoppedAndStartedAgain(t *testing.T) {
	c, addr := startLocalCounter(t)
	first := get(t, addr, 10*time.Second)
	lc := &lineClient{addr: addr}
	for range 5 {
		if _, err := lc.do("inc", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	lc.close()
	before := get(t, addr, 10*time.Second)
	if before != first+5 {
		t.Fatalf("count %d, want %d", before, first+5)
	}
	o := c.owner("counter")
	spec := c.stopCounter(o.Host)
	spec.Primary, spec.Backup = "", ""
	got, _, err := host.StartVM(c.store, spec, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got.Primary != o.Host {
		t.Fatalf("started on %s, want %s, whose copy is the latest", got.Primary, o.Host)
	}
	o2 := c.protected("counter", o.Generation, time.Minute)
	if after := get(t, addr, 10*time.Second); after != before {
		t.Fatalf("started again with count %d, want %d from its disk", after, before)
	}
	c.stopCounter(o2.Host)
	named := spec
	named.Primary = o2.Backup
	if _, _, err := host.StartVM(c.store, named, nil, time.Now()); err != nil {
		t.Fatalf("a start on %s, named: %v", named.Primary, err)
	}
	o3 := c.protected("counter", o2.Generation, time.Minute)
	if o3.Host != o2.Backup {
		t.Fatalf("started on %s, want %s as named", o3.Host, o2.Backup)
	}
	if after := get(t, addr, 10*time.Second); after != before {
		t.Fatalf("started from %s's copy with count %d, want %d", o3.Host, after, before)
	}
}

// TestEtcdLocalDiskPrimaryFrozenThaws: fencing across machines, with a
// local disk. The store is etcd, each host keeps its own copy of the disk,
// and no fence reaches the primary (fence=off, as on another machine):
// frozen (SIGSTOP) and resumed after its backup went live, it releases
// nothing (its outputs wait for a backup that left), its claim is refused
// (the survivor holds the generation), and it halts. Whatever it wrote on
// its own copy meanwhile stays there: the survivor reads its own copy, and
// the frozen host's copy is not used again (a start goes to the survivor).
// Clients through a proxy saw nothing lost or repeated, and the survivor's
// memory and both current copies agree.
func TestEtcdLocalDiskPrimaryFrozenThaws(t *testing.T) {
	c, addr := startLocalCounterOn(t, newEtcdCluster(t), host.EnvFailpoints+"=fence=off")
	o := c.owner("counter")
	sl := startSessionLoad(t, c.startProxy("counter"), 2)
	sl.waitReplies(t, 20, 30*time.Second)
	c.signal(o.Host, syscall.SIGSTOP)
	c.waitFor(10*time.Second, "the backup goes live", func() bool {
		n := c.owner("counter")
		return n.Generation > o.Generation && n.Host == o.Backup
	})
	sl.waitReplies(t, 20, 30*time.Second)
	c.signal(o.Host, syscall.SIGCONT)
	c.waitFor(10*time.Second, "the thawed primary halts", func() bool {
		return c.status("counter", o.Host).State == "halted"
	})
	now := c.protected("counter", o.Generation, time.Minute)
	sl.waitReplies(t, 20, 30*time.Second)
	final := sl.finish(t, addr)
	c.copyHolds(now.Host, final)
	c.copyHolds(now.Backup, final)
	spec := c.stopCounter(now.Host)
	spec.Primary, spec.Backup = "", ""
	got, _, err := host.StartVM(c.store, spec, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got.Primary != now.Host {
		t.Fatalf("started again on %s, want %s: the thawed primary's copy was left behind", got.Primary, now.Host)
	}
}

// TestLocalDiskMoves: planned moves of a VM with a local disk under load:
// the backup moved (a clone, disk included, onto the spare), a switchover
// (the old primary follows as the backup, on its own copy, now mirroring
// the new primary's writes), and the primary moved to the spare. Clients
// see nothing lost or repeated, and the memory and both copies agree.
func TestLocalDiskMoves(t *testing.T) {
	c, addr := startLocalCounter(t)
	l := startLoad(addr, 4)
	l.waitReplies(t, 20, 20*time.Second)
	o := c.owner("counter")
	spare := c.spareOf(o)
	c.move("counter", spare, false)
	o = c.protected("counter", o.Generation, time.Minute)
	if o.Backup != spare {
		t.Fatalf("after moving the backup to %s: backup %s", spare, o.Backup)
	}
	l.waitReplies(t, 20, 20*time.Second)
	c.move("counter", o.Backup, true)
	o = c.protected("counter", o.Generation, time.Minute)
	l.waitReplies(t, 20, 20*time.Second)
	to := c.spareOf(o)
	c.move("counter", to, true)
	o = c.protected("counter", o.Generation, time.Minute)
	if o.Host != to {
		t.Fatalf("after moving the primary to %s it is on %s", to, o.Host)
	}
	l.waitReplies(t, 20, 20*time.Second)
	seen, _ := l.finish()
	final := get(t, addr, 10*time.Second)
	checkCounter(t, seen, final)
	c.copyHolds(o.Host, final)
	c.copyHolds(o.Backup, final)
}

// TestLocalDiskBackupDiverges: the backup's copy is changed behind its
// back (a lock directory the journal guest will make, made there first):
// when the replay reaches that mkdir, its own disk answers EEXIST where
// the primary's succeeded, and the backup stops with a divergence that
// says so. The primary goes on alone, with nothing a client saw lost or
// repeated, and a clone replaces the backup, copy included: at the end the
// journal's state in memory and on both copies agree.
func TestLocalDiskBackupDiverges(t *testing.T) {
	c := newCluster(t)
	addr := startLocalVM(t, c, journalGuest(t), []string{"ft-journal", "/disk"})
	l := startLoad(addr, 2)
	l.waitReplies(t, 20, 20*time.Second)
	o := c.owner("counter")
	state, err := os.ReadFile(filepath.Join(c.localCopy(o.Backup), "state"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(state)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	trap := filepath.Join(c.localCopy(o.Backup), fmt.Sprintf("lock-%d", n+30))
	if err := os.Mkdir(trap, 0o755); err != nil {
		t.Fatal(err)
	}
	var st storage.VMStatus
	defer func() {
		if t.Failed() {
			t.Logf("backup status: %+v", st)
		}
	}()
	c.waitFor(30*time.Second, "the backup diverges", func() bool {
		st = c.status("counter", o.Backup)
		return st.Generation == o.Generation && st.State == "failed" && strings.Contains(st.Detail, "this replica's own disk")
	})
	t.Logf("backup %s: %s", o.Backup, c.status("counter", o.Backup).Detail)
	now := c.protected("counter", o.Generation, time.Minute)
	if now.Host != o.Host {
		t.Fatalf("the primary moved from %s to %s: the backup's divergence should leave it", o.Host, now.Host)
	}
	l.waitReplies(t, 20, 20*time.Second)
	seen, _ := l.finish()
	final := get(t, addr, 10*time.Second)
	checkCounter(t, seen, final)
	for _, h := range []string{now.Host, now.Backup} {
		c.waitFor(20*time.Second, h+"'s copy of the state", func() bool {
			b, _ := os.ReadFile(filepath.Join(c.localCopy(h), "state"))
			return strings.TrimSpace(string(b)) == strconv.FormatUint(final, 10)
		})
	}
}
