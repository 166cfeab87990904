package host

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestReplayPriority: a replay in the background raises its thread's nice
// value; it asks to return to the host's priority once it trails by a
// quarter of the lag bound, and to go back to the background only once it
// is within a twentieth; the nicer thread ends with its goroutine.
func TestReplayPriority(t *testing.T) {
	var behind atomic.Int64
	p := newReplayPriority(7, 100*time.Millisecond, func(time.Time) time.Duration { return time.Duration(behind.Load()) }, slog.New(slog.DiscardHandler))
	if !p.enabled() {
		t.Fatal("a raise of 7 is off")
	}
	type look struct {
		behind time.Duration
		force  bool // replayCheckEvery has passed since the last look, or not
		want   bool // switchWanted after it
	}
	// A goroutine locked to a thread other than the main one, which Go
	// cannot end (as backupSide.backgroundSegment; it may take tries).
	calls := make(chan func())
	tids := make(chan int)
	var tid int
	for tid = os.Getpid(); tid == os.Getpid(); {
		go func() {
			runtime.LockOSThread()
			if threadID() == os.Getpid() {
				runtime.UnlockOSThread()
				tids <- os.Getpid()
				return
			}
			tids <- threadID() // never unlocked, as in backupSide
			for f := range calls {
				f()
			}
		}()
		tid = <-tids
	}
	do := func(f func()) {
		done := make(chan struct{})
		calls <- func() { f(); close(done) }
		<-done
	}
	base, err := threadNice(tid)
	if err != nil {
		t.Fatal(err)
	}
	if base+7 > 19 {
		t.Skipf("this process runs at nice %d already", base)
	}
	var ok bool
	do(func() { ok = p.lower() })
	if n, _ := threadNice(tid); !ok || n != base+7 || !p.background {
		t.Fatalf("after lower: ok %v, nice %d (want %d), background %v", ok, n, base+7, p.background)
	}
	run := func(phase string, looks []look) {
		for i, l := range looks {
			behind.Store(int64(l.behind))
			do(func() {
				if l.force {
					p.checkedAt = time.Time{}
				} else {
					p.checkedAt = time.Now().Add(time.Hour) // not due
				}
				p.check()
			})
			if p.switchWanted != l.want {
				t.Fatalf("%s, look %d (behind %v): switchWanted %v, want %v", phase, i, l.behind, p.switchWanted, l.want)
			}
		}
	}
	run("background", []look{
		{10 * time.Millisecond, true, false},  // keeps up
		{30 * time.Millisecond, false, false}, // within replayCheckEvery: not looked at
		{30 * time.Millisecond, true, true},   // trails by more than 25 ms
		{0, true, true},                       // asked already, until it switches
	})
	if p.boosts != 1 {
		t.Fatalf("boosts = %d, want 1", p.boosts)
	}
	if n, _ := threadNice(tid); n != base+7 {
		t.Fatalf("check changed the thread's nice value to %d", n)
	}
	// A backup about to go live: any goroutine returns the thread to the
	// host's priority, where lowering a nice value is allowed (root).
	p.boost()
	if n, _ := threadNice(tid); n != base && os.Geteuid() == 0 {
		t.Fatalf("after boost, as root: nice %d, want %d", n, base)
	}
	do(func() { ok = p.lower() })
	do(p.ended)
	p.boost()        // the stretch ended: nothing to boost
	want := base + 7 // boosted back to base, then lowered again
	if os.Geteuid() != 0 {
		want = min(base+14, 19)
	}
	if n, _ := threadNice(tid); n != want {
		t.Fatalf("boost after the stretch ended changed the thread's nice to %d", n)
	}
	p.atHostPriority()
	run("at the host's priority", []look{
		{10 * time.Millisecond, true, false}, // not yet within 5 ms
		{4 * time.Millisecond, true, true},
	})
	// The goroutine ends without unlocking its thread: Go ends the thread,
	// so that no other goroutine runs at its nice value.
	close(calls)
	task := fmt.Sprintf("/proc/self/task/%d", tid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(task); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("thread %d still exists after its locked goroutine ended", tid)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReplayPriorityOff: with raise 0 the replay never changes priority.
func TestReplayPriorityOff(t *testing.T) {
	p := newReplayPriority(0, 100*time.Millisecond, func(time.Time) time.Duration { return time.Second }, slog.New(slog.DiscardHandler))
	p.atHostPriority()
	p.checkedAt = time.Time{}
	p.check()
	if p.enabled() || p.switchWanted {
		t.Fatalf("an off replayPriority: enabled %v, switchWanted %v", p.enabled(), p.switchWanted)
	}
}
