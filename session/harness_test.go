package session

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hang bounds every wait of the tests: only a hung test reaches it.
const hang = 60 * time.Second

var errCrashed = errors.New("test: the host crashed")

// errDeadline is the error of a Read or Write past its deadline.
var errDeadline = os.ErrDeadlineExceeded

// backupState is what a backup host knows of a session: the input position
// the guest's logged reads reached and the output they made it produce
// (as replay would regenerate it), from the client's last acknowledgment
// on. It stands in for replaying the log.
type backupState struct {
	id        ID
	secret    Secret
	consumed  uint64
	outStart  uint64
	retained  []byte
	outClosed bool
}

// cluster is a VM served by one fake host at a time; replace crashes the
// current one and starts a survivor from the backup's state.
type cluster struct {
	t       *testing.T
	window  int
	timeout time.Duration // session expiry at the hosts
	// guest runs a session's guest on a host; nil means echo.
	guest func(h *fakeHost, hs *hostSession)

	mu      sync.Mutex // guards what follows and the backup states
	cur     *fakeHost
	backups map[ID]*backupState
	hosts   int
	opened  []ID
	ended   map[ID]bool // sessions that ended normally, on any host
}

func newCluster(t *testing.T, window int) *cluster {
	cl := &cluster{t: t, window: window, timeout: DefaultTimeout, backups: map[ID]*backupState{}, ended: map[ID]bool{}}
	cl.cur = cl.startHost()
	t.Cleanup(func() { cl.current().crash() })
	return cl
}

func (cl *cluster) current() *fakeHost {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.cur
}

// resolve returns the current host's address, and an error while it is
// down: its port may already serve someone else.
func (cl *cluster) resolve(ctx context.Context) (string, error) {
	h := cl.current()
	if h.dead.Load() {
		return "", errors.New("test: no live host")
	}
	return h.addr, nil
}

func (cl *cluster) config() Config {
	return Config{Resolve: cl.resolve, Timeout: hang / 2}
}

func (cl *cluster) dial(cfg Config) *ClientConn {
	cl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		cl.t.Fatal(err)
	}
	cc := c.(*ClientConn)
	// A client left reconnecting could reach another test's listener on
	// its host's old port.
	cl.t.Cleanup(func() {
		cc.abort()
		<-cc.done
	})
	return cc
}

// replace crashes the current host and starts a survivor whose sessions
// are restored from the backup's state.
func (cl *cluster) replace() *fakeHost {
	cl.current().crash()
	h := cl.startHost()
	type restore struct {
		s *ServerSession
		b *backupState
	}
	var rs []restore
	cl.mu.Lock()
	for _, b := range cl.backups {
		s := RestoreServerSession(b.id, b.secret, cl.window, b.consumed, b.outStart, append([]byte(nil), b.retained...), b.outClosed)
		rs = append(rs, restore{s, b})
	}
	cl.mu.Unlock()
	for _, r := range rs {
		// An echo guest that closed its output has nothing left to do.
		h.add(r.s, r.b, !r.b.outClosed)
	}
	cl.mu.Lock()
	cl.cur = h
	cl.hosts++
	cl.mu.Unlock()
	return h
}

// fakeHost is a server host: it accepts sessions, runs a guest for each,
// logs the guests' reads to the cluster's backup, and can crash.
type fakeHost struct {
	cl   *cluster
	ln   net.Listener
	addr string
	dead atomic.Bool

	mu       sync.Mutex
	sessions map[ID]*hostSession
	conns    map[net.Conn]bool
	wg       sync.WaitGroup
	stop     chan struct{}
}

type hostSession struct {
	s        *ServerSession
	b        *backupState
	guestEnd chan struct{} // closed when the guest returned
	guestErr error         // what it returned with
}

func (cl *cluster) startHost() *fakeHost {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cl.t.Fatal(err)
	}
	h := &fakeHost{cl: cl, ln: ln, addr: ln.Addr().String(), sessions: map[ID]*hostSession{}, conns: map[net.Conn]bool{}, stop: make(chan struct{})}
	h.wg.Go(h.acceptLoop)
	h.wg.Go(h.expireLoop)
	return h
}

func (h *fakeHost) session(id ID) *hostSession {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sessions[id]
}

func (h *fakeHost) acceptLoop() {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		if h.dead.Load() {
			c.Close()
		} else {
			h.conns[c] = true
			h.wg.Go(func() { h.serve(c) })
		}
		h.mu.Unlock()
	}
}

