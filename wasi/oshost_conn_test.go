//go:build linux

package wasi

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// listeningHost returns an OSHost made from cfg with one loopback listener
// (handle 3), and the listener's address.
func listeningHost(t *testing.T, cfg Config) (*OSHost, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listeners = []Listener{{Listener: ln}}
	h, err := NewOSHost(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.CloseAll() })
	return h, ln.Addr().String()
}

// acceptOne returns an OSHost with one listener, a client connected to it
// and the host's handle of the connection.
func acceptOne(t *testing.T) (*OSHost, net.Conn, Handle) {
	t.Helper()
	h, addr := listeningHost(t, Config{})
	c, conn := dialAccept(t, h, addr)
	return h, c, conn
}

// dialAccept connects a client to h's listener at addr and accepts it.
func dialAccept(t *testing.T, h *OSHost, addr string) (net.Conn, Handle) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	conn, errno, err := h.Accept(context.Background(), 3, false)
	if errno != ESUCCESS || err != nil {
		t.Fatalf("accept = %v, %v", errno, err)
	}
	return c, conn
}

// pattern returns n bytes that show where a byte went missing or moved.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7 / 5)
	}
	return b
}

// A peer that does not read never blocks Write: the host queues, Poll stops
// reporting the connection writable once SendWindow is queued, and when
// the peer reads, every byte arrives in order and writability returns.
func TestOSHostSendQueue(t *testing.T) {
	h, c, conn := acceptOne(t)
	ctx := context.Background()
	want := pattern(16 << 20) // far beyond what the kernel buffers
	done := make(chan struct{})
	go func() {
		defer close(done)
		for off := 0; off < len(want); off += 64 << 10 {
			h.Write(conn, want[off:min(off+64<<10, len(want))])
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Write blocked on a peer that does not read")
	}
	sub := []Subscription{{Userdata: 7, Type: EventFdWrite, Handle: conn}}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if events, err := h.Poll(short, sub); err == nil {
		t.Fatalf("the connection polls writable with 16 MiB queued: %+v", events)
	}

	got := make([]byte, len(want))
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the peer received other bytes than were written")
	}
	events, err := h.Poll(ctx, sub)
	if err != nil || len(events) != 1 || events[0].Errno != ESUCCESS || events[0].NBytes == 0 || events[0].NBytes > SendWindow {
		t.Fatalf("poll once drained = %+v, %v", events, err)
	}
}

// Close and CloseAll send what is queued before closing; a shutdown of the
// writing side waits behind the queue too.
func TestOSHostCloseSendsQueue(t *testing.T) {
	for _, how := range []string{"close", "shutdown", "closeall"} {
		t.Run(how, func(t *testing.T) {
			h, c, conn := acceptOne(t)
			want := pattern(4 << 20)
			h.Write(conn, want)
			switch how {
			case "close":
				h.Close(conn)
			case "shutdown":
				h.Shutdown(conn, ShutWr)
			case "closeall":
				go h.CloseAll()
			}
			c.SetDeadline(time.Now().Add(60 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("received %d bytes, want the %d written", len(got), len(want))
			}
		})
	}
}

// A peer that resets the connection turns writability into a hangup and
// later writes are dropped, not queued.
func TestOSHostSendToResetPeer(t *testing.T) {
	h, c, conn := acceptOne(t)
	c.(*net.TCPConn).SetLinger(0)
	c.Close() // a reset
	sub := []Subscription{{Type: EventFdWrite, Handle: conn}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		h.Write(conn, pattern(64<<10))
		events, err := h.Poll(context.Background(), sub)
		if err != nil {
			t.Fatal(err)
		}
		if events[0].Flags&EventFdHangup != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no hangup after the peer reset")
		}
		time.Sleep(time.Millisecond)
	}
	h.mu.Lock()
	queued := h.res[conn].(*osConn).out.queued
	h.mu.Unlock()
	h.Write(conn, pattern(1<<20))
	h.mu.Lock()
	after := h.res[conn].(*osConn).out.queued
	h.mu.Unlock()
	if queued != 0 || after != 0 {
		t.Errorf("queued after the reset: %d, then %d after another write", queued, after)
	}
}

