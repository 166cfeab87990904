package vmm

import (
	"ftvm/wasi"
)

// The Output Rule covers the disk too: an effect (a file written, created,
// renamed, ...) must not reach the outside world before the backup has every
// entry its guest state depends on, or a failover could leave on disk what
// the surviving guest never did. Unlike a stream output, an effect's result
// is an input the guest sees, so it cannot be queued: the call waits until
// the backup has acknowledged the entries before it, then runs. A Gate that
// is open (the primary runs alone) lets effects through at once; one that
// was discarded (the primary lost) fails them with EIO, and the halting VM
// never sees the answer leave. Nothing passes while the host's lease has
// run out (see Lease). Files that are the replica's own (see
// LocalFiles) are internal state: their effects do not wait.

// barrier waits until the effect about to run may run, and reports whether
// it may: once the backup has acknowledged the entries before it, and the
// outputs produced before it have been performed (a file the guest closed
// is closed on the host before the guest's next unlink, as the backup's
// tracking of the guest's handles assumes).
func (g *Gate) barrier() bool {
	tag := g.tag()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.localFile != nil {
		return !g.closed
	}
	g.waiting = true
	for !g.closed && (!g.may(tag) || g.releasing || len(g.queue) > 0 && g.queue[0].seq <= tag) {
		g.cond.Wait()
	}
	g.waiting = false
	return !g.closed
}

// Open implements wasi.Host, after the barrier.
func (g *Gate) Open(dir wasi.Handle, path string, req wasi.OpenRequest) (wasi.OpenResult, wasi.Errno) {
	if !g.barrier() {
		return wasi.OpenResult{}, wasi.EIO
	}
	return g.Host.Open(dir, path, req)
}

// Pwrite implements wasi.Host, after the barrier.
func (g *Gate) Pwrite(h wasi.Handle, off uint64, data []byte) (uint32, wasi.Errno) {
	if !g.barrier() {
		return 0, wasi.EIO
	}
	return g.Host.Pwrite(h, off, data)
}

// SetSize implements wasi.Host, after the barrier.
func (g *Gate) SetSize(h wasi.Handle, size uint64) wasi.Errno {
	if !g.barrier() {
		return wasi.EIO
	}
	return g.Host.SetSize(h, size)
}

// SetTimes implements wasi.Host, after the barrier.
func (g *Gate) SetTimes(h wasi.Handle, atim, mtim uint64, flags uint16) wasi.Errno {
	if !g.barrier() {
		return wasi.EIO
	}
	return g.Host.SetTimes(h, atim, mtim, flags)
}

// Sync implements wasi.Host, after the barrier.
func (g *Gate) Sync(h wasi.Handle, dataOnly bool) wasi.Errno {
	if !g.barrier() {
		return wasi.EIO
	}
	return g.Host.Sync(h, dataOnly)
}

// Allocate implements wasi.Host, after the barrier.
func (g *Gate) Allocate(h wasi.Handle, off, n uint64) wasi.Errno {
	if !g.barrier() {
		return wasi.EIO
	}
	return g.Host.Allocate(h, off, n)
}

// Mkdir implements wasi.Host, after the barrier.
func (g *Gate) Mkdir(dir wasi.Handle, path string) wasi.Errno {
	if !g.barrier() {
		return wasi.EIO
	}
	return g.Host.Mkdir(dir, path)
}

// Rmdir implements wasi.Host, after the barrier.
func (g *Gate) Rmdir(dir wasi.Handle, path string) wasi.Errno {
	if !g.barrier() {
		return wasi.EIO
	}
	return g.Host.Rmdir(dir, path)
}

// Unlink implements wasi.Host, after the barrier.
func (g *Gate) Unlink(dir wasi.Handle, path string) wasi.Errno {
	if !g.barrier() {
		return wasi.EIO
	}
	return g.Host.Unlink(dir, path)
}

// Rename implements wasi.Host, after the barrier.
func (g *Gate) Rename(oldDir wasi.Handle, oldPath string, newDir wasi.Handle, newPath string) wasi.Errno {
	if !g.barrier() {
		return wasi.EIO
	}
	return g.Host.Rename(oldDir, oldPath, newDir, newPath)
}

// Link implements wasi.Host, after the barrier.
func (g *Gate) Link(oldDir wasi.Handle, oldPath string, follow bool, newDir wasi.Handle, newPath string) wasi.Errno {
	if !g.barrier() {
		return wasi.EIO
	}
	return g.Host.Link(oldDir, oldPath, follow, newDir, newPath)
}

// Symlink implements wasi.Host, after the barrier.
func (g *Gate) Symlink(target string, dir wasi.Handle, path string) wasi.Errno {
	if !g.barrier() {
		return wasi.EIO
	}
	return g.Host.Symlink(target, dir, path)
}

// PathSetTimes implements wasi.Host, after the barrier.
func (g *Gate) PathSetTimes(dir wasi.Handle, path string, follow bool, atim, mtim uint64, flags uint16) wasi.Errno {
	if !g.barrier() {
		return wasi.EIO
	}
	return g.Host.PathSetTimes(dir, path, follow, atim, mtim, flags)
}
