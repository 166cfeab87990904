//go:build linux

package wasi

import (
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// osConn is an accepted connection: its reading side is a stream filled by
// a pump goroutine, its writing side the socket itself or, for what the
// socket does not take at once, a queue emptied by a sender goroutine.
type osConn struct {
	c       net.Conn
	session string          // the session's id, if it is one (see Session)
	raw     syscall.RawConn // c's socket, for writes that must not wait; nil if none
	in      *stream
	out     *connOut
}

// connOut is the sending side of a connection: what the guest wrote that
// the kernel has not taken yet. A write goes straight to the kernel when
// nothing waits ahead of it, as far as the socket buffer takes it without
// waiting; the rest waits here, and the connection's own goroutine (send)
// hands it to the kernel. So a peer that does not read holds up its own
// connection only: never the guest, nor a Gate releasing outputs to other
// connections. The queue is bounded by the guest, not here: System writes
// no more than the credit its Poll events granted (SendWindow at accept),
// and Poll reports a connection writable only below SendWindow. Fields are
// guarded by the OSHost's mu.
type connOut struct {
	bufs     [][]byte // queued, in order
	queued   int      // bytes in bufs and in the batch being sent
	reserved int      // bytes on their way here, held by a Gate (see Reserve)
	err      error    // the first send error; writes after it are dropped
	shutWr   bool     // shut the writing side once bufs are sent
	closing  bool     // the handle was released: send bufs, then close
	direct   bool     // a write is going straight to the kernel; send waits
	wake     chan struct{}
	done     chan struct{} // closed when send has finished
}

// closeLinger bounds how long a released connection may take to hand its
// queued bytes to a peer that does not read, before it is closed anyway.
const closeLinger = 2 * time.Second

// Session is a connection that is a session: one that outlives the host
// that serves it, resumed on the host that adopts the guest (see Offer and
// Config.Sessions). Its id names it in the log.
type Session interface {
	net.Conn
	SessionID() string
}

// Offer hands c to the guest's listener of address addr ("" for the only
// one) as if it had just been accepted there: a Session reaches the guest
// this way. It fails if there is no such listener or it is closed.
func (h *OSHost) Offer(addr string, c net.Conn) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var l *osListener
	for _, x := range h.listeners {
		if x != nil && (x.addr == addr || x.spec == addr || addr == "" && len(h.listeners) == 1) {
			l = x
			break
		}
	}
	switch {
	case l == nil:
		return fmt.Errorf("wasi: offer: no listener %q", addr)
	case l.closed || h.closed:
		return fmt.Errorf("wasi: offer: listener %q is closed", addr)
	case len(l.queue) >= acceptBacklog:
		return fmt.Errorf("wasi: offer: listener %q has %d connections waiting", addr, len(l.queue))
	}
	l.queue = append(l.queue, c)
	h.broadcastLocked()
	return nil
}

// SessionOf returns the id of the session connection hd is, "" if it is
// none.
func (h *OSHost) SessionOf(hd Handle) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if oc, ok := h.res[hd].(*osConn); ok {
		return oc.session
	}
	return ""
}

// newConn wraps an accepted connection and starts its goroutines. h.mu is
// held.
func (h *OSHost) newConn(c net.Conn) *osConn {
	oc := &osConn{c: c, in: &stream{}, out: &connOut{wake: make(chan struct{}, 1), done: make(chan struct{})}}
	if sc, ok := c.(syscall.Conn); ok {
		oc.raw, _ = sc.SyscallConn()
	}
	h.senders.Add(1)
	go h.pump(oc.in, c)
	go h.send(oc)
	return oc
}

// newDeadConn returns a connection whose peer is gone (one a go-live adopted):
// reads fail with ECONNRESET, writes are dropped.
func newDeadConn() *osConn {
	out := &connOut{err: syscall.ECONNRESET, done: make(chan struct{})}
	close(out.done)
	return &osConn{c: deadConn{}, in: &stream{err: syscall.ECONNRESET}, out: out}
}

// writeConn sends data (which the connection may keep) on oc: straight to
// the kernel when nothing is queued ahead of it, which is the common case
// and costs no hand-off, and the rest through the queue. h.mu is not held.
func (h *OSHost) writeConn(oc *osConn, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := oc.out
	if o.err != nil || o.closing || len(data) == 0 {
		return
	}
	if o.queued == 0 && oc.raw != nil {
		o.direct = true
		h.mu.Unlock()
		n, err := writeNow(oc.raw, data)
		h.mu.Lock()
		o.direct = false
		data = data[n:]
		if err != nil && o.err == nil {
			o.err = err
			h.log.Debug("wasi: connection write failed", "err", err)
			h.broadcastLocked() // writability is now a hangup
		}
	}
	if o.err == nil && len(data) > 0 {
		o.bufs = append(o.bufs, data)
		o.queued += len(data)
	}
	// Wake the sender only if it has work: bytes, or a shutdown or close
	// that waited for the direct write. A wake-up per write would cost
	// the guest's thread as much as the write.
	if len(o.bufs) > 0 || o.shutWr || o.closing {
		o.notify()
	}
}

