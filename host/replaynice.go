package host

import (
	"log/slog"
	"sync"
	"time"
)

// A backup's replay is background work. The Output Rule waits for the
// logging channel's acknowledgements, which the channel's reader sends on
// receipt, never for the replay, and the replay may trail its primary by
// up to the lag bound. Yet at the host's priority, on a machine whose CPUs
// are all busy, the replay takes its CPU time just when a primary's guest,
// a logging channel or the guest's clients need it, and every output
// waits on the scheduler. So while it keeps up, the replay runs on a
// thread of its own whose nice value it raises by Config.ReplayNice: it
// uses the CPU time nothing else wants. Once it trails by a quarter of the
// lag bound it returns to the host's priority, so that a busy backup host
// slows the primary (through flow control) no more than it would without
// this; it goes back to the background when it has caught up to within a
// twentieth. A backup goes live at the host's priority.
//
// Any process may raise the nice value of its threads, but lowering it
// back needs privilege (CAP_SYS_NICE), so the replay never does: each
// stretch in the background runs on a goroutine locked to its thread,
// which ends without unlocking, so that Go ends the nicer thread with it;
// the replay returns to the host's priority by going on in a goroutine on
// an ordinary thread (backupSide.run).

// replayCheckEvery is how often the replay compares how far it trails.
const replayCheckEvery = time.Millisecond

// replayPriority decides when a replay changes priority. Its methods are
// called by the replay only, from one goroutine at a time.
type replayPriority struct {
	raise     int // the background's nice above the thread's; 0: off
	high, low time.Duration
	behind    func(time.Time) time.Duration
	log       *slog.Logger

	// thread is the background thread, for boost, which any goroutine
	// may call.
	thread backgroundThread

	background   bool // the replay runs in the background now
	switchWanted bool // it should change priority at its next look
	checkedAt    time.Time
	// Switches to the host's priority while replaying, for tests.
	boosts int
}

func newReplayPriority(raise int, lagBound time.Duration, behind func(time.Time) time.Duration, log *slog.Logger) *replayPriority {
	return &replayPriority{raise: raise, high: lagBound / 4, low: lagBound / 20, behind: behind, log: log}
}

// enabled reports whether the replay runs in the background at times.
func (p *replayPriority) enabled() bool { return p.raise > 0 }

// lower raises the nice value of the calling goroutine's thread, which
// the caller locked to it and never hands back, and reports whether it
// did; if it cannot, the replay stays at the host's priority from then on.
func (p *replayPriority) lower() bool {
	tid := threadID()
	nice, err := threadNice(tid)
	if err == nil {
		err = setThreadNice(tid, min(nice+p.raise, 19))
	}
	if err == nil {
		p.thread.set(tid, nice)
	}
	if err != nil {
		p.log.Warn("backup replay stays at the host's priority", "err", err)
		p.raise = 0
		p.background, p.switchWanted = false, false
		return false
	}
	p.background, p.switchWanted = true, false
	p.checkedAt = time.Now()
	return true
}

// ended notes that the background stretch's thread is about to end.
func (p *replayPriority) ended() { p.thread.set(0, 0) }

// boost returns the background thread, if any, to the host's priority at
// once: the backup is about to go live, and its replay must wake and end
// without waiting behind everything else the machine runs (among
// hundreds of backups going live together, a background thread waited a
// second for a CPU). Lowering a nice value needs privilege (CAP_SYS_NICE,
// as root has): without it the thread keeps its priority, and the first
// refusal stops the tries.
func (p *replayPriority) boost() { p.thread.boost() }

// backgroundThread is the thread of a background stretch, while it runs.
type backgroundThread struct {
	mu     sync.Mutex
	tid    int // 0: none
	nice   int // its nice before the stretch
	denied bool
}

func (t *backgroundThread) set(tid, nice int) {
	t.mu.Lock()
	t.tid, t.nice = tid, nice
	t.mu.Unlock()
}

func (t *backgroundThread) boost() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tid == 0 || t.denied {
		return
	}
	if setThreadNice(t.tid, t.nice) != nil {
		t.denied = true
	}
}

// atHostPriority notes that the replay goes on at the host's priority.
func (p *replayPriority) atHostPriority() {
	p.background, p.switchWanted = false, false
	p.checkedAt = time.Now()
}

// check notes whether the replay should change priority, as it falls
// behind or catches up; it reads the clock and looks at most every
// replayCheckEvery.
func (p *replayPriority) check() {
	if p.raise <= 0 || p.switchWanted {
		return
	}
	now := time.Now()
	if now.Sub(p.checkedAt) < replayCheckEvery {
		return
	}
	p.checkedAt = now
	switch d := p.behind(now); {
	case p.background && d >= p.high:
		p.switchWanted = true
		p.boosts++
	case !p.background && d <= p.low:
		p.switchWanted = true
	}
}
