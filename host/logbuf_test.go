package host

import (
	"context"
	"testing"
	"time"

	"ftvm/replog"
	"ftvm/vmm"
)

func entry(seq, pos uint64, n int) replog.Entry {
	return replog.Entry{Seq: seq, Pos: pos, Type: 1, Data: make([]byte, n)}
}

func TestLogBufferSendsResendsAndTrims(t *testing.T) {
	b := newLogBuffer()
	ctx := context.Background()
	for i := uint64(1); i <= 5; i++ {
		b.Append(entry(i, i*10, 8))
	}
	b.Progress(55)
	batch, ok, err := b.next(ctx, 0, 0, [2]uint64{})
	if err != nil || !ok || len(batch.Entries) != 5 || batch.Pos != 55 {
		t.Fatalf("first batch: %d entries, pos %d, %v %v", len(batch.Entries), batch.Pos, ok, err)
	}
	// A backup that reconnects having entries through 3 gets 4 and 5.
	batch, _, _ = b.next(ctx, 3, 0, [2]uint64{})
	if len(batch.Entries) != 2 || batch.Entries[0].Seq != 4 {
		t.Fatalf("resend: %+v", batch.Entries)
	}
	if err := b.ack(replog.Ack{Seq: 4, Pos: 40}); err != nil {
		t.Fatal(err)
	}
	if st := b.lag(time.Now()); st.Entries != 1 || st.Acked != 4 {
		t.Fatalf("after ack: %+v", st)
	}
	// Entries acknowledged are gone: a backup claiming to have fewer is
	// refused.
	if _, _, err := b.next(ctx, 2, 0, [2]uint64{}); err == nil {
		t.Fatal("resend of dropped entries not refused")
	}
	if err := b.ack(replog.Ack{Seq: 9}); err == nil {
		t.Fatal("ack beyond the log accepted")
	}
}

func TestLogBufferBatchesAreBounded(t *testing.T) {
	b := newLogBuffer()
	for i := uint64(1); i <= 5; i++ {
		b.Append(entry(i, i, maxBatchBytes/3))
	}
	b.Progress(100)
	batch, _, _ := b.next(context.Background(), 0, 0, [2]uint64{})
	if n := len(batch.Entries); n == 0 || n == 5 {
		t.Fatalf("batch of %d entries", n)
	}
	last := batch.Entries[len(batch.Entries)-1]
	if batch.Pos != last.Pos {
		t.Fatalf("a cut batch claims completeness through %d, beyond its last entry at %d", batch.Pos, last.Pos)
	}
}

func TestLogBufferAppendCompletesItsPosition(t *testing.T) {
	b := newLogBuffer()
	b.Progress(10)
	b.Append(entry(1, 20, 1)) // the call at 20, before the VM reports progress
	batch, _, _ := b.next(context.Background(), 0, 0, [2]uint64{})
	if batch.Pos < 20 {
		t.Fatalf("batch pos %d is before its entry's 20", batch.Pos)
	}
	if _, err := replog.ParseBatch(replog.AppendBatch(nil, batch)); err != nil {
		t.Fatal(err)
	}
}

func TestLogBufferLagInTime(t *testing.T) {
	b := newLogBuffer()
	b.Progress(100)
	time.Sleep(2 * time.Millisecond)
	b.Progress(200)
	now := time.Now()
	if st := b.lag(now); st.Time <= 0 {
		t.Fatalf("backup at 0, primary at 200: lag %v", st.Time)
	}
	b.ack(replog.Ack{Pos: 200})
	if st := b.lag(now); st.Time != 0 {
		t.Fatalf("backup caught up: lag %v", st.Time)
	}
}

func TestLogBufferDetachAndClose(t *testing.T) {
	b := newLogBuffer()
	b.Append(entry(1, 1, 1))
	done := make(chan bool)
	go func() {
		_, ok, _ := b.next(context.Background(), 1, 1, [2]uint64{})
		done <- ok
	}()
	b.detach()
	if <-done {
		t.Fatal("a sender kept going after detach")
	}
	if err := b.Append(entry(2, 2, 1)); err != nil {
		t.Fatal(err)
	}
	if st := b.lag(time.Now()); st.Entries != 0 || st.Last != 2 {
		t.Fatalf("detached: %+v", st)
	}
	b.close()
	if err := b.Append(entry(3, 3, 1)); err == nil {
		t.Fatal("append after close")
	}
}

