package session

import (
	"bytes"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// TestWindows: a guest writing to a client that does not read blocks at
// the window, and the output retained never exceeds it; a client writing
// to a guest that does not read blocks at its own window, and the input
// buffered at the server never exceeds the server's.
func TestWindows(t *testing.T) {
	const (
		window       = 64 << 10 // the server's
		clientWindow = 128 << 10
		total        = 1 << 20
	)
	cl := newCluster(t, window)
	var written atomic.Int64
	var input []byte
	cl.guest = func(h *fakeHost, hs *hostSession) {
		g := hs.s.Guest()
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 256)
		for written.Load() < total {
			n, err := g.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				hs.guestErr = err
				return
			}
		}
		g.Close()
		buf := make([]byte, 10<<10)
		for {
			n, err := g.Read(buf)
			input = append(input, buf[:n]...)
			hs.s.SafeInput(hs.s.State().Consumed)
			if err != nil {
				hs.guestErr = err
				return
			}
		}
	}
	cfg := cl.config()
	cfg.Window = clientWindow
	c := cl.dial(cfg)
	hs := cl.current().session(c.ID())

	// Sample the bounds all along.
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			st := hs.s.State()
			if len(st.Retained) > window {
				t.Errorf("%d bytes of output retained, beyond the window", len(st.Retained))
			}
			// Positions: the Close and the EOF count one each.
			if buffered := st.Received - b2u(st.InClosed) - (st.Consumed - b2u(st.EOFRead)); buffered > window {
				t.Errorf("%d bytes of input buffered, beyond the window", buffered)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()

	// The client does not read: the guest blocks at the window.
	waitFor(t, "the guest to fill the window", func() bool { return written.Load() >= window })
	time.Sleep(20 * time.Millisecond) // a chance to go beyond, if it could
	if n := written.Load(); n != window {
		t.Fatalf("the guest wrote %d bytes to a client that does not read, want %d", n, window)
	}

	// The guest does not read: the client's Write blocks at its window.
	var sent atomic.Int64
	werr := make(chan error, 1)
	data := bytes.Repeat([]byte("input..."), total/8)
	go func() {
		for p := data; len(p) > 0; p = p[1024:] {
			n, err := c.Write(p[:1024]) // a divisor of the window
			sent.Add(int64(n))
			if err != nil || len(p) == 1024 {
				werr <- err
				return
			}
		}
	}()
	waitFor(t, "the client to fill its window", func() bool {
		return sent.Load() >= clientWindow && hs.s.State().Received >= window
	})
	time.Sleep(20 * time.Millisecond)
	if n, rec := sent.Load(), hs.s.State().Received; n != clientWindow || rec != window {
		t.Fatalf("the client took %d bytes and the server %d from a guest that does not read, want %d and %d", n, rec, clientWindow, window)
	}

	// Now the client reads: everything flows.
	out, err := io.ReadAll(c)
	if err != nil || len(out) != total {
		t.Fatalf("read %d bytes, %v", len(out), err)
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	awaitNormalEnd(t, cl, c)
	close(stop)
	<-sampled
	if !bytes.Equal(input, data) {
		t.Fatalf("the guest read %d bytes, not the %d sent", len(input), len(data))
	}
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
