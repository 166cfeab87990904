//go:build linux

package listeners

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// The kernel's socket diagnostics (sock_diag(7), NETLINK_SOCK_DIAG) answer
// "which TCP sockets listen on this port" with just those sockets: the
// request filters by state and, with a bytecode program, by port. Reading
// /proc/net/tcp instead makes the kernel print every socket of the
// namespace, which on a host with a thousand VMs is most of a go-live's
// work. The /proc tables remain the way when netlink is refused (some
// sandboxes).

// From linux/inet_diag.h and linux/sock_diag.h.
const (
	inetDiagReqBytecode = 1  // INET_DIAG_REQ_BYTECODE
	inetDiagBcSGE       = 2  // INET_DIAG_BC_S_GE
	inetDiagBcSLE       = 3  // INET_DIAG_BC_S_LE
	tcpListenState      = 10 // TCP_LISTEN
	inetDiagReqV2Size   = 56 // struct inet_diag_req_v2
	inetDiagMsgMinSize  = 72 // struct inet_diag_msg
)

// diagListening returns the TCP sockets listening on port, of both
// families, in this network namespace.
func diagListening(port uint16) ([]Socket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("listeners: netlink: %w", err)
	}
	defer unix.Close(fd)
	var out []Socket
	for seq, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := diagQuery(fd, uint32(seq+1), family, port)
		if err != nil {
			return nil, err
		}
		out = append(out, socks...)
	}
	return out, nil
}

// diagRequest is the dump request for the listening TCP sockets of family
// on port.
func diagRequest(seq uint32, family uint8, port uint16) []byte {
	// sport >= port, then sport <= port: each op is followed by one whose
	// "no" holds the port; "yes" goes on to the next op, "no" jumps past
	// the end, which rejects the socket.
	bc := make([]byte, 16)
	op := func(off int, code uint8, no uint16) {
		bc[off], bc[off+1] = code, 8
		binary.NativeEndian.PutUint16(bc[off+2:], no)
		binary.NativeEndian.PutUint16(bc[off+6:], port)
	}
	op(0, inetDiagBcSGE, 16+4)
	op(8, inetDiagBcSLE, 8+4)
	attrLen := 4 + len(bc)
	n := syscall.NLMSG_HDRLEN + inetDiagReqV2Size + attrLen
	b := make([]byte, n)
	binary.NativeEndian.PutUint32(b[0:], uint32(n))
	binary.NativeEndian.PutUint16(b[4:], 20) // SOCK_DIAG_BY_FAMILY
	binary.NativeEndian.PutUint16(b[6:], syscall.NLM_F_REQUEST|syscall.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(b[8:], seq)
	req := b[syscall.NLMSG_HDRLEN:]
	req[0], req[1] = family, unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(req[4:], 1<<tcpListenState)
	attr := req[inetDiagReqV2Size:]
	binary.NativeEndian.PutUint16(attr[0:], uint16(attrLen))
	binary.NativeEndian.PutUint16(attr[2:], inetDiagReqBytecode)
	copy(attr[4:], bc)
	return b
}

// diagQuery sends one dump request on fd and gathers its answers.
func diagQuery(fd int, seq uint32, family uint8, port uint16) ([]Socket, error) {
	if err := unix.Sendto(fd, diagRequest(seq, family, port), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("listeners: netlink send: %w", err)
	}
	var out []Socket
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("listeners: netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("listeners: netlink: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case syscall.NLMSG_DONE:
				return out, nil
			case syscall.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
						return nil, fmt.Errorf("listeners: netlink: %w", syscall.Errno(errno))
					}
				}
				return out, nil
			}
			if s, ok := parseDiagMsg(m.Data); ok && s.Addr.Port() == port {
				out = append(out, s)
			}
		}
	}
}

// parseDiagMsg parses a struct inet_diag_msg.
func parseDiagMsg(b []byte) (Socket, bool) {
	if len(b) < inetDiagMsgMinSize || b[1] != tcpListenState {
		return Socket{}, false
	}
	port := binary.BigEndian.Uint16(b[4:])
	var ip netip.Addr
	switch b[0] {
	case unix.AF_INET:
		ip = netip.AddrFrom4([4]byte(b[8:12]))
	case unix.AF_INET6:
		ip = netip.AddrFrom16([16]byte(b[8:24])).Unmap()
	default:
		return Socket{}, false
	}
	inode := binary.NativeEndian.Uint32(b[68:])
	return Socket{Inode: uint64(inode), Addr: netip.AddrPortFrom(ip, port)}, true
}
