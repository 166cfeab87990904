package replog

import (
	"syscall"

	"ftvm/internal/sockq"
)

// Waiting reports whether bytes from the peer wait in the kernel, not yet
// read: a reader goroutine blocked in ReadFrame will have them once the Go
// scheduler polls the network. It is false when it cannot tell (a
// connection that is not a socket, or closed, or a system other than
// Linux). It may be called from any goroutine, concurrently with
// ReadFrame; it costs one system call.
func (c *Conn) Waiting() bool {
	sc, ok := c.nc.(syscall.Conn)
	return ok && sockq.Waiting(sc)
}
