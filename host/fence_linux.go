package host

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ftvm/storage"
)

// bootID names this machine's running kernel, so that hosts can tell
// whether a peer's process ID means anything here.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// fenceSockets shuts down the TCP sockets that a failed peer's host process
// still holds on the VM's listen addresses, when that process runs on this
// machine (same boot ID), and returns how many it shut.
//
// A backup that goes live on its primary's machine binds the same
// addresses with SO_REUSEPORT. If the old primary is frozen rather than
// dead, its listener stays in the port's group and the kernel would keep
// queueing new connections at it, and its clients' connections would hang
// instead of breaking. The old primary has lost the generation and will
// serve nothing more, so the survivor takes duplicates of its sockets
// (pidfd_getfd, which works on a stopped process) and shuts them down:
// the listener leaves the group and its queued connections are reset, and
// each client connection gets an end of stream, after any bytes already in
// its send buffer (which the backup had acknowledged). Clients reconnect to
// the survivor, as they would after a crash.
//
// It needs the right to trace the peer (the same user, or root, and no
// stricter ptrace policy); without it, the error says so and the survivor
// goes live regardless.
func fenceSockets(peer, self storage.HostInfo, addrs []string) (int, error) {
	if peer.Boot == "" || peer.Boot != self.Boot || peer.PID <= 0 || peer.PID == self.PID {
		return 0, nil
	}
	want, err := resolveListenAddrs(addrs)
	if err != nil || len(want) == 0 {
		return 0, err
	}
	pidfd, err := unix.PidfdOpen(peer.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return 0, nil // gone: the kernel closed its sockets
	}
	if err != nil {
		return 0, fmt.Errorf("pidfd_open %d: %w", peer.PID, err)
	}
	defer unix.Close(pidfd)
	// Checked after pidfd_open, so that the descriptor refers to the
	// process checked, not to a later one that reused the ID.
	if !startedAround(peer.PID, peer.Started) {
		return 0, nil
	}
	dir := fmt.Sprintf("/proc/%d/fd", peer.PID)
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	n := 0
	for _, e := range ents {
		if link, err := os.Readlink(filepath.Join(dir, e.Name())); err != nil || !strings.HasPrefix(link, "socket:") {
			continue
		}
		target, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pidfd, target, 0)
		switch {
		case errors.Is(err, unix.EBADF):
			continue // closed meanwhile
		case errors.Is(err, unix.ESRCH):
			return n, nil // exited meanwhile
		case err != nil:
			return n, fmt.Errorf("pidfd_getfd %d/%d: %w", peer.PID, target, err)
		}
		if onAddrs(fd, want) {
			if err := unix.Shutdown(fd, unix.SHUT_RDWR); err == nil || errors.Is(err, unix.ENOTCONN) {
				n++
			}
		}
		unix.Close(fd)
	}
	return n, nil
}

// resolveListenAddrs parses listen addresses; an unspecified IP matches
// every local address on its port.
func resolveListenAddrs(addrs []string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, a := range addrs {
		ta, err := net.ResolveTCPAddr("tcp", a)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %w", a, err)
		}
		ap := ta.AddrPort()
		out = append(out, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	return out, nil
}

// onAddrs reports whether fd is a TCP socket whose local address is one of
// want: a listener on it, or a connection accepted there.
func onAddrs(fd int, want []netip.AddrPort) bool {
	if t, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || t != unix.SOCK_STREAM {
		return false
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return false
	}
	var local netip.AddrPort
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		local = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		local = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	default:
		return false
	}
	for _, w := range want {
		if w.Port() == local.Port() && (!w.Addr().IsValid() || w.Addr().IsUnspecified() || w.Addr() == local.Addr()) {
			return true
		}
	}
	return false
}

// startedAround reports whether process pid started shortly before (or
// at) the time its host registered as started: the registry's process ID
// is that process, not a later one that reused the ID.
func startedAround(pid int, started time.Time) bool {
	at, err := processStart(pid)
	if err != nil {
		return false
	}
	// The boot time is known to the second and the host records its start
	// after the process began.
	return !at.Before(started.Add(-30*time.Second)) && !at.After(started.Add(5*time.Second))
}

// processStart reads when pid started from /proc.
func processStart(pid int) (time.Time, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return time.Time{}, err
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing parenthesis (field 2); starttime is 22.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	ticks, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: starttime: %w", pid, err)
	}
	boot, err := bootTime()
	if err != nil {
		return time.Time{}, err
	}
	// USER_HZ is 100 on every Linux architecture Go supports.
	return boot.Add(time.Duration(ticks) * (time.Second / 100)), nil
}

func bootTime() (time.Time, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "btime "); ok {
			sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("/proc/stat: btime: %w", err)
			}
			return time.Unix(sec, 0), nil
		}
	}
	return time.Time{}, fmt.Errorf("/proc/stat: no btime")
}
