package host

import (
	"context"
	"testing"
	"time"

	"ftvm/replog"
	"ftvm/vmm"
)

// TestAckLoopIdles: the backup reports replay progress while the replay
// moves, stops ticking once it has stood still, and starts again when the
// replay moves on (a primary held back by flow control sends nothing until
// it hears of it) or a batch comes.
func TestAckLoopIdles(t *testing.T) {
	backup, primary := replogPair(t)
	b := &backupSide{src: vmm.NewLiveSource(0), kick: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.ackLoop(ctx, backup)
	acks := make(chan replog.Ack, 100)
	go func() {
		for {
			typ, payload, err := primary.ReadFrame()
			if err != nil {
				return
			}
			if a, err := replog.ParseAck(payload); err == nil && typ == replog.FrameAck {
				acks <- a
			}
		}
	}()
	next := func() replog.Ack {
		select {
		case a := <-acks:
			return a
		case <-time.After(10 * time.Second):
			t.Fatal("no ack")
			return replog.Ack{}
		}
	}
	b.advance(10)
	if a := next(); a.Pos != 10 {
		t.Fatalf("progress ack at %d, want 10", a.Pos)
	}
	waitIdle := func() {
		deadline := time.Now().Add(10 * time.Second)
		for !b.ackIdle.Load() {
			if time.Now().After(deadline) {
				t.Fatal("the ack loop did not go idle")
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Standing still, it goes idle; the replay moving on wakes it.
	waitIdle()
	b.advance(20)
	if a := next(); a.Pos != 20 {
		t.Fatalf("after the replay moved: ack at %d, want 20", a.Pos)
	}
	// A position stored behind its back (as no caller does) is not
	// reported until something kicks: the loop really stopped ticking.
	waitIdle()
	b.at.Store(30)
	select {
	case a := <-acks:
		t.Fatalf("an idle ack loop reported %d", a.Pos)
	case <-time.After(50 * time.Millisecond):
	}
	b.kickAcks()
	if a := next(); a.Pos != 30 {
		t.Fatalf("after a batch: ack at %d, want 30", a.Pos)
	}
}
