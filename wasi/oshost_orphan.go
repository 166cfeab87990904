//go:build linux

package wasi

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
)

// A file the guest unlinks while it holds it open lives on in POSIX until
// the last close, but in the primary's kernel only: a backup going live
// could not reopen it by path and the guest's handle would be lost. So the
// OS host does not remove such a file; it moves it to OrphanDir at the top
// of its preopen, named after the lowest handle that holds it (which the
// backup, tracking handles from the log, computes the same way), and
// removes it at the last close. OrphanDir is hidden from the guest: left
// out of listings, and a path that leads into it does not exist. A host
// that starts a guest afresh clears it.

// OrphanDir is the directory, at the top of each preopen, of the files the
// guest unlinked while holding them open.
const OrphanDir = ".ftvm-orphans"

// OrphanPath is the path in its preopen that a file unlinked while open
// takes, given the lowest handle holding it.
func OrphanPath(lowest Handle) string {
	return OrphanDir + "/" + strconv.FormatUint(uint64(lowest), 10)
}

// hidden reports whether path p of directory d leads into OrphanDir.
func hidden(d *osDir, p string) bool {
	first, _, _ := strings.Cut(path.Join(d.rel, p), "/")
	return first == OrphanDir
}

// fileID identifies a file on the host.
type fileID struct{ dev, ino uint64 }

func idOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{uint64(st.Dev), uint64(st.Ino)}, true
}

// orphan moves the file at path p of d, which the guest unlinks, to
// OrphanDir if a handle still holds it, and reports whether it did. With
// link it links it there instead, and leaves it where it is: a rename is
// about to replace it.
func (h *OSHost) orphan(d *osDir, p string, fi fs.FileInfo, link bool) (bool, Errno) {
	id, ok := idOf(fi)
	if !ok || !fi.Mode().IsRegular() {
		return false, ESUCCESS
	}
	h.mu.Lock()
	var holders []*osFile
	lowest := Handle(0)
	for hd, r := range h.res {
		if f, ok := r.(*osFile); ok && f.id == id && f.top == d.top {
			holders = append(holders, f)
			if lowest == 0 || hd < lowest {
				lowest = hd
			}
		}
	}
	h.mu.Unlock()
	if len(holders) == 0 {
		return false, ESUCCESS
	}
	dst := OrphanPath(lowest)
	if err := d.top.Mkdir(OrphanDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return false, errnoOf(err)
	}
	move := d.top.Rename
	if link {
		move = d.top.Link
	}
	if err := move(joinRel(d.rel, p), dst); err != nil {
		return false, errnoOf(err)
	}
	h.mu.Lock()
	for _, f := range holders {
		f.orphan = dst
	}
	h.mu.Unlock()
	return true, ESUCCESS
}

// releaseFile closes f and, when the guest closes the last handle holding
// it, removes its orphan. CloseAll leaves orphans alone: a host that halts
// (it lost the test-and-set) must not touch what the survivor adopted, and
// the next fresh start clears them. h.mu is not held.
func (h *OSHost) releaseFile(f *osFile) error {
	err := f.f.Close()
	if f.orphan == "" || f.top == nil {
		return err
	}
	h.mu.Lock()
	last := !h.closed
	for _, r := range h.res {
		if g, ok := r.(*osFile); ok && g != f && g.top == f.top && g.orphan == f.orphan {
			last = false
			break
		}
	}
	h.mu.Unlock()
	if last {
		if rerr := f.top.Remove(f.orphan); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			h.log.Warn("wasi: removing an unlinked file at its last close", "path", f.orphan, "err", rerr)
		}
	}
	return err
}

// clearOrphans removes what a previous run left in root's OrphanDir. A
// name there that is not one the OS host makes (a directory of files named
// after handles) was put there by someone else: it is refused, and nothing
// is removed. OrphanDir, or a name in it, vanishing meanwhile is no error:
// another OS host on the same directory cleared it first.
func clearOrphans(root *os.Root) error {
	err := clearOrphanDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

func clearOrphanDir(root *os.Root) error {
	fi, err := root.Lstat(OrphanDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory ftvm made: move it away (ftvm keeps files the guest unlinked while open there)", OrphanDir)
	}
	d, err := root.Open(OrphanDir)
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, err := strconv.ParseUint(n, 10, 64); err != nil {
			return fmt.Errorf("%s/%s is not a file ftvm made: move it away (ftvm keeps files the guest unlinked while open in %s)", OrphanDir, n, OrphanDir)
		}
	}
	return root.RemoveAll(OrphanDir)
}
