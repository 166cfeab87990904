// Package listeners finds the TCP sockets listening on an address and the
// processes that hold them.
//
// SO_REUSEPORT, which lets a VM's backup bind its primary's address on the
// same machine, lets any other socket of the same user bind it too, and
// the kernel then splits new connections between them. A host checks,
// once it has bound a VM's address, that no one else listens there. On
// Linux the kernel's socket diagnostics (sock_diag over netlink) name the
// sockets listening on a port, or else /proc/net/tcp and tcp6 do, and
// /proc/PID/fd their holders; elsewhere On finds nothing.
package listeners
