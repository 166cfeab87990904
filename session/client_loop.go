package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// The helpers below are called with c.mu held.

func (c *ClientConn) inEnd() uint64 { return c.inBase + uint64(c.in.len()) }

// inPos is the input position: bytes, plus one for the Close.
func (c *ClientConn) inPos() uint64 {
	if c.inClosed {
		return c.inEnd() + 1
	}
	return c.inEnd()
}

func (c *ClientConn) outEnd() uint64 { return c.readPos + uint64(c.out.len()) }

// outPos is the output position to resume from: the bytes received, plus
// one for the Close once the application consumed it, which makes it an
// acknowledgment of the whole output (the server may end the session).
func (c *ClientConn) outPos() uint64 {
	if c.outClosed && (c.eofRead || c.discard) {
		return c.outEnd() + 1
	}
	return c.outEnd()
}

// ackPos is the output position to acknowledge: what the application
// consumed (or, once it closed, everything that arrived).
func (c *ClientConn) ackPos() uint64 {
	if c.outClosed && (c.eofRead || c.discard) {
		return c.outEnd() + 1
	}
	return c.readPos
}

// over reports whether the client has all it needs: both sides closed,
// the server has the input and its Close, and the application consumed
// the output and its Close.
func (c *ClientConn) over() bool {
	return c.inCloseAcked && c.outClosed && (c.eofRead || c.discard)
}

// complete reports whether the session is over for the client and a
// carried the last acknowledgment to the server.
func (c *ClientConn) complete(a *attachment) bool {
	return c.over() && a.ackWritten == c.outEnd()+1
}

// unseen reports whether nothing of the session is known to have reached
// the guest: no output arrived and no input was acknowledged.
func (c *ClientConn) unseen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readPos == 0 && c.out.len() == 0 && !c.outClosed && c.inBase == 0 && !c.inCloseAcked
}

// run serves the session over a and its successors until it is over.
func (c *ClientConn) run(ctx context.Context, a *attachment, d *Decoder) {
	defer close(c.done)
	retried := false
	for {
		err := c.serve(ctx, a, d)
		if err == nil {
			c.finish(nil)
			return
		}
		c.mu.Lock()
		over := c.over()
		c.mu.Unlock()
		if over {
			// The connection failed before the server confirmed the
			// end by closing it: our last acknowledgment may be lost,
			// and the server would keep the session until it expires.
			// One Resume delivers it; whatever its outcome, the
			// application has everything.
			if retried || ctx.Err() != nil {
				c.finish(nil)
				return
			}
			retried = true
		} else if fatal(err) || ctx.Err() != nil {
			c.finish(err)
			return
		}
		lost := time.Now()
		if !over {
			c.cfg.Logger.Info("session connection lost: resuming", "session", c.id.String(), "err", err)
		}
		if a, d, err = c.connect(ctx, false); err != nil {
			if over {
				err = nil
			}
			c.finish(err)
			return
		}
		if !over {
			c.cfg.Logger.Info("session resumed", "session", c.id.String(), "server", a.c.RemoteAddr().String(),
				"after", time.Since(lost).Round(time.Millisecond).String())
		}
	}
}

func (c *ClientConn) finish(err error) {
	c.cancel()
	if err != nil {
		c.cfg.Logger.Warn("session failed", "session", c.id.String(), "err", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.finished = true
	if c.err == nil && err != nil {
		if c.closed {
			err = fmt.Errorf("session: closed before everything was acknowledged: %w", err)
		}
		c.err = err
	}
	if c.linger != nil {
		c.linger.Stop()
	}
	c.rdl.stop()
	c.wdl.stop()
	c.cond.Broadcast()
}

// serve runs the session over a until it is over (nil) or a fails.
func (c *ClientConn) serve(ctx context.Context, a *attachment, d *Decoder) error {
	c.mu.Lock()
	c.att = a
	c.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		c.fail(a, context.Cause(ctx))
		a.c.Close()
	})
	defer stop()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		c.readLoop(a, d)
	}()
	go keepalive(&c.mu, c.cond, func() bool { return a.err != nil || c.finished || c.complete(a) })
	go c.watch(ctx, a)
	err := c.writeLoop(a)
	if err == nil {
		// Over: the server closes the connection once it has our last
		// ack. Closing first could make the kernel reset the connection
		// and lose that ack.
		a.c.SetReadDeadline(time.Now().Add(c.cfg.Timeout))
		<-readerDone
		c.mu.Lock()
		if !errors.Is(a.err, errServerClosed) {
			err = a.err
		}
		c.mu.Unlock()
	}
	a.c.Close()
	<-readerDone
	c.mu.Lock()
	c.att = nil
	c.mu.Unlock()
	return err
}

