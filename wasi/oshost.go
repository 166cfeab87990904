//go:build linux

package wasi

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// OSHost is the real Host, on Linux: files and directories of the host confined to
// the preopened directories, the process streams given in the Config, TCP
// listeners and their connections, the host's clocks and crypto/rand.
//
// Confinement: every path is resolved inside an os.Root opened on the
// preopened directory (or, for a directory the guest opened, on that
// directory), which walks the path component by component with openat and
// O_NOFOLLOW and follows symbolic links itself, failing any that lead out
// of the root. Absolute link targets, ".." past the root and links in
// intermediate components are all caught; the guest sees ENOTCAPABLE.
//
// Background goroutines read stdin and each connection and accept on each
// listener into buffers, so that Poll can report readiness without
// consuming anything and reads never block the host longer than the guest
// asked. A write to a connection goes straight to its socket, without
// waiting; what the socket does not take is queued and sent by the
// connection's own goroutine, so that a peer that does not read never
// blocks the guest (see connOut). CloseAll stops them (a goroutine blocked reading a Stdin
// that cannot be interrupted ends when the reader returns).
type OSHost struct {
	log       *slog.Logger
	listeners []*osListener // of the Config, in order

	// Offsets added to the monotonic and CPU-time clocks, so that a host
	// adopting a guest continues the clocks it saw (see
	// NewOSHostAdopting); zero otherwise. Set before the host is used.
	monoOffset, cpuOffset uint64
	coalesce              time.Duration  // Config.Coalesce
	timer                 *deadlineTimer // Poll's clock deadlines
	// sessions resumes an adopted session (Config.Sessions).
	sessions func(id string, in, out uint64) (net.Conn, error)

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever readiness changes, if watched
	watched bool          // someone took changed since it was last replaced
	closed  bool
	// together is set when the last Poll that reported descriptors found
	// more than one ready, and recent holds the last two distinct handles
	// Poll found readable: inputs arrive together, or from more than one
	// source within busyWindow coalescing times, so coalescing gathers
	// more of them. Otherwise Poll does not coalesce, since a lone client's
	// request has nothing to be gathered with and would only be delayed.
	together bool
	recent   [2]readyAt
	// res maps each handle to its resource. A nil entry is a handle whose
	// resource was lost at adoption (a file deleted meanwhile): every
	// operation on it fails with EBADF, and Close releases it.
	res  map[Handle]any
	next Handle

	senders sync.WaitGroup // the connections' send goroutines
}

var _ Host = (*OSHost)(nil)

// Limits of the buffering of the background readers.
const (
	streamBuffer  = 1 << 20 // bytes read ahead per stream
	acceptBacklog = 128     // connections accepted ahead per listener
)

// stream is the reading side of stdin or a connection, filled by a pump
// goroutine.
type stream struct {
	buf    []byte
	err    error // io.EOF or the read error, after buf drains
	closed bool
}

// outStream is stdout or stderr.
type outStream struct {
	name string
	w    io.Writer
}

// osListener is a listening socket with the connections accepted ahead.
type osListener struct {
	ln     net.Listener
	queue  []net.Conn
	err    error
	closed bool
	// How to listen again after Unlisten: the address, and the options
	// the listener was opened with.
	addr  string
	spec  string // the address as the Config gave it
	lc    net.ListenConfig
	guard func(net.Listener) error
	// off: Unlisten closed ln; Relisten opens a new one.
	off bool
}

// NewOSHost opens the host side of cfg: it opens each preopened directory
// as an os.Root and each listener's address (or takes its Listener), and
// serves stdin, stdout and stderr from cfg.Stdin, cfg.Stdout and
// cfg.Stderr. The handles are those Host documents for startup resources.
// logger receives output failures the guest cannot see; nil discards them.
//
// A listener opened by address is bound with SO_REUSEADDR, and with
// SO_REUSEPORT too if it is Shared.
func NewOSHost(cfg Config, logger *slog.Logger) (*OSHost, error) {
	return newOSHost(cfg, logger, nil)
}

