package host

import (
	"context"
	"testing"
	"time"

	"ftvm/storage"
)

// TestEventsWaitForATakeoverOnlySoLong: while the host takes VMs over,
// its event history waits, but not for ever: a take-over that never ends
// (claims retried against a store that does not answer) still lets it be
// written, in one batch, in order.
func TestEventsWaitForATakeoverOnlySoLong(t *testing.T) {
	dir, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s := newEventSink(dir, "h1", nil, func() bool { return true })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { s.run(ctx); close(done) }()
	for i, kind := range []string{"a", "b", "c"} {
		s.append(storage.Event{Time: time.Now().Add(time.Duration(i) * time.Millisecond), Host: "h1", VM: "vm", Kind: kind})
	}
	deadline := time.Now().Add(time.Minute)
	for {
		evs, err := dir.Events()
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 3 {
			if evs[0].Kind != "a" || evs[2].Kind != "c" {
				t.Fatalf("events out of order: %+v", evs)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events never written during an endless take-over (%d of 3)", len(evs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

// TestRefusedDialsStandForAll: a refused dial of a peer's address stands
// for every VM's backup for refusedFresh, and for no other address.
func TestRefusedDialsStandForAll(t *testing.T) {
	h := &Host{}
	if h.refusedLately("127.0.0.1:1") {
		t.Fatal("refused before any dial")
	}
	h.noteRefused("127.0.0.1:1")
	if !h.refusedLately("127.0.0.1:1") || h.refusedLately("127.0.0.1:2") {
		t.Fatal("a refusal does not stand for its address alone")
	}
	h.refused.Store("127.0.0.1:1", time.Now().Add(-2*refusedFresh).UnixNano())
	if h.refusedLately("127.0.0.1:1") {
		t.Fatal("an old refusal still stands")
	}
}

// TestTakingOver: a host takes over while it has claims in flight, and for
// takeoverTail after the last one ended.
func TestTakingOver(t *testing.T) {
	h := &Host{}
	if h.takingOver() {
		t.Fatal("taking over with no claim ever made")
	}
	h.claims.Add(1)
	if !h.takingOver() {
		t.Fatal("not taking over with a claim in flight")
	}
	h.claims.Add(-1)
	h.claimedAt.Store(time.Now().UnixNano())
	if !h.takingOver() {
		t.Fatal("not taking over right after a claim")
	}
	h.claimedAt.Store(time.Now().Add(-2 * takeoverTail).UnixNano())
	if h.takingOver() {
		t.Fatal("still taking over long after the last claim")
	}
}
