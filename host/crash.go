package host

import (
	"os"
	"syscall"

	"ftvm/wasi"
)

// crashHost is a primary's OS host as the crash failpoints see it (see
// Failpoints): it kills this host's process just before or just after an
// effect, or arms the kill that follows the send of the effect's entry. The
// Gate sits in front of it, so "before" is past the Gate's barrier: the
// backup has every entry the effect depends on.
type crashHost struct {
	*wasi.OSHost
	fp *Failpoints
	// sent arms the crash after the send of the entry that the call
	// performing the effect logs next.
	sent func()
}

// crash kills this host's process at once, as a power cut would: no
// deferred function runs, no goodbye is sent.
func crash() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}

func (c crashHost) before(m string) {
	if c.fp.crashAt(crashBeforeEffect, m) {
		crash()
	}
}

func (c crashHost) after(m string) {
	if c.fp.crashAt(crashAfterEffect, m) {
		crash()
	}
	if c.fp.crashAt(crashAfterSend, m) {
		c.sent()
	}
}

// Open implements wasi.Host.
func (c crashHost) Open(dir wasi.Handle, path string, req wasi.OpenRequest) (wasi.OpenResult, wasi.Errno) {
	c.before("Open")
	defer c.after("Open")
	return c.OSHost.Open(dir, path, req)
}

// Pwrite implements wasi.Host.
func (c crashHost) Pwrite(h wasi.Handle, off uint64, data []byte) (uint32, wasi.Errno) {
	c.before("Pwrite")
	defer c.after("Pwrite")
	return c.OSHost.Pwrite(h, off, data)
}

// SetSize implements wasi.Host.
func (c crashHost) SetSize(h wasi.Handle, size uint64) wasi.Errno {
	c.before("SetSize")
	defer c.after("SetSize")
	return c.OSHost.SetSize(h, size)
}

// SetTimes implements wasi.Host.
func (c crashHost) SetTimes(h wasi.Handle, atim, mtim uint64, flags uint16) wasi.Errno {
	c.before("SetTimes")
	defer c.after("SetTimes")
	return c.OSHost.SetTimes(h, atim, mtim, flags)
}

// Sync implements wasi.Host.
func (c crashHost) Sync(h wasi.Handle, dataOnly bool) wasi.Errno {
	c.before("Sync")
	defer c.after("Sync")
	return c.OSHost.Sync(h, dataOnly)
}

// Allocate implements wasi.Host.
func (c crashHost) Allocate(h wasi.Handle, off, n uint64) wasi.Errno {
	c.before("Allocate")
	defer c.after("Allocate")
	return c.OSHost.Allocate(h, off, n)
}

// Mkdir implements wasi.Host.
func (c crashHost) Mkdir(dir wasi.Handle, path string) wasi.Errno {
	c.before("Mkdir")
	defer c.after("Mkdir")
	return c.OSHost.Mkdir(dir, path)
}

// Rmdir implements wasi.Host.
func (c crashHost) Rmdir(dir wasi.Handle, path string) wasi.Errno {
	c.before("Rmdir")
	defer c.after("Rmdir")
	return c.OSHost.Rmdir(dir, path)
}

// Unlink implements wasi.Host.
func (c crashHost) Unlink(dir wasi.Handle, path string) wasi.Errno {
	c.before("Unlink")
	defer c.after("Unlink")
	return c.OSHost.Unlink(dir, path)
}

// Rename implements wasi.Host.
func (c crashHost) Rename(oldDir wasi.Handle, oldPath string, newDir wasi.Handle, newPath string) wasi.Errno {
	c.before("Rename")
	defer c.after("Rename")
	return c.OSHost.Rename(oldDir, oldPath, newDir, newPath)
}

// Link implements wasi.Host.
func (c crashHost) Link(oldDir wasi.Handle, oldPath string, follow bool, newDir wasi.Handle, newPath string) wasi.Errno {
	c.before("Link")
	defer c.after("Link")
	return c.OSHost.Link(oldDir, oldPath, follow, newDir, newPath)
}

// Symlink implements wasi.Host.
func (c crashHost) Symlink(target string, dir wasi.Handle, path string) wasi.Errno {
	c.before("Symlink")
	defer c.after("Symlink")
	return c.OSHost.Symlink(target, dir, path)
}

// PathSetTimes implements wasi.Host.
func (c crashHost) PathSetTimes(dir wasi.Handle, path string, follow bool, atim, mtim uint64, flags uint16) wasi.Errno {
	c.before("PathSetTimes")
	defer c.after("PathSetTimes")
	return c.OSHost.PathSetTimes(dir, path, follow, atim, mtim, flags)
}