// newOSHost is NewOSHost serving only the startup handles for which skip
// is false; a skipped preopen is opened all the same (an adopting host
// needs its root), and its handle removed by the caller.
func newOSHost(cfg Config, logger *slog.Logger, skip func(Handle) bool) (*OSHost, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fresh := skip == nil // not adopting a guest: its orphans are stale
	if skip == nil {
		skip = func(Handle) bool { return false }
	}
	timer, err := newDeadlineTimer()
	if err != nil {
		return nil, err
	}
	h := &OSHost{
		log:      logger,
		coalesce: cfg.Coalesce,
		sessions: cfg.Sessions,
		timer:    timer,
		changed:  make(chan struct{}),
		res:      make(map[Handle]any),
	}
	if !skip(0) {
		in := &stream{}
		h.res[0] = in
		if cfg.Stdin == nil {
			in.err = io.EOF
		} else {
			go h.pump(in, cfg.Stdin)
		}
	}
	stdout, stderr := cfg.Stdout, cfg.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	if !skip(1) {
		h.res[1] = &outStream{name: "stdout", w: stdout}
	}
	if !skip(2) {
		h.res[2] = &outStream{name: "stderr", w: stderr}
	}
	next := Handle(3)
	for i, p := range cfg.Preopens {
		root, err := os.OpenRoot(p.HostDir)
		if err != nil {
			h.CloseAll()
			return nil, fmt.Errorf("wasi: preopen %d (%s): %w", i, p.GuestPath, err)
		}
		dir, err := root.Open(".")
		if err != nil {
			root.Close()
			h.CloseAll()
			return nil, fmt.Errorf("wasi: preopen %d (%s): %w", i, p.GuestPath, err)
		}
		if fresh {
			if err := clearOrphans(root); err != nil {
				root.Close()
				dir.Close()
				h.CloseAll()
				return nil, fmt.Errorf("wasi: preopen %d (%s): %w", i, p.GuestPath, err)
			}
		}
		h.res[next] = &osDir{root: root, f: dir, top: root, rel: "."}
		next++
	}
	for i, l := range cfg.Listeners {
		hd := next
		next++
		if skip(hd) {
			h.listeners = append(h.listeners, nil)
			continue
		}
		ln := l.Listener
		if ln == nil && l.Addr == "" {
			h.CloseAll()
			return nil, fmt.Errorf("wasi: listener %d: neither an address nor a listener", i)
		}
		ol := &osListener{ln: ln, addr: l.Addr, spec: l.Addr, guard: l.Guard}
		if l.Shared {
			ol.lc.Control = reuseAddrPort
		}
		if ln == nil {
			var err error
			if ln, err = ol.listen(); err != nil {
				h.CloseAll()
				return nil, fmt.Errorf("wasi: listener %d: %w", i, err)
			}
			// Again at the port it got, if the address let the kernel pick.
			ol.ln, ol.addr = ln, ln.Addr().String()
		} else {
			ol.addr = ln.Addr().String()
		}
		h.res[hd] = ol
		h.listeners = append(h.listeners, ol)
		go h.acceptLoop(ol, ln)
	}
	// Handles the Host chooses start well above the startup ones, so that
	// a descriptor number mistaken for a handle is caught.
	h.next = 1 << 20
	return h, nil
}

// listen opens a listening socket at l's address, with l's options, and
// checks it with l's guard.
func (l *osListener) listen() (net.Listener, error) {
	ln, err := l.lc.Listen(context.Background(), "tcp", l.addr)
	if err == nil && l.guard != nil {
		if err = l.guard(ln); err != nil {
			ln.Close()
		}
	}
	return ln, err
}

// Unlisten closes the listening sockets of the Config's listeners, so that
// another process may take their addresses (a switchover's new primary),
// while the guest keeps its descriptors and its connections: a guest
// accepting meanwhile finds no connection waiting. Connections accepted
// ahead that the guest has not taken are closed: it never saw them.
// Relisten opens the sockets again.
func (h *OSHost) Unlisten() {
	var closers []io.Closer
	h.mu.Lock()
	for _, l := range h.listeners {
		if l == nil || l.closed || l.off {
			continue
		}
		l.off = true
		closers = append(closers, l.ln)
		for _, c := range l.queue {
			closers = append(closers, c)
		}
		l.queue = nil
	}
	h.broadcastLocked()
	h.mu.Unlock()
	for _, c := range closers {
		c.Close()
	}
}

// Relisten opens again the listening sockets Unlisten closed, at the
// same addresses and with the same options (and guards).
func (h *OSHost) Relisten() error {
	var errs []error
	for i, l := range h.listeners {
		h.mu.Lock()
		off := l != nil && l.off && !l.closed
		h.mu.Unlock()
		if !off {
			continue
		}
		ln, err := l.listen()
		if err != nil {
			errs = append(errs, fmt.Errorf("wasi: listener %d: %w", i, err))
			continue
		}
		h.mu.Lock()
		if l.closed {
			h.mu.Unlock()
			ln.Close()
			continue
		}
		l.ln, l.off = ln, false
		h.mu.Unlock()
		go h.acceptLoop(l, ln)
	}
	return errors.Join(errs...)
}

// reuseAddrPort sets SO_REUSEADDR and SO_REUSEPORT on a socket before it
// is bound (a net.ListenConfig.Control function).
func reuseAddrPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setsockopt: %w", serr)
	}
	return nil
}

