package session

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Attach serves client connection c, whose first frame Accept read as req:
// after an Open (on a fresh session) it sends Opened; after a Resume it
// checks the proof (which the host should have done, finding the session
// by req.Resume.ID) and the offsets: the client's received must be within
// what the session retains and has produced, its sent at least the input
// the session has. If anything is wrong it refuses c with the reason and
// returns an error, leaving the session as it was. Otherwise it replaces
// (closes) any connection attached before, sends Resumed, and resends
// output from the client's position (a position one past the closed
// output's end acknowledges it all).
//
// Attach returns when the connection ends: nil if the session ended
// normally, else why (the connection failed, the client broke the
// protocol, a later Attach replaced it, End). The session lives on for the
// client to resume, until it ends.
func (s *ServerSession) Attach(c net.Conn, req Request) error {
	a := &attachment{c: c, lastWrite: time.Now()}
	first, reason := s.attach(a, req)
	if reason != "" {
		Refuse(c, reason)
		return fmt.Errorf("session %v: refused %s: %s", s.id, c.RemoteAddr(), reason)
	}
	if req.Resume != nil {
		// A client that resumes from past the output's end has consumed
		// it all: as good as its final Ack, which may have been lost.
		s.mu.Lock()
		whole := s.outClosed && req.Resume.Received == s.outPos()
		s.mu.Unlock()
		if whole {
			s.takeAck(a, req.Resume.Received)
		}
	}
	if err := writeFrame(c, &first); err != nil {
		err = fmt.Errorf("session %v: sending %v: %w", s.id, first.Type, err)
		s.fail(a, err)
		s.detach(a)
		c.Close()
		return err
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s.readLoop(a, NewDecoder(bufio.NewReaderSize(c, 64<<10)))
	}()
	go keepalive(&s.mu, s.cond, func() bool { return a.err != nil || s.ended })
	err := s.writeLoop(a)
	if ke := (*kindError)(nil); errors.As(err, &ke) && ke.kind == ErrProtocol {
		// The reader found it and has stopped reading: tell the client.
		<-readerDone
		Refuse(c, strings.TrimPrefix(ke.msg, "session: "))
	}
	c.Close()
	<-readerDone
	s.detach(a)
	return err
}

// attach installs a as the session's connection for req and returns the
// frame to answer with, or the reason to refuse it.
func (s *ServerSession) attach(a *attachment, req Request) (Frame, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return Frame{}, "session has ended"
	}
	var first Frame
	switch {
	case req.Open != nil:
		if s.opened {
			return Frame{}, "session already opened"
		}
		first = Frame{Type: FrameOpened, ID: s.id, Secret: s.secret, Window: uint32(s.window)}
	case req.Resume != nil:
		r := req.Resume
		if r.ID != s.id {
			return Frame{}, ReasonUnknownSession
		}
		if !r.Verify(s.secret) {
			return Frame{}, "bad proof"
		}
		if r.Received < s.outStart {
			return Frame{}, fmt.Sprintf("offsets out of range: the client has output to %d, but the server retains it only from %d", r.Received, s.outStart)
		}
		if hi := s.outPos(); r.Received > hi {
			return Frame{}, fmt.Sprintf("offsets out of range: the client claims output to %d, but the server produced only %d", r.Received, hi)
		}
		if lo := s.inPos(); r.Sent < lo {
			return Frame{}, fmt.Sprintf("offsets out of range: the client sent input to %d, but the server has it to %d", r.Sent, lo)
		}
		a.sendPos = min(r.Received, s.produced())
		first = Frame{Type: FrameResumed, Consumed: s.inPos(), Window: uint32(s.window)}
	default:
		return Frame{}, "neither Open nor Resume"
	}
	if old := s.att; old != nil {
		if old.err == nil {
			old.err = errReplaced
		}
		old.c.Close()
	}
	s.att = a
	s.opened = true
	s.cond.Broadcast()
	return first, ""
}

func (s *ServerSession) fail(a *attachment, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.err == nil {
		a.err = err
	}
	s.cond.Broadcast()
}

func (s *ServerSession) detach(a *attachment) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.att == a {
		s.att = nil
		s.detachedAt = time.Now()
	}
}

