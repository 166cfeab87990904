package host_test

import (
	"bytes"
	"crypto/rand"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftvm/host"
	"ftvm/internal/guesttest"
	"ftvm/replog"
	"ftvm/storage"
)

func randDuration(t testing.TB, lo, hi time.Duration) time.Duration {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(hi-lo)))
	if err != nil {
		t.Fatal(err)
	}
	return lo + time.Duration(n.Int64())
}

// counterPair starts hosts h1 and h2 (with h2Env in h2's environment) and a
// counter VM with its primary on h1 and its backup on h2; it returns the
// counter's address.
func counterPair(t *testing.T, c *cluster, disk bool, h2Env ...string) string {
	t.Helper()
	c.startHost("h1")
	c.startHost("h2", h2Env...)
	addr := guesttest.FreeAddr(t)
	spec := storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2", Disk: disk, Args: []string{"ft-counter"}}
	if disk {
		spec.Args = append(spec.Args, "-file", "/disk/counter")
	}
	c.startVM("counter", counterGuest(t), spec)
	return addr
}

// TestFailoverPrimaryKilled is the seed's scenario: clients increment a
// counter; the primary's host is killed with SIGKILL at a random moment;
// the clients reconnect to the survivor and go on. No value may be
// returned twice, and the final value must account for every increment
// whose reply a client saw.
func TestFailoverPrimaryKilled(t *testing.T) {
	runs := 20
	if testing.Short() {
		runs = 3
	}
	for i := range runs {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			c := newCluster(t)
			addr := counterPair(t, c, false)
			l := startLoad(addr, 4)
			l.waitReplies(t, 20, 20*time.Second)
			time.Sleep(randDuration(t, 0, 400*time.Millisecond))
			before := l.count()
			c.signal("h1", syscall.SIGKILL)
			// The survivor must serve every client again.
			l.waitReplies(t, 40, 30*time.Second)
			seen, lost := l.finish()
			final := get(t, addr, 10*time.Second)
			checkCounter(t, seen, final)
			if o := c.owner("counter"); o.Host != "h2" || o.Generation != 2 {
				t.Fatalf("owner after failover: %+v, want h2 in generation 2", o)
			}
			t.Logf("replies %d (%d before the kill), unanswered %d, final %d", len(seen), before, lost, final)
		})
	}
}

// TestFailoverBackupKilled: the primary goes on alone and loses no reply.
func TestFailoverBackupKilled(t *testing.T) {
	c := newCluster(t)
	addr := counterPair(t, c, false)
	l := startLoad(addr, 4)
	l.waitReplies(t, 20, 20*time.Second)
	c.signal("h2", syscall.SIGKILL)
	l.waitReplies(t, 40, 30*time.Second)
	seen, lost := l.finish()
	if lost != 0 {
		t.Errorf("%d requests lost their reply when the backup died", lost)
	}
	final := get(t, addr, 10*time.Second)
	checkCounter(t, seen, final)
	if final != uint64(len(seen)) {
		t.Errorf("final value %d, but %d increments were answered", final, len(seen))
	}
	if o := c.owner("counter"); o.Host != "h1" || o.Generation != 2 {
		t.Fatalf("owner: %+v, want h1 in generation 2", o)
	}
}