// ListenerAddr returns the address listener i of the Config listens on
// (false for a listener an adopting host did not open, the guest having
// closed it).
func (h *OSHost) ListenerAddr(i int) (net.Addr, bool) {
	if i < 0 || i >= len(h.listeners) || h.listeners[i] == nil {
		return nil, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.listeners[i].ln.Addr(), true
}

// CloseAll releases every resource of the Host and stops its goroutines.
// (Close, of Host, releases one handle.)
func (h *OSHost) CloseAll() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	res := h.res
	h.res = map[Handle]any{}
	h.broadcastLocked()
	h.mu.Unlock()
	h.timer.close()
	var errs []error
	handles := make([]Handle, 0, len(res))
	for hd := range res {
		handles = append(handles, hd)
	}
	slices.Sort(handles)
	for _, hd := range handles {
		if err := h.release(res[hd]); err != nil {
			errs = append(errs, err)
		}
	}
	// What the guest wrote leaves before CloseAll returns (the process may
	// exit next), each connection within closeLinger of its release.
	h.senders.Wait()
	return errors.Join(errs...)
}

// broadcastLocked wakes everyone waiting for a change. h.mu is held.
// With nobody waiting (a busy guest) it costs nothing: every read of a
// connection broadcasts.
func (h *OSHost) broadcastLocked() {
	if !h.watched {
		return
	}
	close(h.changed)
	h.changed = make(chan struct{})
	h.watched = false
}

// changesLocked returns the channel the next change closes. h.mu is held.
func (h *OSHost) changesLocked() <-chan struct{} {
	h.watched = true
	return h.changed
}

