// Package host is ftvm's host daemon: one per physical server. It registers
// itself in shared storage, runs the VMs placed on it as primary or backup,
// carries the logging channel between them (TCP, authenticated with the
// cluster key), sends and watches UDP heartbeats, and drives each VM's
// ft.Node: when a peer falls silent it claims the next generation on shared
// storage and goes live, or halts if it lost.
//
// One host serves several VMs; each VM it runs has one runner (primary.go,
// backup.go), which owns the VM, its ft.Node and its side of the logging
// channel. Connections arrive on one TCP port: after the handshake their
// hello says whether they are a logging channel (a backup dialing its
// primary) or a control connection (ftvm failpoint). Heartbeats arrive on a
// UDP port with the same number.
package host
