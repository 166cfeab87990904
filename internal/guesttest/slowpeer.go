package guesttest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// CheckSlowPeer checks, against the wasi-echo guest serving addr, that a
// client that does not read its replies holds up only itself: client A
// sends 8 MiB and reads nothing while client B's echoes still come back;
// then A reads, and gets every byte back in order.
func CheckSlowPeer(t testing.TB, addr string) {
	t.Helper()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a := dial()
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i*7/5) | 1 // no zero bytes, never a newline pattern to mistake
	}
	sent := make(chan error, 1)
	go func() {
		a.SetWriteDeadline(time.Now().Add(2 * time.Minute))
		_, err := a.Write(want)
		sent <- err
	}()
	// Let A's bytes fill every buffer on the way back before B starts.
	time.Sleep(500 * time.Millisecond)

	b := dial()
	r := bufio.NewReader(b)
	for i := range 20 {
		line := fmt.Sprintf("ping %d\n", i)
		b.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := b.Write([]byte(line)); err != nil {
			t.Fatalf("client B: %v", err)
		}
		got, err := r.ReadString('\n')
		if err != nil || got != line {
			t.Fatalf("client B's echo %d: %q, %v (held up by client A, which does not read?)", i, got, err)
		}
	}

	got := make([]byte, len(want))
	a.SetReadDeadline(time.Now().Add(2 * time.Minute))
	if _, err := io.ReadFull(a, got); err != nil {
		t.Fatalf("client A reading its echo: %v", err)
	}
	if err := <-sent; err != nil {
		t.Fatalf("client A sending: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("client A's echo differs from what it sent")
	}
}
