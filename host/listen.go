package host

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"

	"ftvm/internal/listeners"
)

// guardListener refuses a VM's listener bound with SO_REUSEPORT when
// anyone else listens on its address (another VM, another cluster's, any
// program of the same user): the kernel would split new connections
// between them, and clients between two services. Only the host processes
// of peers may share it: an old primary that this host could not fence
// listens there until it halts. /proc that cannot be read is no reason to
// refuse (it is logged).
func (h *Host) guardListener(addr string, ln net.Listener, peers []string) error {
	var allow []int
	for _, name := range peers {
		if p, ok := h.peer(name); ok && p.PIDSpace != "" && p.PIDSpace == h.self().PIDSpace {
			allow = append(allow, p.PID)
		}
	}
	for deadline := time.Now().Add(orphanWait); ; {
		others, err := listeners.Others(ln)
		if err != nil {
			h.log.Warn("could not check who else listens on a VM's address", "addr", ln.Addr().String(), "err", err)
			return nil
		}
		var taken *listeners.Socket
		orphans := true
		for _, s := range others {
			if slices.ContainsFunc(s.Holders, func(p listeners.Process) bool { return slices.Contains(allow, p.PID) }) {
				continue
			}
			taken = &s
			orphans = orphans && len(s.Holders) == 0
		}
		if taken == nil {
			return nil
		}
		// A socket no process holds is one being closed: an old primary
		// just killed (the fence of another of its VMs killed it while
		// frozen) whose descriptors the kernel is still releasing.
		if !orphans || time.Now().After(deadline) {
			return fmt.Errorf("%w: %s listens there too, and would get some of the VM's clients", &takenError{addr}, taken)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// takenError is a VM's listen address that someone else listens on.
type takenError struct{ addr string }

func (e *takenError) Error() string { return "listen address " + e.addr + " is taken" }

// listenTaken reports whether err is a VM's listen address in use by
// someone else, which may be over soon.
func listenTaken(err error) bool {
	var t *takenError
	return errors.As(err, &t) || errors.Is(err, syscall.EADDRINUSE)
}

const (
	// listenWait is how long a go-live waits for its listen address to be
	// free before it fails, and listenRetry how often it tries again.
	listenWait  = 30 * time.Second
	listenRetry = 250 * time.Millisecond
)

// orphanWait is how long a go-live waits for a socket on its address that
// no process holds to go away.
const orphanWait = 3 * time.Second

// explainListenErr adds to an error opening a VM's listeners, when an
// address was in use, who holds it (a program that did not set
// SO_REUSEPORT keeps the pair from binding at all).
func explainListenErr(err error, addrs []string) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	var held []string
	for _, a := range addrs {
		ap, perr := netip.ParseAddrPort(a)
		if perr != nil {
			continue
		}
		socks, _ := listeners.On(ap)
		for _, s := range socks {
			held = append(held, s.String())
		}
	}
	if len(held) == 0 {
		return err
	}
	return fmt.Errorf("%w (held by %s)", err, strings.Join(held, "; "))
}
