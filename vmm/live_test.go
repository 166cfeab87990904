package vmm_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net"
	"testing"
	"time"

	"ftvm/replog"
	"ftvm/vmm"
	"ftvm/wasi"
)

// TestLockstepOverLoggingChannel runs a primary and a backup VM at once,
// connected by a real, authenticated logging channel over loopback: the
// backup replays the primary's inputs as they arrive, acks them, and ends
// with the same output, exit status and position.
func TestLockstepOverLoggingChannel(t *testing.T) {
	cm := compile(t, "wasi-basics")
	key := make([]byte, 32)
	rand.Read(key)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx := context.Background()

	// Backup side: accept the channel, feed the LiveSource, ack.
	src := vmm.NewLiveSource(0)
	recvDone := make(chan error, 1)
	acks := make(chan uint64, 1<<16)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			recvDone <- err
			return
		}
		c, _, err := replog.Handshake(ctx, nc, key, false, nil)
		if err != nil {
			recvDone <- err
			return
		}
		defer c.Close()
		for {
			typ, p, err := c.ReadFrame()
			if err != nil {
				src.End() // the primary is gone
				recvDone <- err
				return
			}
			if typ != replog.FrameBatch {
				continue
			}
			b, err := replog.ParseBatch(p)
			if err != nil {
				recvDone <- err
				return
			}
			if err := src.Push(b); err != nil {
				recvDone <- err
				return
			}
			seq, pos := src.Received()
			if err := c.WriteAck(replog.Ack{Seq: seq, Pos: pos}); err != nil {
				recvDone <- err
				return
			}
		}
	}()

	// Primary side: record into the channel.
	conn, err := replog.Dial(ctx, ln.Addr().String(), key, []byte("log vm=test"))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			typ, p, err := conn.ReadFrame()
			if err != nil {
				return
			}
			if typ == replog.FrameAck {
				if a, err := replog.ParseAck(p); err == nil {
					acks <- a.Seq
				}
			}
		}
	}()
	sink := channelSink{conn}

	args := []string{"wasi-basics", "clock"}
	var pout, bout bytes.Buffer
	primary, err := vmm.New(cm, vmm.Config{WASI: wasi.Config{Args: args, Stdout: &pout}, Record: sink})
	if err != nil {
		t.Fatal(err)
	}
	backup, err := vmm.New(cm, vmm.Config{WASI: wasi.Config{Args: args, Stdout: &bout}, Replay: src})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		exit vmm.Exit
		err  error
	}
	bdone := make(chan result, 1)
	go func() {
		x, err := backup.Run(ctx)
		bdone <- result{x, err}
	}()
	px, err := primary.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	br := <-bdone
	if br.err != nil {
		t.Fatalf("backup: %v", br.err)
	}
	conn.Close()
	if err := <-recvDone; err == nil {
		t.Fatal("receiver ended without an error")
	}
	if pout.String() != bout.String() || px.Code != br.exit.Code || primary.Position() != backup.Position() {
		t.Fatalf("primary %q exit %d at %d; backup %q exit %d at %d",
			pout.String(), px.Code, primary.Position(), bout.String(), br.exit.Code, backup.Position())
	}
	if primary.Seq() == 0 || backup.Seq() != primary.Seq() {
		t.Fatalf("primary logged %d entries, backup replayed %d", primary.Seq(), backup.Seq())
	}
	var last uint64
	for len(acks) > 0 {
		last = <-acks
	}
	if last != primary.Seq() {
		t.Logf("last ack seen %d of %d (acks still in flight are fine)", last, primary.Seq())
	}
}

// TestLiveSourceEnds: once the primary is gone, a backup that has consumed
// everything gets ErrLogEnded at its next call: the moment to go live.
func TestLiveSourceEnds(t *testing.T) {
	cm := compile(t, "wasi-basics")
	args := []string{"wasi-basics", "clock"}
	rec := record(t, cm, wasi.Config{Args: args})
	src := vmm.NewLiveSource(0)
	half := rec.log.entries[:len(rec.log.entries)/2]
	if err := src.Push(replog.Batch{Entries: half, Pos: half[len(half)-1].Pos}); err != nil {
		t.Fatal(err)
	}
	src.End()
	backup, err := vmm.New(cm, vmm.Config{WASI: wasi.Config{Args: args}, Replay: src})
	if err != nil {
		t.Fatal(err)
	}
	_, err = backup.Run(context.Background())
	if !errors.Is(err, vmm.ErrLogEnded) {
		t.Fatalf("err = %v, want ErrLogEnded", err)
	}
	if backup.Seq() != half[len(half)-1].Seq || backup.Position() < half[len(half)-1].Pos {
		t.Fatalf("stopped at entry %d position %d, want past entry %d", backup.Seq(), backup.Position(), half[len(half)-1].Seq)
	}
	if err := src.Push(replog.Batch{Entries: rec.log.entries[len(half):]}); err == nil {
		t.Fatal("a batch after the end was accepted")
	}
}

