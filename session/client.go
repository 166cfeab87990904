package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// ErrRefused is matched (errors.Is) by the error of a session a server
// refused; the error says why.
var ErrRefused = errors.New("session: refused")

// errServerClosed is a connection's clean end, which the server makes
// when the session ends (or its host goes down).
var errServerClosed = errors.New("the server closed the connection")

// ReasonUnknownSession is the refusal of a Resume for a session the server
// does not have: it ended, or never reached the server. A client that has
// neither output nor acknowledged input of the session opens it again
// instead (see connect).
const ReasonUnknownSession = "unknown session"

// refusedErr is the error of a refused Open or Resume.
type refusedErr struct{ reason string }

func (e *refusedErr) Error() string        { return "session: refused by the server: " + e.reason }
func (e *refusedErr) Is(target error) bool { return target == ErrRefused }

func refusedError(reason string) error { return &refusedErr{reason} }

// Refusal returns an error matching ErrRefused: a Config.Resolve that
// returns one ends the session's attempt at once (the VM was stopped, say),
// where other errors are retried.
func Refusal(reason string) error { return refusedError(reason) }

// unknownSession reports whether err is the refusal of an unknown session.
func unknownSession(err error) bool {
	var r *refusedErr
	return errors.As(err, &r) && r.reason == ReasonUnknownSession
}

// fatal reports whether err ends a session rather than just a connection.
func fatal(err error) bool { return errors.Is(err, ErrRefused) || errors.Is(err, ErrProtocol) }

// Reconnection backoff. Its cap bounds what it adds to a failover's stall
// (the server comes back at an unknown moment); an attempt costs a resolve
// and a TCP connect, which a client can afford 20 times a second.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = 50 * time.Millisecond
)

// Dialer dials the connections a client carries its session over;
// *net.Dialer is one.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Config configures the client side of a session.
type Config struct {
	// Resolve returns where the VM's primary accepts sessions now (a TCP
	// address). It is called again before every reconnection. Its errors
	// are retried, but for one that matches ErrRefused (see Refusal).
	Resolve func(ctx context.Context) (addr string, err error)
	// Target is the guest listener the session is for ("" for the VM's
	// only listener).
	Target string
	// Timeout is how long to keep trying to reach a server that opens or
	// resumes the session before giving up; 0 means DefaultTimeout.
	Timeout time.Duration
	// Window is how many bytes of input the client keeps unacknowledged
	// before Write blocks; 0 means DefaultWindow.
	Window int
	// Dialer dials the connections; nil means a net.Dialer.
	Dialer Dialer
	// Logger, if set, hears how the session goes: opened, its connection
	// lost, resumed (and where, after how long), ended with an error.
	Logger *slog.Logger
}

// ClientConn is the client's end of a session: one connection to the
// guest that outlives the connections to servers it runs over. Dial
// returns one.
//
// Write keeps input until the server acknowledges it, blocking while
// Config.Window bytes are unacknowledged. Read returns output in order.
// When a connection fails, the ClientConn re-resolves, redials with
// backoff and resumes; the application sees nothing of it unless no server
// resumes the session within Config.Timeout, or one refuses it: then Read
// (after the output that arrived) and Write fail with an error saying why.
// Deadlines are supported, as for a net.Conn.
type ClientConn struct {
	cfg    Config
	id     ID
	secret Secret
	cancel context.CancelFunc // of the background goroutine's context
	done   chan struct{}      // closed when it has ended

	mu   sync.Mutex
	cond *sync.Cond

	window uint64 // the server's: input it takes beyond its ack

	// Input, application → server: in holds the bytes from inBase on
	// that the server has not acknowledged.
	in           queue
	inBase       uint64
	inClosed     bool // CloseWrite: the input ends after in
	inCloseAcked bool // and the server acknowledged the Close

	// Output, server → application: out holds the bytes from readPos on
	// that arrived but were not read.
	out       queue
	readPos   uint64
	outClosed bool // the server's Close arrived: the output ends after out
	eofRead   bool // Read returned io.EOF
	discard   bool // closed: output is dropped, and acknowledged, on arrival

	closed   bool  // Close was called
	finished bool  // the session is over
	err      error // why, if not normally
	linger   *time.Timer
	att      *attachment
	rdl, wdl deadline
}

