//go:build linux

package listeners

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unicode"
)

// tcpListen is the LISTEN state in /proc/net/tcp.
const tcpListen = "0A"

// On returns the sockets listening on an address that overlaps addr (see
// Overlap) in this network namespace, with the processes holding them.
func On(addr netip.AddrPort) ([]Socket, error) { return on(addr, 0) }

// on is On, leaving out the socket with inode skip (a caller's own, whose
// holder it knows: looking for holders reads every process's descriptors,
// which on a host with a thousand VMs is most of a go-live's work).
func on(addr netip.AddrPort, skip uint64) ([]Socket, error) {
	var socks []Socket
	all, err := diagListening(addr.Port())
	if err != nil {
		// No netlink here: the /proc tables say the same, slowly.
		all = nil
		for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			s, err := readTable(f, addr)
			if err != nil {
				return nil, err
			}
			all = append(all, s...)
		}
	}
	for _, x := range all {
		if Overlap(x.Addr, addr) && (skip == 0 || x.Inode != skip) {
			socks = append(socks, x)
		}
	}
	if len(socks) > 0 {
		if err := findHolders(socks); err != nil {
			return nil, err
		}
	}
	return socks, nil
}

// readTable returns the listening sockets of a /proc/net/tcp table that
// overlap addr. A missing table (no IPv6) has none.
func readTable(path string, addr netip.AddrPort) ([]Socket, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Socket
	// Only the lines that end the local address with the port and are in
	// state LISTEN are parsed: a host with many VMs has thousands of
	// connections.
	port := fmt.Sprintf(":%04X ", addr.Port())
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, port); i < 0 || !listensAfter(line, i+len(port)) {
			continue
		}
		s, ok, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("listeners: %s: %w", path, err)
		}
		if ok && Overlap(s.Addr, addr) {
			out = append(out, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("listeners: %s: %w", path, err)
	}
	return out, nil
}

// listensAfter reports whether the line, whose local address ends at i,
// has the state LISTEN after the remote address that follows it.
func listensAfter(line string, i int) bool {
	rest := strings.TrimLeft(line[i:], " ")
	_, rest, ok := strings.Cut(rest, " ") // the remote address
	return ok && strings.HasPrefix(strings.TrimLeft(rest, " "), tcpListen+" ")
}

// parseLine parses one socket of a /proc/net/tcp table:
//
//	sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
//
// and reports whether it listens.
func parseLine(line string) (Socket, bool, error) {
	f := strings.Fields(line)
	if len(f) < 10 {
		return Socket{}, false, fmt.Errorf("short line %q", line)
	}
	if f[3] != tcpListen {
		return Socket{}, false, nil
	}
	addr, err := parseAddr(f[1])
	if err != nil {
		return Socket{}, false, err
	}
	ino, err := strconv.ParseUint(f[9], 10, 64)
	if err != nil {
		return Socket{}, false, fmt.Errorf("inode %q: %w", f[9], err)
	}
	return Socket{Inode: ino, Addr: addr}, true, nil
}

// parseAddr parses "0100007F:1F90": the address as 32-bit words in the
// machine's byte order, then the port.
func parseAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", s, err)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	ip, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// findHolders fills in the processes holding each socket, from their
// descriptors in /proc. Processes it may not look into are left out.
func findHolders(socks []Socket) error {
	want := make(map[string]int, len(socks))
	for i, s := range socks {
		want[fmt.Sprintf("socket:[%d]", s.Inode)] = i
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("listeners: %w", err)
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // gone, or not ours to see
		}
		seen := map[int]bool{}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil {
				continue
			}
			if i, ok := want[link]; ok && !seen[i] {
				seen[i] = true
				socks[i].Holders = append(socks[i].Holders, Process{PID: pid, Command: command(pid)})
			}
		}
	}
	return nil
}

// command returns a process's command line, or its name.
func command(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return "?"
	}
	return printable(string(b))
}

// maxCommand bounds a command line in an error message.
const maxCommand = 120

// printable makes a command line fit one line of an error message: its
// arguments (NUL-separated) and any control characters (a script passed
// with -c has newlines) become spaces, runs of them one, and it is cut at
// maxCommand runes.
func printable(cmd string) string {
	s := strings.Join(strings.FieldsFunc(cmd, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
	if r := []rune(s); len(r) > maxCommand {
		s = string(r[:maxCommand]) + "…"
	}
	return s
}

// inode returns the inode of a listener's socket.
func inode(ln net.Listener) (uint64, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return 0, fmt.Errorf("listeners: %T has no socket", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var st syscall.Stat_t
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), &st) }); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("listeners: fstat: %w", serr)
	}
	return st.Ino, nil
}