// channelSink records straight into a logging channel: a batch per entry,
// and one per report of progress (the host's sink batches; this is the
// simplest correct one).
type channelSink struct{ c *replog.Conn }

func (s channelSink) Append(e replog.Entry) error {
	return s.c.WriteBatch(replog.Batch{Entries: []replog.Entry{e}, Pos: vmm.CompleteThrough(e)})
}

func (s channelSink) Progress(pos uint64) {
	_ = s.c.WriteBatch(replog.Batch{Pos: pos})
}

// TestLiveSourceBehind: Behind is the wait of the oldest entry not yet
// consumed, counted from its batch's arrival, and 0 once all are consumed.
func TestLiveSourceBehind(t *testing.T) {
	src := vmm.NewLiveSource(0)
	if d := src.Behind(time.Now()); d != 0 {
		t.Fatalf("empty: Behind = %v, want 0", d)
	}
	entry := func(seq uint64) replog.Entry { return replog.Entry{Seq: seq, Pos: seq * 10, Type: 1} }
	t0 := time.Now()
	if err := src.Push(replog.Batch{Entries: []replog.Entry{entry(1), entry(2)}, Pos: 20}); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	if d := src.Behind(t0.Add(-time.Hour)); d != 0 {
		t.Fatalf("a clock before the arrival: Behind = %v, want 0", d)
	}
	// A batch of progress alone (no entries) changes nothing.
	if err := src.Push(replog.Batch{Pos: 25}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	if err := src.Push(replog.Batch{Entries: []replog.Entry{entry(3)}, Pos: 30}); err != nil {
		t.Fatal(err)
	}
	t2 := time.Now()
	later := t2.Add(time.Second)
	// The first batch's entries wait: its arrival counts.
	if d := src.Behind(later); d < later.Sub(t1) || d > later.Sub(t0) {
		t.Fatalf("Behind = %v, want between %v and %v", d, later.Sub(t1), later.Sub(t0))
	}
	src.Consume()
	if d := src.Behind(later); d < later.Sub(t1) {
		t.Fatalf("after one of the first batch's two entries: Behind = %v, want at least %v", d, later.Sub(t1))
	}
	src.Consume()
	// Now the second batch's entry is the oldest.
	if d := src.Behind(later); d > later.Sub(t1)-2*time.Millisecond || d < later.Sub(t2) {
		t.Fatalf("after the first batch: Behind = %v, want about %v", d, later.Sub(t2))
	}
	src.Consume()
	if d := src.Behind(later); d != 0 {
		t.Fatalf("all consumed: Behind = %v, want 0", d)
	}
}

// TestLiveSourceBehindAt: a replay with no entry to wait on (a guest that
// only computes) trails by how long ago the log reached beyond where the
// replay is, and no longer once it caught up.
func TestLiveSourceBehindAt(t *testing.T) {
	src := vmm.NewLiveSource(0)
	var at []time.Time
	for _, pos := range []uint64{10, 20, 30} {
		at = append(at, time.Now())
		if err := src.Push(replog.Batch{Pos: pos}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // more than a mark's spacing
	}
	later := time.Now().Add(time.Second)
	if d := src.Behind(later); d != 0 {
		t.Fatalf("Behind = %v, want 0: no entry waits", d)
	}
	for i, replayed := range []uint64{0, 10, 25} {
		src.Replayed(replayed)
		if d := src.BehindAt(later); d < later.Sub(at[i])-time.Millisecond || d > later.Sub(at[i])+5*time.Millisecond {
			t.Errorf("replay at %d: BehindAt = %v, want about %v (since the log reached beyond it)", replayed, d, later.Sub(at[i]))
		}
	}
	src.Replayed(30)
	if d := src.BehindAt(later); d != 0 {
		t.Errorf("caught up: BehindAt = %v, want 0", d)
	}
}

// TestLiveSourceBehindAtWithinAMark: positions that arrive within one
// mark's spacing share the mark, and a replay past the first of them but
// short of the last still trails: its primary may send nothing more until
// it hears that the replay caught up.
func TestLiveSourceBehindAtWithinAMark(t *testing.T) {
	src := vmm.NewLiveSource(0)
	first := time.Now()
	for _, pos := range []uint64{10, 20, 30} {
		if err := src.Push(replog.Batch{Pos: pos}); err != nil {
			t.Fatal(err)
		}
	}
	later := time.Now().Add(time.Second)
	for _, replayed := range []uint64{10, 25} {
		src.Replayed(replayed)
		if d := src.BehindAt(later); d < later.Sub(first)-markSpacing {
			t.Errorf("replay at %d of 30: BehindAt = %v, want about %v", replayed, d, later.Sub(first))
		}
	}
	src.Replayed(30)
	if d := src.BehindAt(later); d != 0 {
		t.Errorf("caught up: BehindAt = %v, want 0", d)
	}
}

// markSpacing is the live source's markEvery, as far as a test must know.
const markSpacing = 5 * time.Millisecond
