package host

import (
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// onThread runs the calls it is given on one goroutine, as the replay
// makes them from its own.
type onThread chan func()

func startOnThread(t *testing.T) onThread {
	c := make(onThread)
	go func() {
		for f := range c {
			f()
		}
	}()
	t.Cleanup(func() { close(c) })
	return c
}

func (c onThread) do(f func()) {
	done := make(chan struct{})
	c <- func() { f(); close(done) }
	<-done
}

func niceOf(t *testing.T, tid int) int {
	t.Helper()
	n, err := threadNice(tid)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReplayPriority: the replay's thread runs nicer while it keeps up,
// returns to the host's priority once it trails by a quarter of the lag
// bound, stays there until it is back within a twentieth, and is left at
// the host's priority by stop.
func TestReplayPriority(t *testing.T) {
	if !canRestoreNice() {
		t.Skip("this process may not lower a nice value back (needs CAP_SYS_NICE)")
	}
	var behind atomic.Int64
	p := newReplayPriority(7, 100*time.Millisecond, func(time.Time) time.Duration { return time.Duration(behind.Load()) }, slog.New(slog.DiscardHandler))
	th := startOnThread(t)
	var tid, base int
	th.do(func() {
		p.start()
		tid, base = p.tid, p.base
	})
	if tid != p.tid || !p.locked {
		t.Fatal("start did not lock the goroutine to its thread")
	}
	if n := niceOf(t, tid); n != base+7 {
		t.Fatalf("after start: nice %d, want %d", n, base+7)
	}
	check := func(d time.Duration, force bool) {
		behind.Store(int64(d))
		th.do(func() {
			if force {
				p.checkedAt = time.Time{}
			}
			p.check()
		})
	}
	steps := []struct {
		behind time.Duration
		force  bool
		want   int
	}{
		{10 * time.Millisecond, true, base + 7},  // keeps up
		{30 * time.Millisecond, false, base + 7}, // checked within replayCheckEvery: not looked at
		{30 * time.Millisecond, true, base},      // trails by more than 25 ms
		{10 * time.Millisecond, true, base},      // not yet back within 5 ms
		{4 * time.Millisecond, true, base + 7},
		{25 * time.Millisecond, true, base},
	}
	for i, s := range steps {
		check(s.behind, s.force)
		if n := niceOf(t, tid); n != s.want {
			t.Fatalf("step %d (behind %v): nice %d, want %d", i, s.behind, n, s.want)
		}
	}
	if p.boosts != 2 {
		t.Fatalf("boosts = %d, want 2", p.boosts)
	}
	check(0, true)
	th.do(p.stop)
	if n := niceOf(t, tid); n != base {
		t.Fatalf("after stop: nice %d, want %d", n, base)
	}
	if p.locked {
		t.Fatal("stop left the goroutine locked to its thread")
	}
	th.do(p.stop) // twice is harmless
	check(time.Second, true)
	if n := niceOf(t, tid); n != base {
		t.Fatalf("a check after stop changed the priority: nice %d", n)
	}
}

// TestReplayPriorityOff: with raise 0 the replay's goroutine is neither
// locked nor changed.
func TestReplayPriorityOff(t *testing.T) {
	p := newReplayPriority(0, 100*time.Millisecond, func(time.Time) time.Duration { return time.Second }, slog.New(slog.DiscardHandler))
	th := startOnThread(t)
	th.do(func() {
		runtime.LockOSThread() // so that the thread observed is the one start would use
		defer runtime.UnlockOSThread()
		tid := threadID()
		before, err := threadNice(tid)
		p.start()
		p.checkedAt = time.Time{}
		p.check()
		after, err2 := threadNice(tid)
		if err != nil || err2 != nil || p.locked || after != before {
			t.Errorf("an off replayPriority changed its thread: nice %d -> %d, locked %v (%v, %v)", before, after, p.locked, err, err2)
		}
		p.stop()
	})
}

// TestReplayPriorityCannotRestore: when the priority cannot be set back
// (here, a thread ID that names no thread), the replay stops changing it
// and keeps its thread locked, so that Go ends the nicer thread with the
// goroutine instead of handing it to other goroutines.
func TestReplayPriorityCannotRestore(t *testing.T) {
	if !canRestoreNice() {
		t.Skip("this process may not lower a nice value back (needs CAP_SYS_NICE)")
	}
	p := newReplayPriority(7, 100*time.Millisecond, func(time.Time) time.Duration { return time.Second }, slog.New(slog.DiscardHandler))
	th := startOnThread(t)
	th.do(func() {
		p.start()
		p.tid = 1 << 30 // no such thread
		p.checkedAt = time.Time{}
		p.check()
	})
	if p.raise != 0 || !p.background || p.boosts != 0 {
		t.Fatalf("after a failed boost: raise %d, background %v, boosts %d; want 0, true, 0", p.raise, p.background, p.boosts)
	}
	th.do(p.stop)
	if !p.locked {
		t.Fatal("stop unlocked a thread it could not return to the host's priority")
	}
}
