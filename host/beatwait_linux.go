package host

import "golang.org/x/sys/unix"

// beatsWaiting reports whether heartbeat datagrams wait in the kernel, not
// yet read: the goroutine that reads them (woken by the network poller,
// which queues it behind every other runnable goroutine) has not run yet.
func (h *Host) beatsWaiting() bool {
	rc, err := h.udp.SyscallConn()
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
