// Package wasi implements WASI preview 1 (wasi_snapshot_preview1) for
// ftvm's guests, over devices it is handed.
//
// Every call of a WASI import leaves the engine (a VM exit) and arrives at
// System.Call, with the guest's memory and the call's arguments. System
// keeps the WASI state of the guest — arguments, environment, the
// descriptor table with each descriptor's flags, rights and file offset,
// the exit status — and reaches the outside world through exactly one
// interface, Host. This split is what makes deterministic replay possible:
//
//   - System is a deterministic state machine. Its state after a call
//     depends only on its state before, the call's arguments, guest memory
//     and the results the Host returned. It starts no goroutine, reads no
//     clock, and never lets map order reach the guest.
//   - Host is every contact with the outside: clocks, randomness, files and
//     directories, stdin, stdout and stderr, TCP listeners and connections,
//     and waiting (poll_oneoff). Its results are plain values (integers,
//     byte slices, strings, small structs), so a recording wrapper can log
//     each one and a replaying wrapper can return it without touching the
//     OS. Host handles are opaque integers the Host chooses, and so are
//     logged like any other result.
//
// # The Host contract
//
// Each Host method is one of three kinds (ClassifyHost names them):
//
//   - Input: the result comes from outside. ClockResolution, ClockTime,
//     Random, Poll, Read (stdin and connections), Accept, Pread, Filestat,
//     ReadDir, PathFilestat, Readlink. On the primary the hypervisor logs
//     the result; on the backup it returns the logged result.
//   - Output: bytes or signals leave the VM. Write (stdout, stderr,
//     connections), Shutdown, Close. The guest's result never depends on
//     them: fd_write and sock_send report the length written at once (all
//     of it, but to a connection no more than the send credit System keeps
//     from logged inputs; see SendWindow and Host.Write), and these
//     methods return an error only for misuse (an unknown
//     handle). Delivery problems surface later as inputs, such as a reset
//     connection seen by Read. That is what lets the hypervisor hold an
//     output until the backup has acknowledged the log through the position
//     that produced it (the Output Rule), and drop it on the backup.
//   - Effect: output with a result. Open (which may create or truncate),
//     Pwrite, SetSize, SetTimes, Sync, Allocate, Mkdir, Rmdir, Unlink,
//     Rename, Link, Symlink, PathSetTimes change the file system and the
//     guest sees their errno or count. The primary performs them and logs
//     the result like an input; the backup returns the logged result
//     without performing them. File writes carry explicit offsets: System
//     keeps each file's offset itself and turns fd_write into Host.Pwrite
//     at that offset; for a descriptor opened with FDFLAG_APPEND it first
//     asks Host.Filestat for the size (an input) and writes there. The
//     Host never sees O_APPEND. A call performs at most one effect, after
//     every input it takes: what the hypervisor relies on to make every
//     effect happen exactly once across a failover (package vmm, intents).
//
// Blocking: Host.Poll receives the whole subscription list of poll_oneoff
// (descriptors replaced by handles, timeouts as given) and blocks until an
// event or until its context is done; Read and Accept block likewise unless
// asked not to. System honours FDFLAG_NONBLOCK: a non-blocking read with
// nothing to read returns EAGAIN, which is how Go's wasip1 runtime works
// (it makes its descriptors non-blocking and waits in poll_oneoff). A
// cancelled context makes Call return the context's error.
//
// The Host's startup handles are fixed by the Config, so that a System can
// be built without asking the Host anything: 0, 1, 2 are stdin, stdout and
// stderr, then one handle per preopened directory and per listener, equal
// to the descriptor the guest sees them at.
//
// # Call classification
//
// Classify gives each preview1 function the widest kind a call of it can
// have: Deterministic (args_*, environ_*, fd_advise, fd_fdstat_get,
// fd_fdstat_set_flags, fd_fdstat_set_rights, fd_prestat_*, fd_tell,
// proc_exit, proc_raise, sched_yield: computed from System's state alone),
// Input (clock_*, random_get, poll_oneoff, fd_read, fd_pread, fd_readdir,
// fd_filestat_get, fd_seek, path_filestat_get, path_readlink, sock_accept,
// sock_recv), Output (fd_close, fd_renumber, sock_shutdown) or Effect
// (fd_write and the other file-system mutations, and sock_send, which on a
// blocking socket without send credit polls the Host). The hypervisor
// does not need the classification to record and replay, since it wraps
// the Host; it documents the calls and lets tests check them.
//
// # Descriptors and the listener convention
//
// Descriptors 0, 1 and 2 are stdin, stdout and stderr. The preopened
// directories follow from 3 in Config order, then the TCP listeners in
// order. A listener is a SOCKET_STREAM reported with FDFLAG_NONBLOCK set,
// so that a plain Go guest can do net.FileListener(os.NewFile(fd, "")).
// The guest learns where its listeners are from two environment variables
// System adds:
//
//	FTVM_LISTEN_FDS=5,6            the listeners' descriptors, in order
//	FTVM_LISTEN_FDNAMES=http:admin their names (Listener.Name), ':'-separated
//
// (systemd's LISTEN_FDS would imply descriptors from 3, where the
// preopens are.) fd_prestat_get fails with EBADF on every descriptor that
// is not a preopened directory, which is where wasi-libc and Go stop
// looking for preopens.
//
// # Paths
//
// Paths never escape a preopened directory. System rejects absolute paths
// and ".." components that climb above the directory descriptor with
// ENOTCAPABLE before the Host sees them. The OS host (NewOSHost, on
// Linux) resolves every path inside an os.Root, so symbolic links (in the
// last component or in intermediate ones, relative or absolute) that lead
// outside fail with ENOTCAPABLE too; without LOOKUP_SYMLINK_FOLLOW, a link
// in the last component fails with ELOOP. path_symlink refuses absolute
// targets.
//
// # Rights
//
// Each descriptor carries preview 1's rights, base and inheriting, as
// fd_fdstat_get reports them, and every call checks the rights it needs
// (fd_read needs FD_READ, path_open with OFLAGS_TRUNC needs
// PATH_FILESTAT_SET_SIZE on the directory, and so on, as in the rights
// model's reference implementations): one lacking fails with
// ENOTCAPABLE before the Host sees it. fd_fdstat_set_rights only drops
// rights. path_open gives a descriptor the rights it asks for that its
// directory inherits, within what its kind allows; a directory has no
// FD_SEEK or FD_TELL, and fd_seek, fd_tell, fd_read, fd_pread, fd_write
// and fd_pwrite on one fail with EISDIR, as in wazero. One right is added
// to what a directory asks for: PATH_FILESTAT_SET_SIZE when it inherits
// FD_FILESTAT_SET_SIZE (O_TRUNC then gives no more power than truncating
// after opening), because Go's wasip1 port opens directories without it
// and then creates files in them with O_TRUNC (os.Root.Create).
//
// # Errors
//
// A guest error is an errno, whatever the guest passes: bad pointers give
// EFAULT, bad descriptors EBADF, unsupported operations ENOTSUP, ENOSPC
// and so on as POSIX would. Call returns a Go error only for proc_exit (an
// *ExitError), for a Host failure or cancellation, or for a call the
// engine got wrong; the VM stops then.
//
// # Snapshots
//
// MarshalState and UnmarshalState carry the WASI state (not the Host's
// resources) in a versioned binary encoding, so a VM snapshot can include
// it.
package wasi
