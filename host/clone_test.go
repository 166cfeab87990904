package host_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftvm/host"
	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// newCounterCluster starts hosts h1, h2 and h3 and the Go counter with its
// disk on h1 and h2, and returns the cluster and the counter's address.
func newCounterCluster(t *testing.T) (*cluster, string) {
	c := newCluster(t)
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h)
	}
	addr := guesttest.FreeAddr(t)
	c.startVM("counter", counterGuest(t), storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2",
		Disk: true, Args: []string{"ft-counter", "-file", "/disk/counter"}})
	return c, addr
}

// cloneAfterBackupKill kills vm's backup on h2 and waits until its
// primary on h1 has cloned a new one onto h3.
func (c *cluster) cloneAfterBackupKill(vm string) {
	c.t.Helper()
	gen := c.owner(vm).Generation
	c.signal("h2", syscall.SIGKILL)
	if o := c.protected(vm, gen, 3*time.Minute); o.Backup != "h3" {
		c.t.Fatalf("protected with backup %s, want h3", o.Backup)
	}
	c.t.Logf("cloned: %s", c.status(vm, "h1").LastClone)
}

// finishCounter ends load l on the Go counter at addr, and checks that
// every client saw strictly increasing values, none twice, and that the
// counter's memory and its disk agree.
func (c *cluster) finishCounter(t *testing.T, l *load, addr string) {
	t.Helper()
	seen, lost := l.finish()
	final := get(t, addr, 10*time.Second)
	checkCounter(t, seen, final)
	disk := strings.TrimSpace(readDisk(t, c.dir+"/vms/counter/disk", "counter"))
	if v, err := strconv.ParseUint(disk, 10, 64); err != nil || v != final {
		t.Errorf("the disk holds %q, the counter's memory %d", disk, final)
	}
	t.Logf("%d replies, %d unanswered, final %d, generation %d", len(seen), lost, final, c.owner("counter").Generation)
}

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
func TestCloneAfterEachPrimaryKill(t *testing.T) { cloneAfterEachKill(t, true) }

// TestCloneAfterEachBackupKill is TestCloneAfterEachPrimaryKill killing
// the host that is backup: the primary goes on alone and clones a new
// backup onto a spare each time.
func TestCloneAfterEachBackupKill(t *testing.T) { cloneAfterEachKill(t, false) }

func cloneAfterEachKill(t *testing.T, primary bool) {
	rounds := 10
	if testing.Short() {
		rounds = 3
	}
	c, addr := newCounterCluster(t)
	l := startLoad(addr, 4)
	c.killRounds(l, rounds, primary)
	c.finishCounter(t, l, addr)
}

// killRounds kills, rounds times, the host that is the counter's primary
// (or backup) under load l, and starts it again a second later as a
// spare; it returns the owner once the VM is protected again after the
// last.
func (c *cluster) killRounds(l *load, rounds int, primary bool) storage.Owner {
	t := c.t
	t.Helper()
	l.waitReplies(t, 20, 20*time.Second)
	gen := uint64(0)
	for i := range rounds {
		o := c.protected("counter", gen, time.Minute)
		gen = o.Generation
		t.Logf("round %d: generation %d, primary %s, backup %s", i, o.Generation, o.Host, o.Backup)
		l.waitReplies(t, 10, 20*time.Second)
		time.Sleep(randDuration(t, 0, 200*time.Millisecond))
		victim := o.Backup
		if primary {
			victim = o.Host
		}
		c.signal(victim, syscall.SIGKILL)
		l.waitReplies(t, 10, 30*time.Second)
		time.Sleep(time.Second)
		c.startHost(victim)
	}
	o := c.protected("counter", gen, time.Minute)
	l.waitReplies(t, 10, 20*time.Second)
	return o
}

var memOnce sync.Once
var memWasm []byte

func memGuest(t testing.TB) []byte {
	memOnce.Do(func() { memWasm = guesttest.BuildC(t, "ft-mem") })
	if memWasm == nil {
		t.Skip("the C guest ft-mem could not be built")
	}
	return memWasm
}