// writeNow writes what the socket takes without waiting.
func writeNow(raw syscall.RawConn, p []byte) (int, error) {
	n := 0
	var werr error
	err := raw.Write(func(fd uintptr) bool {
		for n < len(p) {
			k, err := unix.Write(int(fd), p[n:])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				if err != unix.EAGAIN {
					werr = err
				}
				break
			}
			n += k
		}
		return true // never wait for the poller: what is left is queued
	})
	if err != nil {
		return n, err
	}
	return n, werr
}

// notify wakes the sender.
func (o *connOut) notify() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// writable reports the event of an fd_write subscription: ready while the
// queue and the reserved bytes are below SendWindow, with the room left; a
// hangup once sending failed. h.mu is held.
func (oc *osConn) writable(ev *Event) bool {
	o := oc.out
	if o.err != nil {
		ev.Flags = EventFdHangup
		return true
	}
	used := o.queued + o.reserved
	if used >= SendWindow {
		return false
	}
	ev.NBytes = uint64(SendWindow - used)
	return true
}

// Reserve counts n bytes (n < 0 releases them) that a Gate holds for
// connection hd against its SendWindow, so that Poll reports only the room
// left after them and the guest's credit covers what the Gate holds too;
// the Gate releases the reservation as it hands the bytes to Write (or
// drops them). Other handles are ignored.
func (h *OSHost) Reserve(hd Handle, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	oc, ok := h.res[hd].(*osConn)
	if !ok {
		return
	}
	o := oc.out
	before := o.queued + o.reserved
	o.reserved = max(o.reserved+n, 0)
	if before >= SendWindow && o.queued+o.reserved < SendWindow {
		h.broadcastLocked() // writable again
	}
}

// halfCloser is a connection whose directions close separately.
type halfCloser interface {
	CloseRead() error
	CloseWrite() error
}

// send hands the queue of oc to the kernel until the connection is
// released and drained (or sending fails).
func (h *OSHost) send(oc *osConn) {
	o := oc.out
	defer h.senders.Done()
	defer close(o.done)
	for {
		h.mu.Lock()
		for len(o.bufs) == 0 && !o.shutWr && !o.closing || o.direct {
			h.mu.Unlock()
			<-o.wake
			h.mu.Lock()
		}
		bufs, failed := o.bufs, o.err != nil
		o.bufs = nil
		h.mu.Unlock()

		var err error
		sent := 0
		for _, b := range bufs {
			sent += len(b)
		}
		if len(bufs) > 0 && !failed {
			nb := net.Buffers(bufs)
			_, err = nb.WriteTo(oc.c)
		}

		h.mu.Lock()
		before := o.queued + o.reserved
		o.queued -= sent
		if err != nil && o.err == nil {
			o.err = err
			h.log.Debug("wasi: connection write failed", "err", err)
		}
		if o.err != nil {
			for _, b := range o.bufs {
				o.queued -= len(b)
			}
			o.bufs = nil
		}
		// Wake pollers only when writability changed.
		if err != nil || before >= SendWindow && o.queued+o.reserved < SendWindow {
			h.broadcastLocked()
		}
		drained := len(o.bufs) == 0
		shut := drained && o.shutWr
		if shut {
			o.shutWr = false
		}
		closing := drained && o.closing
		h.mu.Unlock()

		if shut && o.err == nil {
			if hc, ok := oc.c.(halfCloser); ok {
				if err := hc.CloseWrite(); err != nil {
					h.log.Debug("wasi: shutdown failed", "err", err)
				}
			}
		}
		if closing {
			oc.c.Close()
			return
		}
	}
}

// shutdown shuts the reading side at once and the writing side after what
// is queued. h.mu is not held.
func (h *OSHost) shutdown(oc *osConn, how uint8) {
	hc, ok := oc.c.(halfCloser)
	if !ok {
		if how == ShutRd|ShutWr {
			h.release(oc)
		}
		return
	}
	if how&ShutRd != 0 {
		if err := hc.CloseRead(); err != nil {
			h.log.Debug("wasi: shutdown failed", "err", err)
		}
	}
	if how&ShutWr != 0 {
		h.mu.Lock()
		oc.out.shutWr = true
		oc.out.notify()
		h.mu.Unlock()
	}
}

// releaseConn stops reading oc and lets its sender close it once the queue
// is sent, within closeLinger. h.mu is not held.
func (h *OSHost) releaseConn(oc *osConn) {
	h.mu.Lock()
	oc.in.closed = true
	o := oc.out
	first := !o.closing
	o.closing = true
	o.notify()
	h.broadcastLocked()
	h.mu.Unlock()
	if !first {
		return
	}
	if hc, ok := oc.c.(halfCloser); ok {
		_ = hc.CloseRead() // ends the pump's read at once
	}
	_ = oc.c.SetWriteDeadline(time.Now().Add(closeLinger))
}
