package replog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

type accepted struct {
	c     *Conn
	hello []byte
	err   error
}

// serveOne accepts one connection on ln and runs the server handshake.
func serveOne(ln net.Listener, key []byte, timeout time.Duration) <-chan accepted {
	ch := make(chan accepted, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			ch <- accepted{err: err}
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, hello, err := Handshake(ctx, nc, key, false, nil)
		ch <- accepted{c, hello, err}
	}()
	return ch
}

// tcpPair returns a client and a server connected over loopback TCP.
func tcpPair(t testing.TB, hello []byte) (client, server *Conn) {
	t.Helper()
	ln := listen(t)
	ch := serveOne(ln, testKey(1), 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, err := Dial(ctx, ln.Addr().String(), testKey(1), hello)
	if err != nil {
		t.Fatal(err)
	}
	a := <-ch
	if a.err != nil {
		t.Fatal(a.err)
	}
	t.Cleanup(func() { client.Close(); a.c.Close() })
	return client, a.c
}

func testBatch(first uint64, n, size int) Batch {
	b := Batch{Pos: first*10 + uint64(n)*10 + 5, Out: [2]uint64{first * 3, first * 7}}
	for i := range n {
		seq := first + uint64(i)
		data := bytes.Repeat([]byte{byte(seq)}, size)
		b.Entries = append(b.Entries, Entry{Seq: seq, Pos: seq * 10, Type: Type(1 + seq%40), Data: data})
	}
	return b
}

func sameBatch(a, b Batch) bool {
	if a.Pos != b.Pos || a.Out != b.Out || len(a.Entries) != len(b.Entries) {
		return false
	}
	for i, e := range a.Entries {
		f := b.Entries[i]
		if e.Seq != f.Seq || e.Pos != f.Pos || e.Type != f.Type || !bytes.Equal(e.Data, f.Data) {
			return false
		}
	}
	return true
}

func TestChannelRoundTrip(t *testing.T) {
	hello := []byte("log vm=counter gen=3 host=a")
	client, server := tcpPair(t, hello)
	if !bytes.Equal(server.Hello(), hello) || !bytes.Equal(client.Hello(), hello) {
		t.Fatalf("hello: server sees %q, client %q", server.Hello(), client.Hello())
	}

	const batches = 300
	// The server's reader checks each batch and acks it at once; the
	// client's reader collects the acks while the client keeps writing.
	serverDone := make(chan error, 1)
	go func() {
		serverDone <- func() error {
			next := uint64(1)
			for {
				typ, p, err := server.ReadFrame()
				if err != nil {
					return err
				}
				switch typ {
				case FrameBye:
					if string(p) != "done" {
						return fmt.Errorf("bye %q", p)
					}
					return server.WriteFrame(FrameBye, []byte("ok"))
				case FrameControl:
					if err := server.WriteFrame(FrameControl+1, append([]byte("re: "), p...)); err != nil {
						return err
					}
					continue
				case FrameBatch:
				default:
					return fmt.Errorf("frame type %d", typ)
				}
				b, err := ParseBatch(p)
				if err != nil {
					return err
				}
				if want := testBatch(next, len(b.Entries), int(next%200)); !sameBatch(b, want) {
					return fmt.Errorf("batch from %d differs", next)
				}
				next += uint64(len(b.Entries))
				if err := server.WriteAck(Ack{Seq: next - 1, Pos: b.Pos}); err != nil {
					return err
				}
			}
		}()
	}()
	clientDone := make(chan error, 1)
	go func() {
		clientDone <- func() error {
			var last Ack
			for {
				typ, p, err := client.ReadFrame()
				if err != nil {
					return err
				}
				switch typ {
				case FrameAck:
					a, err := ParseAck(p)
					if err != nil {
						return err
					}
					if a.Seq <= last.Seq || a.Pos <= last.Pos {
						return fmt.Errorf("ack %+v after %+v", a, last)
					}
					last = a
				case FrameControl + 1:
					if string(p) != "re: status" {
						return fmt.Errorf("control reply %q", p)
					}
				case FrameBye:
					if last.Seq != batches*3 {
						return fmt.Errorf("last ack %+v, want seq %d", last, batches*3)
					}
					return nil
				default:
					return fmt.Errorf("frame type %d", typ)
				}
			}
		}()
	}()
	for i := range batches {
		first := uint64(i*3 + 1)
		if err := client.WriteBatch(testBatch(first, 3, int(first%200))); err != nil {
			t.Fatal(err)
		}
		if i == batches/2 {
			if err := client.WriteFrame(FrameControl, []byte("status")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := client.WriteFrame(FrameBye, []byte("done")); err != nil {
		t.Fatal(err)
	}
	if err := <-serverDone; err != nil {
		t.Fatal("server:", err)
	}
	if err := <-clientDone; err != nil {
		t.Fatal("client:", err)
	}
	client.Close()
	if _, _, err := server.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the client closed: %v, want io.EOF", err)
	}
}

func TestChannelConcurrentWriters(t *testing.T) {
	client, server := tcpPair(t, nil)
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := client.WriteFrame(FrameControl, fmt.Appendf(nil, "%d/%d", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	next := make([]int, writers)
	for range writers * each {
		_, p, err := server.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		var w, i int
		if _, err := fmt.Sscanf(string(p), "%d/%d", &w, &i); err != nil || i != next[w] {
			t.Fatalf("frame %q, want writer %d's frame %d", p, w, next[w])
		}
		next[w]++
	}
	wg.Wait()
}

func TestChannelEmptyAndLargeFrames(t *testing.T) {
	client, server := tcpPair(t, nil)
	big := bytes.Repeat([]byte("0123456789abcdef"), (5<<20)/16) // crosses the read buffer's growth steps
	go func() {
		client.WriteFrame(FrameControl, nil)
		client.WriteFrame(FrameControl, big)
		client.WriteFrame(FrameControl, []byte("x"))
	}()
	for _, want := range [][]byte{nil, big, []byte("x")} {
		_, p, err := server.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, want) {
			t.Fatalf("payload of %d bytes, want %d", len(p), len(want))
		}
	}
}

func TestHandshakeWrongKey(t *testing.T) {
	ln := listen(t)
	ch := serveOne(ln, testKey(1), 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := Dial(ctx, ln.Addr().String(), testKey(2), []byte("hi"))
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "bad server MAC (wrong cluster key?)") ||
		!strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("client: %v", err)
	}
	t.Log("client:", err)
	a := <-ch
	if !errors.Is(a.err, ErrAuth) || !strings.Contains(a.err.Error(), "wrong cluster key") {
		t.Fatalf("server: %v", a.err)
	}
	t.Log("server:", a.err)
}

// rawHello is what a client sends first.
func rawHello(version byte, hello []byte) []byte {
	b := append([]byte(chanMagic), version)
	b = append(b, make([]byte, nonceSize)...)
	b = binary.AppendUvarint(b, uint64(len(hello)))
	return append(b, hello...)
}

func TestHandshakeStrangerWithAForgedProof(t *testing.T) {
	ln := listen(t)
	ch := serveOne(ln, testKey(1), 5*time.Second)
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write(rawHello(ProtocolVersion, []byte("control")))
	io.ReadFull(nc, make([]byte, nonceSize+macSize))
	nc.Write(make([]byte, macSize))
	a := <-ch
	if !errors.Is(a.err, ErrAuth) || !strings.Contains(a.err.Error(), "bad client MAC (wrong cluster key?)") {
		t.Fatalf("server: %v", a.err)
	}
	t.Log(a.err)
}

func TestHandshakeStrangers(t *testing.T) {
	tests := []struct {
		name string
		send []byte
		want string
	}{
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "bad magic"},
		{"version", rawHello(1, nil), "protocol version 1"},
		{"huge hello", append(rawHello(ProtocolVersion, nil)[:len(chanMagic)+1+nonceSize], 0x80, 0x80, 0x40), "exceeds the limit"},
		{"long hello length", append(rawHello(ProtocolVersion, nil)[:len(chanMagic)+1+nonceSize], 0x80, 0x80, 0x80, 0x01), "longer than"},
		{"non-minimal hello length", append(rawHello(ProtocolVersion, nil)[:len(chanMagic)+1+nonceSize], 0x81, 0x00), "non-minimal"},
		{"stall in the magic", []byte("FTV"), "no handshake within"},
		{"stall in the hello", rawHello(ProtocolVersion, make([]byte, 100))[:60], "no handshake within"},
		{"stall before the proof", rawHello(ProtocolVersion, []byte("x")), "no handshake within"},
		{"close in the hello", nil, "closed by the peer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := listen(t)
			const timeout = 300 * time.Millisecond
			start := time.Now()
			ch := serveOne(ln, testKey(1), timeout)
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.Write(tt.send)
			if tt.send == nil {
				nc.Close()
			}
			a := <-ch
			if a.err == nil {
				t.Fatal("handshake succeeded")
			}
			if !strings.Contains(a.err.Error(), tt.want) && !(tt.want == "no handshake within" && errors.Is(a.err, context.DeadlineExceeded)) {
				t.Fatalf("error %q, want %q", a.err, tt.want)
			}
			if d := time.Since(start); d > timeout+2*time.Second {
				t.Fatalf("took %v", d)
			}
			if tt.send != nil {
				// The server closed the connection.
				nc.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := io.Copy(io.Discard, nc); err != nil && !closedByPeer(err) {
					t.Fatalf("connection not closed: %v", err)
				}
			}
			t.Log(a.err)
		})
	}
}

func TestHandshakeCanceled(t *testing.T) {
	ln := listen(t)
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, _, err = Handshake(ctx, sc, testKey(1), false, nil)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
		t.Fatalf("after %v: %v", time.Since(start), err)
	}
}

func TestDialErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Dial(ctx, "127.0.0.1:1", testKey(1)[:16], nil); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("short key: %v", err)
	}
	ln := listen(t)
	if _, err := Dial(ctx, ln.Addr().String(), testKey(1), make([]byte, MaxHelloSize+1)); err == nil || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Errorf("huge hello: %v", err)
	}
	// A port that closes at once, as a server refusing the hello does.
	ln = listen(t)
	go func() {
		if nc, err := ln.Accept(); err == nil {
			nc.Close()
		}
	}()
	if _, err := Dial(ctx, ln.Addr().String(), testKey(1), nil); err == nil || !strings.Contains(err.Error(), "closed the connection instead of answering") {
		t.Errorf("closing server: %v", err)
	}
	// A port that never answers.
	ln2 := listen(t)
	short, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	if _, err := Dial(short, ln2.Addr().String(), testKey(1), nil); !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("silent server: %v", err)
	}
}

// mitm joins a client and a server through a proxy over net.Pipes. A
// net.Pipe never merges writes, so each Write of one side reaches the proxy
// as one chunk; c2s and s2c (nil: pass) decide what goes on in place of
// chunk i. Client chunks: 0 the hello, 1 the proof, 2... the frames; server
// chunks: 0 the proof, 1... the frames.
func mitm(t *testing.T, c2s, s2c func(i int, chunk []byte) [][]byte) (client, server *Conn) {
	t.Helper()
	ca, cb := net.Pipe()
	sa, sb := net.Pipe()
	proxy := func(from, to net.Conn, tamper func(int, []byte) [][]byte) {
		defer to.Close()
		buf := make([]byte, 64<<10)
		for i := 0; ; i++ {
			n, err := from.Read(buf)
			if err != nil {
				return
			}
			out := [][]byte{buf[:n]}
			if tamper != nil {
				out = tamper(i, bytes.Clone(buf[:n]))
			}
			for _, b := range out {
				if _, err := to.Write(b); err != nil {
					return
				}
			}
		}
	}
	go proxy(cb, sa, c2s)
	go proxy(sa, cb, s2c)
	ch := make(chan accepted, 1)
	go func() {
		c, hello, err := Handshake(context.Background(), sb, testKey(1), false, nil)
		ch <- accepted{c, hello, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, _, err := Handshake(ctx, ca, testKey(1), true, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	a := <-ch
	if a.err != nil {
		t.Fatal(a.err)
	}
	t.Cleanup(func() { client.Close(); a.c.Close() })
	return client, a.c
}

// sendFrames writes frames from the client and then closes it, in the
// background: a net.Pipe write waits for its reader.
func sendFrames(c *Conn, payloads ...string) {
	go func() {
		for _, p := range payloads {
			if c.WriteFrame(FrameControl, []byte(p)) != nil {
				break
			}
		}
		c.Close()
	}()
}

func readAll(t *testing.T, c *Conn) ([]string, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []string
	for {
		_, p, err := c.ReadFrame()
		if err != nil {
			if _, _, again := c.ReadFrame(); again != err {
				t.Fatalf("error not sticky: %v, then %v", err, again)
			}
			return got, err
		}
		got = append(got, string(p))
	}
}

func TestChannelTamperedFrames(t *testing.T) {
	// Every bit of the first frame flipped: the reader must never accept it.
	frame0 := "frame zero"
	frameSize := 1 + 1 + len(frame0) + tagSize
	for off := range frameSize {
		for bit := range 8 {
			client, server := mitm(t, func(i int, b []byte) [][]byte {
				if i == 2 {
					b[off] ^= 1 << bit
				}
				return [][]byte{b}
			}, nil)
			sendFrames(client, frame0, "frame one")
			got, err := readAll(t, server)
			if len(got) != 0 || err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("byte %d bit %d flipped: got %q, %v", off, bit, got, err)
			}
		}
	}

	var saved []byte // a frame of another session
	tests := []struct {
		name   string
		tamper func(i int, b []byte) [][]byte
		want   []string
	}{
		{"pass", nil, []string{"a", "b", "c"}},
		{"replayed", func(i int, b []byte) [][]byte {
			if i == 3 {
				return [][]byte{b, b}
			}
			return [][]byte{b}
		}, []string{"a", "b"}},
		{"dropped", func(i int, b []byte) [][]byte {
			if i == 3 {
				return nil
			}
			return [][]byte{b}
		}, []string{"a"}},
		{"reordered", func(i int, b []byte) [][]byte {
			switch i {
			case 2:
				saved = b
				return nil
			case 3:
				return [][]byte{b, saved}
			}
			return [][]byte{b}
		}, nil},
		{"from another session", func(i int, b []byte) [][]byte {
			if i == 2 {
				return [][]byte{saved} // frame "a" of the reordered session: same counter, other keys
			}
			return [][]byte{b}
		}, nil},
		{"truncated", func(i int, b []byte) [][]byte {
			if i == 4 {
				return [][]byte{b[:len(b)-1]}
			}
			return [][]byte{b}
		}, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := mitm(t, tt.tamper, nil)
			sendFrames(client, "a", "b", "c")
			got, err := readAll(t, server)
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("got %q, want %q (%v)", got, tt.want, err)
			}
			switch {
			case tt.name == "pass":
				if !errors.Is(err, io.EOF) {
					t.Fatalf("end: %v, want io.EOF", err)
				}
			case tt.name == "truncated":
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("end: %v, want io.ErrUnexpectedEOF", err)
				}
			case !errors.Is(err, ErrAuth):
				t.Fatalf("end: %v, want ErrAuth", err)
			}
			t.Log(err)
		})
	}
}