// TestFailoverBackupFrozen: with the backup stopped (SIGSTOP), the
// primary's outputs are held by the Output Rule until it declares the
// backup failed and wins the next generation; only then does a reply leave.
// The thawed backup finds it lost and halts.
func TestFailoverBackupFrozen(t *testing.T) {
	c := newCluster(t)
	addr := counterPair(t, c, false)
	cc := &counterClient{lineClient{addr: addr}}
	defer cc.close()
	if _, err := cc.do("inc", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.signal("h2", syscall.SIGSTOP)
	v, err := cc.do("inc", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// The reply left only after the primary won generation 2: the record
	// must exist by the time the reply arrived.
	if o := c.owner("counter"); o.Generation != 2 || o.Host != "h1" {
		t.Fatalf("reply %d arrived while the owner is %+v: an output left before the backup acked or the primary won", v, o)
	}
	c.signal("h2", syscall.SIGCONT)
	c.waitFor(10*time.Second, "the thawed backup halts", func() bool {
		return c.status("counter", "h2").State == "halted"
	})
	for range 5 {
		if _, err := cc.do("inc", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if got := get(t, addr, 5*time.Second); got != 7 {
		t.Fatalf("final %d, want 7", got)
	}
}

// TestLinkCut: the pair's link is cut while both reach storage: exactly one
// goes live, the other halts, and the clients are served throughout.
func TestLinkCut(t *testing.T) {
	for _, side := range []string{"h1", "h2"} {
		t.Run("cut-at-"+side, func(t *testing.T) {
			c := newCluster(t)
			addr := counterPair(t, c, false)
			l := startLoad(addr, 2)
			l.waitReplies(t, 10, 20*time.Second)
			other := map[string]string{"h1": "h2", "h2": "h1"}[side]
			c.failpoint(side, "cut="+other)
			c.waitFor(10*time.Second, "one side halts", func() bool {
				return c.status("counter", "h1").State == "halted" || c.status("counter", "h2").State == "halted"
			})
			o := c.owner("counter")
			loser := map[string]string{"h1": "h2", "h2": "h1"}[o.Host]
			if o.Generation != 2 {
				t.Fatalf("owner %+v, want generation 2", o)
			}
			if st := c.status("counter", loser); st.State != "halted" {
				t.Fatalf("loser %s is %q", loser, st.State)
			}
			c.waitFor(10*time.Second, "the winner runs alone", func() bool {
				st := c.status("counter", o.Host)
				return st.State == "running" && st.Role == "alone"
			})
			l.waitReplies(t, 20, 30*time.Second)
			seen, _ := l.finish()
			checkCounter(t, seen, get(t, addr, 10*time.Second))
		})
	}
}

// TestStorageUnreachableSurvivor: the backup cannot reach shared storage
// when its primary dies: it must not go live until storage returns.
func TestStorageUnreachableSurvivor(t *testing.T) {
	c := newCluster(t)
	addr := counterPair(t, c, false)
	for range 3 {
		get(t, addr, 5*time.Second)
	}
	cc := &counterClient{lineClient{addr: addr}}
	if _, err := cc.do("inc", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	cc.close()
	c.failpoint("h2", "storage=unreachable")
	c.signal("h1", syscall.SIGKILL)
	// Several failure timeouts pass: no claim, no service.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if o := c.owner("counter"); o.Generation != 1 {
			t.Fatalf("generation %d claimed while the survivor could not reach storage", o.Generation)
		}
		if conn, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			conn.Close()
			t.Fatal("the survivor serves clients without having won a generation")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.failpoint("h2", "")
	if v := get(t, addr, 10*time.Second); v != 1 {
		t.Fatalf("value %d after failover, want 1", v)
	}
	if o := c.owner("counter"); o.Host != "h2" || o.Generation != 2 {
		t.Fatalf("owner %+v, want h2 in generation 2", o)
	}
}

// TestFailoverDiskAgrees: a guest that persists its counter to a file on
// its virtual disk: after a failover, the file and the memory agree.
func TestFailoverDiskAgrees(t *testing.T) {
	c := newCluster(t)
	addr := counterPair(t, c, true)
	l := startLoad(addr, 4)
	l.waitReplies(t, 30, 20*time.Second)
	time.Sleep(randDuration(t, 0, 200*time.Millisecond))
	c.signal("h1", syscall.SIGKILL)
	l.waitReplies(t, 20, 30*time.Second)
	seen, _ := l.finish()
	final := get(t, addr, 10*time.Second)
	checkCounter(t, seen, final)
	b, err := os.ReadFile(filepath.Join(c.store.DiskDir("counter"), "counter"))
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("disk file %q: %v", b, err)
	}
	if onDisk != final {
		t.Fatalf("disk says %d, memory says %d", onDisk, final)
	}
}

// TestStrangerOnLoggingPort: random bytes, and well-formed frames from a
// peer without the cluster key, are refused; the VM runs on unaffected.
func TestStrangerOnLoggingPort(t *testing.T) {
	c := newCluster(t)
	addr := counterPair(t, c, false)
	hs, _ := c.store.Hosts()
	var port string
	for _, h := range hs {
		if h.Name == "h1" {
			port = h.Addr
		}
	}
	get(t, addr, 5*time.Second)
	// Random bytes.
	junk := make([]byte, 4096)
	rand.Read(junk)
	if conn, err := net.Dial("tcp", port); err == nil {
		conn.Write(junk)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, _ := conn.Read(make([]byte, 64)); n != 0 {
			t.Errorf("the host answered %d bytes to garbage", n)
		}
		conn.Close()
	}
	// A well-formed handshake and batch, with the wrong key.
	wrong := make([]byte, 32)
	rand.Read(wrong)
	hello := []byte("\x03log\x07counter\x01\x02h2\x00")
	if rc, err := replog.Dial(t.Context(), port, wrong, hello); err == nil {
		rc.WriteBatch(replog.Batch{Pos: 1 << 40, Entries: []replog.Entry{{Seq: 1, Pos: 1, Type: 1, Data: []byte("evil")}}})
		if _, _, err := rc.ReadFrame(); err == nil {
			t.Error("a peer without the key was served")
		}
		rc.Close()
	}
	// Heartbeat garbage on the UDP port.
	if u, err := net.Dial("udp", port); err == nil {
		u.Write(append([]byte("FTHB"), junk[:100]...))
		u.Close()
	}
	l := startLoad(addr, 2)
	l.waitReplies(t, 20, 20*time.Second)
	seen, lost := l.finish()
	final := get(t, addr, 5*time.Second)
	checkCounter(t, seen, final)
	if lost != 0 {
		t.Errorf("%d requests unanswered", lost)
	}
	if o := c.owner("counter"); o.Generation != 1 {
		t.Fatalf("a stranger caused a failover: %+v", o)
	}
	c.waitFor(5*time.Second, "h1 logs why it refused the stranger", func() bool {
		return strings.Contains(c.hosts["h1"].logs.String(), "connection refused")
	})
}

// TestFlowControlPausesPrimary: a primary never runs more than the lag
// bound ahead of its backup. With the backup frozen (and a failure timeout
// long enough not to end the pair), the primary's guest must stop
// advancing, and go on once the backup is thawed.
func TestFlowControlPausesPrimary(t *testing.T) {
	c := newCluster(t, "--timeout", "60s")
	c.startHost("h1")
	c.startHost("h2")
	spin := guesttest.Build(t, "ft-spin")
	c.startVM("spin", spin, storage.VMSpec{Primary: "h1", Backup: "h2"})
	pos := func() uint64 { return c.status("spin", "h1").Pos }
	c.waitFor(10*time.Second, "the guest runs", func() bool { return pos() > 0 })
	c.signal("h2", syscall.SIGSTOP)
	// Statuses are written every 250 ms: wait until two in a row agree,
	// then check that the guest stays put for a while.
	var stuck uint64
	c.waitFor(20*time.Second, "the primary pauses", func() bool {
		a := pos()
		time.Sleep(600 * time.Millisecond)
		stuck = pos()
		return a == stuck
	})
	time.Sleep(time.Second)
	if p := pos(); p != stuck {
		t.Fatalf("the primary ran on from %d to %d with its backup frozen", stuck, p)
	}
	if st := c.status("spin", "h1"); st.Role != "primary" {
		t.Fatalf("primary %+v", st)
	}
	c.signal("h2", syscall.SIGCONT)
	c.waitFor(20*time.Second, "the primary resumes", func() bool { return pos() > stuck })
}

// TestOneChannelCut: a peer fails only when heartbeats and log traffic are
// both silent. With heartbeats cut the log keeps the pair together; with the
// logging channel cut the heartbeats do, the primary's outputs wait, and
// when the link returns the backup dials again and resumes where it
// stopped, and the held replies leave.
func TestOneChannelCut(t *testing.T) {
	c := newCluster(t)
	addr := counterPair(t, c, false)
	cc := &counterClient{lineClient{addr: addr}}
	defer cc.close()
	inc := func(want uint64) {
		t.Helper()
		v, err := cc.do("inc", 10*time.Second)
		if err != nil || v != want {
			t.Fatalf("inc: %d, %v; want %d", v, err, want)
		}
	}
	inc(1)
	c.failpoint("h1", "cut-heartbeat=h2")
	deadline := time.Now().Add(1500 * time.Millisecond)
	for n := uint64(2); time.Now().Before(deadline); n++ {
		inc(n)
		time.Sleep(20 * time.Millisecond)
	}
	if o := c.owner("counter"); o.Generation != 1 {
		t.Fatalf("heartbeats cut, log flowing: generation %d claimed", o.Generation)
	}
	c.failpoint("h1", "")
	before := get(t, addr, 5*time.Second)

	c.failpoint("h1", "cut-log=h2")
	got := make(chan uint64, 1)
	go func() {
		v, _ := cc.do("inc", 20*time.Second)
		got <- v
	}()
	select {
	case v := <-got:
		t.Fatalf("reply %d left while the logging channel was cut", v)
	case <-time.After(1500 * time.Millisecond):
	}
	if o := c.owner("counter"); o.Generation != 1 {
		t.Fatalf("log cut, heartbeats flowing: generation %d claimed", o.Generation)
	}
	c.failpoint("h1", "")
	if v := <-got; v != before+1 {
		t.Fatalf("held reply %d, want %d", v, before+1)
	}
	// (The host's log reaches the test through a pipe: wait for it.)
	c.waitFor(5*time.Second, "the backup's second channel", func() bool {
		return strings.Count(c.hosts["h2"].logs.String(), "logging channel up") >= 2
	})
	if st := c.status("counter", "h1"); st.Generation != 1 || st.Role != "primary" {
		t.Fatalf("primary after the cuts: %+v", st)
	}
}

// TestGuestExitUnderFT: a guest that ends: its output leaves the primary
// once (the backup computes it and drops it), and both sides record the
// exit without either taking over.
func TestGuestExitUnderFT(t *testing.T) {
	profiles := t.TempDir()
	c := newCluster(t, "--guest-profiles", profiles)
	c.startHost("h1")
	c.startHost("h2")
	basics := guesttest.Build(t, "wasi-basics")
	spec := storage.VMSpec{Name: "basics", Args: []string{"wasi-basics", "clock"}, Primary: "h1", Backup: "h2"}
	if _, _, err := host.StartVM(c.store, spec, basics, time.Now()); err != nil {
		t.Fatal(err)
	}
	c.waitFor(20*time.Second, "both sides record the exit", func() bool {
		return c.status("basics", "h1").State == "exited" && c.status("basics", "h2").State == "exited"
	})
	for _, h := range []string{"h1", "h2"} {
		if st := c.status("basics", h); st.Detail != "exit status 0" {
			t.Errorf("%s: %+v", h, st)
		}
	}
	c.waitFor(5*time.Second, "the guest's output", func() bool {
		return strings.Contains(c.hosts["h1"].logs.String(), "clock ok")
	})
	if strings.Contains(c.hosts["h2"].logs.String(), "clock ok") {
		t.Error("the backup let its guest's output out")
	}
	time.Sleep(time.Second) // two failure timeouts
	if o := c.owner("basics"); o.Generation != 1 {
		t.Fatalf("a claim after the guest ended: %+v", o)
	}
	// Each side wrote its guest profile, and the backup, having replayed
	// the whole run, sampled exactly what the primary ran.
	var prof [2][]byte
	for i, h := range []string{"h1", "h2"} {
		path := filepath.Join(profiles, "basics-gen1-"+h+".pprof")
		c.waitFor(5*time.Second, path, func() bool {
			b, err := os.ReadFile(path)
			prof[i] = b
			return err == nil && len(b) > 0
		})
	}
	if !bytes.Equal(prof[0], prof[1]) {
		t.Fatal("the backup's guest profile differs from the primary's")
	}
}

// freezePrimaryUnderLoad starts four clients of the counter at addr and,
// once they have replies, freezes the primary's host (SIGSTOP); it returns
// when the backup owns the next generation.
func freezePrimaryUnderLoad(t *testing.T, c *cluster, addr string) *load {
	t.Helper()
	l := startLoad(addr, 4)
	l.waitReplies(t, 20, 20*time.Second)
	c.signal("h1", syscall.SIGSTOP)
	c.waitFor(10*time.Second, "the backup goes live", func() bool {
		o := c.owner("counter")
		return o.Generation == 2 && o.Host == "h2"
	})
	return l
}

// TestFailoverPrimaryFrozen: the primary's host is frozen (SIGSTOP): the
// backup takes over and fences it, being on the same machine: it shuts its
// sockets and kills the stopped process (fencePeer), so every new
// connection reaches the survivor and no write the old primary had in
// flight can land after the survivor's.
func TestFailoverPrimaryFrozen(t *testing.T) {
	c := newCluster(t)
	addr := counterPair(t, c, false)
	l := freezePrimaryUnderLoad(t, c, addr)
	select {
	case <-c.hosts["h1"].done:
	case <-time.After(10 * time.Second):
		t.Fatal("the frozen primary's host was not fenced")
	}
	if st := c.hosts["h1"].cmd.ProcessState; st == nil || !strings.Contains(st.String(), "killed") {
		t.Fatalf("the frozen primary's host ended with %v, want killed", st)
	}
	if logs := c.hosts["h2"].logs.String(); !strings.Contains(logs, "fenced the old primary") {
		t.Fatalf("the survivor did not log the fencing:\n%s", logs)
	}
	// No new connection is queued at the old listener. (Without the
	// fencing, the kernel would send about half of them there, to wait
	// for a process that never answers.)
	get(t, addr, 10*time.Second)
	for i := range 32 {
		cc := &counterClient{lineClient{addr: addr}}
		if _, err := cc.do("get", 3*time.Second); err != nil {
			t.Fatalf("connection %d after the failover: %v", i, err)
		}
		cc.close()
	}
	l.waitReplies(t, 20, 30*time.Second)
	seen, _ := l.finish()
	checkCounter(t, seen, get(t, addr, 10*time.Second))
}

// TestFailoverPrimaryFrozenThaws: as if the frozen primary ran on another
// machine (the survivor does not fence it: fence=off), the backup takes
// over; when the old primary thaws it finds it lost, halts and releases
// nothing it held.
func TestFailoverPrimaryFrozenThaws(t *testing.T) {
	c := newCluster(t)
	addr := counterPair(t, c, false, host.EnvFailpoints+"=fence=off")
	l := freezePrimaryUnderLoad(t, c, addr)
	// While the frozen primary still holds the address, the kernel may
	// queue some new connections at it; clients time out and reconnect.
	l.waitReplies(t, 20, 30*time.Second)
	c.signal("h1", syscall.SIGCONT)
	c.waitFor(10*time.Second, "the thawed primary halts", func() bool {
		return c.status("counter", "h1").State == "halted"
	})
	l.waitReplies(t, 20, 30*time.Second)
	seen, _ := l.finish()
	checkCounter(t, seen, get(t, addr, 10*time.Second))
}

// TestCrashFoundByChannelEnd: a host process that dies (SIGKILL) leaves its
// connections to the kernel, which ends them, and its peer declares it
// failed once silent for the gone timeout (four heartbeats), not the
// failure timeout; so does a host shut down (SIGTERM), which says so on
// its channels. Here the failure timeout is 30 s, so only the ended
// channel can make the survivor serve within the 20 s the test waits. A
// frozen host (SIGSTOP) ends nothing: its peer waits the whole timeout.
func TestCrashFoundByChannelEnd(t *testing.T) {
	for _, tc := range []struct {
		name, killed string
		sig          syscall.Signal
	}{
		{"kill-h1", "h1", syscall.SIGKILL},
		{"kill-h2", "h2", syscall.SIGKILL},
		// A host shut down says goodbye on its channels: the same. (A
		// backup would also find the primary's port refusing it; the
		// primary has only the goodbye to go by.)
		{"term-h1", "h1", syscall.SIGTERM},
		{"term-h2", "h2", syscall.SIGTERM},
	} {
		killed := tc.killed
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, "--timeout", "30s")
			addr := counterPair(t, c, false)
			cc := &counterClient{lineClient{addr: addr}}
			defer cc.close()
			for want := uint64(1); want <= 3; want++ {
				if v, err := cc.do("inc", 10*time.Second); err != nil || v != want {
					t.Fatalf("inc: %d, %v; want %d", v, err, want)
				}
			}
			survivor := map[string]string{"h1": "h2", "h2": "h1"}[killed]
			c.signal(killed, tc.sig)
			c.waitFor(20*time.Second, "the survivor runs alone", func() bool {
				st := c.status("counter", survivor)
				return st.Generation == 2 && st.Role == "alone" && st.State == "running"
			})
			c.waitFor(5*time.Second, "the survivor's claim logged", func() bool {
				return strings.Contains(c.hosts[survivor].logs.String(), "channel_ended=true")
			})
			if killed == "h1" {
				cc.close() // the old primary's connection is gone: reconnect
			}
			if v, err := cc.do("inc", 10*time.Second); err != nil || v != 4 {
				t.Fatalf("inc on the survivor: %d, %v; want 4", v, err)
			}
		})
	}
	t.Run("freeze-h2", func(t *testing.T) {
		c := newCluster(t, "--timeout", "30s")
		addr := counterPair(t, c, false)
		if got := get(t, addr, 10*time.Second); got != 0 {
			t.Fatalf("get: %d", got)
		}
		c.signal("h2", syscall.SIGSTOP)
		defer c.signal("h2", syscall.SIGCONT)
		// Ten gone timeouts: long enough for the fast path to have fired.
		time.Sleep(2 * time.Second)
		if o := c.owner("counter"); o.Generation != 1 {
			t.Fatalf("a frozen backup was declared failed before the failure timeout: owner %+v", o)
		}
		if st := c.status("counter", "h1"); st.Role != "primary" {
			t.Fatalf("primary is %+v", st)
		}
	})
}