// With Coalesce, a Poll that waited reports what else became ready within
// the coalescing time; it never waits past a clock subscription's deadline,
// it does not coalesce when something was ready at once, and it does not
// delay a lone client's input.
func TestOSHostPollCoalesce(t *testing.T) {
	h, addr := listeningHost(t, Config{Coalesce: time.Hour})
	ctx := context.Background()
	var clients []net.Conn
	var conns []Handle
	for range 2 {
		c, conn := dialAccept(t, h, addr)
		clients, conns = append(clients, c), append(conns, conn)
	}
	subs := []Subscription{
		{Userdata: 1, Type: EventFdRead, Handle: conns[0]},
		{Userdata: 2, Type: EventFdRead, Handle: conns[1]},
		// The deadline ends the coalescing (an hour) long before its end.
		{Userdata: 3, Type: EventClock, Clock: ClockMonotonic, Timeout: uint64(300 * time.Millisecond)},
	}
	poll := func(subs []Subscription, writes ...int) map[uint64]bool {
		t.Helper()
		go func() {
			for _, i := range writes {
				time.Sleep(20 * time.Millisecond)
				clients[i].Write([]byte("x"))
			}
		}()
		events, err := h.Poll(ctx, subs)
		if err != nil {
			t.Fatal(err)
		}
		got := map[uint64]bool{}
		for _, e := range events {
			got[e.Userdata] = true
		}
		return got
	}
	drain := func(i int) {
		t.Helper()
		if b, errno, err := h.Read(ctx, conns[i], 16, 0); errno != ESUCCESS || err != nil || len(b) == 0 {
			t.Fatalf("read = %q, %v, %v", b, errno, err)
		}
	}

	// A lone input, with nothing seen arriving together yet: reported at
	// once, not held for the coalescing time (the poll would last until
	// the clock's deadline).
	if got := poll(subs, 0); !got[1] || got[3] {
		t.Fatalf("lone input: events %v, want connection 1 alone", got)
	}
	drain(0)

	// Two inputs found together make the next poll that waits coalesce:
	// it reports both, and the clock that ended the coalescing.
	clients[0].Write([]byte("a"))
	clients[1].Write([]byte("b"))
	time.Sleep(20 * time.Millisecond)
	if got := poll(subs[:2]); !got[1] || !got[2] {
		t.Fatalf("both ready: events %v", got)
	}
	drain(0)
	drain(1)
	if got := poll(subs, 0, 1); !got[1] || !got[2] || !got[3] {
		t.Fatalf("events %v: want both connections, then the clock that ended the coalescing", got)
	}
	// Ready at once: no coalescing (an hour's wait would fail the test).
	if got := poll(subs[:2]); !got[1] || !got[2] {
		t.Fatalf("poll with both ready = %v", got)
	}
	drain(0)
	drain(1)
	// The first lone input after that is still coalesced (nothing else
	// comes: the clock ends it).
	if got := poll(subs, 0); !got[1] || got[2] || !got[3] {
		t.Fatalf("first lone input after inputs together: events %v", got)
	}
	drain(0)
	// So is the next, though it came alone after one that came alone:
	// the other connection had input within busyWindow coalescing times
	// (an hour's), as under load from many clients whose every reply
	// waits, each poll finding one of them ready.
	if got := poll(subs, 0); !got[1] || got[2] || !got[3] {
		t.Fatalf("lone input with another connection's recent: events %v", got)
	}
	drain(0)

	// A lone client, however long it goes on, is never delayed: on a new
	// host with one connection, nothing else ever had input.
	h2, addr2 := listeningHost(t, Config{Coalesce: time.Hour})
	c, conn := dialAccept(t, h2, addr2)
	for i := range 3 {
		go func() {
			time.Sleep(20 * time.Millisecond)
			c.Write([]byte("x"))
		}()
		events, err := h2.Poll(ctx, []Subscription{
			{Userdata: 1, Type: EventFdRead, Handle: conn},
			{Userdata: 3, Type: EventClock, Clock: ClockMonotonic, Timeout: uint64(300 * time.Millisecond)},
		})
		if err != nil || len(events) != 1 || events[0].Userdata != 1 {
			t.Fatalf("lone client's input %d: events %+v, %v; want the connection alone", i, events, err)
		}
		if b, errno, err := h2.Read(ctx, conn, 16, 0); errno != ESUCCESS || err != nil || len(b) == 0 {
			t.Fatalf("read = %q, %v, %v", b, errno, err)
		}
	}
}

// busyLocked: another connection's input within busyWindow coalescing
// times makes a Poll coalesce, an older one does not, and the connection
// now ready does not count as another.
func TestOSHostBusy(t *testing.T) {
	h := &OSHost{coalesce: 50 * time.Microsecond}
	t0 := time.Now()
	window := busyWindow * h.coalesce
	if h.busyLocked(t0, []Handle{4}) {
		t.Fatal("busy with no input seen")
	}
	h.noteReadyLocked(t0, []Handle{4})
	if h.busyLocked(t0.Add(window/2), []Handle{4}) {
		t.Fatal("busy with only the ready connection's own input seen")
	}
	if !h.busyLocked(t0.Add(window/2), []Handle{5}) {
		t.Fatal("not busy with another connection's input within the window")
	}
	if h.busyLocked(t0.Add(window+time.Microsecond), []Handle{5}) {
		t.Fatal("busy with another connection's input older than the window")
	}
	// The last two distinct connections are kept: 4's input after 5's
	// leaves 5 as the other one, and repeated input of 4 keeps it.
	h.noteReadyLocked(t0.Add(time.Microsecond), []Handle{5})
	h.noteReadyLocked(t0.Add(2*time.Microsecond), []Handle{4})
	h.noteReadyLocked(t0.Add(3*time.Microsecond), []Handle{4})
	if !h.busyLocked(t0.Add(window/2), []Handle{4}) {
		t.Fatal("not busy: connection 5's input was forgotten")
	}
	if h.busyLocked(t0.Add(window/2), []Handle{4, 5}) {
		t.Fatal("busy though every recent input is among those ready now, and the last poll found one ready")
	}
	h.together = true
	if !h.busyLocked(t0.Add(10*window), []Handle{4}) {
		t.Fatal("not busy after a poll found several ready")
	}
}

// Bytes a Gate reserves count against the window: Poll reports no room
// while they fill it, and wakes when they are released.
func TestOSHostReserve(t *testing.T) {
	h, _, conn := acceptOne(t)
	sub := []Subscription{{Type: EventFdWrite, Handle: conn}}
	h.Reserve(conn, 1000)
	events, err := h.Poll(context.Background(), sub)
	if err != nil || len(events) != 1 || events[0].NBytes != SendWindow-1000 {
		t.Fatalf("poll with 1000 bytes reserved = %+v, %v; want room %d", events, err, SendWindow-1000)
	}
	h.Reserve(conn, SendWindow-1000)
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if events, err := h.Poll(short, sub); err == nil {
		t.Fatalf("writable with the window reserved: %+v", events)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		h.Reserve(conn, -SendWindow)
	}()
	events, err = h.Poll(context.Background(), sub)
	if err != nil || len(events) != 1 || events[0].NBytes != SendWindow {
		t.Fatalf("poll after the release = %+v, %v", events, err)
	}
	h.Reserve(3, 5) // a listener: ignored
}