// wait releases h.mu until a change, a timer or ctx; h.mu is held on
// entry and on return.
func (h *OSHost) wait(ctx context.Context, timer <-chan struct{}) error {
	ch := h.changesLocked()
	h.mu.Unlock()
	defer h.mu.Lock()
	select {
	case <-ch:
		return nil
	case <-timer:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// add registers a new resource and returns its handle. h.mu is held.
func (h *OSHost) add(r any) Handle {
	hd := h.next
	h.next++
	h.res[hd] = r
	return hd
}

// pump reads r into st until it ends, staying at most streamBuffer ahead
// of the guest.
func (h *OSHost) pump(st *stream, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		h.mu.Lock()
		for len(st.buf) >= streamBuffer && !st.closed {
			ch := h.changesLocked()
			h.mu.Unlock()
			<-ch
			h.mu.Lock()
		}
		done := st.closed
		h.mu.Unlock()
		if done {
			return
		}
		n, err := r.Read(buf)
		h.mu.Lock()
		st.buf = append(st.buf, buf[:n]...)
		if err != nil {
			st.err = err
		}
		h.broadcastLocked()
		h.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// acceptLoop accepts connections on l ahead of the guest.
func (h *OSHost) acceptLoop(l *osListener, ln net.Listener) {
	for {
		h.mu.Lock()
		for len(l.queue) >= acceptBacklog && !l.closed && !l.off && l.ln == ln {
			ch := h.changesLocked()
			h.mu.Unlock()
			<-ch
			h.mu.Lock()
		}
		done := l.closed || l.ln != ln || l.off
		h.mu.Unlock()
		if done {
			return
		}
		c, err := ln.Accept()
		h.mu.Lock()
		switch {
		case l.closed || l.off || l.ln != ln:
			// Closed, or Unlisten took the socket away: not an error
			// the guest sees.
			if err == nil {
				c.Close()
			} else {
				err = net.ErrClosed
			}
		case err == nil:
			l.queue = append(l.queue, c)
		default:
			l.err = err
		}
		h.broadcastLocked()
		h.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// release closes one resource; h.mu is not held.
func (h *OSHost) release(r any) error {
	switch r := r.(type) {
	case *stream:
		h.mu.Lock()
		r.closed = true
		h.broadcastLocked()
		h.mu.Unlock()
	case *outStream:
	case *osConn:
		h.releaseConn(r)
	case *osListener:
		h.mu.Lock()
		r.closed = true
		queue, ln, off := r.queue, r.ln, r.off
		r.queue = nil
		h.broadcastLocked()
		h.mu.Unlock()
		for _, c := range queue {
			c.Close()
		}
		if off {
			return nil // Unlisten closed it
		}
		return ln.Close()
	case *osFile:
		return h.releaseFile(r)
	case *osDir:
		return errors.Join(r.f.Close(), r.root.Close())
	}
	return nil
}

// ClockResolution implements Host.
func (h *OSHost) ClockResolution(id ClockID) (uint64, Errno) {
	var ts unix.Timespec
	if err := unix.ClockGetres(clockOf(id), &ts); err != nil {
		return 0, errnoOf(err)
	}
	return uint64(ts.Nano()), ESUCCESS
}

func clockOf(id ClockID) int32 {
	switch id {
	case ClockRealtime:
		return unix.CLOCK_REALTIME
	case ClockMonotonic:
		return unix.CLOCK_MONOTONIC
	}
	return unix.CLOCK_PROCESS_CPUTIME_ID
}

// ClockTime implements Host.
func (h *OSHost) ClockTime(id ClockID, precision uint64) (uint64, Errno) {
	if id == ClockRealtime {
		return uint64(time.Now().UnixNano()), ESUCCESS
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(clockOf(id), &ts); err != nil {
		return 0, errnoOf(err)
	}
	if id == ClockMonotonic {
		return uint64(ts.Nano()) + h.monoOffset, ESUCCESS
	}
	return uint64(ts.Nano()) + h.cpuOffset, ESUCCESS
}

// Random implements Host.
func (h *OSHost) Random(n uint32) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("random source: %w", err)
	}
	return b, nil
}

// Read implements Host.
func (h *OSHost) Read(ctx context.Context, hd Handle, n uint32, flags ReadFlags) ([]byte, Errno, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		var st *stream
		switch r := h.res[hd].(type) {
		case *stream:
			st = r
		case *osConn:
			st = r.in
		case nil:
			return nil, EBADF, nil
		default:
			return nil, EBADF, nil
		}
		enough := len(st.buf) > 0
		if flags&ReadWaitAll != 0 && len(st.buf) < int(n) && st.err == nil {
			enough = false
		}
		if enough {
			k := min(int(n), len(st.buf))
			data := append([]byte(nil), st.buf[:k]...)
			if flags&ReadPeek == 0 {
				st.buf = st.buf[k:]
				if len(st.buf) == 0 {
					st.buf = nil // let the array go
				}
				h.broadcastLocked() // room for the pump
			}
			return data, ESUCCESS, nil
		}
		if st.err != nil {
			if errors.Is(st.err, io.EOF) {
				return nil, ESUCCESS, nil
			}
			return nil, errnoOf(st.err), nil
		}
		if st.closed || h.closed {
			return nil, EBADF, nil
		}
		if flags&ReadNonblock != 0 {
			return nil, EAGAIN, nil
		}
		if err := h.wait(ctx, nil); err != nil {
			return nil, 0, err
		}
	}
}

// Accept implements Host.
func (h *OSHost) Accept(ctx context.Context, hd Handle, nonblock bool) (Handle, Errno, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		l, ok := h.res[hd].(*osListener)
		if !ok {
			return 0, EBADF, nil
		}
		if len(l.queue) > 0 {
			c := l.queue[0]
			l.queue = l.queue[1:]
			oc := h.newConn(c)
			if s, ok := c.(Session); ok {
				oc.session = s.SessionID()
			}
			nh := h.add(oc)
			h.broadcastLocked()
			return nh, ESUCCESS, nil
		}
		if l.err != nil {
			return 0, errnoOf(l.err), nil
		}
		if nonblock {
			return 0, EAGAIN, nil
		}
		if err := h.wait(ctx, nil); err != nil {
			return 0, 0, err
		}
	}
}

// Write implements Host. Delivery failures are logged, not returned: the
// guest's result of a write does not depend on delivery.
func (h *OSHost) Write(hd Handle, data []byte) error {
	h.mu.Lock()
	r := h.res[hd]
	h.mu.Unlock()
	switch r := r.(type) {
	case *outStream:
		if _, err := r.w.Write(data); err != nil {
			h.log.Warn("wasi: write failed", "stream", r.name, "err", err)
		}
		return nil
	case *osConn:
		h.writeConn(r, data)
		return nil
	}
	return fmt.Errorf("write to handle %d: not a stream", hd)
}

// Shutdown implements Host.
func (h *OSHost) Shutdown(hd Handle, how uint8) error {
	h.mu.Lock()
	c, ok := h.res[hd].(*osConn)
	h.mu.Unlock()
	if !ok {
		return fmt.Errorf("shutdown of handle %d: not a connection", hd)
	}
	h.shutdown(c, how)
	return nil
}

// Close implements Host.
func (h *OSHost) Close(hd Handle) error {
	h.mu.Lock()
	r, ok := h.res[hd]
	delete(h.res, hd)
	h.mu.Unlock()
	if !ok {
		return fmt.Errorf("close of unknown handle %d", hd)
	}
	if err := h.release(r); err != nil {
		h.log.Debug("wasi: close failed", "handle", hd, "err", err)
	}
	return nil
}