// TestEventsOfAFailover: the hosts' event history tells the failover:
// the pair started in generation 1, the backup found its primary silent,
// won generation 2 and went live.
func TestEventsOfAFailover(t *testing.T) {
	c := newCluster(t)
	addr := counterPair(t, c, false)
	get(t, addr, 10*time.Second)
	c.signal("h1", syscall.SIGKILL)
	get(t, addr, 30*time.Second)
	want := []storage.Event{
		{Host: "h1", VM: "counter", Generation: 1, Kind: "started"},
		{Host: "h2", VM: "counter", Generation: 1, Kind: "started"},
		{Host: "h2", VM: "counter", Generation: 2, Kind: "claim won"},
		{Host: "h2", VM: "counter", Generation: 2, Kind: "went live"},
	}
	c.waitFor(10*time.Second, "the failover's events", func() bool {
		evs, _ := c.store.Events()
		at := make([]int, len(want))
		for i, w := range want {
			at[i] = slices.IndexFunc(evs, func(e storage.Event) bool {
				return e.Host == w.Host && e.VM == w.VM && e.Generation == w.Generation && e.Kind == w.Kind
			})
			if at[i] < 0 {
				return false
			}
		}
		return at[2] < at[3] // the claim won before going live
	})
}

// TestComputingGuestGoesLive: a guest that computes without end and makes
// no call after its first line (no clock, no output): its primary killed,
// the backup goes live without waiting for a call at which its replay
// would meet the end of the log, and it runs alone, not "going live".
func TestComputingGuestGoesLive(t *testing.T) {
	src := filepath.Join(t.TempDir(), "computing", "main.c")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	prog := "#include <stdio.h>\nint main(void) { printf(\"computing\\n\"); fflush(stdout); volatile unsigned long x = 0; for (;;) x++; }\n"
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	guest := guesttest.BuildCFile(t, src)
	c := newCluster(t)
	c.startHost("h1")
	c.startHost("h2")
	c.startVM("computing", guest, storage.VMSpec{Primary: "h1", Backup: "h2"})
	c.waitFor(30*time.Second, "the backup replaying the computation", func() bool {
		st := c.status("computing", "h2")
		return st.Connected && st.Pos > 1<<24
	})
	c.signal("h1", syscall.SIGKILL)
	c.waitFor(60*time.Second, "the backup live", func() bool {
		st := c.status("computing", "h2")
		return st.Generation == 2 && st.Role == "alone" && st.State == "running"
	})
	if !strings.Contains(c.hosts["h2"].logs.String(), "msg=live") {
		t.Fatalf("h2 did not log going live:\n%s", c.hosts["h2"].logs.String())
	}
}
