package host

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// cpuGate hands a host's processors to its guests in turn (vmm.CPU): at
// most n guests compute at once, and the others wait in the order they
// asked. Waiting guests are not runnable goroutines, so the host's own
// goroutines (heartbeats, logging channels, the pulse) wait behind at
// most n guests, not behind every busy one; and the turns go round, so
// each busy guest gets its share.
//
// A guest that waited for something (a request, a timer) since its last
// turn goes before those that compute without pause (see cpuShare), as an
// operating system's scheduler favours a thread that slept: a hundred
// idle services with a few busy ones beside them answer in a turn, not
// after every busy guest had a slice of the processors. A guest that
// computes on uses its slices back to back and waits with the busy ones.
type cpuGate struct {
	mu   sync.Mutex
	free int
	// woke and busy wait, oldest first, each turn closed when handed
	// one; woke goes first.
	woke, busy []chan struct{}
}

func newCPUGate(n int) *cpuGate { return &cpuGate{free: max(n, 1)} }

// Acquire waits for a turn among the busy, or until ctx is done.
func (g *cpuGate) Acquire(ctx context.Context) error { return g.acquire(ctx, false) }

// acquire waits for a turn, among the guests that woke (those served
// first) or the busy, or until ctx is done.
func (g *cpuGate) acquire(ctx context.Context, woke bool) error {
	g.mu.Lock()
	if g.free > 0 && len(g.woke)+len(g.busy) == 0 {
		g.free--
		g.mu.Unlock()
		return nil
	}
	turn := make(chan struct{})
	q := &g.busy
	if woke {
		q = &g.woke
	}
	*q = append(*q, turn)
	g.mu.Unlock()
	select {
	case <-turn:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	if i := slices.Index(*q, turn); i >= 0 {
		*q = slices.Delete(*q, i, i+1)
		g.mu.Unlock()
		return ctx.Err()
	}
	g.mu.Unlock()
	// Handed a turn as ctx ended: pass it on.
	g.Release()
	return ctx.Err()
}

// Release ends a turn: the oldest waiter's that woke comes, or else the
// oldest busy one's.
func (g *cpuGate) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	q := &g.woke
	if len(g.woke) == 0 {
		q = &g.busy
	}
	if len(*q) == 0 {
		g.free++
		return
	}
	close((*q)[0])
	(*q)[0] = nil
	*q = (*q)[1:]
}

// wokeAfter is how long a guest must have been off the processors since
// its last turn to count as one that waited for something: a guest that
// computes on is back within the few microseconds a host call takes.
const wokeAfter = time.Millisecond

// cpuShare is one guest's use of the gate (its vmm.CPU): it tells the
// gate whether the guest waited since its last turn.
type cpuShare struct {
	g *cpuGate
	// released is when its last turn ended (UnixNano; 0 before the
	// first).
	released atomic.Int64
}

func (g *cpuGate) share() *cpuShare { return &cpuShare{g: g} }

func (s *cpuShare) Acquire(ctx context.Context) error {
	last := s.released.Load()
	return s.g.acquire(ctx, last == 0 || time.Since(time.Unix(0, last)) >= wokeAfter)
}

func (s *cpuShare) Release() {
	s.released.Store(time.Now().UnixNano())
	s.g.Release()
}

// queued returns how many guests wait for a turn.
func (g *cpuGate) queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.woke) + len(g.busy)
}