// memCheck asks ft-mem to verify its memory, retrying until a host serves
// it, and fails the test unless every page holds what it should.
func memCheck(t *testing.T, addr string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	lc := &lineClient{addr: addr}
	defer lc.close()
	for {
		got, err := lc.do("check", 10*time.Second)
		if err == nil {
			if !strings.HasPrefix(got, "ok ") {
				t.Fatalf("the guest's memory: %s", got)
			}
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("check: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCloning waits until vm's primary on host says it is cloning to a
// spare other than those in not, and returns that spare.
func (c *cluster) waitCloning(vm, host string, not ...string) string {
	c.t.Helper()
	var target string
	// From the primary's log, which says so as a clone starts: its status
	// says so only at its next write, after a clone of a few hundred
	// milliseconds may have ended.
	prefix := `msg="cloning to restore redundancy" vm=` + vm + " target="
	c.waitFor(30*time.Second, vm+" cloning", func() bool {
		for l := range strings.Lines(c.hosts[host].logs.String()) {
			if _, after, ok := strings.Cut(l, prefix); ok {
				if t, _, _ := strings.Cut(after, " "); !slices.Contains(not, t) {
					target = t
				}
			}
		}
		return target != ""
	})
	return target
}

// TestCloneSurvivesFailingSpares: a guest with 48 MiB of memory that
// rewrites it all the time loses its backup; its primary clones a new one,
// but the spare it picks is killed mid-clone, and the next one frozen
// (SIGSTOP) mid-clone. The primary runs on alone all along, answering its
// clients, and once a spare is left completes a clone: the VM is
// protected again, and after its primary is killed too the survivor's
// memory is intact.
func TestCloneSurvivesFailingSpares(t *testing.T) {
	guest := memGuest(t)
	c := newCluster(t)
	for _, h := range []string{"h1", "h2", "h3", "h4"} {
		c.startHost(h)
	}
	addr := guesttest.FreeAddr(t)
	c.startVM("mem", guest, storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2", Args: []string{"ft-mem", "48", "8"}})
	l := startLoad(addr, 2)
	l.waitReplies(t, 20, 30*time.Second)

	c.signal("h2", syscall.SIGKILL)
	killed := c.waitCloning("mem", "h1")
	c.signal(killed, syscall.SIGKILL)
	t.Logf("killed %s mid-clone", killed)
	l.waitReplies(t, 20, 30*time.Second)
	frozen := c.waitCloning("mem", "h1", killed)
	c.signal(frozen, syscall.SIGSTOP)
	t.Logf("froze %s mid-clone", frozen)
	l.waitReplies(t, 20, 30*time.Second)
	c.startHost(killed) // a spare again
	o := c.protected("mem", 0, 60*time.Second)
	if o.Backup == frozen || o.Backup == "h2" {
		t.Fatalf("protected with %s as backup", o.Backup)
	}
	t.Logf("protected again in generation %d with backup %s; %s", o.Generation, o.Backup, c.status("mem", "h1").LastClone)
	before := memCheck(t, addr)
	c.signal("h1", syscall.SIGKILL)
	after := memCheck(t, addr)
	l.waitReplies(t, 20, 30*time.Second)
	seen, _ := l.finish()
	checkCounter(t, seen, get(t, addr, 10*time.Second))
	if o := c.owner("mem"); o.Host != c.status("mem", o.Host).Host {
		t.Fatalf("owner %+v", o)
	}
	t.Logf("memory %s before the last kill, %s after", before, after)
	_ = c.hosts[frozen].cmd.Process.Signal(syscall.SIGCONT)
}

// TestClonePrimaryKilledMidClone: a primary running alone (its backup was
// killed) is killed in turn while it clones a new backup. The half-cloned
// spare never takes part in the pair: it discards the clone and claims
// nothing. Every replica is lost, and so is the guest's memory: the VM is
// started again from its disk (fresh memory), and the status says so;
// with --restart never it stays down, says so, and ftvm start may start it
// again.
func TestClonePrimaryKilledMidClone(t *testing.T) {
	guest := memGuest(t)
	for _, never := range []bool{false, true} {
		name := "restart-always"
		if never {
			name = "restart-never"
		}
		t.Run(name, func(t *testing.T) {
			c := newCluster(t)
			for _, h := range []string{"h1", "h2", "h3"} {
				c.startHost(h)
			}
			addr := guesttest.FreeAddr(t)
			spec := storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2", Args: []string{"ft-mem", "48", "8"}}
			if never {
				spec.Restart = storage.RestartNever
			}
			c.startVM("mem", guest, spec)
			cc := &counterClient{lineClient{addr: addr}}
			defer cc.close()
			for range 5 {
				if _, err := cc.do("inc", 10*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			c.signal("h2", syscall.SIGKILL)
			spare := c.waitCloning("mem", "h1")
			// The kill must land once the spare holds part of the clone,
			// not while the channel's handshake is still under way.
			c.waitFor(30*time.Second, spare+" receiving the clone", func() bool {
				return strings.Contains(c.hosts[spare].logs.String(), "receiving a clone")
			})
			lostGen := c.owner("mem").Generation
			c.signal("h1", syscall.SIGKILL)
			t.Logf("killed the primary h1 while it cloned generation %d to %s", lostGen+1, spare)
			if never {
				c.waitFor(20*time.Second, "the vm lost", func() bool { return vmState(t, c, "mem") == "lost: every replica failed, its memory with them" })
				time.Sleep(3 * time.Second) // longer than a restart would wait
				if o := c.owner("mem"); o.Generation != lostGen {
					t.Fatalf("a vm with --restart never was claimed again: %+v", o)
				}
				spec.Primary, spec.Backup = spare, ""
				c.startHost("h1")
				spec.Backup = "h1"
				c.startVM("mem", guest, spec)
			} else {
				c.waitFor(20*time.Second, "the vm restarted", func() bool {
					o, ok, _ := c.store.Latest("mem")
					return ok && o.Reason == "restart"
				})
			}
			for g := uint64(1); g <= c.owner("mem").Generation; g++ {
				if o, ok, _ := c.store.Owner("mem", g); ok && o.Host == spare && o.Reason != "restart" && o.Reason != "start" {
					t.Fatalf("the half-cloned spare %s claimed generation %d: %+v", spare, g, o)
				}
			}
			cc.close()
			v, err := cc.do("inc", 20*time.Second)
			for i := 0; err != nil && i < 100; i++ {
				time.Sleep(100 * time.Millisecond)
				v, err = cc.do("inc", 20*time.Second)
			}
			if err != nil || v != 1 {
				t.Fatalf("after the restart the counter answered %d, %v; want 1 (its memory was lost)", v, err)
			}
			if !never {
				c.waitFor(10*time.Second, "a status that says the vm was restarted", func() bool {
					vms, _ := host.VMs(c.store, time.Now())
					return len(vms) == 1 && strings.Contains(vms[0].Restarted, "restarted from its disk")
				})
			}
			if !strings.Contains(c.hosts[spare].logs.String(), "clone abandoned") {
				t.Errorf("%s's log does not say it abandoned the clone", spare)
			}
		})
	}
}

// vmState returns vm's state as ftvm status shows it.
func vmState(t *testing.T, c *cluster, vm string) string {
	vms, err := host.VMs(c.store, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vms {
		if v.Name == vm {
			return v.State
		}
	}
	return ""
}

// TestClone256MiB: a guest with 256 MiB of memory, idle or rewriting 16 of
// its pages at every turn of its loop while a client keeps it busy, loses
// its backup; its primary clones a new one. The clone converges, and every
// clone of the tests checks the memory it restored against a hash of the
// primary's at the clone point (--verify-clones); the primary is then
// killed, and the clone, gone live, finds every page of its memory as it
// should be. The pause is reported here and measured in BenchmarkClone.
func TestClone256MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("a 256 MiB guest in -short")
	}
	guest := memGuest(t)
	for _, pages := range []int{0, 16} {
		t.Run(fmt.Sprintf("rewrite-%d", pages), func(t *testing.T) {
			c := newCluster(t)
			for _, h := range []string{"h1", "h2", "h3"} {
				c.startHost(h)
			}
			addr := guesttest.FreeAddr(t)
			c.startVM("mem", guest, storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2",
				Args: []string{"ft-mem", "256", strconv.Itoa(pages)}})
			get(t, addr, 2*time.Minute)
			var l *load
			if pages > 0 {
				l = startLoad(addr, 1)
				l.waitReplies(t, 20, 30*time.Second)
			}
			c.cloneAfterBackupKill("mem")
			c.signal("h1", syscall.SIGKILL)
			t.Logf("after the primary's kill, the clone's memory: %s", memCheck(t, addr))
			if l != nil {
				l.waitReplies(t, 10, 30*time.Second)
				seen, _ := l.finish()
				checkCounter(t, seen, get(t, addr, 10*time.Second))
			}
		})
	}
}

// TestCloneOfAGuestFillingItsMemory: the backup is lost while the guest
// still grows and fills a large memory, so the pages it writes between the
// decision to finish and the final pause can be many: the final pause
// carries them in bounded chunks, or, past what the pause budget allows,
// the pre-copy goes on with the guest slowed. The clone completes, and the
// memory it restored is the primary's (--verify-clones), as the clone
// finds it once live.
func TestCloneOfAGuestFillingItsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("a 160 MiB guest in -short")
	}
	guest := memGuest(t)
	c := newCluster(t)
	c.args = []string{"--clone-pause", "1ms"}
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h)
	}
	addr := guesttest.FreeAddr(t)
	c.startVM("mem", guest, storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2",
		Args: []string{"ft-mem", "160", "64"}})
	c.cloneAfterBackupKill("mem")
	c.signal("h1", syscall.SIGKILL)
	t.Logf("after the primary's kill, the clone's memory: %s", memCheck(t, addr))
}