func TestChannelReflectedFrame(t *testing.T) {
	fromServer := make(chan []byte, 1)
	client, server := mitm(t, func(i int, b []byte) [][]byte {
		if i == 2 {
			return [][]byte{<-fromServer} // the server's own frame, sent back to it
		}
		return [][]byte{b}
	}, func(i int, b []byte) [][]byte {
		if i == 1 {
			fromServer <- b
		}
		return [][]byte{b}
	})
	go server.WriteFrame(FrameControl, []byte("x"))
	if _, p, err := client.ReadFrame(); err != nil || string(p) != "x" {
		t.Fatalf("client: %q, %v", p, err)
	}
	sendFrames(client, "x")
	if _, err := readAll(t, server); !errors.Is(err, ErrAuth) {
		t.Fatalf("reflected frame: %v", err)
	}
}

// rawAfterHandshake returns the server of a fresh session and the client's
// underlying connection, for writing arbitrary bytes as frames.
func rawAfterHandshake(t *testing.T) (server *Conn, raw net.Conn) {
	client, server := mitm(t, nil, nil)
	return server, client.nc
}

func TestChannelBadFrames(t *testing.T) {
	tests := []struct {
		name string
		send []byte
		want string
	}{
		{"oversized", binary.AppendUvarint(nil, MaxFrameSize+1), "exceeds the limit"},
		{"huge", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, "longer than"},
		{"non-minimal length", []byte{0x81, 0x00, FrameAck}, "non-minimal"},
		{"type 0", []byte{0, 0}, "unknown frame type 0"},
		{"unknown type", []byte{0, 9}, "unknown frame type 9"},
		{"zero tag", append([]byte{2, FrameAck, 1, 1}, make([]byte, tagSize)...), "bad frame tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, raw := rawAfterHandshake(t)
			go func() { raw.Write(tt.send); raw.Close() }()
			_, err := readAll(t, server)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			t.Log(err)
		})
	}
}

