package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// stoppedBy is the cause of main's context once a signal stopped ftvm.
type stoppedBy struct{ sig os.Signal }

func (s stoppedBy) Error() string { return fmt.Sprintf("stopped by %v", s.sig) }

// signalContext returns a context that SIGINT or SIGTERM cancels, with
// the signal as its cause (see signalStatus), and the function that stops
// listening for them. Only the first is caught.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			// A second signal has its default effect: it kills a
			// command that is slow to stop.
			signal.Stop(sigs)
			cancel(stoppedBy{s})
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(context.Canceled)
	}
}

// signalStatus is the exit status of a command that ctx's signal stopped:
// 128 plus the signal's number, as a shell reports a process that a
// signal killed (130 for Ctrl-C, 143 for SIGTERM).
func signalStatus(ctx context.Context) int {
	var s stoppedBy
	if errors.As(context.Cause(ctx), &s) {
		if n, ok := s.sig.(syscall.Signal); ok {
			return 128 + int(n)
		}
	}
	return 128 + int(syscall.SIGINT)
}
