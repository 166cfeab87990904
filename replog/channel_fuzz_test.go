package replog

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// streamConn is a net.Conn over a fixed input, for feeding arbitrary bytes
// to a Conn without a network.
type streamConn struct {
	io.Reader
	io.Writer
}

func (streamConn) Close() error                     { return nil }
func (streamConn) LocalAddr() net.Addr              { return nil }
func (streamConn) RemoteAddr() net.Addr             { return nil }
func (streamConn) SetDeadline(time.Time) error      { return nil }
func (streamConn) SetReadDeadline(time.Time) error  { return nil }
func (streamConn) SetWriteDeadline(time.Time) error { return nil }

// fixedSession is one end of a session whose handshake is taken as done
// with a fixed key and nonces, so both ends can be built without running it.
func fixedSession(nc net.Conn, client bool) *Conn {
	h := handshake{nc: nc, key: testKey(7)}
	t := transcript(make([]byte, nonceSize), bytes.Repeat([]byte{1}, nonceSize), []byte("fuzz"))
	c, err := h.conn(bufio.NewReaderSize(nc, 64<<10), client, t)
	if err != nil {
		panic(err)
	}
	return c
}

// clientStream returns the bytes a client of fixedSession sends for frames.
func clientStream(frames ...func(*Conn) error) []byte {
	var buf bytes.Buffer
	c := fixedSession(streamConn{nil, &buf}, true)
	for _, f := range frames {
		if err := f(c); err != nil {
			panic(err)
		}
	}
	return buf.Bytes()
}

func FuzzReadFrame(f *testing.F) {
	batch := func(c *Conn) error { return c.WriteBatch(testBatch(1, 3, 5)) }
	ack := func(c *Conn) error { return c.WriteAck(Ack{Seq: 3, Pos: 30}) }
	bye := func(c *Conn) error { return c.WriteFrame(FrameBye, []byte("stopping")) }
	ctl := func(c *Conn) error { return c.WriteFrame(FrameControl, nil) }
	valid := clientStream(batch, ack, ctl, batch, bye)
	f.Add(valid)
	f.Add(clientStream(ack))
	f.Add(valid[:len(valid)-3])
	f.Add([]byte{0x81, 0x00, FrameAck})
	f.Add([]byte{0xff, 0xff, 0xff, 0x0f, FrameBatch, 1, 2, 3})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		c := fixedSession(streamConn{r, io.Discard}, false)
		var frames []func(*Conn) error
		for range 64 {
			typ, p, err := c.ReadFrame()
			if err != nil {
				break
			}
			if !knownFrameType(typ) || len(p) > MaxFrameSize {
				t.Fatalf("accepted frame type %d of %d bytes", typ, len(p))
			}
			switch typ {
			case FrameBatch:
				ParseBatch(p)
			case FrameAck:
				ParseAck(p)
			}
			p = bytes.Clone(p)
			frames = append(frames, func(c *Conn) error { return c.WriteFrame(typ, p) })
		}
		if limit := 2*len(data) + 128<<10; cap(c.rbuf) > limit {
			t.Fatalf("buffer of %d bytes for %d bytes of input", cap(c.rbuf), len(data))
		}
		// Every accepted frame has one encoding: the sender's.
		consumed := len(data) - r.Len() - c.br.Buffered()
		if got := clientStream(frames...); len(got) > consumed || !bytes.Equal(got, data[:len(got)]) {
			t.Fatalf("accepted % x, which re-encodes as % x", data[:consumed], got)
		}
	})
}

func FuzzServerHandshake(f *testing.F) {
	f.Add(rawHello(ProtocolVersion, []byte("log vm=x")))
	f.Add(append(rawHello(ProtocolVersion, nil), make([]byte, macSize)...))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("FTVMCHAN"))
	f.Fuzz(func(t *testing.T, data []byte) {
		nc := streamConn{bytes.NewReader(data), io.Discard}
		if _, _, err := Handshake(context.Background(), nc, testKey(7), false, nil); err == nil {
			t.Fatal("a stranger's bytes passed the handshake")
		}
	})
}

func FuzzParseBatch(f *testing.F) {
	f.Add(AppendBatch(nil, testBatch(1, 3, 5)))
	f.Add(AppendBatch(nil, testBatch(1<<40, 2, 0)))
	f.Add(AppendBatch(nil, Batch{Pos: 7}))
	f.Add([]byte{1, 200, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := ParseBatch(p)
		if err != nil {
			return
		}
		if err := b.check(); err != nil {
			t.Fatalf("accepted a batch it should refuse: %v", err)
		}
		enc := AppendBatch(nil, b)
		b2, err := ParseBatch(enc)
		if err != nil || !sameBatch(b, b2) {
			t.Fatalf("re-encoded batch: %v", err)
		}
		if len(enc) > len(p) {
			t.Fatalf("re-encoding grew from %d to %d bytes", len(p), len(enc))
		}
	})
}

func FuzzParseAck(f *testing.F) {
	f.Add(AppendAck(nil, Ack{Seq: 3, Pos: 1 << 40}))
	f.Add(AppendAck(nil, Ack{Seq: 3, Pos: 30, Out: [2]uint64{1 << 33, 7}}))
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, p []byte) {
		a, err := ParseAck(p)
		if err != nil {
			return
		}
		enc := AppendAck(nil, a)
		if a2, err := ParseAck(enc); err != nil || a2 != a || len(enc) > len(p) {
			t.Fatalf("ack %+v re-encodes as % x: %+v, %v", a, enc, a2, err)
		}
	})
}

// TestFramesAreEncrypted: what a frame carries (the clients' data, in
// batches) does not cross in the clear, and the same payload sent twice
// crosses as two different ciphertexts.
func TestFramesAreEncrypted(t *testing.T) {
	secret := []byte("a client's password: hunter2, hunter2, hunter2")
	wire := clientStream(
		func(c *Conn) error { return c.WriteFrame(FrameControl, secret) },
		func(c *Conn) error { return c.WriteFrame(FrameControl, secret) },
	)
	if bytes.Contains(wire, []byte("hunter2")) {
		t.Fatalf("the payload crossed in the clear: %q", wire)
	}
	half := len(wire) / 2
	if bytes.Equal(wire[:half], wire[half:]) {
		t.Fatal("the same payload sent twice crossed as the same bytes")
	}
	r := fixedSession(streamConn{bytes.NewReader(wire), nil}, false)
	for range 2 {
		typ, p, err := r.ReadFrame()
		if err != nil || typ != FrameControl || !bytes.Equal(p, secret) {
			t.Fatalf("read back: %d %q %v", typ, p, err)
		}
	}
}
