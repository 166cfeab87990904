package host

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"
)

// On a host with one P (GOMAXPROCS=1: a one-CPU machine), the backup's
// replay holds the P until it has caught up with the log, and the Go
// scheduler polls the network only when no goroutine is runnable (or every
// 10 ms, from sysmon). The batches that arrive meanwhile would wait in the
// kernel, unacknowledged, and the primary's outputs behind them: the
// acknowledgement of one batch would wait for the replay of the one
// before. So the replay looks, every stepAsideEvery, whether bytes of the
// logging channel wait (unless the reader ran that recently); if they do, it parks until the session goroutine
// has taken a frame (acknowledging it), so that the scheduler, finding
// nothing else to run, polls the network and runs it. With more Ps an idle
// one polls the network and none of this is needed.

// stepAsideEvery is how often a busy replay looks for waiting frames; the
// look costs one system call.
const stepAsideEvery = 20 * time.Microsecond

// stepAsideMax bounds a step aside whose frame the session goroutine did
// not take (a frame's bytes not all there yet); timers resolve to the
// millisecond when the scheduler is idle, so it is about that.
const stepAsideMax = 2 * time.Millisecond

// stepAsideBackoff bounds the interval between looks after steps aside
// that timed out: a large frame arriving slowly must not hold the replay
// back for most of the time.
const stepAsideBackoff = 20 * time.Millisecond

// stepAside lets a replay goroutine step aside for the logging channel's
// reader. look is called by the replay goroutine only, took by the reader.
type stepAside struct {
	on     bool // one P: looks are needed
	lastAt time.Time
	every  time.Duration // between looks: stepAsideEvery, more after timeouts
	timer  *time.Timer
	// Steps aside so far, and how many of them the reader ended (the
	// rest timed out): for tests and profiles.
	steps, taken atomic.Uint64

	parked atomic.Bool
	resume chan struct{} // capacity 1
	tookAt atomic.Int64  // when the reader last took a frame, in Unix ns
}

func newStepAside() *stepAside {
	return &stepAside{on: runtime.GOMAXPROCS(0) == 1, every: stepAsideEvery, resume: make(chan struct{}, 1)}
}

// look steps aside if the interval between looks (stepAsideEvery, longer
// after timeouts) has passed and bytes wait on ch's connection, until took
// is called, stepAsideMax passes, or ctx is done. It is called at every
// host call of the replay, so it reads the clock only with one P, and the
// connection only when a look is due.
func (s *stepAside) look(ctx context.Context, ch *channel) {
	if !s.on {
		return
	}
	now := time.Now()
	// A reader that ran lately had the P: nothing waited for it then.
	if now.Sub(s.lastAt) < s.every || now.UnixNano()-s.tookAt.Load() < int64(stepAsideEvery) {
		return
	}
	s.lastAt = now
	if c := ch.current(); c == nil || !c.Waiting() {
		return
	}
	select {
	case <-s.resume: // a late wake from a step aside that timed out
	default:
	}
	s.steps.Add(1)
	s.parked.Store(true)
	if s.timer == nil {
		s.timer = time.NewTimer(stepAsideMax)
	} else {
		s.timer.Reset(stepAsideMax)
	}
	select {
	case <-s.resume:
		s.taken.Add(1)
		s.every = stepAsideEvery
	case <-s.timer.C:
		s.every = min(2*s.every, stepAsideBackoff)
	case <-ctx.Done():
	}
	s.timer.Stop()
	s.parked.Store(false)
}

// took is called by the reader after each frame it took, and when it
// stops: a replay that stepped aside runs on.
func (s *stepAside) took() {
	s.tookAt.Store(time.Now().UnixNano())
	if s.parked.CompareAndSwap(true, false) {
		select {
		case s.resume <- struct{}{}:
		default:
		}
	}
}
