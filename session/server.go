package session

import (
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"time"
)

const (
	// KeepaliveInterval is how long a side that has sent nothing waits
	// before it sends an Ack (its position again); IdleTimeout how long a
	// side hears nothing before it takes the connection for broken: a
	// frozen host, or a network cut, ends no TCP connection, and the
	// client must go and resume with the survivor.
	KeepaliveInterval = 250 * time.Millisecond
	IdleTimeout       = 2 * time.Second
	// DefaultWindow is the window of a session or client configured with
	// none.
	DefaultWindow = 1 << 20
	// DefaultTimeout is how long a client tries to reach a server that
	// resumes its session, and how long a server keeps a session whose
	// client is gone, unless configured otherwise.
	DefaultTimeout = 30 * time.Second
)

var (
	// ErrExpired is what a host passes to End for a session whose client
	// has been gone longer than its timeout (see Expired).
	ErrExpired = errors.New("session: client gone longer than the session timeout")
	// errReplaced ends an attachment when a later Attach takes over.
	errReplaced = errors.New("session: connection replaced by a newer one")
)

// ServerSession is the server's end of a session, which a host embeds: the
// guest uses Guest(), clients come and go through Attach.
//
// All methods may be called from any goroutine.
type ServerSession struct {
	id     ID
	secret Secret
	window int
	guest  *guestConn

	// ackMu serializes OnClientAck calls, so the host sees offsets in order.
	ackMu sync.Mutex

	mu   sync.Mutex
	cond *sync.Cond

	onAck   func(uint64)
	timeout time.Duration

	// Input, client → guest. The guest has read the bytes before inRead;
	// inBuf holds the ones after it that arrived.
	inRead   uint64
	inBuf    queue
	inClosed bool // the client's Close arrived: the input ends after inBuf
	eofRead  bool // the guest's Read has returned io.EOF
	// maybeEOF: a restored consumed position may count the EOF or not;
	// the client's Close tells which (see takeClose).
	maybeEOF bool
	safe     uint64 // input position the host declared safe (SafeInput)

	// Output, guest → client: out holds the bytes from outStart the client
	// has not acknowledged.
	outStart   uint64
	out        queue
	outClosed  bool // the guest closed its output
	closeAcked bool // and the client acknowledged the Close
	acked      uint64

	att        *attachment // the client's connection; nil while it is gone
	opened     bool        // an Open was served, or the session was restored
	detachedAt time.Time
	ended      bool
	endErr     error // nil for a normal end
	quiet      bool  // no keepalives (SetQuiet)
	done       chan struct{}
}

// attachment is one connection of a session, at either end.
type attachment struct {
	c net.Conn
	// addr is the server's address as Resolve gave it (at the client).
	addr      string
	lastWrite time.Time
	lastRead  time.Time // when a frame last came (at the client)
	err       error     // why it ended; nil while it serves
	sendPos   uint64    // the offset of the data to send from (output, or input at the client)
	// closeSent: the data's Close went out on this connection.
	closeSent bool
	// ackQueued and ackWritten are the acknowledgment of the peer's data
	// queued and written on this connection.
	ackQueued, ackWritten uint64
}

// writeLoop sends on a what work appends to its buffer (with mu held),
// and a keepalive when a has been silent for KeepaliveInterval unless
// quiet (with mu held; nil: never), until done (with mu held) says all is
// written, or a fails (its err: fail records a write's failure as a's).
// cond signals new work; wrote, if not nil, runs with mu held after each
// write.
func writeLoop(mu *sync.Mutex, cond *sync.Cond, a *attachment, done, quiet func() bool, work func([]byte) []byte,
	fail func(error), wrote func()) error {
	var buf []byte
	for {
		mu.Lock()
		for {
			if done() {
				mu.Unlock()
				return nil
			}
			if a.err != nil {
				mu.Unlock()
				return a.err
			}
			buf = work(buf[:0])
			if len(buf) == 0 && time.Since(a.lastWrite) >= KeepaliveInterval && (quiet == nil || !quiet()) {
				buf, _ = AppendFrame(buf, &Frame{Type: FrameAck, Offset: a.ackQueued})
			}
			if len(buf) > 0 {
				break
			}
			cond.Wait()
		}
		ack := a.ackQueued
		mu.Unlock()
		if _, err := a.c.Write(buf); err != nil {
			fail(fmt.Errorf("writing to %s: %w", a.c.RemoteAddr(), err))
			continue
		}
		mu.Lock()
		a.lastWrite = time.Now()
		a.ackWritten = ack
		if wrote != nil {
			wrote()
		}
		mu.Unlock()
	}
}

