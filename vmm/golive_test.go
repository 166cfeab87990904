package vmm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/replog"
	"ftvm/vmm"
	"ftvm/wasi"
	"ftvm/wasm"
)

// skewedClock is an OS host whose monotonic clock reads far ahead of the
// machine's, as a primary's may on another machine: a backup going live
// must continue from the primary's clock, not its own.
type skewedClock struct {
	*wasi.OSHost
	skew uint64
}

func (s skewedClock) ClockTime(id wasi.ClockID, precision uint64) (uint64, wasi.Errno) {
	v, errno := s.OSHost.ClockTime(id, precision)
	if id == wasi.ClockMonotonic {
		v += s.skew
	}
	return v, errno
}

const skew = uint64(1000 * time.Hour)

// errCut is how a cutSink ends its primary's run.
var errCut = errors.New("the primary dies here")

// cutSink records into memory until entry cut, where the primary dies: the
// recording stops, and its disk stays as the primary left it, as after a
// crash. With lost, entry cut never reaches the log: its call has
// performed its effect, if it has one (an intent's call has not). Without,
// entry cut reaches the log: an intent's call then dies before its effect,
// any other call after it.
type cutSink struct {
	memLog
	cut  int
	lost bool
	stop context.CancelFunc
}

func (s *cutSink) Append(e replog.Entry) error {
	n := len(s.entries) + 1
	switch {
	case s.cut == 0 || n < s.cut:
		return s.memLog.Append(e)
	case n > s.cut || s.lost:
		return errCut
	}
	if err := s.memLog.Append(e); err != nil {
		return err
	}
	if e.Type == vmm.TypeIntent {
		return errCut // the effect is not performed
	}
	s.stop() // the VM stops before its next call
	return nil
}

// tree describes a directory tree: each path with its contents, a
// directory's as "dir", a symbolic link's as its target.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.IsDir():
			m[rel] = "dir"
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			m[rel] = "link to " + target
			return err
		default:
			data, err := os.ReadFile(p)
			m[rel] = string(data)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type cutRun struct {
	stdout  string
	exit    vmm.Exit
	entries []replog.Entry
	dirs    []string // the primary's directories, as its run left them
	stopped uint64   // the position where the primary's run ended
}