// TestCloneAvoidsTheFailedBackup: a frozen backup looks alive in the
// registry for as long as it is frozen; the primary that found it silent
// clones onto the idle spare, not onto it.
func TestCloneAvoidsTheFailedBackup(t *testing.T) {
	c, addr := newCounterCluster(t)
	get(t, addr, 20*time.Second)
	gen := c.owner("counter").Generation
	c.signal("h2", syscall.SIGSTOP)
	defer c.signal("h2", syscall.SIGCONT)
	o := c.protected("counter", gen, 30*time.Second)
	if o.Backup != "h3" {
		t.Fatalf("protected with backup %s, want h3", o.Backup)
	}
	if l := grepLines(c.hosts["h1"].logs.String(), "target=h2"); l != "" {
		t.Fatalf("the primary tried to clone onto its frozen backup:\n%s", l)
	}
}

// TestCloneOfAGuestRewritingAllItsMemory: a guest that writes a byte of
// every page of its memory, pass after pass (ft-touch), dirties it faster
// than any channel carries it. The clone slows it (longer waits at its
// pauses, then shorter runs between them) until it converges, and the VM
// is protected again, its clone's memory the primary's (--verify-clones).
func TestCloneOfAGuestRewritingAllItsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("a guest slowed to a crawl in -short")
	}
	guest := guesttest.BuildC(t, "ft-touch")
	c, addr := newCluster(t), guesttest.FreeAddr(t)
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h)
	}
	c.startVM("touch", guest, storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2", Args: []string{"ft-touch", "64"}})
	get(t, addr, 2*time.Minute)
	c.cloneAfterBackupKill("touch")
	t.Logf("slowed: %s", grepLines(c.hosts["h1"].logs.String(), "slowing the guest"))
}