func (h *fakeHost) serve(c net.Conn) {
	defer func() {
		h.mu.Lock()
		delete(h.conns, c)
		h.mu.Unlock()
		c.Close()
	}()
	req, err := Accept(c)
	if err != nil {
		return
	}
	if req.Open != nil {
		s := NewServerSession(NewID(), NewSecret(), h.cl.window)
		b := &backupState{id: s.ID(), secret: s.Secret()}
		h.cl.mu.Lock()
		h.cl.backups[s.ID()] = b
		h.cl.opened = append(h.cl.opened, s.ID())
		h.cl.mu.Unlock()
		if !h.add(s, b, true) {
			return
		}
		s.Attach(c, req)
		return
	}
	hs := h.session(req.Resume.ID)
	switch {
	case hs == nil:
		Refuse(c, "unknown session")
	case !req.Resume.Verify(hs.s.Secret()):
		Refuse(c, "bad proof")
	default:
		hs.s.Attach(c, req)
	}
}

// add registers a session and starts its guest (if runGuest), unless the
// host is dead.
func (h *fakeHost) add(s *ServerSession, b *backupState, runGuest bool) bool {
	s.SetTimeout(h.cl.timeout)
	s.OnClientAck(func(off uint64) { h.forwardAck(b, off) })
	hs := &hostSession{s: s, b: b, guestEnd: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dead.Load() {
		s.End(errCrashed)
		return false
	}
	h.sessions[s.ID()] = hs
	guest := h.cl.guest
	if guest == nil {
		guest = echo
	}
	h.wg.Go(func() {
		defer close(hs.guestEnd)
		if runGuest {
			guest(h, hs)
		}
	})
	h.wg.Go(func() {
		<-s.Done()
		if s.Err() == nil {
			// Ended normally: the backup forgets it too.
			h.cl.mu.Lock()
			delete(h.cl.backups, s.ID())
			h.cl.ended[s.ID()] = true
			h.cl.mu.Unlock()
		}
	})
	return true
}

// forwardAck passes a client's acknowledgment to the backup, which drops
// the output before it.
func (h *fakeHost) forwardAck(b *backupState, off uint64) {
	h.cl.mu.Lock()
	defer h.cl.mu.Unlock()
	if h.dead.Load() {
		return
	}
	if end := b.outStart + uint64(len(b.retained)); off > end {
		off = end
	}
	if off > b.outStart {
		b.retained = b.retained[off-b.outStart:]
		b.outStart = off
	}
}

// logRead logs a guest's read (bytes or EOF) and the output it makes the
// guest produce, then tells the session the input is safe. It reports
// false if the host died first: the read was never logged.
func (h *fakeHost) logRead(hs *hostSession, n int, eof bool, out []byte, closeOut bool) bool {
	h.cl.mu.Lock()
	if h.dead.Load() {
		h.cl.mu.Unlock()
		return false
	}
	b := hs.b
	b.consumed += uint64(n)
	if eof {
		b.consumed++
	}
	b.retained = append(b.retained, out...)
	b.outClosed = b.outClosed || closeOut
	safe := b.consumed
	h.cl.mu.Unlock()
	if st := hs.s.State(); st.Consumed != safe {
		h.cl.t.Errorf("backup logged input to %d, the guest consumed %d", safe, st.Consumed)
	}
	hs.s.SafeInput(safe)
	return true
}

// echo is the default guest: it returns its input transformed (every byte
// xor 0x5a) and closes its output at the input's end. It writes output
// only after the read it comes from is logged (output commit).
func echo(h *fakeHost, hs *hostSession) {
	g := hs.s.Guest()
	buf := make([]byte, 32<<10)
	for {
		n, err := g.Read(buf)
		eof := err == io.EOF
		if err != nil && !eof {
			hs.guestErr = err
			return
		}
		out := buf[:n]
		for i := range out {
			out[i] ^= 0x5a
		}
		if !h.logRead(hs, n, eof, out, eof) {
			hs.guestErr = errCrashed
			return
		}
		if _, err := g.Write(out); err != nil {
			hs.guestErr = err
			return
		}
		if eof {
			g.Close()
			return
		}
	}
}

func (h *fakeHost) expireLoop() {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case now := <-t.C:
			var expired []ID
			h.mu.Lock()
			for id, hs := range h.sessions {
				if hs.s.Expired(now) {
					hs.s.End(ErrExpired)
					expired = append(expired, id)
				}
			}
			h.mu.Unlock()
			h.cl.mu.Lock()
			for _, id := range expired {
				delete(h.cl.backups, id)
			}
			h.cl.mu.Unlock()
		}
	}
}

// crash stops the host abruptly: listener and connections closed (with a
// reset), sessions ended, nothing more logged. It waits for every
// goroutine of the host.
func (h *fakeHost) crash() {
	h.cl.mu.Lock()
	already := h.dead.Swap(true)
	h.cl.mu.Unlock()
	if already {
		return
	}
	h.ln.Close()
	close(h.stop)
	h.mu.Lock()
	for c := range h.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
	for _, hs := range h.sessions {
		hs.s.End(errCrashed)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// waitFor polls cond until it holds; only a hung test fails it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// await waits for ch to close; only a hung test fails it.
func await(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(hang):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// endedNormally reports whether session id ended normally on some host.
func (cl *cluster) endedNormally(id ID) bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.ended[id]
}