// Dial opens a session with the guest at cfg.Target. It tries servers
// (from cfg.Resolve) until one opens it, for at most cfg.Timeout and while
// ctx lasts; a Refuse ends the attempt at once. ctx bounds only the
// opening: once Dial returns, the session runs until closed. The result
// is a *ClientConn.
func Dial(ctx context.Context, cfg Config) (net.Conn, error) {
	if cfg.Resolve == nil {
		return nil, errors.New("session: dial: Config.Resolve is nil")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Dialer == nil {
		cfg.Dialer = &net.Dialer{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &ClientConn{cfg: cfg, done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	a, d, err := c.connect(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("session: dial %q: %w", cfg.Target, err)
	}
	c.cfg.Logger.Debug("session opened", "session", c.id.String(), "server", a.c.RemoteAddr().String())
	bg, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go c.run(bg, a, d)
	return c, nil
}

// Done is closed once the session has ended (over, failed, or given up
// by Close), when nothing more goes to any server and Resolve is not
// called again.
func (c *ClientConn) Done() <-chan struct{} { return c.done }

// ID returns the session's ID.
func (c *ClientConn) ID() ID {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// Read reads output. After the last byte it returns io.EOF; if the session
// ended otherwise, the error saying why.
func (c *ClientConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		switch {
		case c.closed:
			return 0, net.ErrClosed
		case c.out.len() > 0:
			n := copy(p, c.out.bytes())
			c.out.drop(n)
			c.readPos += uint64(n)
			c.cond.Broadcast() // maybe time to acknowledge
			return n, nil
		case c.outClosed:
			if !c.eofRead {
				c.eofRead = true
				c.cond.Broadcast()
			}
			return 0, io.EOF
		case c.finished:
			return 0, c.endErr()
		case c.rdl.exceeded():
			return 0, os.ErrDeadlineExceeded
		case len(p) == 0:
			return 0, nil
		}
		c.cond.Wait()
	}
}

func (c *ClientConn) endErr() error {
	if c.err != nil {
		return c.err
	}
	return net.ErrClosed
}

// Write queues input for the guest; see ClientConn.
func (c *ClientConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for len(p) > 0 {
		switch {
		case c.closed:
			return n, net.ErrClosed
		case c.inClosed:
			return n, errWriteClosed
		case c.finished:
			return n, c.endErr()
		case c.wdl.exceeded():
			return n, os.ErrDeadlineExceeded
		}
		room := c.cfg.Window - c.in.len()
		if room <= 0 {
			c.cond.Wait()
			continue
		}
		k := min(room, len(p))
		c.in.push(p[:k])
		p = p[k:]
		n += k
		c.cond.Broadcast()
	}
	return n, nil
}

// CloseWrite half-closes the input: the guest reads io.EOF after the last
// byte written. Output can still be read.
func (c *ClientConn) CloseWrite() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	if !c.inClosed {
		c.inClosed = true
		c.cond.Broadcast()
	}
	return nil
}

// Close ends the session: Read and Write fail with net.ErrClosed from
// now on. Input written before is still delivered: the ClientConn closes
// the input after it, and drops (and acknowledges) further output. Unlike
// a TCP socket's, whose kernel goes on delivering after the process exits,
// a session's delivery is this process's, so Close waits for it,
// reconnecting if need be, for at most Config.Timeout: it returns once
// the session is over, or once the server acknowledged all the input and
// its end and the guest has not closed its side within closeGrace (the
// session's end then lingers in the background; should the process exit,
// the server ends the session after its timeout, and the guest sees its
// connection reset). A program may exit once Close returned. It returns an
// error if the input could not all be delivered (the session was refused,
// or no server was reached in time).
func (c *ClientConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.inClosed = true
	c.discard = true
	c.readPos = c.outEnd()
	c.out = queue{}
	if !c.finished {
		c.linger = time.AfterFunc(c.cfg.Timeout, c.cancel)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	var acked time.Time
	for {
		select {
		case <-c.done:
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.inCloseAcked {
				return nil // all delivered: how the rest ended is the guest's
			}
			return c.err
		case now := <-t.C:
			c.mu.Lock()
			in := c.inCloseAcked
			c.mu.Unlock()
			switch {
			case !in:
			case acked.IsZero():
				acked = now
			case now.Sub(acked) >= closeGrace:
				return nil
			}
		}
	}
}

// closeGrace is how long Close waits, once the server has all the input,
// for the guest to close its side and so end the session.
const closeGrace = time.Second

// abort ends the session at once, dropping what is not delivered yet.
func (c *ClientConn) abort() {
	c.cancel()
	c.Close()
}

// LocalAddr returns the session's Addr.
func (c *ClientConn) LocalAddr() net.Addr { return Addr{c.id} }

// RemoteAddr returns the session's Addr.
func (c *ClientConn) RemoteAddr() net.Addr { return Addr{c.id} }

// SetDeadline sets the read and write deadlines.
func (c *ClientConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl.set(t, &c.mu, c.cond)
	c.wdl.set(t, &c.mu, c.cond)
	return nil
}

// SetReadDeadline sets the read deadline.
func (c *ClientConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rdl.set(t, &c.mu, c.cond)
	return nil
}

// SetWriteDeadline sets the write deadline.
func (c *ClientConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wdl.set(t, &c.mu, c.cond)
	return nil
}
