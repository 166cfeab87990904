package session

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// cuttableDialer dials until cut, then fails: the client is cut off.
type cuttableDialer struct {
	recordingDialer
	cut atomic.Bool
}

func (d *cuttableDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.cut.Load() {
		return nil, errors.New("test: no route to the server")
	}
	return d.recordingDialer.DialContext(ctx, network, addr)
}

// TestClientGone: a client cut off from the server ends its session after
// its Timeout; the server ends it after its own, and the guest's Read
// sees the error.
func TestClientGone(t *testing.T) {
	cl := newCluster(t, 0)
	cl.timeout = 100 * time.Millisecond
	d := &cuttableDialer{}
	cfg := cl.config()
	cfg.Dialer = d
	cfg.Timeout = 200 * time.Millisecond
	c := cl.dial(cfg)
	echoes(t, c, "hello")
	hs := cl.current().session(c.ID())

	d.cut.Store(true)
	d.conn(0).Close()

	_, err := c.Read(make([]byte, 1))
	if err == nil || !strings.Contains(err.Error(), "no server resumed the session") {
		t.Fatalf("Read: %v, want the session's timeout", err)
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("Write succeeded after the session's timeout")
	}
	await(t, "the guest to end", hs.guestEnd)
	if hs.guestErr != ErrExpired {
		t.Fatalf("the guest's Read: %v, want %v", hs.guestErr, ErrExpired)
	}
	await(t, "the session to end", hs.s.Done())
	if hs.s.Err() != ErrExpired {
		t.Fatalf("the session ended with %v", hs.s.Err())
	}
	// A client that comes back now is refused.
	r := dialRaw(t, cl.current().addr)
	st := hs.s.State()
	r.send(Frame{Type: FrameResume, ID: c.ID(), Received: st.Produced, Sent: st.Received,
		Proof: Proof(hs.s.Secret(), r.nonce, c.ID(), st.Produced, st.Received)})
	r.refused("session has ended")
}

// TestServerNeverBack: a Dial whose server goes away for good fails after
// its Timeout, with an error that says so.
func TestServerNeverBack(t *testing.T) {
	cl := newCluster(t, 0)
	cfg := cl.config()
	cfg.Timeout = 200 * time.Millisecond
	c := cl.dial(cfg)
	echoes(t, c, "hello")
	cl.current().crash()
	_, err := c.Read(make([]byte, 1))
	if err == nil || !strings.Contains(err.Error(), "no server resumed the session within 200ms") || !strings.Contains(err.Error(), "no live host") {
		t.Fatalf("Read: %v, want the session's timeout and the last attempt's error", err)
	}
	c.Close()

	// A server that never answers: Dial gives up.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	cfg.Resolve = func(context.Context) (string, error) { return ln.Addr().String(), nil }
	if _, err := Dial(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "no server opened the session") {
		t.Fatalf("Dial: %v, want a timeout", err)
	}
	// A resolver that fails says why.
	cfg.Resolve = func(context.Context) (string, error) { return "", errors.New("no primary elected") }
	if _, err := Dial(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "no primary elected") {
		t.Fatalf("Dial: %v, want the resolver's error", err)
	}
	// So does a canceled context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg.Timeout = hang
	if _, err := Dial(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dial: %v, want context.Canceled", err)
	}
}

func TestDeadlines(t *testing.T) {
	cl := newCluster(t, 0)
	cl.guest = func(h *fakeHost, hs *hostSession) {
		g := hs.s.Guest()
		g.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := g.Read(make([]byte, 1)); !errors.Is(err, errDeadline) {
			t.Errorf("guest Read past the deadline: %v", err)
		}
		g.SetReadDeadline(time.Time{})
		hs.guestErr = errDeadline
	}
	c := cl.dial(cl.config())
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past the deadline: %v, want a timeout", err)
	}
	await(t, "the guest", cl.current().session(c.ID()).guestEnd)
}
