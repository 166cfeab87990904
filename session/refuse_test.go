package session

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawConn is a client speaking the protocol by hand.
type rawConn struct {
	t     *testing.T
	c     net.Conn
	d     *Decoder
	nonce Nonce
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(hang))
	r := &rawConn{t: t, c: c, d: NewDecoder(c)}
	f := r.next()
	if f.Type != FrameHello || f.Version != Version {
		t.Fatalf("first frame %+v, want a Hello", f)
	}
	r.nonce = f.Nonce
	return r
}

func (r *rawConn) next() Frame {
	r.t.Helper()
	f, err := r.d.Decode()
	if err != nil {
		r.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

func (r *rawConn) send(f Frame) {
	r.t.Helper()
	if err := writeFrame(r.c, &f); err != nil {
		r.t.Fatal(err)
	}
}

// refused reads until the server's Refuse and then the end of the
// connection, and checks the reason says want.
func (r *rawConn) refused(want string) {
	r.t.Helper()
	for {
		f := r.next()
		if f.Type != FrameRefuse {
			continue
		}
		if !strings.Contains(f.Reason, want) {
			r.t.Errorf("refused with %q, want %q in it", f.Reason, want)
		}
		if _, err := r.d.Decode(); err != io.EOF {
			r.t.Errorf("after the Refuse: %v, want io.EOF", err)
		}
		return
	}
}

// open opens a session by hand.
func (r *rawConn) open() Frame {
	r.t.Helper()
	r.send(Frame{Type: FrameOpen})
	f := r.next()
	if f.Type != FrameOpened {
		r.t.Fatalf("answer to Open: %+v", f)
	}
	return f
}

// recordingDialer keeps every connection it dials and the first bytes
// written on each.
type recordingDialer struct {
	mu    sync.Mutex
	conns []*recordingConn
}

type recordingConn struct {
	net.Conn
	mu    sync.Mutex
	first []byte
}

func (d *recordingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	rc := &recordingConn{Conn: c}
	d.mu.Lock()
	d.conns = append(d.conns, rc)
	d.mu.Unlock()
	return rc, nil
}

func (d *recordingDialer) conn(i int) *recordingConn {
	d.mu.Lock()
	defer d.mu.Unlock()
	if i < len(d.conns) {
		return d.conns[i]
	}
	return nil
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if n := 1024 - len(c.first); n > 0 {
		c.first = append(c.first, p[:min(n, len(p))]...)
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *recordingConn) written(n int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.first) < n {
		return nil
	}
	return bytes.Clone(c.first[:n])
}

// echoes writes msg on c and checks it comes back transformed.
func echoes(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, xor5a([]byte(msg))) {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

func TestRefusals(t *testing.T) {
	cl := newCluster(t, 0)
	rd := &recordingDialer{}
	cfg := cl.config()
	cfg.Dialer = rd
	c := cl.dial(cfg)
	echoes(t, c, "before")

	// Make the client resume once, to record a Resume.
	rd.conn(0).Close()
	echoes(t, c, "across a reconnection")
	resumeSize := HeaderSize + resumeFixed // the test's target is ""
	var replay []byte
	waitFor(t, "the client to resume", func() bool {
		if rc := rd.conn(1); rc != nil {
			replay = rc.written(resumeSize)
		}
		return replay != nil
	})
	if FrameType(replay[0]) != FrameResume {
		t.Fatalf("recorded % x, not a Resume", replay)
	}

	hs := cl.current().session(c.ID())
	waitFor(t, "the echoes to be acknowledged", func() bool {
		st := hs.s.State()
		return st.OutStart == st.Produced && st.Safe == st.Received
	})
	before := hs.s.State()
	addr := cl.current().addr
	resume := func(id ID, secret Secret, received, sent uint64) func(r *rawConn) {
		return func(r *rawConn) {
			r.send(Frame{Type: FrameResume, ID: id, Received: received, Sent: sent, Proof: Proof(secret, r.nonce, id, received, sent)})
		}
	}
	id, secret, in, out := c.ID(), hs.s.Secret(), before.Received, before.Produced
	cases := []struct {
		name string
		do   func(r *rawConn)
		want string
	}{
		{"garbage", func(r *rawConn) { r.c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) }, "unknown frame type 71"},
		{"truncated frame", func(r *rawConn) {
			r.c.Write(append(binary.BigEndian.AppendUint32([]byte{byte(FrameOpen)}, 100), "short"...))
			r.c.(*net.TCPConn).CloseWrite()
		}, "truncated Open frame"},
		{"oversize frame", func(r *rawConn) { r.c.Write(binary.BigEndian.AppendUint32([]byte{byte(FrameData)}, 1<<30)) }, "exceeds the limit"},
		{"Data first", func(r *rawConn) { r.send(Frame{Type: FrameData, Data: []byte("x")}) }, "expected Open or Resume, got Data"},
		{"closed at once", func(r *rawConn) { r.c.(*net.TCPConn).CloseWrite() }, "closed before Open or Resume"},
		{"unknown id", resume(NewID(), secret, out, in), "unknown session"},
		{"forged proof", func(r *rawConn) {
			r.send(Frame{Type: FrameResume, ID: id, Received: out, Sent: in, Proof: [32]byte{1, 2, 3}})
		}, "bad proof"},
		{"proof with another secret", resume(id, NewSecret(), out, in), "bad proof"},
		{"replayed Resume", func(r *rawConn) { r.c.Write(replay) }, "bad proof"},
		{"received beyond the output", resume(id, secret, out+1, in), "out of range"},
		{"received before the retained", resume(id, secret, out-1, in), "out of range"},
		{"sent below the input", resume(id, secret, out, in-1), "out of range"},
	}
	for _, tc := range cases {
		r := dialRaw(t, addr)
		tc.do(r)
		r.refused(tc.want)
		if t.Failed() {
			t.Fatalf("case %q failed", tc.name)
		}
		// The session is as it was, its client still attached.
		if st := hs.s.State(); st.Received != before.Received || st.Produced != before.Produced || st.OutStart != before.OutStart || !st.Attached {
			t.Fatalf("%s: state %+v, was %+v", tc.name, st, before)
		}
	}

	// The session and the server go on.
	echoes(t, c, "after the refusals")
	c2 := cl.dial(cl.config())
	echoes(t, c2, "another session")
	c.CloseWrite()
	c2.CloseWrite()
	io.ReadAll(c)
	io.ReadAll(c2)
	awaitNormalEnd(t, cl, c)
	awaitNormalEnd(t, cl, c2)
}

// TestRefusedSessionEnds: a client whose session the server no longer
// knows fails with the reason.
func TestRefusedSessionEnds(t *testing.T) {
	cl := newCluster(t, 0)
	c := cl.dial(cl.config())
	echoes(t, c, "hello")
	// The survivor does not know the session.
	cl.mu.Lock()
	delete(cl.backups, c.ID())
	cl.mu.Unlock()
	cl.replace()
	_, err := c.Read(make([]byte, 10))
	if err == nil || !strings.Contains(err.Error(), "unknown session") {
		t.Fatalf("Read: %v, want a refusal for an unknown session", err)
	}
	if _, err := c.Write([]byte("x")); err == nil || !strings.Contains(err.Error(), "unknown session") {
		t.Fatalf("Write: %v, want a refusal for an unknown session", err)
	}
}

// TestProtocolViolations: a client breaking the protocol in a session is
// refused with the reason, and the session stays for its real client.
func TestProtocolViolations(t *testing.T) {
	cl := newCluster(t, 64<<10)
	cl.guest = func(h *fakeHost, hs *hostSession) {} // reads nothing
	cases := []struct {
		name string
		do   func(r *rawConn)
		want string
	}{
		{"beyond the window", func(r *rawConn) {
			r.send(Frame{Type: FrameData, Offset: 0, Data: make([]byte, 64<<10+1)})
		}, "exceeds the window"},
		{"gap", func(r *rawConn) { r.send(Frame{Type: FrameData, Offset: 10, Data: []byte("x")}) }, "input gap"},
		{"ack beyond the output", func(r *rawConn) { r.send(Frame{Type: FrameAck, Offset: 1}) }, "acknowledged output to 1"},
		{"a second Open", func(r *rawConn) { r.send(Frame{Type: FrameOpen}) }, "unexpected Open"},
		{"data after close", func(r *rawConn) {
			r.send(Frame{Type: FrameClose, Offset: 0})
			r.send(Frame{Type: FrameData, Offset: 0, Data: []byte("x")})
		}, "after the client's Close"},
		{"close at the wrong place", func(r *rawConn) { r.send(Frame{Type: FrameClose, Offset: 5}) }, "closed its input at 5"},
	}
	for _, tc := range cases {
		r := dialRaw(t, cl.current().addr)
		opened := r.open()
		tc.do(r)
		r.refused(tc.want)
		if t.Failed() {
			t.Fatalf("case %q failed", tc.name)
		}
		hs := cl.current().session(opened.ID)
		// The session lives on: its client may resume.
		r = dialRaw(t, cl.current().addr)
		sent := hs.s.State().Received
		r.send(Frame{Type: FrameResume, ID: opened.ID, Sent: sent, Proof: Proof(opened.Secret, r.nonce, opened.ID, 0, sent)})
		if f := r.next(); f.Type != FrameResumed || f.Consumed != sent {
			t.Fatalf("%s: answer to the Resume: %+v", tc.name, f)
		}
		hs.s.End(nil)
	}
}

// TestAttachReplaces: a Resume while the session's connection is still up
// takes the session over; the old connection is closed.
func TestAttachReplaces(t *testing.T) {
	cl := newCluster(t, 0)
	r1 := dialRaw(t, cl.current().addr)
	opened := r1.open()
	r1.send(Frame{Type: FrameData, Offset: 0, Data: []byte("ab")})
	if f := r1.next(); f.Type != FrameAck || f.Offset != 1 && f.Offset != 2 {
		// The guest may read the two bytes in one go or not.
		t.Fatalf("got %+v, want an Ack", f)
	}

	r2 := dialRaw(t, cl.current().addr)
	r2.send(Frame{Type: FrameResume, ID: opened.ID, Sent: 2, Proof: Proof(opened.Secret, r2.nonce, opened.ID, 0, 2)})
	if f := r2.next(); f.Type != FrameResumed || f.Consumed != 2 {
		t.Fatalf("answer to the Resume: %+v", f)
	}
	// The old connection ends, without a refusal.
	for {
		f, err := r1.d.Decode()
		if err != nil {
			break
		}
		if f.Type == FrameRefuse {
			t.Fatalf("the replaced connection was refused: %q", f.Reason)
		}
	}
	// The new one carries the session: the output is resent from 0.
	r2.send(Frame{Type: FrameData, Offset: 1, Data: []byte("bc")})
	var out []byte
	for len(out) < 3 {
		if f := r2.next(); f.Type == FrameData {
			if f.Offset != uint64(len(out)) {
				t.Fatalf("Data at %d, want %d", f.Offset, len(out))
			}
			out = append(out, f.Data...)
		}
	}
	if !bytes.Equal(out, xor5a([]byte("abc"))) {
		t.Fatalf("output %q", out)
	}
}