func TestChannelForgedLengthDoesNotAllocate(t *testing.T) {
	server, raw := rawAfterHandshake(t)
	go func() {
		raw.Write(append(binary.AppendUvarint(nil, MaxFrameSize), FrameBatch))
		raw.Write(make([]byte, 1000))
		raw.Close()
	}()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := server.ReadFrame()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("error %v", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
		t.Fatalf("allocated %d bytes for a frame of 1000", n)
	}
}

func TestChannelReadTimeoutBetweenFramesIsRetriable(t *testing.T) {
	client, server := tcpPair(t, nil)
	server.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := server.ReadFrame(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("error %v, want a timeout", err)
	}
	server.SetReadDeadline(time.Time{})
	if err := client.WriteAck(Ack{Seq: 7, Pos: 9, Out: [2]uint64{5, 1}}); err != nil {
		t.Fatal(err)
	}
	typ, p, err := server.ReadFrame()
	if err != nil || typ != FrameAck {
		t.Fatalf("after the timeout: %d, %v", typ, err)
	}
	if a, err := ParseAck(p); err != nil || a != (Ack{7, 9, [2]uint64{5, 1}}) {
		t.Fatalf("ack %+v, %v", a, err)
	}
}

func TestChannelWriteRefusals(t *testing.T) {
	client, server := tcpPair(t, nil)
	if err := client.WriteFrame(0, nil); err == nil || !strings.Contains(err.Error(), "unknown frame type") {
		t.Errorf("type 0: %v", err)
	}
	if err := client.WriteFrame(FrameControl, make([]byte, MaxFrameSize+1)); err == nil || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Errorf("oversized: %v", err)
	}
	bad := testBatch(1, 3, 10)
	bad.Entries[2].Seq = 5
	if err := client.WriteBatch(bad); err == nil || !strings.Contains(err.Error(), "entry 5 follows 2") {
		t.Errorf("gap: %v", err)
	}
	// Nothing was sent: the connection still works.
	if err := client.WriteBatch(testBatch(1, 3, 10)); err != nil {
		t.Fatal(err)
	}
	if typ, p, err := server.ReadFrame(); err != nil || typ != FrameBatch {
		t.Fatalf("%d %v", typ, err)
	} else if b, err := ParseBatch(p); err != nil || !sameBatch(b, testBatch(1, 3, 10)) {
		t.Fatalf("batch %v", err)
	}
}

