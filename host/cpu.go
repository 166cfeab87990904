package host

import (
	"container/heap"
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// cpuGate hands a host's processors to its guests in turn (vmm.CPU): at
// most n guests compute at once, and the others wait. Waiting guests are
// not runnable goroutines, so the host's own goroutines (heartbeats,
// logging channels, the pulse) wait behind at most n guests, not behind
// every busy one.
//
// The next turn goes to the waiting guest that used the processors least
// lately (its use decays by half every useHalfLife), as a fair-share
// scheduler does: busy guests take turns with each other, and a guest that
// mostly waits for requests, which has used next to nothing, goes before
// them all. A hundred idle services beside a few busy ones then answer
// after at most the slices in progress, not after every busy guest's next
// slice, and for each of the several host calls a request takes.
type cpuGate struct {
	mu      sync.Mutex
	free    int
	waiting waitHeap
	seq     uint64    // arrivals, to keep equal uses in order
	epoch   time.Time // the origin of the waiters' ranks
}

func newCPUGate(n int) *cpuGate { return &cpuGate{free: max(n, 1), epoch: time.Now()} }

// waiter is a guest waiting for a turn: turn is closed when it is handed
// one.
type waiter struct {
	turn  chan struct{}
	rank  float64 // its use, comparable across arrivals: see rank
	seq   uint64
	index int
}

// rank is a waiter's place in line: the lower, the sooner. Uses decay
// while their guests wait, all at one rate, so the waiter of least use now
// is the one of least use*2^((asked-epoch)/useHalfLife), whenever now is;
// rank is that product's logarithm (the product itself would overflow
// after minutes). Comparing the uses as they were when each asked would
// leave a guest that asked right after a long turn behind every later
// arrival for good, its use never decaying in line: a few of a hundred
// busy guests made no progress at all.
func (g *cpuGate) rank(use float64, asked time.Time) float64 {
	if use <= 0 {
		return math.Inf(-1)
	}
	return math.Log2(use) + float64(asked.Sub(g.epoch))/float64(useHalfLife)
}

// waitHeap orders the waiters by rank, then by arrival.
type waitHeap []*waiter

func (h waitHeap) Len() int { return len(h) }
func (h waitHeap) Less(i, j int) bool {
	return h[i].rank < h[j].rank || h[i].rank == h[j].rank && h[i].seq < h[j].seq
}
func (h waitHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waitHeap) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waitHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.index = -1
	return w
}

// Acquire waits for a turn as a guest that has used nothing lately, or
// until ctx is done.
func (g *cpuGate) Acquire(ctx context.Context) error { return g.acquire(ctx, 0, time.Now()) }

// acquire waits for a turn for a guest whose decayed use is use as of
// now, or until ctx is done.
func (g *cpuGate) acquire(ctx context.Context, use float64, now time.Time) error {
	g.mu.Lock()
	if g.free > 0 && len(g.waiting) == 0 {
		g.free--
		g.mu.Unlock()
		return nil
	}
	g.seq++
	w := &waiter{turn: make(chan struct{}), rank: g.rank(use, now), seq: g.seq}
	heap.Push(&g.waiting, w)
	g.mu.Unlock()
	select {
	case <-w.turn:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	if w.index >= 0 {
		heap.Remove(&g.waiting, w.index)
		g.mu.Unlock()
		return ctx.Err()
	}
	g.mu.Unlock()
	// Handed a turn as ctx ended: pass it on.
	g.Release()
	return ctx.Err()
}

// Release ends a turn: the waiter that used least lately gets the next.
func (g *cpuGate) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.waiting) == 0 {
		g.free++
		return
	}
	close(heap.Pop(&g.waiting).(*waiter).turn)
}

// queued returns how many guests wait for a turn.
func (g *cpuGate) queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiting)
}

// useHalfLife is how fast a guest's use of the processors is forgotten:
// a guest busy a second ago and idle since counts as idle.
const useHalfLife = 100 * time.Millisecond

// cpuShare is one guest's use of the gate (its vmm.CPU): it measures the
// guest's turns, and asks for each with its use so far. One guest asks
// for one turn at a time.
//
// A backup's replay that trails its primary (trailing) asks as one that
// used nothing: one that trails holds its primary back (the lag bound),
// and catching up takes more than its primary's share, which weighing by
// its use would not give it. A replay that keeps up asks with its use, as
// the guests do: first always, the replays of a host's backups, which
// replay as much as their primaries elsewhere compute, took every turn of
// a host whose own primaries were busy too, and those made no progress at
// all.
type cpuShare struct {
	g *cpuGate
	// replay is set while the guest is a backup's replay, whose
	// trailing, if set, says whether it trails.
	replay   atomic.Bool
	trailing func() bool
	mu       sync.Mutex
	// use is the guest's processor time in seconds, decayed, as of at.
	use   float64
	at    time.Time
	start time.Time // when the current turn began
}

func (g *cpuGate) share() *cpuShare { return &cpuShare{g: g} }

// decayed returns the share's use as of now. s.mu is held.
func (s *cpuShare) decayed(now time.Time) float64 {
	if s.use == 0 {
		return 0
	}
	return s.use * math.Exp2(-float64(now.Sub(s.at))/float64(useHalfLife))
}

func (s *cpuShare) Acquire(ctx context.Context) error {
	now := time.Now()
	s.mu.Lock()
	use := s.decayed(now)
	s.mu.Unlock()
	if s.replay.Load() && s.trailing != nil && s.trailing() {
		use = 0
	}
	if err := s.g.acquire(ctx, use, now); err != nil {
		return err
	}
	s.mu.Lock()
	s.start = time.Now()
	s.mu.Unlock()
	return nil
}

func (s *cpuShare) Release() {
	now := time.Now()
	s.mu.Lock()
	s.use, s.at = s.decayed(now)+now.Sub(s.start).Seconds(), now
	s.mu.Unlock()
	s.g.Release()
}
