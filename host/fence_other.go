//go:build !linux

package host

import (
	"time"

	"ftvm/storage"
)

func pidSpace() string { return "" }

type fenced struct {
	sockets int
	killed  bool
}

// processRunning cannot look at processes here: a host whose entry is
// fresh counts as running (see hostRunning).
func processRunning(pid int, started time.Time) bool { return true }

// fencePeer needs Linux's pidfd_getfd; elsewhere a frozen old primary's
// sockets stay until it halts.
func fencePeer(peer, self storage.HostInfo, addrs []string) (fenced, error) { return fenced{}, nil }
