package wasi

import "context"

// Host is the outside world of a System: every result that does not follow
// from the guest's own state comes from one of its methods, and every byte
// that leaves the guest goes through one. System never touches the OS, a
// clock or a random source itself.
//
// Methods fall in three kinds (see Kind and ClassifyHost):
//
//   - Input: the result comes from outside (clocks, randomness, readiness,
//     accepted connections, bytes read, metadata, directory listings).
//     A recording Host logs the result; a replaying Host returns it from the
//     log without touching the OS.
//   - Effect: the method changes the outside world (a file written, created,
//     renamed, ...) and the guest sees its result. A recording Host performs
//     it and logs the result as an input; a replaying Host returns the
//     logged result without performing it. Writes carry explicit offsets,
//     so most effects leave the same outcome when performed again; for the
//     others (an append's offset taken from Filestat, creating, removing
//     or renaming a path) the hypervisor logs an intent first (see package
//     vmm).
//   - Output: the method sends something out (bytes on stdout or a
//     connection, a shutdown, a close) and the guest's result does not
//     depend on it. It returns only an error, and only for misuse (an
//     unknown handle); delivery problems surface later as inputs, for
//     example a connection reset seen by Read. A gating Host may hold the
//     output until the backup has acknowledged the log (the Output Rule); a
//     replaying Host drops it.
//
// Results are plain values (integers, byte slices, strings and small
// structs of them) so that they are easy to serialize. System copies what it
// passes in (a Host may keep the data slices of Write and Pwrite) and copies
// what it gets back into guest memory (it keeps no returned slice).
//
// Errno results are what the guest sees. An error result is fatal: System
// stops the call and returns the error, and the VM stops. Methods that may
// block take a context and return its error when it is done.
//
// Handles of the startup resources are fixed: the Host must serve, for a
// System made with Config c, handle 0 as stdin, 1 as stdout, 2 as stderr,
// then 3+i as c.Preopens[i] and 3+len(c.Preopens)+j as c.Listeners[j]. It
// chooses every other handle itself, never reusing one of those.
//
// System calls a Host from one goroutine at a time.
type Host interface {
	// ClockResolution returns the resolution of clock id in nanoseconds.
	// Input.
	ClockResolution(id ClockID) (uint64, Errno)
	// ClockTime returns the time of clock id in nanoseconds. Input.
	ClockTime(id ClockID, precision uint64) (uint64, Errno)
	// Random returns n random bytes. Input.
	Random(n uint32) ([]byte, error)
	// Poll waits until at least one subscription is ready or ctx is done,
	// and returns at most one event per subscription. Input.
	Poll(ctx context.Context, subs []Subscription) ([]Event, error)

	// Read reads at most n bytes from a stream: stdin or a connection. At
	// the end of the stream it returns no data and ESUCCESS. Without
	// ReadNonblock it waits for data; with it, it returns EAGAIN when none
	// is available. Input.
	Read(ctx context.Context, h Handle, n uint32, flags ReadFlags) ([]byte, Errno, error)
	// Accept accepts a connection on listener h and returns its handle.
	// With nonblock, it returns EAGAIN when no connection is pending. Input.
	Accept(ctx context.Context, h Handle, nonblock bool) (Handle, Errno, error)
	// Pread reads at most n bytes of file h at offset off. Input.
	Pread(h Handle, off uint64, n uint32) ([]byte, Errno)
	// Filestat returns the metadata of the file or directory h. Input.
	Filestat(h Handle) (Filestat, Errno)
	// ReadDir returns at most max entries of directory h, starting at
	// cookie (0 is the start, then each entry's Next), "." and ".."
	// included. Fewer than max entries means the listing ended. Input.
	ReadDir(h Handle, cookie uint64, max uint32) ([]Dirent, Errno)
	// PathFilestat returns the metadata of path in directory dir,
	// following a symbolic link in its last component if follow. Input.
	PathFilestat(dir Handle, path string, follow bool) (Filestat, Errno)
	// Readlink returns the target of the symbolic link path in dir. Input.
	Readlink(dir Handle, path string) (string, Errno)

	// Open opens (and with OflagCreat may create, with OflagTrunc
	// truncate) path in directory dir. Effect.
	Open(dir Handle, path string, req OpenRequest) (OpenResult, Errno)
	// Pwrite writes data to file h at offset off and returns how many bytes
	// it wrote. Effect.
	Pwrite(h Handle, off uint64, data []byte) (uint32, Errno)
	// SetSize truncates or extends file h to size bytes. Effect.
	SetSize(h Handle, size uint64) Errno
	// SetTimes sets the access and modification times of h as fstflags
	// flags say (FstflagAtim, FstflagAtimNow, FstflagMtim,
	// FstflagMtimNow). Effect.
	SetTimes(h Handle, atim, mtim uint64, flags uint16) Errno
	// Sync flushes h to storage, only its data if dataOnly. Effect.
	Sync(h Handle, dataOnly bool) Errno
	// Allocate makes sure file h has storage for n bytes at off, extending
	// it if needed. Effect.
	Allocate(h Handle, off, n uint64) Errno
	// Mkdir creates directory path in dir. Effect.
	Mkdir(dir Handle, path string) Errno
	// Rmdir removes the empty directory path in dir. Effect.
	Rmdir(dir Handle, path string) Errno
	// Unlink removes the non-directory path in dir. Effect.
	Unlink(dir Handle, path string) Errno
	// Rename renames oldPath in oldDir to newPath in newDir. Effect.
	Rename(oldDir Handle, oldPath string, newDir Handle, newPath string) Errno
	// Link makes newPath in newDir a hard link to oldPath in oldDir,
	// following a symbolic link in oldPath's last component if follow.
	// Effect.
	Link(oldDir Handle, oldPath string, follow bool, newDir Handle, newPath string) Errno
	// Symlink creates the symbolic link path in dir, pointing at target.
	// Effect.
	Symlink(target string, dir Handle, path string) Errno
	// PathSetTimes is SetTimes for path in dir, following a symbolic link
	// in its last component if follow. Effect.
	PathSetTimes(dir Handle, path string, follow bool, atim, mtim uint64, flags uint16) Errno

	// Write sends data to stdout, stderr or a connection. Output.
	//
	// A connection's Write never waits for its peer: the Host queues what
	// the peer has not taken. System bounds that queue: it writes to a
	// connection no more than SendWindow bytes after accepting it, and
	// after that no more than the NBytes of the last fd_write event Poll
	// returned for it (an event with NBytes 0 and no error grants
	// SendWindow: the Host does not bound its queue). So Poll reports a
	// connection writable only while its queue is below SendWindow, with
	// NBytes the room left.
	Write(h Handle, data []byte) error
	// Shutdown shuts down the reading (ShutRd) and/or writing (ShutWr)
	// side of connection h. Output.
	Shutdown(h Handle, how uint8) error
	// Close releases h. Closing a connection is visible to its peer, so
	// Close is an output. Output.
	Close(h Handle) error
}
