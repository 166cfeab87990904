//go:build linux

package wasi

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// osFile is an open file.
type osFile struct {
	f      *os.File
	id     fileID   // the file on the host, to find who holds it
	top    *os.Root // the preopen it was opened in
	orphan string   // its path in top's OrphanDir once unlinked while open
}

// osDir is an open directory: an os.Root confining paths to it, an
// *os.File for its metadata and listing, and the preopened root it lies in
// with its path there, for renames and links between two directories.
type osDir struct {
	root    *os.Root
	f       *os.File
	top     *os.Root
	rel     string
	entries []Dirent // the listing being read, taken at cookie 0
}

// dirFor returns directory hd for an operation on its path p, which must
// not lead into OrphanDir.
func (h *OSHost) dirFor(hd Handle, p string) (*osDir, Errno) {
	d, errno := h.dir(hd)
	if errno == ESUCCESS && hidden(d, p) {
		return nil, ENOENT
	}
	return d, errno
}

func (h *OSHost) dir(hd Handle) (*osDir, Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch r := h.res[hd].(type) {
	case *osDir:
		return r, ESUCCESS
	case nil:
		return nil, EBADF
	}
	return nil, ENOTDIR
}

// file returns the *os.File of a file or directory handle.
func (h *OSHost) file(hd Handle) (*os.File, Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch r := h.res[hd].(type) {
	case *osFile:
		return r.f, ESUCCESS
	case *osDir:
		return r.f, ESUCCESS
	}
	return nil, EBADF
}

func filetypeOf(m fs.FileMode) Filetype {
	switch {
	case m.IsRegular():
		return FiletypeRegularFile
	case m.IsDir():
		return FiletypeDirectory
	case m&fs.ModeSymlink != 0:
		return FiletypeSymbolicLink
	case m&fs.ModeCharDevice != 0:
		return FiletypeCharacterDevice
	case m&fs.ModeDevice != 0:
		return FiletypeBlockDevice
	case m&fs.ModeSocket != 0:
		return FiletypeSocketStream
	}
	return FiletypeUnknown
}

func filestatOf(fi fs.FileInfo) Filestat {
	st := Filestat{Filetype: filetypeOf(fi.Mode()), Size: uint64(fi.Size()), Nlink: 1,
		Mtim: uint64(fi.ModTime().UnixNano())}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Dev, st.Ino, st.Nlink = uint64(sys.Dev), uint64(sys.Ino), uint64(sys.Nlink)
		st.Atim = uint64(time.Unix(int64(sys.Atim.Sec), int64(sys.Atim.Nsec)).UnixNano())
		st.Ctim = uint64(time.Unix(int64(sys.Ctim.Sec), int64(sys.Ctim.Nsec)).UnixNano())
	}
	return st
}

// noFollow fails when the last component of p in root is a symbolic link,
// for lookups without LookupSymlinkFollow. os.Root always follows links
// (inside the root), so this checks first; a link swapped in afterwards
// is still confined to the root.
func noFollow(root *os.Root, p string, req OpenRequest) Errno {
	fi, err := root.Lstat(p)
	if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		return ESUCCESS
	}
	if req.Oflags&(OflagCreat|OflagExcl) == OflagCreat|OflagExcl {
		return EEXIST
	}
	return ELOOP
}

// Open implements Host.
func (h *OSHost) Open(dir Handle, p string, req OpenRequest) (OpenResult, Errno) {
	d, errno := h.dirFor(dir, p)
	if errno != ESUCCESS {
		return OpenResult{}, errno
	}
	return h.open(d, p, req)
}

