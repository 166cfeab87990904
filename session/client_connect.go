package session

import (
	"bufio"
	"context"
	"fmt"
	"time"
)

// connect reaches a server that opens (open) or resumes the session,
// retrying with backoff for cfg.Timeout.
func (c *ClientConn) connect(ctx context.Context, open bool) (*attachment, *Decoder, error) {
	deadline := time.Now().Add(c.cfg.Timeout)
	backoff := minBackoff
	for {
		attempt := time.Now().Add(HandshakeTimeout)
		if deadline.Before(attempt) {
			attempt = deadline
		}
		actx, cancel := context.WithDeadline(ctx, attempt)
		a, d, err := c.handshake(actx, open)
		cancel()
		switch {
		case err == nil:
			return a, d, nil
		case !open && unknownSession(err) && c.unseen():
			// The server that survived never had the session: its Open
			// reached only a server that failed before its backup logged
			// the guest's accept. Nothing of it happened, as far as
			// anyone can tell: open it again, and send all the input.
			open = true
			continue
		case fatal(err):
			return nil, nil, err
		case ctx.Err() != nil:
			return nil, nil, fmt.Errorf("%w (last attempt: %w)", context.Cause(ctx), err)
		case !time.Now().Before(deadline):
			what := "resumed"
			if open {
				what = "opened"
			}
			return nil, nil, fmt.Errorf("session: no server %s the session within %v: %w", what, c.cfg.Timeout, err)
		}
		t := time.NewTimer(min(backoff, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// handshake makes one attempt at reaching a server: resolve, dial, Hello,
// then Open or Resume.
func (c *ClientConn) handshake(ctx context.Context, open bool) (*attachment, *Decoder, error) {
	addr, err := c.cfg.Resolve(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("session: resolving the server: %w", err)
	}
	nc, err := c.cfg.Dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("session: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	a := &attachment{c: nc, addr: addr, lastWrite: time.Now(), lastRead: time.Now()}
	d := NewDecoder(bufio.NewReaderSize(nc, 64<<10))
	err = c.exchange(a, d, open)
	if !stop() && err == nil {
		err = context.Cause(ctx)
	}
	if err == nil {
		err = nc.SetDeadline(time.Time{})
	}
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("session: with %s: %w", addr, err)
	}
	return a, d, nil
}

func (c *ClientConn) exchange(a *attachment, d *Decoder, open bool) error {
	f, err := d.Decode()
	if err != nil {
		return fmt.Errorf("reading Hello: %w", err)
	}
	switch {
	case f.Type == FrameRefuse:
		return refusedError(f.Reason)
	case f.Type != FrameHello:
		return protoErrorf("expected Hello, got %v", f.Type)
	case f.Version != Version:
		return &kindError{ErrRefused, fmt.Sprintf("session: the server speaks protocol version %d, not %d", f.Version, Version)}
	}
	nonce := f.Nonce
	var req Frame
	if open {
		req = Frame{Type: FrameOpen, Target: c.cfg.Target}
	} else {
		c.mu.Lock()
		req = Frame{Type: FrameResume, ID: c.id, Received: c.outPos(), Sent: c.inPos(), Target: c.cfg.Target}
		c.mu.Unlock()
		req.Proof = Proof(c.secret, nonce, c.id, req.Received, req.Sent)
	}
	if err := writeFrame(a.c, &req); err != nil {
		return fmt.Errorf("sending %v: %w", req.Type, err)
	}
	f, err = d.Decode()
	if err != nil {
		return fmt.Errorf("awaiting the answer to %v: %w", req.Type, err)
	}
	switch {
	case f.Type == FrameRefuse:
		return refusedError(f.Reason)
	case open && f.Type == FrameOpened:
		c.mu.Lock()
		defer c.mu.Unlock()
		c.id, c.secret = f.ID, f.Secret
		c.window = uint64(max(f.Window, 1))
		return nil
	case !open && f.Type == FrameResumed:
		c.mu.Lock()
		defer c.mu.Unlock()
		c.window = uint64(max(f.Window, 1))
		if hi := c.inPos(); f.Consumed > hi {
			return protoErrorf("the server has input to %d, but the client sent only %d", f.Consumed, hi)
		}
		if f.Consumed < c.inBase {
			return &kindError{ErrRefused, fmt.Sprintf("session: the server lost input: it wants it from %d, but it acknowledged it to %d", f.Consumed, c.inBase)}
		}
		a.sendPos = min(f.Consumed, c.inBase+uint64(c.in.len()))
		return nil
	}
	return protoErrorf("expected the answer to %v, got %v", req.Type, f.Type)
}
