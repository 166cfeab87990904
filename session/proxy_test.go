package session

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"testing"
)

func startProxy(t *testing.T, cfg Config) (addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Proxy(ctx, ln, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Proxy: %v", err)
		}
	})
	return ln.Addr().String()
}

// TestProxy runs a plain TCP client through the proxy across a server
// replacement, with half-closes both ways.
func TestProxy(t *testing.T) {
	size := 16 << 20
	if testing.Short() {
		size = 2 << 20
	}
	cl := newCluster(t, 128<<10)
	c, err := net.Dial("tcp", startProxy(t, cl.config()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{7}).Read(data)
	// The second half is written only after the replacement, so it
	// happens in the middle of the session.
	replaced := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data[:size/2])
		if err == nil {
			<-replaced
			_, err = c.Write(data[size/2:])
		}
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got := make([]byte, 0, size)
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if cl.hosts == 0 && len(got) >= size/4 {
			cl.replace()
			close(replaced)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, xor5a(data)) {
		t.Fatalf("read %d bytes, not the %d echoed", len(got), size)
	}
	// The session ends normally.
	cl.mu.Lock()
	opened := cl.opened
	cl.mu.Unlock()
	if len(opened) != 1 {
		t.Fatalf("%d sessions, want 1", len(opened))
	}
	awaitServerEnd(t, cl, opened[0])
}

// TestProxySessionFails: when the session fails, the proxy closes the
// client's connection.
func TestProxySessionFails(t *testing.T) {
	cl := newCluster(t, 0)
	c, err := net.Dial("tcp", startProxy(t, cl.config()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoes(t, c, "hello")
	cl.mu.Lock()
	clear(cl.backups) // the survivor does not know the session
	cl.mu.Unlock()
	cl.replace()
	if n, err := c.Read(make([]byte, 10)); err == nil || err == io.EOF {
		t.Fatalf("Read: %d, %v; want a reset connection", n, err)
	}
}
