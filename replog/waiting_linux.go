package replog

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Waiting reports whether bytes from the peer wait in the kernel, not yet
// read: a reader goroutine blocked in ReadFrame will have them once the Go
// scheduler polls the network. It is false when it cannot tell (a
// connection that is not a socket, or closed). It may be called from any
// goroutine, concurrently with ReadFrame; it costs one system call.
func (c *Conn) Waiting() bool {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	waiting := false
	_ = rc.Control(func(fd uintptr) {
		n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		waiting = err == nil && n > 0
	})
	return waiting
}
