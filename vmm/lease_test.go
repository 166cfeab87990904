package vmm

import (
	"testing"
	"time"

	"ftvm/wasi"
)

func TestLeaseValidity(t *testing.T) {
	var none *Lease
	if !none.Valid() {
		t.Error("a nil lease is not valid: a VM outside a host could emit nothing")
	}
	l := NewLease()
	if l.Valid() || l.Granted() {
		t.Error("a lease never extended is valid")
	}
	l.Extend(time.Now().Add(time.Hour))
	if !l.Valid() || !l.Granted() {
		t.Error("a lease extended an hour ahead is not valid")
	}
	l.Extend(time.Now().Add(-time.Hour))
	if !l.Valid() {
		t.Error("Extend shortened the lease")
	}
	l2 := NewLease()
	l2.Extend(time.Now().Add(-time.Millisecond))
	if l2.Valid() || !l2.Granted() {
		t.Error("a lease extended into the past is valid, or not granted")
	}
}

// TestGateHoldsEverythingWithoutLease: a gate whose lease ran out lets
// nothing out, acknowledged or open; outputs and effects leave once the
// lease is renewed, in order.
func TestGateHoldsEverythingWithoutLease(t *testing.T) {
	sink := &sinkHost{got: make(chan struct{}, 10)}
	l := NewLease()
	l.Extend(time.Now().Add(50 * time.Millisecond))
	g := NewGate(sink, func() uint64 { return 1 })
	g.UseLease(l)
	defer g.Stop()
	g.Ack(1)
	g.Write(1, []byte("a"))
	<-sink.got
	time.Sleep(60 * time.Millisecond) // the lease runs out
	g.Write(1, []byte("b"))
	g.Release()
	g.Write(1, []byte("c"))
	select {
	case <-sink.got:
		t.Fatalf("output released after the lease ran out: %v", sink.outputs())
	case <-time.After(30 * time.Millisecond):
	}
	eh := &effectHost{writes: make(chan uint64, 1)}
	ge := NewGate(eh, func() uint64 { return 1 })
	ge.UseLease(l)
	defer ge.Stop()
	ge.Release()
	res := make(chan wasi.Errno, 1)
	go func() {
		_, errno := ge.Pwrite(9, 7, []byte("x"))
		res <- errno
	}()
	select {
	case <-eh.writes:
		t.Fatal("effect performed after the lease ran out")
	case <-time.After(30 * time.Millisecond):
	}
	l.Extend(time.Now().Add(time.Hour))
	<-sink.got
	<-sink.got
	if got := sink.outputs(); len(got) != 3 || got[1] != "b" || got[2] != "c" {
		t.Fatalf("outputs %q, want a b c", got)
	}
	if off := <-eh.writes; off != 7 {
		t.Fatalf("write at %d, want 7", off)
	}
	if errno := <-res; errno != wasi.ESUCCESS {
		t.Fatalf("errno %v", errno)
	}
}

// TestGateDiscardedWithoutLease: what a gate held while its lease was out
// and then discarded (its VM was found started again elsewhere) never
// leaves, even once the lease is renewed.
func TestGateDiscardedWithoutLease(t *testing.T) {
	sink := &sinkHost{got: make(chan struct{}, 10)}
	l := NewLease()
	l.Extend(time.Now().Add(-time.Millisecond))
	g := NewGate(sink, func() uint64 { return 1 })
	g.UseLease(l)
	g.Release()
	g.Write(1, []byte("held"))
	g.Discard()
	l.Extend(time.Now().Add(time.Hour))
	select {
	case <-sink.got:
		t.Fatalf("a discarded output left: %v", sink.outputs())
	case <-time.After(30 * time.Millisecond):
	}
	l.mu.Lock()
	n := len(l.gates)
	l.mu.Unlock()
	if n != 0 {
		t.Errorf("the lease still wakes %d stopped gates", n)
	}
}

// TestBackedLease: a VM's lease backed by the host's is valid while
// either is; a gate on it holds outputs only while both have run out, and
// releases them when either is renewed; a stopped gate is forgotten by
// both.
func TestBackedLease(t *testing.T) {
	host := NewLease()
	host.Extend(time.Now().Add(-time.Millisecond))
	vm := host.Backed()
	if vm.Valid() {
		t.Fatal("a backed lease is valid with its host's out and no grant of its own")
	}
	host.Extend(time.Now().Add(time.Hour))
	if !vm.Valid() || vm.Granted() {
		t.Fatal("a backed lease is not valid with its host's valid, or counts the host's grant as its own")
	}

	for _, renew := range []string{"own", "host"} {
		host, sink := NewLease(), &sinkHost{got: make(chan struct{}, 10)}
		host.Extend(time.Now().Add(-time.Millisecond))
		vm := host.Backed()
		vm.Extend(time.Now().Add(-time.Millisecond))
		g := NewGate(sink, func() uint64 { return 1 })
		g.UseLease(vm)
		g.Release()
		g.Write(1, []byte("a"))
		select {
		case <-sink.got:
			t.Fatalf("%s: output released with both leases out", renew)
		case <-time.After(30 * time.Millisecond):
		}
		if renew == "own" {
			vm.Extend(time.Now().Add(time.Hour))
		} else {
			host.Extend(time.Now().Add(time.Hour))
		}
		select {
		case <-sink.got:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: output still held after a renewal", renew)
		}
		g.Stop()
		for _, l := range []*Lease{host, vm} {
			l.mu.Lock()
			n := len(l.gates)
			l.mu.Unlock()
			if n != 0 {
				t.Errorf("%s: a lease still wakes %d stopped gates", renew, n)
			}
		}
	}
}
