package vmm

import (
	"sync"
	"testing"
	"time"

	"ftvm/wasi"
)

// sinkHost records the outputs that reach it.
type sinkHost struct {
	wasi.Host
	mu  sync.Mutex
	out []string
	got chan struct{}
}

func (s *sinkHost) Write(_ wasi.Handle, data []byte) error {
	s.mu.Lock()
	s.out = append(s.out, string(data))
	s.mu.Unlock()
	s.got <- struct{}{}
	return nil
}

func (s *sinkHost) Close(wasi.Handle) error {
	s.mu.Lock()
	s.out = append(s.out, "<close>")
	s.mu.Unlock()
	s.got <- struct{}{}
	return nil
}

func (s *sinkHost) outputs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.out...)
}

func TestGateHoldsOutputsUntilAcked(t *testing.T) {
	sink := &sinkHost{got: make(chan struct{}, 10)}
	var seq uint64
	g := NewGate(sink, func() uint64 { return seq })
	defer g.Stop()

	seq = 3
	g.Write(1, []byte("a")) // depends on entry 3
	seq = 5
	g.Write(1, []byte("b")) // depends on entry 5
	g.Close(7)

	if held := g.Held(); held.Outputs != 3 || held.Bytes != 2 {
		t.Fatalf("held %+v, want 3 outputs, 2 bytes", held)
	}
	g.Ack(2)
	select {
	case <-sink.got:
		t.Fatalf("output released before its entry was acked: %v", sink.outputs())
	case <-time.After(20 * time.Millisecond):
	}
	g.Ack(4)
	<-sink.got
	if got := sink.outputs(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("after ack 4: %v, want [a]", got)
	}
	g.Ack(5)
	<-sink.got
	<-sink.got
	if got := sink.outputs(); len(got) != 3 || got[1] != "b" || got[2] != "<close>" {
		t.Fatalf("after ack 5: %v, want [a b <close>]", got)
	}
}

// TestGateMeasuresDelays: the delay recorded for an output is at least the
// time it waited for its acknowledgement, and TakeDelays starts afresh.
func TestGateMeasuresDelays(t *testing.T) {
	sink := &sinkHost{got: make(chan struct{}, 10)}
	g := NewGate(sink, func() uint64 { return 1 })
	g.Write(1, []byte("a"))
	const wait = 20 * time.Millisecond
	time.Sleep(wait)
	g.Ack(1)
	<-sink.got
	g.Stop() // the release goroutine has recorded the delay
	h := g.TakeDelays()
	if h.Count() != 1 || h.Max() < wait || h.Quantile(0.5) < wait {
		t.Fatalf("%d delays, max %v, median %v; want 1, at least %v", h.Count(), h.Max(), h.Quantile(0.5), wait)
	}
	if h := g.TakeDelays(); h.Count() != 0 {
		t.Fatalf("TakeDelays again: %d delays, want none", h.Count())
	}
}

func TestGateOpenReleasesEverything(t *testing.T) {
	sink := &sinkHost{got: make(chan struct{}, 10)}
	g := NewGate(sink, func() uint64 { return 100 })
	defer g.Stop()
	g.Write(1, []byte("x"))
	g.Release()
	<-sink.got
	g.Write(1, []byte("y"))
	<-sink.got
	if got := sink.outputs(); len(got) != 2 {
		t.Fatalf("%v", got)
	}
}

func TestGateDiscardEmitsNothing(t *testing.T) {
	sink := &sinkHost{got: make(chan struct{}, 10)}
	g := NewGate(sink, func() uint64 { return 9 })
	g.Write(1, []byte("never"))
	g.Discard()
	g.Ack(100)
	g.Write(1, []byte("after"))
	if got := sink.outputs(); len(got) != 0 {
		t.Fatalf("a discarded gate emitted %v", got)
	}
}

// effectHost records the effects that reach it.
type effectHost struct {
	wasi.Host
	writes chan uint64
}

func (e *effectHost) Pwrite(_ wasi.Handle, off uint64, data []byte) (uint32, wasi.Errno) {
	e.writes <- off
	return uint32(len(data)), wasi.ESUCCESS
}

func TestGateEffectWaitsForAck(t *testing.T) {
	eh := &effectHost{writes: make(chan uint64, 4)}
	g := NewGate(eh, func() uint64 { return 4 })
	defer g.Stop()
	res := make(chan wasi.Errno, 1)
	go func() {
		_, errno := g.Pwrite(9, 100, []byte("x"))
		res <- errno
	}()
	g.Ack(3)
	select {
	case <-eh.writes:
		t.Fatal("effect performed before the entries before it were acked")
	case <-time.After(20 * time.Millisecond):
	}
	if !g.Held().Effect {
		t.Error("Held does not report the waiting effect")
	}
	g.Ack(4)
	if off := <-eh.writes; off != 100 {
		t.Fatalf("write at %d, want 100", off)
	}
	if errno := <-res; errno != wasi.ESUCCESS {
		t.Fatalf("errno %v", errno)
	}
}

