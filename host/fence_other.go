//go:build !linux

package host

import "ftvm/storage"

func pidSpace() string { return "" }

type fenced struct {
	sockets int
	killed  bool
}

// fencePeer needs Linux's pidfd_getfd; elsewhere a frozen old primary's
// sockets stay until it halts.
func fencePeer(peer, self storage.HostInfo, addrs []string) (fenced, error) { return fenced{}, nil }