// TestLogBufferTimesRoundTrips: a batch's round trip runs from its writing
// to the acknowledgement that covers it; batches of an old connection,
// sent again on a new one, are timed from the new writing.
func TestLogBufferTimesRoundTrips(t *testing.T) {
	b := newLogBuffer()
	for i := uint64(1); i <= 4; i++ {
		b.Append(entry(i, i*10, 8))
	}
	t0 := time.Now()
	b.sent(2, t0)
	b.sent(4, t0)
	// The connection broke; the new one resends from entry 3.
	const wait = 20 * time.Millisecond
	time.Sleep(wait)
	t1 := time.Now()
	b.sent(4, t1)
	if err := b.ack(replog.Ack{Seq: 2}); err != nil {
		t.Fatal(err)
	}
	h := b.TakeRTT()
	if h.Count() != 1 || h.Max() < wait {
		t.Fatalf("ack of batch 2: %d round trips, max %v; want 1 of at least %v", h.Count(), h.Max(), wait)
	}
	if err := b.ack(replog.Ack{Seq: 4}); err != nil {
		t.Fatal(err)
	}
	h = b.TakeRTT()
	if h.Count() != 1 || h.Max() > time.Since(t1) {
		t.Fatalf("ack of batch 4: %d round trips, max %v; want 1, timed from the resend %v ago", h.Count(), h.Max(), time.Since(t1))
	}
	if h := b.TakeRTT(); h.Count() != 0 {
		t.Fatalf("TakeRTT again: %d round trips", h.Count())
	}
}

// TestLogBufferReportsIntentsAndOutput: an intent announces a call whose
// entry is still to come, so the log is complete only through the position
// before it; and what the Gate wrote of stdout and stderr goes to the
// backup with the next batch, even with nothing else to send.
func TestLogBufferReportsIntentsAndOutput(t *testing.T) {
	b := newLogBuffer()
	ctx := context.Background()
	b.Append(entry(1, 10, 1))
	b.Append(replog.Entry{Seq: 2, Pos: 20, Type: vmm.TypeIntent, Data: []byte{1}})
	batch, _, err := b.next(ctx, 0, 0, [2]uint64{})
	if err != nil || len(batch.Entries) != 2 || batch.Pos != 19 {
		t.Fatalf("batch with an intent: %d entries, pos %d, %v; want 2 through 19", len(batch.Entries), batch.Pos, err)
	}
	b.Append(entry(3, 20, 1))
	batch, _, _ = b.next(ctx, 2, batch.Pos, [2]uint64{})
	if len(batch.Entries) != 1 || batch.Pos != 20 {
		t.Fatalf("the intent's call: %d entries, pos %d; want 1 through 20", len(batch.Entries), batch.Pos)
	}
	b.written([2]uint64{7, 3})
	batch, ok, _ := b.next(ctx, 3, 20, [2]uint64{})
	if !ok || len(batch.Entries) != 0 || batch.Out != [2]uint64{7, 3} {
		t.Fatalf("output report: %+v, %v", batch, ok)
	}
}

// TestLogBufferHeardBackup: a backup counts as heard once it acknowledged
// something, and a clone's new backup only after its own first ack.
func TestLogBufferHeardBackup(t *testing.T) {
	b := newLogBuffer()
	b.Append(entry(1, 10, 8))
	if b.heardBackup() {
		t.Fatal("heard before any ack")
	}
	if err := b.ack(replog.Ack{Seq: 0}); err != nil || !b.heardBackup() {
		t.Fatalf("after an ack: heard %v, %v", b.heardBackup(), err)
	}
	b.detach()
	if b.heardBackup() {
		t.Fatal("heard while alone")
	}
	b.attach(1)
	if b.heardBackup() {
		t.Fatal("a clone's backup heard before its first ack")
	}
	if err := b.ack(replog.Ack{Seq: 1}); err != nil || !b.heardBackup() {
		t.Fatalf("after the clone's first ack: heard %v, %v", b.heardBackup(), err)
	}
}

// TestLogBufferShrinksWhenAcked: the array a burst of entries grew is
// given back once the backup acknowledged them, so an idle VM keeps no
// log memory.
func TestLogBufferShrinksWhenAcked(t *testing.T) {
	b := newLogBuffer()
	for i := uint64(1); i <= 1000; i++ {
		b.Append(entry(i, i, 64))
	}
	if err := b.ack(replog.Ack{Seq: 990, Pos: 990}); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	n, c := len(b.entries), cap(b.entries)
	b.mu.Unlock()
	if n != 10 || c > 64 {
		t.Fatalf("10 entries left in an array of %d", c)
	}
	if err := b.ack(replog.Ack{Seq: 1000, Pos: 1000}); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	c = cap(b.entries)
	b.mu.Unlock()
	if c != 0 {
		t.Fatalf("no entry left, an array of %d kept", c)
	}
}