// keepalive wakes a writer waiting on cond every KeepaliveInterval, so
// that it sends a keepalive, until over (called with mu held) says the
// connection is done.
func keepalive(mu *sync.Mutex, cond *sync.Cond, over func() bool) {
	t := time.NewTicker(KeepaliveInterval)
	defer t.Stop()
	for range t.C {
		mu.Lock()
		done := over()
		cond.Broadcast()
		mu.Unlock()
		if done {
			return
		}
	}
}

// readFrame reads the next frame of a connection that must not stay
// silent longer than IdleTimeout.
func readFrame(c net.Conn, d *Decoder) (Frame, error) {
	c.SetReadDeadline(time.Now().Add(IdleTimeout))
	return d.Decode()
}

func clampWindow(w int) int {
	if w <= 0 {
		return DefaultWindow
	}
	return int(min(int64(w), math.MaxUint32))
}

// NewServerSession returns a fresh session, for a client's Open. A window
// of 0 or less means DefaultWindow. The window bounds both the output
// retained for the client and the input buffered for the guest.
func NewServerSession(id ID, secret Secret, window int) *ServerSession {
	s := &ServerSession{
		id:         id,
		secret:     secret,
		window:     clampWindow(window),
		timeout:    DefaultTimeout,
		detachedAt: time.Now(),
		done:       make(chan struct{}),
	}
	s.cond = sync.NewCond(&s.mu)
	s.guest = &guestConn{s: s}
	return s
}

// RestoreServerSession recreates a session on a host that takes over from
// a failed one, from what the backup knows: consumed is the input position
// the guest had read to (State.Consumed: the guest's io.EOF counts as one
// position), retained the output from byte offset outStart on that the
// client may not have (regenerated by replay), and outClosed whether the
// guest had closed its output. Everything the guest consumed is taken as
// safe. The client resumes it with Attach.
func RestoreServerSession(id ID, secret Secret, window int, consumed uint64, outStart uint64, retained []byte, outClosed bool) *ServerSession {
	s := NewServerSession(id, secret, window)
	s.inRead = consumed
	s.maybeEOF = consumed > 0
	s.safe = consumed
	s.outStart = outStart
	s.acked = outStart
	s.out.push(retained)
	s.outClosed = outClosed
	s.opened = true
	return s
}

// ID returns the session's ID.
func (s *ServerSession) ID() ID { return s.id }

// Secret returns the session's secret, for ResumeRequest.Verify.
func (s *ServerSession) Secret() Secret { return s.secret }

// Window returns the session's window.
func (s *ServerSession) Window() int { return s.window }

// Guest returns the guest's end of the session (always the same one).
//
// Read returns the client's input in order, blocking until some arrives,
// and io.EOF after the client's Close. Write queues output for the client;
// it blocks while the session's window of output is unacknowledged by the
// client, so what the session retains is bounded. Close half-closes the
// output, as does CloseWrite (the conn has that method too): the client
// reads io.EOF after the last byte. Read still works after it, so the
// guest can drain its input.
//
// Deadlines are supported: a Read or Write past its deadline fails with
// os.ErrDeadlineExceeded (a net.Error whose Timeout is true). A Write that
// fails may have queued part of its bytes, as its count says.
//
// Once the session ended by End(err), Read and Write return err; after a
// normal end, Read returns io.EOF.
func (s *ServerSession) Guest() net.Conn { return s.guest }

// OnClientAck sets f to be called, with increasing offsets, when the client
// acknowledges output: it has every byte before offset (and the output's
// Close if offset is one past the last byte). The host forwards it to the
// backup, which may then drop that output. f must not block for long: the
// session's reading of its client waits for it.
func (s *ServerSession) OnClientAck(f func(offset uint64)) {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	s.onAck = f
}

// SafeInput tells the session that input before offset is safe: the host
// has logged the guest's reads of it and the backup has acknowledged the
// log. The session acknowledges it to the client, which may then drop it.
// Input is never acknowledged otherwise. Offsets are positions as in
// State.Consumed: once the guest's io.EOF is logged, SafeInput(Consumed)
// acknowledges the client's Close. An offset beyond Consumed is taken as
// Consumed.
func (s *ServerSession) SafeInput(offset uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	offset = min(offset, s.consumedPos())
	if offset > s.safe {
		s.safe = offset
		s.cond.Broadcast()
	}
}