// watch looks for the VM served elsewhere while the server is silent:
// across machines a primary that froze or was cut off closes nothing, and
// its client would wait IdleTimeout, though the survivor is live sooner.
// After twice KeepaliveInterval without a frame it asks Resolve where the
// VM is served, at every interval, and leaves at once for another server.
func (c *ClientConn) watch(ctx context.Context, a *attachment) {
	t := time.NewTicker(KeepaliveInterval)
	defer t.Stop()
	for range t.C {
		c.mu.Lock()
		over := a.err != nil || c.finished || c.complete(a)
		silent := time.Since(a.lastRead)
		c.mu.Unlock()
		if over {
			return
		}
		if silent < 2*KeepaliveInterval {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, KeepaliveInterval)
		addr, err := c.cfg.Resolve(rctx)
		cancel()
		if err != nil || addr == a.addr {
			continue
		}
		c.fail(a, fmt.Errorf("session: %s went silent, and the VM is served at %s now", a.addr, addr))
		a.c.Close()
		return
	}
}

func (c *ClientConn) fail(a *attachment, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a.err == nil {
		a.err = err
	}
	c.cond.Broadcast()
}

func (c *ClientConn) writeLoop(a *attachment) error {
	return writeLoop(&c.mu, c.cond, a,
		func() bool { return c.complete(a) }, nil,
		func(buf []byte) []byte { return c.appendWork(a, buf) },
		func(err error) { c.fail(a, fmt.Errorf("session: %w", err)) },
		nil)
}

// appendWork appends to buf the frames a should send now.
func (c *ClientConn) appendWork(a *attachment, buf []byte) []byte {
	// Acknowledge output as the application consumes it: in batches of a
	// quarter window, or whenever it has caught up.
	if p := c.ackPos(); p > a.ackQueued && (p-a.ackQueued >= max(c.window/4, 1) || c.out.len() == 0) {
		buf, _ = AppendFrame(buf, &Frame{Type: FrameAck, Offset: p})
		a.ackQueued = p
	}
	a.sendPos = max(a.sendPos, c.inBase)
	if end := min(c.inEnd(), c.inBase+c.window); a.sendPos < end {
		n := min(end-a.sendPos, MaxData)
		i := a.sendPos - c.inBase
		buf, _ = AppendFrame(buf, &Frame{Type: FrameData, Offset: a.sendPos, Data: c.in.bytes()[i : i+n]})
		a.sendPos += n
	}
	if c.inClosed && !a.closeSent && a.sendPos == c.inEnd() {
		buf, _ = AppendFrame(buf, &Frame{Type: FrameClose, Offset: a.sendPos})
		a.closeSent = true
	}
	return buf
}

func (c *ClientConn) readLoop(a *attachment, d *Decoder) {
	for {
		f, err := readFrame(a.c, d)
		if err == io.EOF {
			err = errServerClosed
		}
		if err == nil {
			c.mu.Lock()
			a.lastRead = time.Now()
			err = c.take(&f)
			c.cond.Broadcast()
			c.mu.Unlock()
		}
		if err != nil {
			c.fail(a, fmt.Errorf("session: reading from %s: %w", a.c.RemoteAddr(), err))
			return
		}
	}
}

// take applies a frame from the server; c.mu is held.
func (c *ClientConn) take(f *Frame) error {
	switch f.Type {
	case FrameData:
		have := c.outEnd()
		if f.Offset > have {
			return protoErrorf("output gap: Data at offset %d, but the output reached only %d", f.Offset, have)
		}
		end := f.Offset + uint64(len(f.Data))
		if end <= have {
			return nil
		}
		if c.outClosed {
			return protoErrorf("output Data to %d after the server's Close at %d", end, have)
		}
		if c.discard {
			c.readPos = end
		} else {
			c.out.push(f.Data[have-f.Offset:])
		}
	case FrameAck:
		if hi := c.inPos(); f.Offset > hi {
			return protoErrorf("the server acknowledged input to %d, but the client sent only %d", f.Offset, hi)
		}
		if b := min(f.Offset, c.inEnd()); b > c.inBase {
			c.in.drop(int(b - c.inBase))
			c.inBase = b
		}
		if c.inClosed && f.Offset > c.inEnd() {
			c.inCloseAcked = true
		}
	case FrameClose:
		if f.Offset != c.outEnd() {
			return protoErrorf("the server closed its output at %d, but the output reached %d", f.Offset, c.outEnd())
		}
		c.outClosed = true
	case FrameRefuse:
		return refusedError(f.Reason)
	default:
		return protoErrorf("unexpected %v frame from the server", f.Type)
	}
	return nil
}
