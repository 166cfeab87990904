// Package listeners finds the TCP sockets listening on an address and the
// processes that hold them.
//
// SO_REUSEPORT, which lets a VM's backup bind its primary's address on the
// same machine, lets any other socket of the same user bind it too, and
// the kernel then splits new connections between them. A host checks,
// once it has bound a VM's address, that no one else listens there. The
// kernel offers no call for this; Linux's /proc does (the listening
// sockets in /proc/net/tcp and tcp6, their holders in /proc/PID/fd), and
// elsewhere On finds nothing.
package listeners