// recordCut runs the guest, recording, on a host whose monotonic clock is
// skewed ahead: to its end with cut 0, else until the primary dies at entry
// cut (see cutSink).
func recordCut(t *testing.T, cm *wasm.CompiledModule, args, guestPaths []string, cut int, lost bool) cutRun {
	t.Helper()
	var out, errb bytes.Buffer
	cfg := wasi.Config{Args: args, Stdout: &out, Stderr: &errb}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sink := &cutSink{cut: cut, lost: lost, stop: stop}
	var dirs []string
	for _, g := range guestPaths {
		d := t.TempDir()
		cfg.Preopens = append(cfg.Preopens, wasi.Preopen{GuestPath: g, HostDir: d})
		dirs = append(dirs, d)
	}
	oh, err := wasi.NewOSHost(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer oh.CloseAll()
	vm, err := vmm.New(cm, vmm.Config{WASI: cfg, Record: sink, Host: skewedClock{oh, skew}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	exit, err := vm.Run(ctx)
	switch {
	case cut > 0 && (errors.Is(err, errCut) || errors.Is(err, context.Canceled)):
		if len(sink.entries) != cut && (len(sink.entries) != cut-1 || !lost) {
			t.Fatalf("the run stopped with %d entries, not at entry %d", len(sink.entries), cut)
		}
	case cut > 0:
		t.Fatalf("the run did not stop at entry %d: %v, %+v (%d entries)", cut, err, exit, len(sink.entries))
	case err != nil:
		t.Fatalf("record: %v (stderr %s)", err, errb.String())
	case exit.Code != 0:
		t.Fatalf("record: exit %d (stderr %s)", exit.Code, errb.String())
	}
	return cutRun{out.String(), exit, sink.entries, dirs, vm.Position()}
}

// TestGoLiveAtRandomPoints: a backup that has the primary's log up to a
// random entry, and the disk as the primary left it there, goes live where
// the log ends and finishes the run: the output, the exit status and the
// files are those of the primary's uninterrupted run. The guests keep
// files and directories open across the cut, rename an open file, and check
// that the monotonic clock (skewed far ahead on the primary) never goes
// back.
func TestGoLiveAtRandomPoints(t *testing.T) {
	for _, c := range []struct {
		guest string
		args  []string
		paths []string
		cuts  int
		check func(t *testing.T, cut int, a wasi.Adoption)
	}{
		{"wasi-journal", []string{"wasi-journal", "/data", "/other", "150"}, []string{"/data", "/other"}, 6, checkJournal},
		// wasi-fs exercises every file-system call, but is slow to run.
		{"wasi-fs", []string{"wasi-fs", "fs", "/data"}, []string{"/data"}, 1, checkClock},
	} {
		t.Run(c.guest, func(t *testing.T) {
			cm := compile(t, c.guest)
			probe := recordCut(t, cm, c.args, c.paths, 0, false)
			rng := rand.New(rand.NewPCG(1, 5))
			cuts := c.cuts
			if testing.Short() {
				cuts = 1
			}
			for range cuts {
				cut := 1 + rng.IntN(len(probe.entries)*3/4)
				t.Run(fmt.Sprintf("after-entry-%d", cut), func(t *testing.T) {
					goLiveAfter(t, cm, c.args, c.paths, probe, cut, false, false, rng, c.check)
				})
				t.Run(fmt.Sprintf("entry-%d-lost", cut), func(t *testing.T) {
					goLiveAfter(t, cm, c.args, c.paths, probe, cut, true, false, rng, c.check)
				})
			}
		})
	}
}

// checkClock: the guest reads the monotonic clock, so a backup going live
// continues from the primary's clock (skewed far ahead), not its own.
func checkClock(t *testing.T, _ int, a wasi.Adoption) {
	if a.MonotonicFloor < skew {
		t.Errorf("monotonic floor %d is not the primary's clock", a.MonotonicFloor)
	}
}

// checkJournal: wasi-journal closes stdin first thing (after the few
// entries of the runtime's start); its read-write handle on DIR/scratch,
// held after the file was removed (the guest goes on writing and reading
// it, so a cut there fails if it is lost), must not be adopted as the file
// made at its name since.
func checkJournal(t *testing.T, cut int, a wasi.Adoption) {
	checkClock(t, cut, a)
	if !slices.Equal(a.Closed, []wasi.Handle{0}) && (cut >= 20 || len(a.Closed) != 0) {
		t.Errorf("closed startup handles %v, want [0]", a.Closed)
	}
	for _, ad := range a.Handles {
		if ad.Kind == wasi.AdoptFile && ad.Rel == "scratch" && ad.Req.Read {
			t.Errorf("the removed scratch file is adopted as %+v", ad)
		}
	}
}

// TestGoLiveExactlyOnce: the primary of wasi-effects, which performs every
// kind of effect and checks every result, dies at every point of its run:
// after each entry reached the backup, and after each call performed its
// effect but before the call's entry reached the backup. The backup goes
// live there, settling the effect in doubt, and finishes the run: its
// output, exit status and disk are those of an uninterrupted run, so every
// effect happened exactly once and every result the guest checked was the
// one an uninterrupted run gets.
func TestGoLiveExactlyOnce(t *testing.T) {
	cm, err := wasm.Compile(guesttest.BuildC(t, "wasi-effects"), guesttest.Config())
	if err != nil {
		t.Fatal(err)
	}
	args, paths := []string{"wasi-effects", "/data"}, []string{"/data"}
	probe := recordCut(t, cm, args, paths, 0, false)
	rng := rand.New(rand.NewPCG(2, 7))
	intents := 0
	for _, e := range probe.entries {
		if e.Type == vmm.TypeIntent {
			intents++
		}
	}
	if intents < 15 {
		t.Fatalf("the run logged %d intents, want one per append, exclusive create and path operation", intents)
	}
	for cut := 1; cut < len(probe.entries); cut++ {
		t.Run(fmt.Sprintf("after-entry-%d", cut), func(t *testing.T) {
			goLiveAfter(t, cm, args, paths, probe, cut, false, false, rng, nil)
		})
		t.Run(fmt.Sprintf("entry-%d-lost", cut), func(t *testing.T) {
			goLiveAfter(t, cm, args, paths, probe, cut, true, false, rng, nil)
		})
	}
}

// goLiveAfter records the guest's run until its primary dies at entry cut
// (see cutSink), and lets a backup that has the log the primary left go
// live with the disk it left, and finish the run, which must end as the
// uninterrupted run probe did. With local, the backup has a disk of its
// own instead, empty at the start, on which its replay performs the
// guest's file effects (vmm.Config.Mirror), and goes live on it.
func goLiveAfter(t *testing.T, cm *wasm.CompiledModule, args, paths []string, probe cutRun, cut int, lost, local bool, rng *rand.Rand,
	check func(t *testing.T, cut int, a wasi.Adoption)) {
	rec := recordCut(t, cm, args, paths, cut, lost)
	have := len(rec.entries)
	// The primary had reported progress somewhere between the last entry
	// the backup has and where it died.
	lo := uint64(0)
	if have > 0 {
		lo = vmm.CompleteThrough(rec.entries[have-1])
	}
	hi := max(lo, rec.stopped-1)
	known := lo + rng.Uint64N(hi-lo+1)
	src := vmm.NewLiveSource(0)
	if err := src.Push(replog.Batch{Entries: rec.entries, Pos: known}); err != nil {
		t.Fatal(err)
	}
	src.End()

	dirs := rec.dirs
	var mirror *wasi.OSHost
	if local {
		dirs = make([]string, len(paths))
		for i := range dirs {
			dirs[i] = t.TempDir()
		}
		mirror = mirrorOf(t, paths, dirs)
	}
	var out, errb bytes.Buffer
	cfg := wasi.Config{Args: args, Stdout: &out, Stderr: &errb}
	for i, g := range paths {
		cfg.Preopens = append(cfg.Preopens, wasi.Preopen{GuestPath: g, HostDir: dirs[i]})
	}
	backup, err := vmm.New(cm, vmm.Config{WASI: cfg, Replay: src, Mirror: mirror})
	if err != nil {
		t.Fatal(err)
	}
	defer backup.Close()
	ctx := context.Background()
	if _, err := backup.Run(ctx); !errors.Is(err, vmm.ErrLogEnded) {
		t.Fatalf("backup: %v, want ErrLogEnded", err)
	}
	if backup.Seq() != uint64(have) || backup.Position() <= known {
		t.Fatalf("backup stopped at entry %d, position %d; want entry %d, past %d", backup.Seq(), backup.Position(), have, known)
	}
	settled, err := backup.Settle(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if settled.InDoubt {
		t.Logf("settled %s: performed by the primary: %v", settled.Effect, settled.Done)
	}
	a, err := backup.Adoption()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("going live at position %d after entry %d: adopting %+v, closed %v", backup.Position(), cut, a.Handles, a.Closed)
	if check != nil {
		check(t, cut, a)
	}
	if err := backup.GoLive(); err != nil {
		t.Fatal(err)
	}
	if want := uint64(have); settled.Done {
		want++
		if backup.Seq() != want {
			t.Fatalf("after going live: seq %d, want %d", backup.Seq(), want)
		}
	} else if backup.Seq() != want {
		t.Fatalf("after going live: seq %d, want %d", backup.Seq(), want)
	}
	if backup.OSHost() == nil {
		t.Fatal("after going live: no host")
	}
	exit, err := backup.Run(ctx)
	if err != nil {
		t.Fatalf("live run: %v (stderr %s)", err, errb.String())
	}
	if exit != probe.exit || out.String() != probe.stdout {
		t.Fatalf("backup exit %+v, stdout\n%s\nwant exit %+v, stdout\n%s\nstderr %s", exit, out.String(), probe.exit, probe.stdout, errb.String())
	}
	for i := range paths {
		want, got := tree(t, probe.dirs[i]), tree(t, dirs[i])
		if fmt.Sprint(want) != fmt.Sprint(got) {
			t.Errorf("%s after going live:\n%v\nwant\n%v", paths[i], got, want)
		}
	}
}

// liveSink hands each entry and each report of progress straight to a
// LiveSource, as the logging channel would.
type liveSink struct{ src *vmm.LiveSource }

func (s liveSink) Append(e replog.Entry) error {
	return s.src.Push(replog.Batch{Entries: []replog.Entry{e}, Pos: vmm.CompleteThrough(e)})
}

func (s liveSink) Progress(pos uint64) { s.src.Push(replog.Batch{Pos: pos}) }

// TestGoLiveEchoServer: the primary of an echo server dies with a client
// connected. Its backup goes live: it binds the listener's address while
// the dying primary still holds it, the guest finds its connection reset
// and drops it, and a new client connecting to the same address is served.
func TestGoLiveEchoServer(t *testing.T) {
	cm := compile(t, "wasi-echo")
	args := []string{"wasi-echo", "2"}
	src := vmm.NewLiveSource(0)
	var pout bytes.Buffer
	primary, err := vmm.New(cm, vmm.Config{
		WASI:   wasi.Config{Args: args, Listeners: []wasi.Listener{{Addr: "127.0.0.1:0", Shared: true}}, Stdout: &pout},
		Record: liveSink{src},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close()
	addr, _ := primary.OSHost().ListenerAddr(0)

	var bout, berr bytes.Buffer
	backup, err := vmm.New(cm, vmm.Config{
		WASI:   wasi.Config{Args: args, Listeners: []wasi.Listener{{Addr: addr.String(), Shared: true}}, Stdout: &bout, Stderr: &berr},
		Replay: src,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer backup.Close()
	ctx := context.Background()
	bdone := runAsync(backup, ctx)
	pctx, kill := context.WithCancel(ctx)
	pdone := runAsync(primary, pctx)

	// A client talks to the primary.
	c1, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	echoHello(t, c1)
	// The primary dies (its host stays open for now, listener and all);
	// the backup replays to the end of the log.
	primaryDies(t, kill, pdone, src, bdone)
	a, err := backup.Adoption()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Handles) != 1 || a.Handles[0].Kind != wasi.AdoptConn || len(a.Closed) != 0 {
		t.Fatalf("adoption %+v, want one connection", a)
	}
	if err := backup.GoLive(); err != nil {
		t.Fatalf("go live while the old primary holds %v: %v", addr, err)
	}
	if baddr, ok := backup.OSHost().ListenerAddr(0); !ok || baddr.String() != addr.String() {
		t.Fatalf("backup listens on %v, want %v", baddr, addr)
	}
	primary.Close()
	bdone = runAsync(backup, ctx)

	// A new client is served by the backup.
	c2, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := io.WriteString(c2, "world!"); err != nil {
		t.Fatal(err)
	}
	c2.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c2)
	if err != nil || string(got) != "world!" {
		t.Fatalf("echo from the backup: %q, %v", got, err)
	}
	r := <-bdone
	if r.err != nil || r.exit.Code != 0 {
		t.Fatalf("backup: %+v (stderr %s)", r, berr.String())
	}
	if want := "listening\nserved 2 connections, 11 bytes\n"; bout.String() != want {
		t.Errorf("backup stdout %q, want %q", bout.String(), want)
	}
	if !strings.Contains(strings.ToLower(berr.String()), "connection reset") {
		t.Errorf("backup stderr %q does not show the reset connection", berr.String())
	}
	if err := backup.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", addr.String()); err == nil {
		c.Close()
		t.Error("the listener still accepts after Close")
	}
}

// TestGoLiveRefused: only a replaying VM whose log is over goes live.
func TestGoLiveRefused(t *testing.T) {
	cm := compile(t, "wasi-basics")
	args := []string{"wasi-basics", "clock"}
	rec := record(t, cm, wasi.Config{Args: args})

	live, err := vmm.New(cm, vmm.Config{WASI: wasi.Config{Args: args}})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if _, err := live.Adoption(); err == nil {
		t.Error("Adoption of a live VM succeeded")
	}
	if err := live.GoLive(); err == nil {
		t.Error("GoLive of a live VM succeeded")
	}

	// Entries left in the log.
	vm, err := vmm.New(cm, vmm.Config{WASI: wasi.Config{Args: args}, Replay: rec.log.reader()})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := vm.GoLive(); err == nil || !strings.Contains(err.Error(), "entry 1") {
		t.Errorf("GoLive with the whole log ahead: %v", err)
	}

	// A live log that has not ended: refused at once, without waiting.
	src := vmm.NewLiveSource(0)
	vm2, err := vmm.New(cm, vmm.Config{WASI: wasi.Config{Args: args}, Replay: src})
	if err != nil {
		t.Fatal(err)
	}
	defer vm2.Close()
	if err := vm2.GoLive(); err == nil {
		t.Error("GoLive before the log ended succeeded")
	}
	src.End()
	if err := vm2.GoLive(); err != nil {
		t.Errorf("GoLive once the log ended: %v", err)
	}
	if err := vm2.GoLive(); err == nil {
		t.Error("a second GoLive succeeded")
	}

	// A VM restored from a snapshot has not seen the handles opened before.
	rvm, err := vmm.New(cm, vmm.Config{WASI: wasi.Config{Args: args}, Replay: rec.log.reader()})
	if err != nil {
		t.Fatal(err)
	}
	defer rvm.Close()
	if _, _, err := rvm.RunUntil(context.Background(), rec.count/2); err != nil {
		t.Fatal(err)
	}
	snap, err := rvm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := vmm.Restore(context.Background(), cm, vmm.Config{WASI: wasi.Config{Args: args}, Replay: rec.log.reader()}, snap)
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Close()
	if _, err := restored.Adoption(); err == nil {
		t.Error("Adoption of a restored VM succeeded")
	}
}

// TestGoLiveRewritesUnwrittenOutput: a primary dies having written only part
// of what its guest printed before the log's end (released outputs not yet
// performed, or held for an acknowledgement that came too late). Its
// backup's replay dropped that output as it went, but kept what lies
// beyond the primary's last report, and writes it when it goes live: the
// primary's stdout and the survivor's together are the guest's whole
// output, nothing lost and, with an exact report, nothing repeated.
func TestGoLiveRewritesUnwrittenOutput(t *testing.T) {
	cm, err := wasm.Compile(guesttest.BuildC(t, "wasi-effects"), guesttest.Config())
	if err != nil {
		t.Fatal(err)
	}
	args, paths := []string{"wasi-effects", "/data"}, []string{"/data"}
	probe := recordCut(t, cm, args, paths, 0, false)
	for _, cut := range []int{10, 30, 50} {
		// What the replay prints up to the cut: a primary that ran to
		// there printed the same.
		rec := recordCut(t, cm, args, paths, cut, false)
		var upTo bytes.Buffer
		src := vmm.NewLiveSource(0)
		if err := src.Push(replog.Batch{Entries: rec.entries, Pos: vmm.CompleteThrough(rec.entries[cut-1])}); err != nil {
			t.Fatal(err)
		}
		src.End()
		replay, err := vmm.New(cm, vmm.Config{WASI: wasi.Config{Args: args, Preopens: []wasi.Preopen{{GuestPath: "/data"}}, Stdout: &upTo}, Replay: src})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := replay.Run(context.Background()); !errors.Is(err, vmm.ErrLogEnded) {
			t.Fatal(err)
		}
		replay.Close()
		printed := upTo.Len()
		for _, written := range []int{0, printed / 2, printed} {
			t.Run(fmt.Sprintf("cut-%d-written-%d-of-%d", cut, written, printed), func(t *testing.T) {
				rec := recordCut(t, cm, args, paths, cut, false)
				src := vmm.NewLiveSource(0)
				b := replog.Batch{Entries: rec.entries, Pos: vmm.CompleteThrough(rec.entries[cut-1]), Out: [2]uint64{uint64(written), 0}}
				if err := src.Push(b); err != nil {
					t.Fatal(err)
				}
				src.End()
				cfg := wasi.Config{Args: args, Preopens: []wasi.Preopen{{GuestPath: "/data", HostDir: rec.dirs[0]}}}
				// The backup's replay prints nothing itself, as on a host.
				backup, err := vmm.New(cm, vmm.Config{WASI: cfg, Replay: src})
				if err != nil {
					t.Fatal(err)
				}
				defer backup.Close()
				ctx := context.Background()
				if _, err := backup.Run(ctx); !errors.Is(err, vmm.ErrLogEnded) {
					t.Fatal(err)
				}
				if _, err := backup.Settle(cfg); err != nil {
					t.Fatal(err)
				}
				a, err := backup.Adoption()
				if err != nil {
					t.Fatal(err)
				}
				var live bytes.Buffer
				lcfg := cfg
				lcfg.Stdout = &live
				oh, err := wasi.NewOSHostAdopting(lcfg, nil, a)
				if err != nil {
					t.Fatal(err)
				}
				if err := backup.GoLiveWith(oh, oh); err != nil {
					t.Fatal(err)
				}
				if n, _ := backup.Rewritten(); n != printed-written {
					t.Errorf("wrote again %d bytes, want %d", n, printed-written)
				}
				if _, err := backup.Run(ctx); err != nil {
					t.Fatal(err)
				}
				if got := probe.stdout[:written] + live.String(); got != probe.stdout {
					t.Errorf("the primary's %d bytes and the survivor's output:\n%s\nwant\n%s", written, got, probe.stdout)
				}
			})
		}
	}
}

// sessionConn is one end of a pipe that is a session (see wasi.Session).
type sessionConn struct {
	net.Conn
	id string
}

func (c sessionConn) SessionID() string { return c.id }

// TestGoLiveSession: a session reaches the guest through its listener
// (wasi.OSHost.Offer) and the log names it. The primary dies mid-session;
// the backup's replay hands over the output it regenerated, with its
// offsets, knows how far the guest read and wrote, and on going live
// resumes the session (wasi.Config.Sessions): the guest goes on with the
// same descriptor, with no reset.
func TestGoLiveSession(t *testing.T) {
	cm := compile(t, "wasi-echo")
	args := []string{"wasi-echo", "1"}
	src := vmm.NewLiveSource(0)
	var pout bytes.Buffer
	primary, err := vmm.New(cm, vmm.Config{
		WASI:   wasi.Config{Args: args, Listeners: []wasi.Listener{{Addr: "127.0.0.1:0", Shared: true}}, Stdout: &pout},
		Record: liveSink{src},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close()
	addr, _ := primary.OSHost().ListenerAddr(0)

	var regenerated bytes.Buffer
	var bout, berr bytes.Buffer
	var resumedIn, resumedOut uint64
	client2, guest2 := tcpPair(t)
	bcfg := wasi.Config{Args: args, Listeners: []wasi.Listener{{Addr: addr.String(), Shared: true}}, Stdout: &bout, Stderr: &berr,
		Sessions: func(id string, in, out uint64) (net.Conn, error) {
			if id != "s1" {
				return nil, fmt.Errorf("no session %q", id)
			}
			resumedIn, resumedOut = in, out
			return sessionConn{guest2, id}, nil
		}}
	backup, err := vmm.New(cm, vmm.Config{
		WASI: bcfg, Replay: src,
		SessionOutput: func(id string, off uint64, data []byte) {
			if id != "s1" || off != uint64(regenerated.Len()) {
				t.Errorf("session output of %q at %d, want s1 at %d", id, off, regenerated.Len())
			}
			regenerated.Write(data)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer backup.Close()
	ctx := context.Background()
	bdone := runAsync(backup, ctx)
	pctx, kill := context.WithCancel(ctx)
	pdone := runAsync(primary, pctx)

	client1, guest1 := tcpPair(t)
	if err := primary.OSHost().Offer(addr.String(), sessionConn{guest1, "s1"}); err != nil {
		t.Fatal(err)
	}
	echoHello(t, client1)
	primaryDies(t, kill, pdone, src, bdone)
	if regenerated.String() != "hello" {
		t.Fatalf("the replay regenerated %q of the session's output, want %q", regenerated.String(), "hello")
	}
	a, err := backup.Adoption()
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Handles) != 1 || a.Handles[0].Kind != wasi.AdoptConn || a.Handles[0].Session != "s1" || a.Handles[0].In != 5 || a.Handles[0].Out != 5 {
		t.Fatalf("adoption %+v, want session s1 with 5 bytes read and written", a.Handles)
	}
	if err := backup.GoLive(); err != nil {
		t.Fatal(err)
	}
	primary.Close()
	if resumedIn != 5 || resumedOut != 5 {
		t.Fatalf("resumed at input %d, output %d; want 5 and 5", resumedIn, resumedOut)
	}
	bdone = runAsync(backup, ctx)
	// The session goes on: the guest still holds the same connection.
	go func() {
		io.WriteString(client2, "world!")
		client2.CloseWrite()
	}()
	got, err := io.ReadAll(client2)
	if err != nil || string(got) != "world!" {
		t.Fatalf("echo after the failover: %q, %v", got, err)
	}
	r := <-bdone
	if r.err != nil || r.exit.Code != 0 {
		t.Fatalf("backup: %+v (stderr %s)", r, berr.String())
	}
	if want := "served 1 connections, 11 bytes\n"; !strings.HasSuffix(bout.String(), want) {
		t.Errorf("backup stdout %q, want it to end with %q", bout.String(), want)
	}
	if strings.Contains(strings.ToLower(berr.String()), "reset") {
		t.Errorf("the guest saw a reset: %s", berr.String())
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// runResult is how a VM's Run ended.
type runResult struct {
	exit vmm.Exit
	err  error
}

// runAsync runs vm in the background and returns where its outcome comes.
func runAsync(vm *vmm.VM, ctx context.Context) chan runResult {
	ch := make(chan runResult, 1)
	go func() {
		x, err := vm.Run(ctx)
		ch <- runResult{x, err}
	}()
	return ch
}

// echoHello checks that the echo guest behind c echoes "hello".
func echoHello(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo from the primary: %q, %v", buf, err)
	}
}

// primaryDies stops the primary's run (kill), ends the backup's log, and
// checks that the backup replayed to its end.
func primaryDies(t *testing.T, kill context.CancelFunc, pdone chan runResult, src *vmm.LiveSource, bdone chan runResult) {
	t.Helper()
	kill()
	if r := <-pdone; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("primary: %+v", r)
	}
	src.End()
	if r := <-bdone; !errors.Is(r.err, vmm.ErrLogEnded) {
		t.Fatalf("backup: %v, want ErrLogEnded", r.err)
	}
}