// open is Open without hiding OrphanDir (an adopting host reopens files
// there).
func (h *OSHost) open(d *osDir, p string, req OpenRequest) (OpenResult, Errno) {
	if !req.Follow {
		if errno := noFollow(d.root, p, req); errno != ESUCCESS {
			return OpenResult{}, errno
		}
	}
	if req.Oflags&OflagDirectory != 0 && req.Oflags&(OflagCreat|OflagTrunc|OflagExcl) == 0 && !req.Write {
		return h.openDir(d, p)
	}
	flag := os.O_RDONLY
	switch {
	case req.Read && req.Write:
		flag = os.O_RDWR
	case req.Write:
		flag = os.O_WRONLY
	}
	if req.Oflags&OflagCreat != 0 {
		flag |= os.O_CREATE
	}
	if req.Oflags&OflagExcl != 0 {
		flag |= os.O_EXCL
	}
	if req.Oflags&OflagTrunc != 0 {
		flag |= os.O_TRUNC
	}
	if req.Oflags&OflagDirectory != 0 {
		flag |= syscall.O_DIRECTORY
	}
	if req.Fdflags&FdflagSync != 0 {
		flag |= os.O_SYNC
	}
	if req.Fdflags&FdflagDsync != 0 {
		flag |= syscall.O_DSYNC
	}
	// O_NONBLOCK keeps opening a FIFO from hanging the VM; regular files
	// ignore it.
	flag |= syscall.O_NONBLOCK
	f, err := d.root.OpenFile(p, flag, 0o666)
	if err != nil {
		return OpenResult{}, errnoOf(err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return OpenResult{}, errnoOf(err)
	}
	if fi.IsDir() {
		f.Close()
		return h.openDir(d, p)
	}
	of := &osFile{f: f, top: d.top}
	of.id, _ = idOf(fi)
	h.mu.Lock()
	defer h.mu.Unlock()
	return OpenResult{Handle: h.add(of), Filetype: filetypeOf(fi.Mode())}, ESUCCESS
}

func (h *OSHost) openDir(d *osDir, p string) (OpenResult, Errno) {
	root, err := d.root.OpenRoot(p)
	if err != nil {
		return OpenResult{}, openRootErrno(d.root, p, err)
	}
	f, err := root.Open(".")
	if err != nil {
		root.Close()
		return OpenResult{}, errnoOf(err)
	}
	nd := &osDir{root: root, f: f, top: d.top, rel: path.Join(d.rel, p)}
	h.mu.Lock()
	defer h.mu.Unlock()
	return OpenResult{Handle: h.add(nd), Filetype: FiletypeDirectory}, ESUCCESS
}

// openRootErrno is the errno of a failed os.Root.OpenRoot of p in root.
// OpenRoot opens p without O_DIRECTORY and then refuses a non-directory
// with an error of its own that carries no errno, which errnoOf would turn
// into EIO; open(2) with O_DIRECTORY gives ENOTDIR there, and guests rely
// on it (Go's os.ReadDir of a file, and its os.Root walking a path through
// a file both expect ENOTDIR). A stat tells that case apart without
// depending on the error's text.
func openRootErrno(root *os.Root, p string, err error) Errno {
	errno := errnoOf(err)
	var se syscall.Errno
	if errno != EIO || errors.As(err, &se) {
		return errno
	}
	if fi, serr := root.Stat(p); serr == nil && !fi.IsDir() {
		return ENOTDIR
	}
	return errno
}

// Pread implements Host.
func (h *OSHost) Pread(hd Handle, off uint64, n uint32) ([]byte, Errno) {
	f, errno := h.file(hd)
	if errno != ESUCCESS {
		return nil, errno
	}
	buf := make([]byte, min(n, maxIO))
	k, err := f.ReadAt(buf, int64(off))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, errnoOf(err)
	}
	return buf[:k], ESUCCESS
}

// Pwrite implements Host.
func (h *OSHost) Pwrite(hd Handle, off uint64, data []byte) (uint32, Errno) {
	f, errno := h.file(hd)
	if errno != ESUCCESS {
		return 0, errno
	}
	k, err := f.WriteAt(data, int64(off))
	if err != nil && k == 0 {
		return 0, errnoOf(err)
	}
	return uint32(k), ESUCCESS
}

// Filestat implements Host.
func (h *OSHost) Filestat(hd Handle) (Filestat, Errno) {
	f, errno := h.file(hd)
	if errno != ESUCCESS {
		return Filestat{}, errno
	}
	fi, err := f.Stat()
	if err != nil {
		return Filestat{}, errnoOf(err)
	}
	return h.unorphaned(fi), ESUCCESS
}

