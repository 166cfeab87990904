package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
)

// Proxy serves ln for clients that do not speak the protocol: for each
// connection it accepts, it dials a session with cfg and copies bytes both
// ways, passing half-closes on. When the client's side ends, so does the
// session (Close, which still delivers what the client sent); when the
// session ends with an error, the client's connection is closed. A client
// whose session cannot be opened is disconnected.
//
// Proxy returns when ctx is done (nil) or ln fails; either way it closes ln
// and waits for the connections it serves. When ctx is done, their sessions
// are abandoned at once, without delivering what is pending.
func Proxy(ctx context.Context, ln net.Listener, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			ln.Close()
			return fmt.Errorf("session: proxy: %w", err)
		}
		wg.Go(func() { proxyConn(ctx, c, cfg) })
	}
}

type closeWriter interface{ CloseWrite() error }

func proxyConn(ctx context.Context, c net.Conn, cfg Config) {
	defer c.Close()
	s, err := Dial(ctx, cfg)
	if err != nil {
		if ctx.Err() == nil {
			cfg.Logger.Warn("client's connection closed: no session", "client", c.RemoteAddr().String(), "err", err)
		}
		return
	}
	defer s.Close()
	// Closing both ends is how each copy stops the other.
	reset := func() {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // the client sees the session failed
		}
		c.Close()
	}
	abort := func() {
		reset()
		s.Close()
	}
	// The proxy's end ends its sessions at once, without lingering.
	stop := context.AfterFunc(ctx, func() {
		reset()
		s.(*ClientConn).abort()
	})
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() {
		// Client → session: at the client's end of input, half-close.
		if _, err := io.Copy(s, c); err != nil {
			abort()
			return
		}
		s.(closeWriter).CloseWrite()
	})
	// Session → client: at the output's end, half-close; an error (the
	// session failed, or the client went) ends both.
	_, err = io.Copy(c, s)
	if err == nil {
		if cw, ok := c.(closeWriter); ok {
			err = cw.CloseWrite()
		}
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		abort()
	}
	wg.Wait()
}
