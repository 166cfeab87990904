package host

import (
	"context"
	"testing"
	"time"

	"ftvm/replog"
	"ftvm/vmm"
)

// TestAckLoopIdles: the backup reports replay progress while the replay
// moves, stops once it has stood still, and starts again when a batch
// comes (kick).
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
	b.at.Store(10)
	if a := <-acks; a.Pos != 10 {
		t.Fatalf("progress ack at %d, want 10", a.Pos)
	}
	// Standing still, it goes idle: four ticks later it waits for a kick,
	// and a move without one is not reported.
	time.Sleep(100 * time.Millisecond)
	b.at.Store(20)
	select {
	case a := <-acks:
		t.Fatalf("an idle ack loop reported %d", a.Pos)
	case <-time.After(100 * time.Millisecond):
	}
	b.kick <- struct{}{}
	if a := <-acks; a.Pos != 20 {
		t.Fatalf("after the kick: ack at %d, want 20", a.Pos)
	}
}
