package host

import (
	"log/slog"
	"runtime"
	"time"
)

// A backup's replay is background work. The Output Rule waits for the
// logging channel's acknowledgements, which the channel's reader sends on
// receipt, never for the replay, and the replay may trail its primary by
// up to the lag bound. Yet at the host's priority, on a machine whose CPUs
// are all busy, the replay takes its CPU time just when a primary's guest,
// a logging channel or the guest's clients need it, and every output
// waits on the scheduler. So the replay runs on a thread of its own, at a
// lower priority (nice raised by Config.ReplayNice) while it keeps up: it
// uses the CPU time nothing else wants. Once it trails by a quarter of the
// lag bound it returns to the host's priority, so that a busy backup host
// slows the primary (through flow control) no more than it would without
// this; it goes back to the background when it has caught up to within a
// twentieth. A backup about to go live returns to the host's priority for
// good: its guest is then the VM's only copy.
//
// Raising a thread's nice needs no privilege, but lowering it back does
// (CAP_SYS_NICE, or RLIMIT_NICE), so a host that cannot do both keeps its
// replays at its own priority (Host.New probes it).

// replayCheckEvery is how often the replay compares how far it trails.
const replayCheckEvery = time.Millisecond

// replayPriority sets the priority of the replay's thread. Its methods are
// called by the replay goroutine only, which start locks to its thread.
type replayPriority struct {
	raise     int // the background's nice above base; 0: off
	high, low time.Duration
	behind    func(time.Time) time.Duration
	log       *slog.Logger

	tid        int
	base       int // the thread's nice at start
	locked     bool
	background bool
	checkedAt  time.Time
	// Switches to the host's priority while replaying, for tests.
	boosts int
}

func newReplayPriority(raise int, lagBound time.Duration, behind func(time.Time) time.Duration, log *slog.Logger) *replayPriority {
	return &replayPriority{raise: raise, high: lagBound / 4, low: lagBound / 20, behind: behind, log: log}
}

// start locks the calling goroutine to its thread and lowers the thread's
// priority. Off, it does nothing.
func (p *replayPriority) start() {
	if p.raise <= 0 {
		return
	}
	runtime.LockOSThread()
	p.locked = true
	p.tid = threadID()
	base, err := threadNice(p.tid)
	if err == nil {
		p.base = base
		err = setThreadNice(p.tid, min(base+p.raise, 19))
	}
	if err != nil {
		p.log.Warn("backup replay stays at the host's priority", "err", err)
		p.raise = 0
		p.unlock()
		return
	}
	p.background = true
	p.checkedAt = time.Now()
}

// check moves the thread between the background and the host's priority
// as the replay falls behind or catches up; it reads the clock and looks
// at most every replayCheckEvery.
func (p *replayPriority) check() {
	if p.raise <= 0 {
		return
	}
	now := time.Now()
	if now.Sub(p.checkedAt) < replayCheckEvery {
		return
	}
	p.checkedAt = now
	switch d := p.behind(now); {
	case p.background && d >= p.high:
		if p.set(p.base) {
			p.background = false
			p.boosts++
		}
	case !p.background && d <= p.low:
		if p.set(min(p.base+p.raise, 19)) {
			p.background = true
		}
	}
}

// stop returns the thread to the host's priority for good and unlocks
// it (see set for a failure).
func (p *replayPriority) stop() {
	if p.raise <= 0 {
		return
	}
	if p.background && !p.set(p.base) {
		return
	}
	p.raise, p.background = 0, false
	p.unlock()
}

// set sets the thread's nice value. If that fails (it may not, once
// probed), the thread stays as it is and the replay's priority is no
// longer changed; a thread left nicer stays locked to the goroutine, so
// that Go ends it rather than hand it to others.
func (p *replayPriority) set(nice int) bool {
	if err := setThreadNice(p.tid, nice); err != nil {
		p.log.Warn("backup replay: its priority stays as it is", "nice", nice, "err", err)
		p.raise = 0
		return false
	}
	return true
}

func (p *replayPriority) unlock() {
	if p.locked {
		p.locked = false
		runtime.UnlockOSThread()
	}
}

// canRestoreNice reports whether this process may lower a thread's nice
// back after raising it. It probes on a thread of its own, which Go ends
// with the probing goroutine.
func canRestoreNice() bool {
	ok := make(chan bool)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends here
		tid := threadID()
		base, err := threadNice(tid)
		ok <- err == nil && base < 19 && setThreadNice(tid, base+1) == nil && setThreadNice(tid, base) == nil
	}()
	return <-ok
}
