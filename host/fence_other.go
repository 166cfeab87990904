//go:build !linux

package host

import "ftvm/storage"

func bootID() string { return "" }

// fenceSockets needs Linux's pidfd_getfd; elsewhere a frozen old primary's
// sockets stay until it halts.
func fenceSockets(peer, self storage.HostInfo, addrs []string) (int, error) { return 0, nil }
