package listeners

import (
	"fmt"
	"net"
	"net/netip"
)

// Socket is a listening TCP socket.
type Socket struct {
	Inode   uint64
	Addr    netip.AddrPort
	Holders []Process // the processes with a descriptor of it (those /proc shows)
}

// Process is a process holding a socket.
type Process struct {
	PID     int
	Command string // its command line, spaces between the arguments
}

// String describes the socket for an error message.
func (s Socket) String() string {
	if len(s.Holders) == 0 {
		return fmt.Sprintf("a socket on %s (its process is not visible here)", s.Addr)
	}
	out := ""
	for i, p := range s.Holders {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("pid %d (%s)", p.PID, p.Command)
	}
	return out
}

// Overlap reports whether two listening addresses share connections: the
// same port, and the same address or either one unspecified.
func Overlap(a, b netip.AddrPort) bool {
	if a.Port() != b.Port() {
		return false
	}
	x, y := a.Addr().Unmap(), b.Addr().Unmap()
	return x == y || x.IsUnspecified() || y.IsUnspecified()
}

// AddrOf returns a TCP listener's local address, unmapped.
func AddrOf(ln net.Listener) (netip.AddrPort, error) {
	ta, ok := ln.Addr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("listeners: %s is not a TCP address", ln.Addr())
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// Others returns the sockets other than ln listening where ln does, with
// their holders.
func Others(ln net.Listener) ([]Socket, error) {
	addr, err := AddrOf(ln)
	if err != nil {
		return nil, err
	}
	self, err := inode(ln)
	if err != nil {
		return nil, err
	}
	return on(addr, self)
}