// unorphaned is filestatOf, but a file that has a link in OrphanDir (the
// guest unlinked it, or a rename replaced it, while a handle held it) has
// one link fewer, as in POSIX, which has no such link.
func (h *OSHost) unorphaned(fi fs.FileInfo) Filestat {
	st := filestatOf(fi)
	id, ok := idOf(fi)
	if !ok || st.Nlink == 0 {
		return st
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.res {
		if f, ok := r.(*osFile); ok && f.id == id && f.orphan != "" {
			st.Nlink--
			break
		}
	}
	return st
}

// SetSize implements Host.
func (h *OSHost) SetSize(hd Handle, size uint64) Errno {
	f, errno := h.file(hd)
	if errno != ESUCCESS {
		return errno
	}
	return errnoOf(f.Truncate(int64(size)))
}

// Allocate implements Host: it extends the file to off+n if it is
// shorter, as posix_fallocate does.
func (h *OSHost) Allocate(hd Handle, off, n uint64) Errno {
	f, errno := h.file(hd)
	if errno != ESUCCESS {
		return errno
	}
	fi, err := f.Stat()
	if err != nil {
		return errnoOf(err)
	}
	if end := off + n; end > uint64(fi.Size()) {
		return errnoOf(f.Truncate(int64(end)))
	}
	return ESUCCESS
}

// Sync implements Host.
func (h *OSHost) Sync(hd Handle, dataOnly bool) Errno {
	f, errno := h.file(hd)
	if errno != ESUCCESS {
		return errno
	}
	if dataOnly {
		return errnoOf(fdatasync(f))
	}
	return errnoOf(f.Sync())
}

// timespecs converts the times of a set_times call for utimensat.
func timespecs(atim, mtim uint64, flags uint16) [2]unix.Timespec {
	pick := func(t uint64, set, now uint16) unix.Timespec {
		switch {
		case flags&now != 0:
			return unix.Timespec{Nsec: unix.UTIME_NOW}
		case flags&set != 0:
			return unix.NsecToTimespec(int64(min(t, 1<<63-1)))
		}
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	}
	return [2]unix.Timespec{pick(atim, FstflagAtim, FstflagAtimNow), pick(mtim, FstflagMtim, FstflagMtimNow)}
}

// SetTimes implements Host.
func (h *OSHost) SetTimes(hd Handle, atim, mtim uint64, flags uint16) Errno {
	f, errno := h.file(hd)
	if errno != ESUCCESS {
		return errno
	}
	ts := timespecs(atim, mtim, flags)
	return errnoOf(futimens(f, &ts))
}

// ReadDir implements Host. The listing is taken when cookie is 0 and
// served from that snapshot for the following cookies, sorted by name
// after "." and "..". Each entry's cookie is its index plus one.
func (h *OSHost) ReadDir(hd Handle, cookie uint64, max uint32) ([]Dirent, Errno) {
	d, errno := h.dir(hd)
	if errno != ESUCCESS {
		return nil, errno
	}
	if cookie == 0 || d.entries == nil {
		entries, errno := listDir(d)
		if errno != ESUCCESS {
			return nil, errno
		}
		d.entries = entries
	}
	if cookie >= uint64(len(d.entries)) {
		return nil, ESUCCESS
	}
	rest := d.entries[cookie:]
	return slices.Clone(rest[:min(uint64(len(rest)), uint64(max))]), ESUCCESS
}

func listDir(d *osDir) ([]Dirent, Errno) {
	f, err := d.root.Open(".")
	if err != nil {
		return nil, errnoOf(err)
	}
	defer f.Close()
	list, err := f.ReadDir(-1)
	if err != nil {
		return nil, errnoOf(err)
	}
	if d.rel == "." {
		list = slices.DeleteFunc(list, func(e fs.DirEntry) bool { return e.Name() == OrphanDir })
	}
	slices.SortFunc(list, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	entries := make([]Dirent, 0, len(list)+2)
	var self, parent unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &self); err != nil {
		return nil, errnoOf(err)
	}
	if err := unix.Fstatat(int(f.Fd()), "..", &parent, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		parent = self
	}
	entries = append(entries,
		Dirent{Next: 1, Ino: uint64(self.Ino), Type: FiletypeDirectory, Name: "."},
		Dirent{Next: 2, Ino: uint64(parent.Ino), Type: FiletypeDirectory, Name: ".."})
	for _, e := range list {
		de := Dirent{Next: uint64(len(entries) + 1), Type: filetypeOf(e.Type()), Name: e.Name()}
		if fi, err := e.Info(); err == nil {
			if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
				de.Ino = uint64(sys.Ino)
			}
		}
		entries = append(entries, de)
	}
	return entries, ESUCCESS
}