func TestGateEffectAfterReleaseAndDiscard(t *testing.T) {
	eh := &effectHost{writes: make(chan uint64, 4)}
	g := NewGate(eh, func() uint64 { return 10 })
	g.Release()
	if _, errno := g.Pwrite(9, 1, []byte("x")); errno != wasi.ESUCCESS || <-eh.writes != 1 {
		t.Fatalf("released gate: errno %v", errno)
	}
	g.Discard()

	g2 := NewGate(eh, func() uint64 { return 10 })
	res := make(chan wasi.Errno, 1)
	go func() { _, errno := g2.Pwrite(9, 2, []byte("x")); res <- errno }()
	time.Sleep(10 * time.Millisecond)
	g2.Discard()
	if errno := <-res; errno != wasi.EIO {
		t.Fatalf("effect of a discarded gate: errno %v, want EIO", errno)
	}
	select {
	case off := <-eh.writes:
		t.Fatalf("a discarded gate performed a write at %d", off)
	default:
	}
}

// reservingHost is a sinkHost that keeps the Gate's reservations.
type reservingHost struct {
	sinkHost
	rmu      sync.Mutex
	reserved map[wasi.Handle]int
}

func (r *reservingHost) Reserve(h wasi.Handle, n int) {
	r.rmu.Lock()
	r.reserved[h] += n
	r.rmu.Unlock()
}

func (r *reservingHost) total(h wasi.Handle) int {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	return r.reserved[h]
}

// What a Gate holds for a connection is reserved against its send window
// until the Gate writes it, or drops it.
func TestGateReservesHeldBytes(t *testing.T) {
	host := &reservingHost{sinkHost: sinkHost{got: make(chan struct{}, 10)}, reserved: map[wasi.Handle]int{}}
	var seq uint64 = 1
	g := NewGate(host, func() uint64 { return seq })
	g.Write(9, []byte("hello"))
	g.Write(9, []byte("!"))
	g.Close(9)
	if got := host.total(9); got != 6 {
		t.Fatalf("reserved %d bytes, want the 6 held", got)
	}
	g.Ack(1)
	for range 3 {
		<-host.got
	}
	if got := host.total(9); got != 0 {
		t.Fatalf("reserved %d bytes after the release, want 0", got)
	}
	seq = 2
	g.Write(9, []byte("unacked"))
	if got := host.total(9); got != 7 {
		t.Fatalf("reserved %d, want 7", got)
	}
	g.Discard()
	if got := host.total(9); got != 0 {
		t.Fatalf("reserved %d bytes after Discard, want 0", got)
	}
	g.Write(9, []byte("after")) // a discarded Gate takes nothing
	if got := host.total(9); got != 0 {
		t.Fatalf("reserved %d bytes after a write to a discarded Gate", got)
	}
}

// slowCloser is an effectHost whose Close waits until allowed.
type slowCloser struct {
	effectHost
	closing, allow chan struct{}
}

func (s *slowCloser) Close(wasi.Handle) error {
	s.closing <- struct{}{}
	<-s.allow
	return nil
}

// An effect waits for the outputs produced before it to be performed, not
// only acknowledged: a file the guest closed is closed on the host before
// its next unlink.
func TestGateEffectWaitsForEarlierOutputs(t *testing.T) {
	sc := &slowCloser{effectHost: effectHost{writes: make(chan uint64, 4)}, closing: make(chan struct{}), allow: make(chan struct{})}
	var seq uint64 = 1
	g := NewGate(sc, func() uint64 { return seq })
	defer g.Stop()
	allowed := false
	defer func() {
		if !allowed {
			close(sc.allow) // let the release goroutine end
		}
	}()
	g.Close(5) // depends on entry 1
	g.Ack(1)
	<-sc.closing // the release goroutine is performing the close
	seq = 2
	g.Ack(2)
	res := make(chan wasi.Errno, 1)
	go func() {
		_, errno := g.Pwrite(9, 7, []byte("x"))
		res <- errno
	}()
	select {
	case <-sc.writes:
		t.Fatal("effect performed while an output before it was still being performed")
	case <-time.After(20 * time.Millisecond):
	}
	close(sc.allow)
	allowed = true
	if off := <-sc.writes; off != 7 {
		t.Fatalf("write at %d", off)
	}
	if errno := <-res; errno != wasi.ESUCCESS {
		t.Fatal(errno)
	}
}

// TestGateLocalFiles: with the guest's files the replica's own, an effect
// and a file's close pass at once, nothing acked; a connection's close and
// every other output still wait for their entry's ack.
func TestGateLocalFiles(t *testing.T) {
	eh := &effectHost{writes: make(chan uint64, 4)}
	sink := &sinkHost{Host: eh, got: make(chan struct{}, 10)}
	g := NewGate(sink, func() uint64 { return 4 })
	defer g.Stop()
	g.LocalFiles(func(h wasi.Handle) bool { return h == 9 })
	if _, errno := g.Pwrite(9, 100, []byte("x")); errno != wasi.ESUCCESS {
		t.Fatalf("pwrite: %v", errno)
	}
	if off := <-eh.writes; off != 100 {
		t.Fatalf("write at %d, want 100", off)
	}
	g.Close(9)
	g.Close(12)
	g.Write(1, []byte("out"))
	if got := sink.outputs(); len(got) != 1 || got[0] != "<close>" {
		t.Fatalf("performed %v before any ack, want the file's close alone", got)
	}
	<-sink.got
	if held := g.Held(); held.Outputs != 2 {
		t.Fatalf("held %+v, want the connection's close and the write", held)
	}
	g.Ack(4)
	<-sink.got
	<-sink.got
	if got := sink.outputs(); len(got) != 3 || got[1] != "<close>" || got[2] != "out" {
		t.Fatalf("outputs %v", got)
	}
}
