package host

import (
	"context"
	"sync"
)

// cpuGate hands a host's processors to its guests in turn (vmm.CPU): at
// most n guests compute at once, and the others wait in the order they
// asked. Waiting guests are not runnable goroutines, so the host's own
// goroutines (heartbeats, logging channels, the pulse) wait behind at
// most n guests, not behind every busy one; and the turns go round, so
// each busy guest gets its share.
type cpuGate struct {
	mu      sync.Mutex
	free    int
	waiting []chan struct{} // oldest first; closed when handed a turn
}

func newCPUGate(n int) *cpuGate { return &cpuGate{free: max(n, 1)} }

// Acquire waits for a turn, or until ctx is done.
func (g *cpuGate) Acquire(ctx context.Context) error {
	g.mu.Lock()
	if g.free > 0 && len(g.waiting) == 0 {
		g.free--
		g.mu.Unlock()
		return nil
	}
	turn := make(chan struct{})
	g.waiting = append(g.waiting, turn)
	g.mu.Unlock()
	select {
	case <-turn:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	for i, w := range g.waiting {
		if w == turn {
			g.waiting = append(g.waiting[:i], g.waiting[i+1:]...)
			g.mu.Unlock()
			return ctx.Err()
		}
	}
	g.mu.Unlock()
	// Handed a turn as ctx ended: pass it on.
	g.Release()
	return ctx.Err()
}

// Release ends a turn: the oldest waiter's comes.
func (g *cpuGate) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.waiting) == 0 {
		g.free++
		return
	}
	close(g.waiting[0])
	g.waiting[0] = nil
	g.waiting = g.waiting[1:]
}

// queued returns how many guests wait for a turn.
func (g *cpuGate) queued() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.waiting)
}
