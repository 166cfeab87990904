//go:build !linux

// Package sockq tells whether bytes wait unread in a socket's receive
// queue; elsewhere than Linux it cannot tell.
package sockq

import "syscall"

// Waiting cannot tell here: it is false.
func Waiting(syscall.Conn) bool { return false }
