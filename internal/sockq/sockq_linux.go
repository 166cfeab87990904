//go:build linux

// Package sockq tells whether bytes wait unread in a socket's receive
// queue: for a reader goroutine that the Go scheduler has not run yet,
// which one that waits on it can yield to.
package sockq

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// Waiting reports whether bytes (or, for UDP, datagrams) wait in c's
// receive queue. It is false when it cannot tell (c is closed, or not a
// socket). It may be called from any goroutine, concurrently with a read
// of c; it costs one system call (SIOCINQ).
func Waiting(c syscall.Conn) bool {
	rc, err := c.SyscallConn()
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
