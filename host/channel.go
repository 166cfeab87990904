package host

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"

	"ftvm/replog"
	"ftvm/vmm"
)

// channel holds a runner's current logging-channel connection (the
// primary's side and the backup's alike): at most one at a time.
type channel struct {
	mu sync.Mutex
	c  *replog.Conn
	id int // counts connections, so an old one's end is told apart
}

// set makes c the connection, closing the one before, and returns its id.
func (ch *channel) set(c *replog.Conn) int {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.c != nil {
		ch.c.Close()
	}
	ch.c = c
	ch.id++
	return ch.id
}

// clear forgets connection id if it is still the current one.
func (ch *channel) clear(id int) {
	ch.mu.Lock()
	if ch.id == id {
		ch.c = nil
	}
	ch.mu.Unlock()
}

// current returns the current connection, or nil.
func (ch *channel) current() *replog.Conn {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.c
}

// up reports whether a connection is current.
func (ch *channel) up() bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.c != nil
}

// bye tells the peer why, and closes the current connection.
func (ch *channel) bye(reason string) {
	ch.mu.Lock()
	c := ch.c
	ch.c = nil
	ch.mu.Unlock()
	if c != nil {
		_ = c.WriteFrame(replog.FrameBye, []byte(reason))
		c.Close()
	}
}

// peerEnded reports whether err is how a logging channel ends when the
// process at its other end dies: the kernel closes its connections, so the
// stream ends (perhaps inside a frame) or is reset, a write finds the pipe
// broken, and a new connection is refused. A goodbye, a corrupt frame, a
// timeout or this side's own close is something else.
func peerEnded(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNREFUSED)
}

// exitDetail says how a guest ended.
func exitDetail(exit vmm.Exit) string {
	if exit.Trap != nil {
		return "trapped: " + strings.TrimPrefix(exit.Trap.Error(), "wasm trap: ")
	}
	return fmt.Sprintf("exit status %d", exit.Code)
}