// writeLoop sends output, the output's Close and input acks on a until it
// ends, and returns why.
func (s *ServerSession) writeLoop(a *attachment) error {
	return writeLoop(&s.mu, s.cond, a,
		func() bool { return s.ended && s.endErr == nil },
		func() bool { return s.quiet },
		func(buf []byte) []byte { return s.appendWork(a, buf) },
		func(err error) { s.fail(a, fmt.Errorf("session %v: %w", s.id, err)) },
		s.checkDone)
}

// appendWork appends to buf the frames a should send now.
func (s *ServerSession) appendWork(a *attachment, buf []byte) []byte {
	if s.safe > a.ackQueued {
		buf, _ = AppendFrame(buf, &Frame{Type: FrameAck, Offset: s.safe})
		a.ackQueued = s.safe
	}
	// Output the client acknowledged it has, so never resent.
	a.sendPos = max(a.sendPos, s.outStart)
	if end := s.produced(); a.sendPos < end {
		n := min(end-a.sendPos, MaxData)
		i := a.sendPos - s.outStart
		buf, _ = AppendFrame(buf, &Frame{Type: FrameData, Offset: a.sendPos, Data: s.out.bytes()[i : i+n]})
		a.sendPos += n
	}
	if s.outClosed && !a.closeSent && a.sendPos == s.produced() {
		buf, _ = AppendFrame(buf, &Frame{Type: FrameClose, Offset: a.sendPos})
		a.closeSent = true
	}
	return buf
}

func (s *ServerSession) readLoop(a *attachment, d *Decoder) {
	for {
		f, err := readFrame(a.c, d)
		if err == io.EOF {
			err = errors.New("client closed the connection")
		}
		if err == nil {
			err = s.take(a, &f)
		}
		if err != nil {
			s.fail(a, fmt.Errorf("session %v: reading from %s: %w", s.id, a.c.RemoteAddr(), err))
			return
		}
	}
}

// take applies a frame from the client.
func (s *ServerSession) take(a *attachment, f *Frame) error {
	if f.Type == FrameAck {
		return s.takeAck(a, f.Offset)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.att != a {
		return errReplaced
	}
	switch f.Type {
	case FrameData:
		return s.takeData(f.Offset, f.Data)
	case FrameClose:
		return s.takeClose(f.Offset)
	}
	return protoErrorf("unexpected %v frame from the client", f.Type)
}

func (s *ServerSession) takeData(off uint64, data []byte) error {
	have := s.inEnd()
	if off > have {
		return protoErrorf("input gap: Data at offset %d, but the input reached only %d", off, have)
	}
	end := off + uint64(len(data))
	if end <= have {
		return nil // a resend of what arrived already
	}
	if s.inClosed {
		return protoErrorf("input Data to %d after the client's Close at %d", end, have)
	}
	if limit := s.inRead + uint64(s.window); end > limit {
		return protoErrorf("input to %d exceeds the window: %d bytes beyond the guest's read position %d", end, s.window, s.inRead)
	}
	s.inBuf.push(data[have-off:])
	s.maybeEOF = false
	s.cond.Broadcast()
	return nil
}

func (s *ServerSession) takeClose(off uint64) error {
	have := s.inEnd()
	switch {
	case s.inClosed && off == have:
		return nil // a resend
	case !s.inClosed && off == have:
		s.inClosed = true
	case !s.inClosed && s.maybeEOF && off+1 == have:
		// A restored session whose consumed position counted the
		// guest's EOF: the input ended a byte earlier, and was read.
		s.inRead = off
		s.eofRead = true
		s.inClosed = true
	default:
		return protoErrorf("the client closed its input at %d, but the input reached %d", off, have)
	}
	s.maybeEOF = false
	s.checkDone()
	s.cond.Broadcast()
	return nil
}

func (s *ServerSession) takeAck(a *attachment, off uint64) error {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	s.mu.Lock()
	if s.att != a {
		s.mu.Unlock()
		return errReplaced
	}
	if hi := s.outPos(); off > hi {
		s.mu.Unlock()
		return protoErrorf("the client acknowledged output to %d, but only %d was produced", off, hi)
	}
	if off <= s.acked {
		s.mu.Unlock()
		return nil
	}
	s.acked = off
	if b := min(off, s.produced()); b > s.outStart {
		s.out.drop(int(b - s.outStart))
		s.outStart = b
	}
	if s.outClosed && off > s.produced() {
		s.closeAcked = true
	}
	s.checkDone()
	s.cond.Broadcast()
	f := s.onAck
	s.mu.Unlock()
	if f != nil {
		f(off)
	}
	return nil
}
