package host

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// At most n guests compute at once, however many ask.
func TestCPUGateBoundsTurns(t *testing.T) {
	const n, guests, turns = 2, 50, 200
	g := newCPUGate(n)
	var in, most atomic.Int32
	var wg sync.WaitGroup
	for range guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range turns {
				if err := g.Acquire(context.Background()); err != nil {
					t.Error(err)
					return
				}
				now := in.Add(1)
				for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
				}
				in.Add(-1)
				g.Release()
			}
		}()
	}
	wg.Wait()
	if m := most.Load(); m > n || m == 0 {
		t.Fatalf("%d guests computed at once, want 1 to %d", m, n)
	}
	if g.free != n || g.queued() != 0 {
		t.Fatalf("after all turns: %d free, %d waiting; want %d, 0", g.free, g.queued(), n)
	}
}

// Turns go in the order they were asked for.
func TestCPUGateTakesTurns(t *testing.T) {
	g := newCPUGate(1)
	if err := g.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	order := make(chan int, 3)
	for i := range 3 {
		go func() {
			if err := g.Acquire(context.Background()); err != nil {
				t.Error(err)
				return
			}
			order <- i
			g.Release()
		}()
		for g.queued() != i+1 {
			time.Sleep(time.Millisecond)
		}
	}
	g.Release()
	for want := range 3 {
		if got := <-order; got != want {
			t.Fatalf("turn %d went to waiter %d", want, got)
		}
	}
}

// A waiter whose context ends leaves the queue, and a turn handed to it
// as it ends goes on to the next: no turn is lost.
func TestCPUGateCancelledWaiter(t *testing.T) {
	g := newCPUGate(1)
	if err := g.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- g.Acquire(ctx) }()
	for g.queued() != 1 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("a cancelled waiter got a turn")
	}
	if g.queued() != 0 {
		t.Fatalf("a cancelled waiter stays queued: %d", g.queued())
	}
	g.Release()
	if g.free != 1 {
		t.Fatalf("%d turns free after all ended, want 1", g.free)
	}
	// Cancelled and handed a turn at once, many times: the turn is never
	// lost nor doubled.
	for range 1000 {
		if err := g.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			if g.Acquire(ctx) == nil {
				g.Release()
			}
			close(done)
		}()
		for g.queued() != 1 {
			time.Sleep(10 * time.Microsecond)
		}
		go cancel()
		g.Release()
		<-done
		if g.free != 1 || g.queued() != 0 {
			t.Fatalf("after a race of cancel and release: %d free, %d waiting", g.free, g.queued())
		}
	}
}

// The next turn goes to the waiter that used the processors least lately;
// among equal uses, to the first that asked.
func TestCPUGateServesTheLeastUsedFirst(t *testing.T) {
	g := newCPUGate(1)
	if err := g.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 5)
	now := time.Now()
	queue := func(name string, use float64) { queueTurn(t, g, order, name, use, now) }
	queue("busy1", 0.5)
	queue("busier", 0.9)
	queue("busy2", 0.5)
	queue("idle1", 0)
	queue("idle2", 0)
	g.Release()
	for _, want := range []string{"idle1", "idle2", "busy1", "busy2", "busier"} {
		if got := <-order; got != want {
			t.Fatalf("turn went to %s, want %s", got, want)
		}
	}
	if g.free != 1 {
		t.Fatalf("%d turns free after all ended, want 1", g.free)
	}
}

// TestCPUGateDecaysUseInLine: a guest's use decays while it waits, so one
// that asked right after a long turn goes before a later arrival whose use
// is now greater than its own has become, though less than its own was.
// (Ranked by the uses as they were when each asked, a guest that asked
// after a long turn waited behind every later one, for good.)
func TestCPUGateDecaysUseInLine(t *testing.T) {
	g := newCPUGate(1)
	if err := g.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	order := make(chan string, 2)
	// After a second in line, 1 s of use has decayed to a thousandth.
	queueTurn(t, g, order, "long turn, a second ago", 1, t0)
	queueTurn(t, g, order, "busy now", 0.01, t0.Add(time.Second))
	g.Release()
	for _, want := range []string{"long turn, a second ago", "busy now"} {
		if got := <-order; got != want {
			t.Fatalf("turn went to %q, want %q", got, want)
		}
	}
}

// A share's use grows with the time it holds its turns and halves every
// useHalfLife it does not.
func TestCPUShareMeasuresUse(t *testing.T) {
	g := newCPUGate(1)
	s := g.share()
	if err := s.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.start = s.start.Add(-50 * time.Millisecond) // a turn of 50 ms at least
	s.mu.Unlock()
	s.Release()
	s.mu.Lock()
	use := s.use
	later := s.decayed(s.at.Add(2 * useHalfLife))
	s.mu.Unlock()
	if use < 0.05 || use > 10 {
		t.Fatalf("use after a 50 ms turn: %v s", use)
	}
	if want := use / 4; later < want*0.99 || later > want*1.01 {
		t.Fatalf("use two half-lives later: %v, want %v", later, want)
	}
	if g.free != 1 || g.queued() != 0 {
		t.Fatalf("after the turn: %d free, %d waiting", g.free, g.queued())
	}
}

// queueTurn has a guest named name ask g for a turn with use as of at, and
// returns once it waits in line; given the turn, it sends its name on
// order and ends the turn.
func queueTurn(t *testing.T, g *cpuGate, order chan<- string, name string, use float64, at time.Time) {
	t.Helper()
	n := g.queued()
	go func() {
		if err := g.acquire(context.Background(), use, at); err != nil {
			t.Error(err)
			return
		}
		order <- name
		g.Release()
	}()
	for g.queued() != n+1 {
		time.Sleep(time.Millisecond)
	}
}
