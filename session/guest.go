package session

import (
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// errWriteClosed is returned by writes after a half-close.
var errWriteClosed = errors.New("session: write after close")

// guestConn is the guest's end of a session; see ServerSession.Guest.
type guestConn struct {
	s        *ServerSession
	rdl, wdl deadline // guarded by s.mu
}

func (g *guestConn) Read(p []byte) (int, error) {
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		switch {
		case s.ended && s.endErr != nil:
			return 0, s.endErr
		case s.inBuf.len() > 0:
			n := copy(p, s.inBuf.bytes())
			s.inBuf.drop(n)
			s.inRead += uint64(n)
			return n, nil
		case s.inClosed || s.ended:
			if !s.eofRead {
				s.eofRead = true
				s.cond.Broadcast()
			}
			return 0, io.EOF
		case g.rdl.exceeded():
			return 0, os.ErrDeadlineExceeded
		case len(p) == 0:
			return 0, nil
		}
		s.cond.Wait()
	}
}

func (g *guestConn) Write(p []byte) (int, error) {
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for len(p) > 0 {
		switch {
		case s.ended && s.endErr != nil:
			return n, s.endErr
		case s.outClosed || s.ended:
			return n, errWriteClosed
		case g.wdl.exceeded():
			return n, os.ErrDeadlineExceeded
		}
		room := s.window - s.out.len()
		if room <= 0 {
			s.cond.Wait()
			continue
		}
		k := min(room, len(p))
		s.out.push(p[:k])
		p = p[k:]
		n += k
		s.cond.Broadcast()
	}
	return n, nil
}

// Close half-closes the output (see guestConn).
func (g *guestConn) Close() error { return g.CloseWrite() }

// CloseWrite half-closes the output: the client reads io.EOF after the
// last byte written.
func (g *guestConn) CloseWrite() error {
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.outClosed {
		s.outClosed = true
		s.cond.Broadcast()
	}
	return nil
}

func (g *guestConn) LocalAddr() net.Addr  { return Addr{g.s.id} }
func (g *guestConn) RemoteAddr() net.Addr { return Addr{g.s.id} }

func (g *guestConn) SetDeadline(t time.Time) error {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	g.rdl.set(t, &g.s.mu, g.s.cond)
	g.wdl.set(t, &g.s.mu, g.s.cond)
	return nil
}

func (g *guestConn) SetReadDeadline(t time.Time) error {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	g.rdl.set(t, &g.s.mu, g.s.cond)
	return nil
}

func (g *guestConn) SetWriteDeadline(t time.Time) error {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	g.wdl.set(t, &g.s.mu, g.s.cond)
	return nil
}
