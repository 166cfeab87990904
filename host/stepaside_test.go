package host

import (
	"bytes"
	"context"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"ftvm/replog"
)

// TestStepAsideLetsTheReaderIn: with one P, a goroutine that never parks
// (the replay) but looks for waiting frames lets the logging channel's
// reader take a frame that arrived, and the reader ends the step aside.
// Without the look the reader would run only when the runtime preempts the
// spinner (about 10 ms), and no step aside would be counted. On a loaded
// machine the OS may hold the reader's thread past stepAsideMax, so a step
// aside may time out; the frames keep coming until one is taken in time.
func TestStepAsideLetsTheReaderIn(t *testing.T) {
	client, server := replogPair(t)
	var ch channel
	ch.set(server)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := newStepAside()
	if !s.on {
		t.Fatal("step aside off with one P")
	}
	var frames atomic.Int32
	go func() {
		defer s.took()
		for {
			if _, _, err := server.ReadFrame(); err != nil {
				return
			}
			frames.Add(1)
			s.took()
		}
	}()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	var sent int32
	for s.taken.Load() == 0 && time.Now().Before(deadline) {
		if frames.Load() == sent {
			sent++
			if err := client.WriteAck(replog.Ack{Seq: uint64(sent)}); err != nil {
				t.Fatal(err)
			}
		}
		spin(2000)
		s.look(ctx, &ch)
	}
	if s.steps.Load() == 0 || s.taken.Load() == 0 {
		t.Fatalf("frames sent %d, read %d, steps aside %d, ended by the reader %d; want a frame read in a step aside", sent, frames.Load(), s.steps.Load(), s.taken.Load())
	}
}

// TestStepAsideOffWithSeveralPs: with an idle P to poll the network, the
// replay never stops.
func TestStepAsideOffWithSeveralPs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	if s := newStepAside(); s.on {
		t.Fatal("step aside on with two Ps")
	}
}

var spinSink uint64

// spin works for a while without parking.
func spin(n int) {
	x := spinSink
	for i := range n {
		x = x*6364136223846793005 + uint64(i)
	}
	spinSink = x
}

// replogPair returns two ends of an authenticated loopback connection.
func replogPair(t *testing.T) (client, server *replog.Conn) {
	t.Helper()
	key := bytes.Repeat([]byte{7}, replog.MinKeySize)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		c   *replog.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		c, _, err := replog.Handshake(ctx, nc, key, false, nil)
		done <- result{c, err}
	}()
	client, err = replog.Dial(ctx, ln.Addr().String(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { client.Close(); r.c.Close() })
	return client, r.c
}

// TestStepAsideBacksOff: bytes that wait but that no reader takes (a
// frame still arriving) make the looks rarer after each step aside that
// timed out, up to stepAsideBackoff; a step the reader ends resets them.
func TestStepAsideBacksOff(t *testing.T) {
	client, server := replogPair(t)
	var ch channel
	ch.set(server)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := newStepAside()
	if err := client.WriteAck(replog.Ack{Seq: 1}); err != nil {
		t.Fatal(err)
	}
	for !server.Waiting() {
		time.Sleep(time.Millisecond)
	}
	ctx := context.Background()
	for want := 2 * stepAsideEvery; want <= stepAsideBackoff; want = min(2*want, stepAsideBackoff) {
		s.lastAt = time.Time{}
		s.look(ctx, &ch)
		if s.every != want {
			t.Fatalf("after %d timed-out steps aside, looks every %v, want %v", s.steps.Load(), s.every, want)
		}
		if want == stepAsideBackoff {
			break
		}
	}
	// The reader may take a frame outside a step aside (the runtime
	// preempted the loop) or after one timed out (the OS held its thread):
	// frames keep coming until one ends a step aside.
	var read atomic.Int32
	go func() {
		for {
			if _, _, err := server.ReadFrame(); err != nil {
				return
			}
			read.Add(1)
			s.took()
		}
	}()
	s.lastAt = time.Time{}
	s.tookAt.Store(0)
	sent := int32(1)
	deadline := time.Now().Add(10 * time.Second)
	for s.taken.Load() == 0 && time.Now().Before(deadline) {
		if read.Load() == sent {
			sent++
			if err := client.WriteAck(replog.Ack{Seq: uint64(sent)}); err != nil {
				t.Fatal(err)
			}
		}
		spin(2000)
		s.look(ctx, &ch)
	}
	if s.taken.Load() == 0 {
		t.Fatalf("no step aside ended by the reader in %d frames", sent)
	}
	if s.every != stepAsideEvery {
		t.Fatalf("after a step aside the reader ended, looks every %v, want %v", s.every, stepAsideEvery)
	}
}
