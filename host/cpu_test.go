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

// A guest that waited since its last turn goes before the busy ones that
// queued first; among each kind, turns go in order.
func TestCPUGateServesWokenGuestsFirst(t *testing.T) {
	g := newCPUGate(1)
	if err := g.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	order := make(chan string, 4)
	queue := func(name string, woke bool) {
		n := g.queued()
		go func() {
			if err := g.acquire(context.Background(), woke); err != nil {
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
	queue("busy1", false)
	queue("busy2", false)
	queue("woke1", true)
	queue("woke2", true)
	g.Release()
	for _, want := range []string{"woke1", "woke2", "busy1", "busy2"} {
		if got := <-order; got != want {
			t.Fatalf("turn went to %s, want %s", got, want)
		}
	}
	if g.free != 1 {
		t.Fatalf("%d turns free after all ended, want 1", g.free)
	}
}

// A share counts as woken at its first turn and after a pause, and as
// busy when it asks again right after its turn.
func TestCPUShareTellsWhetherItsGuestWaited(t *testing.T) {
	g := newCPUGate(1)
	s := g.share()
	hold := func() {
		if err := g.Acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	queuedAs := func() string {
		hold()
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := s.Acquire(context.Background()); err != nil {
				t.Error(err)
				return
			}
			s.Release()
		}()
		for g.queued() != 1 {
			time.Sleep(10 * time.Microsecond)
		}
		g.mu.Lock()
		kind := "busy"
		if len(g.woke) == 1 {
			kind = "woke"
		}
		g.mu.Unlock()
		g.Release()
		<-done
		return kind
	}
	if k := queuedAs(); k != "woke" {
		t.Errorf("first turn asked as %s, want woke", k)
	}
	// Right after its turn ended: busy. (Its release is put ahead of the
	// clock, so that a slow machine cannot make the ask come late.)
	s.released.Store(time.Now().Add(time.Hour).UnixNano())
	if k := queuedAs(); k != "busy" {
		t.Errorf("a turn asked for right after the last: %s, want busy", k)
	}
	s.released.Store(time.Now().Add(-10 * wokeAfter).UnixNano())
	if k := queuedAs(); k != "woke" {
		t.Errorf("a turn asked for after a pause: %s, want woke", k)
	}
}
