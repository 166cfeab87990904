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

// pidSpace names where this process's PIDs mean something: the running
// kernel (its boot ID) and the PID namespace. Hosts in containers on one
// machine share the boot ID but not the namespace.
func pidSpace() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b)) + " " + ns
}

// fenced is what fencePeer did.
type fenced struct {
	sockets int  // sockets shut down
	killed  bool // the process was stopped, and was killed
}

// fencePeer fences a failed peer's host process, when it runs on this
// machine and in this PID namespace (the same PID space): it shuts down the
// TCP sockets the process still holds on the VM's listen addresses and, if
// the process is stopped, kills it.
//
// A backup that goes live on its primary's machine binds the same
// addresses with SO_REUSEPORT. If the old primary is frozen rather than
// dead, its listener stays in the port's group and the kernel would keep
// queueing new connections at it, and its clients' connections would hang
// instead of breaking. The old primary has lost the generation and will
// serve nothing more, so the survivor takes duplicates of its sockets
// (pidfd_getfd, which works on a stopped process) and shuts them down: the
// listener leaves the group and its queued connections are reset, and each
// client connection gets an end of stream, after any bytes already in its
// send buffer (which the backup had acknowledged). Clients reconnect to the
// survivor, as they would after a crash.
//
// A stopped process is also killed (SIGKILL through its pidfd), because it
// may have been stopped between an effect's barrier and its system call: a
// disk write the backup has the log for, which the survivor re-issues and
// may then overwrite, and which the old process would perform late, over
// the survivor's newer data, once it resumed. Every VM of a stopped host
// process is failing over anyway, since it is silent to all of its peers.
// A process that runs (a cut link) halts by itself when it learns it lost.
//
// It needs the right to trace and signal the peer (the same user, or root,
// and no stricter ptrace policy); without it, the error says so and the
// survivor goes live regardless.
func fencePeer(peer, self storage.HostInfo, addrs []string) (fenced, error) {
	var done fenced
	if peer.PIDSpace == "" || peer.PIDSpace != self.PIDSpace || peer.PID <= 0 || peer.PID == self.PID {
		return done, nil
	}
	want, err := resolveListenAddrs(addrs)
	if err != nil {
		return done, err
	}
	pidfd, err := unix.PidfdOpen(peer.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return done, nil // gone: the kernel closed its sockets
	}
	if err != nil {
		return done, fmt.Errorf("pidfd_open %d: %w", peer.PID, err)
	}
	defer unix.Close(pidfd)
	// Checked after pidfd_open, so that the descriptor refers to the
	// process checked, not to a later one that reused the ID.
	if !startedAround(peer.PID, peer.Started) {
		return done, nil
	}
	// Each step is tried even if the other failed (taking sockets needs
	// the right to trace, a signal only the right to signal).
	var errs []error
	if len(want) > 0 {
		done.sockets, err = shutSockets(pidfd, peer.PID, want)
		errs = append(errs, err)
	}
	if processStopped(peer.PID) {
		err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		switch {
		case err == nil:
			done.killed = true
		case !errors.Is(err, unix.ESRCH):
			errs = append(errs, fmt.Errorf("kill stopped process %d: %w", peer.PID, err))
		}
	}
	return done, errors.Join(errs...)
}

// shutSockets shuts down the TCP sockets of process pid (pidfd) whose local
// address is one of want, and returns how many.
func shutSockets(pidfd, pid int, want []netip.AddrPort) (int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
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
			return n, fmt.Errorf("pidfd_getfd %d/%d: %w", pid, target, err)
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

// processStopped reports whether pid is stopped (by SIGSTOP, or by a
// tracer).
func processStopped(pid int) bool {
	f, err := statFields(pid)
	return err == nil && (f[0] == "T" || f[0] == "t")
}

// processRunning reports whether the host process a registry entry names
// (pid, started then) runs on this machine, frozen or not: it exists, is no
// zombie, and is the process that registered, not a later one with its ID.
func processRunning(pid int, started time.Time) bool {
	f, err := statFields(pid)
	if err != nil || f[0] == "Z" || f[0] == "X" {
		return false
	}
	return startedAround(pid, started)
}

// statFields returns the fields of /proc/PID/stat after the command name:
// the process state first. The command name, in parentheses, may hold
// spaces, so fields are counted after its closing parenthesis.
func statFields(pid int) ([]string, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	return fields, nil
}

// processStart reads when pid started from /proc.
func processStart(pid int) (time.Time, error) {
	fields, err := statFields(pid)
	if err != nil {
		return time.Time{}, err
	}
	// starttime is field 22 of the file, the 20th after the command name.
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