// TestCloneCommitLostWithThePrimary: the primary moves its backup to h3;
// its clone's claim of the new pair's generation wins, and it dies before
// telling h3 (the commit). The old backup h2 must lose its claim (the new
// pair owns the generation); h3, restored and named the backup on
// storage, takes the clone as committed, finds the primary silent and
// goes live. The VM is not lost, and nothing a client saw is lost or
// repeated.
func TestCloneCommitLostWithThePrimary(t *testing.T) {
	c, addr := newCounterCluster(t)
	l := startLoad(addr, 8)
	l.waitReplies(t, 50, 20*time.Second)
	before := c.owner("counter")
	c.failpoint("h1", "crash-on=clone-commit")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := host.MoveVM(ctx, c.store, "counter", "h3", false, c.logProgress)
	if err == nil || !strings.Contains(err.Error(), "failed over to h3") {
		t.Errorf("move whose primary died at the commit: %v; want an error saying it failed over to h3", err)
	}
	c.waitFor(time.Minute, "h3 live", func() bool {
		o, ok, err := c.store.Latest("counter")
		return err == nil && ok && o.Generation >= before.Generation+2 && o.Host == "h3"
	})
	if o, ok, err := c.store.Owner("counter", before.Generation+1); err != nil || !ok || o.Host != "h1" || o.Backup != "h3" {
		t.Fatalf("generation %d: %+v, want h1's clone onto h3", before.Generation+1, o)
	}
	l.waitReplies(t, 50, 30*time.Second)
	c.finishCounter(t, l, addr)
	if st := c.status("counter", "h3"); st.Restarted != "" {
		t.Errorf("the vm was restarted from its disk (its memory lost): %+v", st)
	}
}