// SetQuiet makes the session send no keepalives while q holds (its data
// still flows): a host that cannot serve the guest for now (its backup
// silent, its claim of the next generation unanswered) stays quiet, so
// that its clients, hearing nothing for IdleTimeout, look for the guest
// elsewhere (the survivor, if there is one) rather than wait on it.
func (s *ServerSession) SetQuiet(q bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quiet = q
	s.cond.Broadcast()
}

// SetTimeout sets how long the client may be gone before Expired reports
// true (DefaultTimeout until set).
func (s *ServerSession) SetTimeout(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timeout = d
}

// Expired reports whether, at now, the session has had no client
// connection for longer than its timeout. The session does not end by
// itself: a host checks this now and then and calls End(ErrExpired), so
// that ending a session is an event it decides on, and can log, like any
// other.
func (s *ServerSession) Expired(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended && s.att == nil && s.timeout > 0 && now.Sub(s.detachedAt) > s.timeout
}

// End ends the session: its client connection is closed and no other is
// attached, the guest's Read and Write fail with err, and Done is closed.
// End(nil) ends it as if normally (the guest's Read returns io.EOF).
func (s *ServerSession) End(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.end(err)
}

// Done is closed when the session has ended: normally, once both sides
// closed and everything was acknowledged, or by End.
func (s *ServerSession) Done() <-chan struct{} { return s.done }

// Err returns why the session ended: nil while it runs or if it ended
// normally.
func (s *ServerSession) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endErr
}

// State is a snapshot of a session.
type State struct {
	ID ID
	// Consumed is the input position the guest has read to: its bytes,
	// plus one once its Read returned io.EOF.
	Consumed uint64
	// Received is the input position that arrived from the client (plus
	// one for its Close); Safe what the host declared safe.
	Received, Safe uint64
	// OutStart is the byte offset of Retained, the output the client has
	// not acknowledged; Produced the bytes the guest wrote in all.
	OutStart uint64
	Retained []byte
	Produced uint64
	// InClosed: the client closed its input. EOFRead: the guest's Read
	// returned io.EOF. OutClosed: the guest closed its output.
	// OutCloseAcked: the client acknowledged that Close.
	InClosed, EOFRead, OutClosed, OutCloseAcked bool
	// Attached: a client connection is attached. Ended: the session ended.
	Attached, Ended bool
}

// State returns a snapshot of the session; Retained is a copy.
func (s *ServerSession) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return State{
		ID:            s.id,
		Consumed:      s.consumedPos(),
		Received:      s.inPos(),
		Safe:          s.safe,
		OutStart:      s.outStart,
		Retained:      append([]byte(nil), s.out.bytes()...),
		Produced:      s.produced(),
		InClosed:      s.inClosed,
		EOFRead:       s.eofRead,
		OutClosed:     s.outClosed,
		OutCloseAcked: s.closeAcked,
		Attached:      s.att != nil,
		Ended:         s.ended,
	}
}

// The helpers below are called with s.mu held.

func (s *ServerSession) inEnd() uint64    { return s.inRead + uint64(s.inBuf.len()) }
func (s *ServerSession) produced() uint64 { return s.outStart + uint64(s.out.len()) }

func (s *ServerSession) consumedPos() uint64 {
	if s.eofRead {
		return s.inRead + 1
	}
	return s.inRead
}

// inPos is the input position received: bytes, plus one for the Close.
func (s *ServerSession) inPos() uint64 {
	if s.inClosed {
		return s.inEnd() + 1
	}
	return s.inEnd()
}

// outPos is the highest output position a client can have.
func (s *ServerSession) outPos() uint64 {
	if s.outClosed {
		return s.produced() + 1
	}
	return s.produced()
}

func (s *ServerSession) end(err error) {
	if s.ended {
		return
	}
	s.ended = true
	s.endErr = err
	if s.att != nil && s.att.err == nil {
		s.att.err = err
	}
	s.guest.rdl.stop()
	s.guest.wdl.stop()
	close(s.done)
	s.cond.Broadcast()
	// Last: a client that sees its connection closed (the server's
	// confirmation of a normal end) finds the session over here.
	if s.att != nil {
		s.att.c.Close()
	}
}

// checkDone ends the session normally once both sides closed, everything
// is acknowledged, and the client was told its Close is safe.
func (s *ServerSession) checkDone() {
	if s.ended || s.att == nil {
		return
	}
	end := s.inEnd() + 1
	if s.inClosed && s.eofRead && s.safe >= end && s.att.ackWritten >= end && s.outClosed && s.closeAcked {
		s.end(nil)
	}
}
