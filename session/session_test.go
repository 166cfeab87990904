package session

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

func xor5a(p []byte) []byte {
	q := make([]byte, len(p))
	for i, b := range p {
		q[i] = b ^ 0x5a
	}
	return q
}

// awaitNormalEnd waits for the session to end normally on both sides.
func awaitNormalEnd(t *testing.T, cl *cluster, c *ClientConn) {
	t.Helper()
	await(t, "the client's end of the session", c.done)
	if c.err != nil {
		t.Fatalf("client: %v", c.err)
	}
	awaitServerEnd(t, cl, c.ID())
}

// awaitServerEnd waits for session id to end normally on a server.
func awaitServerEnd(t *testing.T, cl *cluster, id ID) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for !cl.endedNormally(id) {
		if time.Now().After(deadline) {
			if hs := cl.current().session(id); hs != nil {
				t.Fatalf("the session did not end normally: %v, %+v", hs.s.Err(), hs.s.State())
			}
			t.Fatal("the session did not end normally")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestEchoAcrossReplacements(t *testing.T) {
	size := 100 << 20
	if testing.Short() {
		size = 4 << 20
	}
	const replacements = 4
	cl := newCluster(t, 256<<10)
	c := cl.dial(cl.config())
	seed := [32]byte{1, 2, 3}

	werr := make(chan error, 1)
	go func() {
		src := rand.NewChaCha8(seed)
		sizes := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 200<<10)
		for left := size; left > 0; {
			n := min(left, 1+sizes.IntN(len(buf)))
			src.Read(buf[:n])
			if _, err := c.Write(buf[:n]); err != nil {
				werr <- err
				return
			}
			left -= n
		}
		werr <- c.CloseWrite()
	}()

	// Replace the server each time the client has read another fifth,
	// while both directions are in full flow.
	replace := make(chan struct{}, replacements)
	replaced := make(chan struct{})
	go func() {
		defer close(replaced)
		for range replace {
			cl.replace()
		}
	}()

	want := rand.NewChaCha8(seed)
	got := make([]byte, 100<<10)
	exp := make([]byte, len(got))
	total, next := 0, 1
	for {
		n, err := c.Read(got)
		want.Read(exp[:n])
		if !bytes.Equal(got[:n], xor5a(exp[:n])) {
			t.Fatalf("output differs in the %d bytes from %d", n, total)
		}
		total += n
		if next <= replacements && total >= size*next/(replacements+1) {
			replace <- struct{}{}
			next++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", total, err)
		}
	}
	close(replace)
	<-replaced
	if total != size {
		t.Fatalf("read %d bytes, want %d", total, size)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if cl.hosts != replacements {
		t.Fatalf("%d replacements, want %d", cl.hosts, replacements)
	}
	awaitNormalEnd(t, cl, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestClientClosesFirst(t *testing.T) {
	cl := newCluster(t, 0)
	c := cl.dial(cl.config())
	msg := []byte("hello, guest")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(msg); err == nil {
		t.Fatal("Write after CloseWrite succeeded")
	}
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, xor5a(msg)) {
		t.Fatalf("read %q, %v; want %q", got, err, xor5a(msg))
	}
	awaitNormalEnd(t, cl, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(got); err == nil {
		t.Fatal("Read after Close succeeded")
	}
}

func TestGuestClosesFirst(t *testing.T) {
	cl := newCluster(t, 0)
	banner := []byte("banner, then no more output")
	var input []byte
	inputDone := make(chan struct{})
	cl.guest = func(h *fakeHost, hs *hostSession) {
		defer close(inputDone)
		g := hs.s.Guest()
		if !h.logRead(hs, 0, false, banner, true) {
			return
		}
		g.Write(banner)
		g.Close()
		if _, err := g.Write(banner); err == nil {
			t.Error("the guest wrote after closing its output")
		}
		buf := make([]byte, 1024)
		for {
			n, err := g.Read(buf)
			input = append(input, buf[:n]...)
			if (err == nil || err == io.EOF) && !h.logRead(hs, n, err == io.EOF, nil, false) {
				return
			}
			if err != nil {
				hs.guestErr = err
				return
			}
		}
	}
	c := cl.dial(cl.config())
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, banner) {
		t.Fatalf("read %q, %v; want %q", got, err, banner)
	}
	// The input side still works.
	msg := []byte("input after the output's end")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	await(t, "the guest's input", inputDone)
	hs := cl.current().session(c.ID())
	if hs.guestErr != io.EOF || !bytes.Equal(input, msg) {
		t.Fatalf("the guest read %q, then %v", input, hs.guestErr)
	}
	awaitNormalEnd(t, cl, c)
}

// TestReplaceAfterEOF replaces the server after the guest read the input's
// end and closed its output, before the client read any output: the
// survivor learns from the client's Close that its consumed position
// counted the end.
func TestReplaceAfterEOF(t *testing.T) {
	cl := newCluster(t, 0)
	c := cl.dial(cl.config())
	msg := bytes.Repeat([]byte("abc"), 1000)
	c.Write(msg)
	c.CloseWrite()
	waitFor(t, "the backup to log the end", func() bool {
		cl.mu.Lock()
		defer cl.mu.Unlock()
		b := cl.backups[c.ID()]
		return b != nil && b.outClosed
	})
	cl.replace()
	st := cl.current().session(c.ID()).s.State()
	if st.Consumed != uint64(len(msg))+1 || !st.OutClosed {
		t.Fatalf("restored state %+v", st)
	}
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, xor5a(msg)) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	awaitNormalEnd(t, cl, c)
	if st := cl.current().session(c.ID()).s.State(); !st.InClosed || !st.EOFRead || st.Consumed != uint64(len(msg))+1 {
		t.Fatalf("final state %+v", st)
	}
}

// TestCloseReturnsOnceOver: Close returns once the session is over at the
// server too, so a program may exit right after it without leaving the
// session to expire there.
func TestCloseReturnsOnceOver(t *testing.T) {
	cl := newCluster(t, 0)
	c := cl.dial(cl.config())
	msg := []byte("one request, then exit")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	srv := cl.current().session(c.ID()).s
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The server's session itself, not the harness's note of its end,
	// which a goroutine of its own writes after it.
	select {
	case <-srv.Done():
	default:
		t.Fatal("Close returned before the server ended the session")
	}
	if err := srv.Err(); err != nil {
		t.Fatalf("the session ended with %v", err)
	}
}