// PathFilestat implements Host.
func (h *OSHost) PathFilestat(dir Handle, p string, follow bool) (Filestat, Errno) {
	d, errno := h.dirFor(dir, p)
	if errno != ESUCCESS {
		return Filestat{}, errno
	}
	var fi fs.FileInfo
	var err error
	if follow {
		fi, err = d.root.Stat(p)
	} else {
		fi, err = d.root.Lstat(p)
	}
	if err != nil {
		return Filestat{}, errnoOf(err)
	}
	return h.unorphaned(fi), ESUCCESS
}

// Readlink implements Host.
func (h *OSHost) Readlink(dir Handle, p string) (string, Errno) {
	d, errno := h.dirFor(dir, p)
	if errno != ESUCCESS {
		return "", errno
	}
	target, err := d.root.Readlink(p)
	if err != nil {
		return "", errnoOf(err)
	}
	return target, ESUCCESS
}

// Mkdir implements Host.
func (h *OSHost) Mkdir(dir Handle, p string) Errno {
	d, errno := h.dirFor(dir, p)
	if errno != ESUCCESS {
		return errno
	}
	return errnoOf(d.root.Mkdir(p, 0o777))
}

// Rmdir implements Host.
func (h *OSHost) Rmdir(dir Handle, p string) Errno {
	d, errno := h.dirFor(dir, p)
	if errno != ESUCCESS {
		return errno
	}
	fi, err := d.root.Lstat(p)
	if err != nil {
		return errnoOf(err)
	}
	if !fi.IsDir() {
		return ENOTDIR
	}
	if path.Clean(p) == "." {
		return EINVAL // rmdir(".") fails so on Linux
	}
	return errnoOf(d.root.Remove(p))
}

// Unlink implements Host.
func (h *OSHost) Unlink(dir Handle, p string) Errno {
	d, errno := h.dirFor(dir, p)
	if errno != ESUCCESS {
		return errno
	}
	fi, err := d.root.Lstat(p)
	if err != nil {
		return errnoOf(err)
	}
	if fi.IsDir() {
		return EISDIR
	}
	if strings.HasSuffix(p, "/") {
		return ENOTDIR
	}
	if moved, errno := h.orphan(d, p, fi, false); errno != ESUCCESS || moved {
		return errno
	}
	return errnoOf(d.root.Remove(p))
}

// twoDirs returns a root in which both paths can be resolved, with the
// paths relative to it: the directories' own root when they are the same,
// else the preopened root both lie in. Directories in different preopens
// are different devices as far as the guest knows: EXDEV.
func (h *OSHost) twoDirs(oldDir Handle, oldPath string, newDir Handle, newPath string) (*os.Root, string, string, Errno) {
	od, errno := h.dirFor(oldDir, oldPath)
	if errno != ESUCCESS {
		return nil, "", "", errno
	}
	nd, errno := h.dirFor(newDir, newPath)
	if errno != ESUCCESS {
		return nil, "", "", errno
	}
	if od == nd {
		return od.root, oldPath, newPath, ESUCCESS
	}
	if od.top != nd.top {
		return nil, "", "", EXDEV
	}
	return od.top, joinRel(od.rel, oldPath), joinRel(nd.rel, newPath), ESUCCESS
}

// joinRel joins a directory's path in its preopen with a path relative to
// the directory, keeping a trailing slash.
func joinRel(dir, p string) string {
	j := path.Join(dir, p)
	if strings.HasSuffix(p, "/") {
		j += "/"
	}
	return j
}

// Rename implements Host. A file the rename replaces while a handle holds
// it lives on in POSIX until the last close: it is linked into OrphanDir
// first, as an unlinked one is moved there (see orphan).
func (h *OSHost) Rename(oldDir Handle, oldPath string, newDir Handle, newPath string) Errno {
	root, op, np, errno := h.twoDirs(oldDir, oldPath, newDir, newPath)
	if errno != ESUCCESS {
		return errno
	}
	if nfi, err := root.Lstat(np); err == nil && nfi.Mode().IsRegular() {
		if ofi, err := root.Lstat(op); err == nil && !os.SameFile(ofi, nfi) {
			nd, _ := h.dirFor(newDir, newPath)
			if _, errno := h.orphan(nd, newPath, nfi, true); errno != ESUCCESS {
				return errno
			}
		}
	}
	return renameIn(root, op, np)
}