func TestAppendEntryInPlace(t *testing.T) {
	for _, e := range []Entry{
		{Seq: 1, Pos: 0, Type: 1},
		{Seq: 1 << 40, Pos: 1<<64 - 1, Type: 255, Data: []byte("data")},
		{Seq: 3, Pos: 10, Type: 100, Data: bytes.Repeat([]byte{9}, 300)},
	} {
		want := AppendEntry([]byte("x"), e)
		if got := appendEntry([]byte("x"), e); !bytes.Equal(got, want) {
			t.Errorf("%v: % x, want % x", e, got, want)
		}
		if EntrySize(e) != len(want)-1 {
			t.Errorf("%v: EntrySize %d, want %d", e, EntrySize(e), len(want)-1)
		}
	}
}

func TestParseBatch(t *testing.T) {
	good := testBatch(5, 4, 3)
	b, err := ParseBatch(AppendBatch(nil, good))
	if err != nil || !sameBatch(b, good) {
		t.Fatalf("round trip: %v", err)
	}
	if b, err := ParseBatch(AppendBatch(nil, Batch{Pos: 42})); err != nil || b.Pos != 42 || len(b.Entries) != 0 {
		t.Fatalf("empty batch: %+v, %v", b, err)
	}

	with := func(f func(*Batch)) []byte {
		b := testBatch(5, 4, 3)
		f(&b)
		return AppendBatch(nil, b)
	}
	enc := AppendBatch(nil, good)
	// head encodes a batch's fields before its entry count.
	head := func(pos uint64) []byte {
		return binary.AppendUvarint(binary.AppendUvarint(binary.AppendUvarint(nil, pos), good.Out[0]), good.Out[1])
	}
	tests := []struct {
		name string
		p    []byte
		want string
	}{
		{"empty", nil, "bad integer"},
		{"gap", with(func(b *Batch) { b.Entries[2].Seq = 9 }), "entry 9 follows 6"},
		{"repeat", with(func(b *Batch) { b.Entries[1].Seq = 5 }), "entry 5 follows 5"},
		{"wrap", with(func(b *Batch) { b.Entries = b.Entries[:1]; b.Entries[0].Seq = 0 }), "sequence number 0"},
		{"position back", with(func(b *Batch) { b.Entries[3].Pos = 1 }), "before its predecessor"},
		{"position ahead", with(func(b *Batch) { b.Pos = 60 }), "beyond the batch's 60"},
		{"trailing", append(bytes.Clone(enc), 0), "1 bytes after the last entry"},
		{"truncated", enc[:len(enc)-1], "truncated"},
		{"bad crc", append(bytes.Clone(enc[:len(enc)-1]), enc[len(enc)-1]^1), "checksum"},
		{"count", append(binary.AppendUvarint(head(1), 1<<40), make([]byte, 100)...), "cannot fit"},
		{"count over entries", append(binary.AppendUvarint(head(100), 5), enc[len(head(100))+1:]...), "entry 5 of 5"},
	}
	for _, tt := range tests {
		if _, err := ParseBatch(tt.p); err == nil || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestParseAck(t *testing.T) {
	for _, a := range []Ack{{}, {Seq: 1, Pos: 2}, {Seq: 1<<64 - 1, Pos: 1 << 50, Out: [2]uint64{1 << 63, 3}}} {
		if got, err := ParseAck(AppendAck(nil, a)); err != nil || got != a {
			t.Errorf("%+v: %+v, %v", a, got, err)
		}
	}
	for _, p := range [][]byte{nil, {1}, {1, 2, 3}, {0x80}} {
		if _, err := ParseAck(p); !errors.Is(err, ErrCorrupt) {
			t.Errorf("% x: %v", p, err)
		}
	}
}

// BenchmarkChannelBatch sends 100-entry batches of 64-byte entries over
// loopback TCP; the receiver parses each and acks it, the sender reads
// acks concurrently. MB/s counts frame bytes on the wire.
func BenchmarkChannelBatch(b *testing.B) {
	client, server := tcpPair(b, []byte("bench"))
	const n, size = 100, 64
	batch := testBatch(1, n, size)
	n0 := len(AppendBatch(nil, batch))
	b.SetBytes(int64(uvarintLen(uint64(n0)) + 1 + n0 + tagSize))
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			for {
				typ, p, err := server.ReadFrame()
				if err != nil {
					return err
				}
				if typ == FrameBye {
					return nil
				}
				bt, err := ParseBatch(p)
				if err != nil {
					return err
				}
				if err := server.WriteAck(Ack{Seq: bt.Entries[len(bt.Entries)-1].Seq, Pos: bt.Pos}); err != nil {
					return err
				}
			}
		}()
	}()
	go func() {
		for {
			if _, _, err := client.ReadFrame(); err != nil {
				return
			}
		}
	}()
	b.ResetTimer()
	seq, pos := uint64(1), uint64(0)
	for range b.N {
		for i := range batch.Entries {
			pos += 10
			batch.Entries[i].Seq, batch.Entries[i].Pos = seq, pos
			seq++
		}
		batch.Pos = pos
		if err := client.WriteBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	if err := client.WriteFrame(FrameBye, nil); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
}

// TestConnWaiting: Waiting tells bytes the kernel holds for the reader,
// and nothing once they are read; a connection that is not a socket, or a
// closed one, says false.
func TestConnWaiting(t *testing.T) {
	client, server := tcpPair(t, nil)
	if server.Waiting() {
		t.Fatal("waiting before anything was sent")
	}
	if err := client.WriteAck(Ack{Seq: 1, Pos: 2}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !server.Waiting() {
		if time.Now().After(deadline) {
			t.Fatal("an ack sent is not waiting at the reader")
		}
		time.Sleep(time.Millisecond)
	}
	if typ, _, err := server.ReadFrame(); err != nil || typ != FrameAck {
		t.Fatalf("read: type %d, %v", typ, err)
	}
	if server.Waiting() {
		t.Fatal("waiting after the only frame was read")
	}
	if err := client.WriteAck(Ack{Seq: 2, Pos: 3}); err != nil {
		t.Fatal(err)
	}
	server.Close()
	if server.Waiting() {
		t.Fatal("a closed connection says bytes wait")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if (&Conn{nc: a}).Waiting() {
		t.Fatal("a pipe says bytes wait")
	}
}