// renameIn renames op to np, both relative to root, as rename(2) does: a
// directory replaces an empty directory (ENOTEMPTY for one that is not),
// a directory onto a file is ENOTDIR and a file onto a directory EISDIR.
// os.Root.Rename refuses to replace any directory with EEXIST, as
// os.Rename does, so renameat is called directly on the two parents,
// which are opened through root and so confined to it; renameat does not
// follow a symbolic link in the last component.
func renameIn(root *os.Root, op, np string) Errno {
	oparent, obase := splitLast(op)
	nparent, nbase := splitLast(np)
	if isDot(obase) || isDot(nbase) {
		return EBUSY // as rename(2) of "." or ".." on Linux
	}
	of, err := root.OpenFile(oparent, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return errnoOf(err)
	}
	defer of.Close()
	nf, err := root.OpenFile(nparent, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return errnoOf(err)
	}
	defer nf.Close()
	return errnoOf(unix.Renameat(int(of.Fd()), obase, int(nf.Fd()), nbase))
}

// splitLast splits a relative path into its parent directory and its
// last component, which keeps a trailing slash (rename(2) then requires
// a directory).
func splitLast(p string) (parent, last string) {
	trimmed := strings.TrimRight(p, "/")
	if trimmed == "" {
		return ".", "."
	}
	last = path.Base(trimmed)
	if len(trimmed) < len(p) {
		last += "/"
	}
	return path.Dir(trimmed), last
}

func isDot(name string) bool {
	name = strings.TrimRight(name, "/")
	return name == "." || name == ".."
}

// Link implements Host.
func (h *OSHost) Link(oldDir Handle, oldPath string, follow bool, newDir Handle, newPath string) Errno {
	root, op, np, errno := h.twoDirs(oldDir, oldPath, newDir, newPath)
	if errno != ESUCCESS {
		return errno
	}
	if follow {
		// Resolve a symbolic link in the last component ourselves: linkat
		// with AT_SYMLINK_FOLLOW would follow it without confinement.
		for i := 0; ; i++ {
			fi, err := root.Lstat(op)
			if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
				break
			}
			if i == 40 {
				return ELOOP
			}
			target, err := root.Readlink(op)
			if err != nil {
				return errnoOf(err)
			}
			if path.IsAbs(target) {
				return ENOTCAPABLE
			}
			op = path.Join(path.Dir(op), target)
			if checkPath(op) != ESUCCESS {
				return ENOTCAPABLE
			}
		}
	}
	return errnoOf(root.Link(op, np))
}

// Symlink implements Host.
func (h *OSHost) Symlink(target string, dir Handle, p string) Errno {
	d, errno := h.dirFor(dir, p)
	if errno != ESUCCESS {
		return errno
	}
	return errnoOf(d.root.Symlink(target, p))
}

// PathSetTimes implements Host.
func (h *OSHost) PathSetTimes(dir Handle, p string, follow bool, atim, mtim uint64, flags uint16) Errno {
	d, errno := h.dirFor(dir, p)
	if errno != ESUCCESS {
		return errno
	}
	if !follow {
		fi, err := d.root.Lstat(p)
		if err != nil {
			return errnoOf(err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			// The link itself: utimensat with AT_SYMLINK_NOFOLLOW on
			// its name in its directory, opened inside the root.
			parent, err := d.root.Open(path.Dir(strings.TrimRight(p, "/")))
			if err != nil {
				return errnoOf(err)
			}
			defer parent.Close()
			ts := timespecs(atim, mtim, flags)
			return errnoOf(unix.UtimesNanoAt(int(parent.Fd()), path.Base(p), ts[:], unix.AT_SYMLINK_NOFOLLOW))
		}
	}
	// os.Root.Chtimes leaves a zero time unchanged.
	at, mt := timeOf(atim, flags, FstflagAtim, FstflagAtimNow), timeOf(mtim, flags, FstflagMtim, FstflagMtimNow)
	return errnoOf(d.root.Chtimes(p, at, mt))
}

func timeOf(t uint64, flags, set, now uint16) time.Time {
	switch {
	case flags&now != 0:
		return time.Now()
	case flags&set != 0:
		return time.Unix(0, int64(min(t, 1<<63-1)))
	}
	return time.Time{}
}
