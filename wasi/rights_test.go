package wasi

import (
	"encoding/binary"
	"testing"
)

// fdstat returns the filetype and the rights fd_fdstat_get reports for fd.
func (x *harness) fdstat(fd uint32) (Filetype, uint64, uint64) {
	x.t.Helper()
	x.want(ESUCCESS, "fd_fdstat_get", uint64(fd), 0x300)
	b := x.bytes(0x300, 24)
	return Filetype(b[0]), binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:])
}

// TestDirectoryDescriptorOps checks that what makes no sense on a
// directory fails there: seeking and telling (a directory has neither
// right; wazero answers EISDIR too), reading and writing.
func TestDirectoryDescriptorOps(t *testing.T) {
	x := newHarness(t, Config{Preopens: []Preopen{{GuestPath: "/"}}})
	ft, base, inh := x.fdstat(3)
	if ft != FiletypeDirectory || base&(RightFdSeek|RightFdTell|RightFdRead|RightFdWrite) != 0 {
		t.Errorf("preopen: filetype %d, rights %#x", ft, base)
	}
	if base != rightsDir || inh != rightsDir|rightsFile {
		t.Errorf("preopen rights %#x, inheriting %#x", base, inh)
	}
	iovs, n := x.iovs(0x1000, make([]byte, 8))
	calls := len(x.h.calls)
	x.want(EISDIR, "fd_seek", 3, 0, uint64(WhenceSet), 0x100)
	x.want(EISDIR, "fd_seek", 3, 0, uint64(WhenceCur), 0x100)
	x.want(EISDIR, "fd_seek", 3, 0, uint64(WhenceEnd), 0x100)
	x.want(EISDIR, "fd_tell", 3, 0x100)
	x.want(EISDIR, "fd_read", 3, iovs, n, 0x100)
	x.want(EISDIR, "fd_pread", 3, iovs, n, 0, 0x100)
	x.want(EISDIR, "fd_write", 3, iovs, n, 0x100)
	x.want(EISDIR, "fd_pwrite", 3, iovs, n, 0, 0x100)
	x.want(EISDIR, "fd_allocate", 3, 0, 1)
	x.want(EISDIR, "fd_filestat_set_size", 3, 0)
	x.want(EBADF, "fd_advise", 3, 0, 0, 0)
	if len(x.h.calls) != calls {
		t.Errorf("directory operations reached the host: %v", x.h.calls[calls:])
	}
	// Nor can the guest give a directory the right to seek.
	x.want(ENOTCAPABLE, "fd_fdstat_set_rights", 3, rightsDir|RightFdSeek, rightsDir|rightsFile)

	// A directory opened below the preopen is the same.
	pp, pl := x.path("d")
	x.want(ESUCCESS, "path_create_directory", 3, pp, pl)
	x.want(ESUCCESS, "path_open", 3, 0, pp, pl, uint64(OflagDirectory), rightsDir|RightFdSeek, rightsDir|rightsFile, 0, 0x9000)
	dfd := x.u32(0x9000)
	if _, base, _ := x.fdstat(dfd); base != rightsDir {
		t.Errorf("opened directory has rights %#x, want %#x", base, rightsDir)
	}
	x.want(EISDIR, "fd_seek", uint64(dfd), 0, uint64(WhenceSet), 0x100)
	x.want(EISDIR, "fd_tell", uint64(dfd), 0x100)
}

// TestRightsDropped checks that fd_fdstat_set_rights only drops rights and
// that every call needing a dropped right fails with ENOTCAPABLE, before
// the Host sees it.
func TestRightsDropped(t *testing.T) {
	x := newHarness(t, Config{Preopens: []Preopen{{GuestPath: "/"}}})
	fd := x.open("f", OflagCreat, rightsFile, 0)
	iovs, n := x.iovs(0x1000, []byte("data"))
	x.want(ESUCCESS, "fd_write", uint64(fd), iovs, n, 0x100)

	// Asking for more than the descriptor holds fails and changes nothing.
	x.want(ENOTCAPABLE, "fd_fdstat_set_rights", uint64(fd), rightsFile|RightPathOpen, 0)
	x.want(ENOTCAPABLE, "fd_fdstat_set_rights", uint64(fd), rightsFile, RightPathOpen)
	if _, base, _ := x.fdstat(fd); base != rightsFile {
		t.Errorf("rights %#x after a refused raise", base)
	}
	x.want(ESUCCESS, "fd_fdstat_set_rights", uint64(fd), rightsFile&^RightFdRead, 0)
	if _, base, inh := x.fdstat(fd); base != rightsFile&^RightFdRead || inh != 0 {
		t.Errorf("rights %#x %#x after the drop", base, inh)
	}
	calls := len(x.h.calls)
	x.want(ENOTCAPABLE, "fd_read", uint64(fd), iovs, n, 0x100)
	x.want(ENOTCAPABLE, "fd_pread", uint64(fd), iovs, n, 0, 0x100)
	x.want(ENOTCAPABLE, "fd_fdstat_set_rights", uint64(fd), rightsFile, 0) // no way back
	x.want(ESUCCESS, "fd_fdstat_set_rights", uint64(fd), RightFdWrite, 0)
	x.want(ENOTCAPABLE, "fd_seek", uint64(fd), 1, uint64(WhenceSet), 0x100)
	x.want(ENOTCAPABLE, "fd_tell", uint64(fd), 0x100)
	x.want(ENOTCAPABLE, "fd_pwrite", uint64(fd), iovs, n, 0, 0x100)
	x.want(ENOTCAPABLE, "fd_filestat_get", uint64(fd), 0x200)
	x.want(ENOTCAPABLE, "fd_filestat_set_size", uint64(fd), 0)
	x.want(ENOTCAPABLE, "fd_filestat_set_times", uint64(fd), 0, 0, uint64(FstflagMtimNow))
	x.want(ENOTCAPABLE, "fd_allocate", uint64(fd), 0, 1)
	x.want(ENOTCAPABLE, "fd_advise", uint64(fd), 0, 0, 0)
	x.want(ENOTCAPABLE, "fd_sync", uint64(fd))
	x.want(ENOTCAPABLE, "fd_datasync", uint64(fd))
	x.want(ENOTCAPABLE, "fd_fdstat_set_flags", uint64(fd), uint64(FdflagAppend))
	if len(x.h.calls) != calls {
		t.Errorf("calls without their rights reached the host: %v", x.h.calls[calls:])
	}
	x.want(ESUCCESS, "fd_write", uint64(fd), iovs, n, 0x100) // the right kept

	// Each path_* function needs its right on the directory.
	x.h.files["f2"] = []byte("x")
	x.h.dirs["d"] = true
	x.put(0x8100, []byte("f2"))
	x.put(0x8200, []byte("new"))
	x.put(0x8300, []byte("d"))
	for _, c := range []struct {
		right uint64
		name  string
		args  []uint64
	}{
		{RightPathOpen, "path_open", []uint64{3, 0, 0x8100, 2, 0, RightFdRead, 0, 0, 0x9000}},
		{RightPathCreateFile, "path_open", []uint64{3, 0, 0x8200, 3, uint64(OflagCreat), RightFdRead, 0, 0, 0x9000}},
		{RightPathFilestatSetSize, "path_open", []uint64{3, 0, 0x8100, 2, uint64(OflagTrunc), RightFdWrite, 0, 0, 0x9000}},
		{RightPathCreateDirectory, "path_create_directory", []uint64{3, 0x8200, 3}},
		{RightPathFilestatGet, "path_filestat_get", []uint64{3, 0, 0x8100, 2, 0x200}},
		{RightPathFilestatSetTimes, "path_filestat_set_times", []uint64{3, 0, 0x8100, 2, 0, 0, uint64(FstflagMtimNow)}},
		{RightPathLinkSource, "path_link", []uint64{3, 0, 0x8100, 2, 3, 0x8200, 3}},
		{RightPathLinkTarget, "path_link", []uint64{3, 0, 0x8100, 2, 3, 0x8200, 3}},
		{RightPathReadlink, "path_readlink", []uint64{3, 0x8100, 2, 0x200, 64, 0x100}},
		{RightPathRemoveDirectory, "path_remove_directory", []uint64{3, 0x8300, 1}},
		{RightPathRenameSource, "path_rename", []uint64{3, 0x8100, 2, 3, 0x8200, 3}},
		{RightPathRenameTarget, "path_rename", []uint64{3, 0x8100, 2, 3, 0x8200, 3}},
		{RightPathSymlink, "path_symlink", []uint64{0x8100, 2, 3, 0x8200, 3}},
		{RightPathUnlinkFile, "path_unlink_file", []uint64{3, 0x8100, 2}},
		{RightFdReaddir, "fd_readdir", []uint64{3, 0x1000, 256, 0, 0x100}},
		{RightFdFilestatGet, "fd_filestat_get", []uint64{3, 0x200}},
	} {
		y := newHarness(t, Config{Preopens: []Preopen{{GuestPath: "/"}}})
		y.h.files["f2"] = []byte("x")
		y.h.dirs["d"] = true
		y.put(0x8100, []byte("f2"))
		y.put(0x8200, []byte("new"))
		y.put(0x8300, []byte("d"))
		y.want(ESUCCESS, "fd_fdstat_set_rights", 3, rightsDir&^c.right, rightsDir|rightsFile)
		if got := y.call(c.name, c.args...); got != ENOTCAPABLE {
			t.Errorf("%s without right %#x = %v, want ENOTCAPABLE", c.name, c.right, got)
		}
		if len(y.h.calls) != 0 {
			t.Errorf("%s without right %#x reached the host: %v", c.name, c.right, y.h.calls)
		}
	}

	// Truncating on open needs path_filestat_set_size; opening does not.
	pp, pl := x.path("f")
	x.want(ESUCCESS, "fd_fdstat_set_rights", 3, rightsDir&^RightPathFilestatSetSize, rightsDir|rightsFile)
	x.want(ENOTCAPABLE, "path_open", 3, 0, pp, pl, uint64(OflagTrunc), rightsFile, 0, 0, 0x9000)
	x.want(ESUCCESS, "path_open", 3, 0, pp, pl, 0, rightsFile, 0, 0, 0x9000)
	if got := string(x.h.files["f"]); got != "datadata" {
		t.Errorf("file %q", got)
	}
}

// TestRightsInherited checks that path_open gives a descriptor the rights
// asked for that its directory passes on, and no others.
func TestRightsInherited(t *testing.T) {
	x := newHarness(t, Config{Preopens: []Preopen{{GuestPath: "/"}}})
	x.want(ESUCCESS, "fd_fdstat_set_rights", 3, rightsDir, rightsDir|rightsFile&^RightFdWrite)
	pp, pl := x.path("f")
	x.want(ESUCCESS, "path_open", 3, 0, pp, pl, uint64(OflagCreat), RightFdRead|RightFdWrite|RightFdSeek, rightsFile, 0, 0x9000)
	fd := x.u32(0x9000)
	ft, base, inh := x.fdstat(fd)
	if ft != FiletypeRegularFile || base != RightFdRead|RightFdSeek || inh != rightsFile&^RightFdWrite {
		t.Errorf("opened file: filetype %d, rights %#x, inheriting %#x", ft, base, inh)
	}
	iovs, n := x.iovs(0x1000, []byte("data"))
	x.want(ENOTCAPABLE, "fd_write", uint64(fd), iovs, n, 0x100)

	// A directory gets only directory rights, whatever was asked.
	x.h.dirs["d"] = true
	pp, pl = x.path("d")
	x.want(ESUCCESS, "path_open", 3, 0, pp, pl, uint64(OflagDirectory), rightsAll&^RightFdWrite, rightsAll, 0, 0x9000)
	if _, base, inh := x.fdstat(x.u32(0x9000)); base != rightsDir || inh != rightsDir|rightsFile&^RightFdWrite {
		t.Errorf("opened directory: rights %#x, inheriting %#x", base, inh)
	}
}

// TestRightsGoDirectories checks the one right a directory gets beyond
// those asked for: Go's wasip1 port opens directories (os.OpenRoot) asking
// for no path_filestat_set_size, then creates files in them with O_TRUNC
// (os.Root.Create). Since the files it may open there may be truncated
// (fd_filestat_set_size is inherited), O_TRUNC is allowed too; dropping
// the right explicitly still takes it away.
func TestRightsGoDirectories(t *testing.T) {
	const (
		goFile       = rightsFile | rightsDir // syscall's fileRights
		goWrite      = RightFdDatasync | RightFdWrite | RightFdAllocate | RightPathFilestatSetSize
		goReadOnlyRt = goFile &^ goWrite
	)
	x := newHarness(t, Config{Preopens: []Preopen{{GuestPath: "/"}}})
	x.h.dirs["root"] = true
	pp, pl := x.path("root")
	x.want(ESUCCESS, "path_open", 3, 1, pp, pl, 0, goReadOnlyRt, goFile, 0, 0x9000)
	dfd := x.u32(0x9000)
	_, base, _ := x.fdstat(dfd)
	if base&RightPathFilestatSetSize == 0 {
		t.Fatalf("directory rights %#x lack path_filestat_set_size", base)
	}
	pp, pl = x.path("f")
	x.want(ESUCCESS, "path_open", uint64(dfd), 1, pp, pl, uint64(OflagCreat|OflagTrunc), goFile, goFile, 0, 0x9000)
	x.want(ESUCCESS, "fd_fdstat_set_rights", uint64(dfd), base&^RightPathFilestatSetSize, goFile)
	x.want(ENOTCAPABLE, "path_open", uint64(dfd), 1, pp, pl, uint64(OflagCreat|OflagTrunc), goFile, goFile, 0, 0x9000)

	// Without fd_filestat_set_size to inherit, the directory gets only
	// what it asked for.
	pp, pl = x.path("root")
	x.want(ESUCCESS, "path_open", 3, 1, pp, pl, 0, goReadOnlyRt, goFile&^RightFdFilestatSetSize, 0, 0x9000)
	if _, base, _ := x.fdstat(x.u32(0x9000)); base&RightPathFilestatSetSize != 0 {
		t.Errorf("directory rights %#x hold path_filestat_set_size", base)
	}
}

// TestRightsSockets checks the socket rights.
func TestRightsSockets(t *testing.T) {
	x := newHarness(t, Config{Listeners: []Listener{{}}})
	x.h.pending[3] = 2
	x.want(ESUCCESS, "sock_accept", 3, 0, 0x100)
	conn := x.u32(0x100)
	if _, base, _ := x.fdstat(conn); base != rightsConn {
		t.Errorf("connection rights %#x", base)
	}
	iovs, n := x.iovs(0x1000, []byte("data"))
	x.want(ESUCCESS, "fd_fdstat_set_rights", uint64(conn), RightFdFdstatSetFlags, 0)
	calls := len(x.h.calls)
	x.want(ENOTCAPABLE, "sock_recv", uint64(conn), iovs, n, 0, 0x100, 0x104)
	x.want(ENOTCAPABLE, "sock_send", uint64(conn), iovs, n, 0, 0x100)
	x.want(ENOTCAPABLE, "sock_shutdown", uint64(conn), uint64(ShutWr))
	x.want(ENOTCAPABLE, "fd_read", uint64(conn), iovs, n, 0x100)
	x.want(ENOTCAPABLE, "fd_write", uint64(conn), iovs, n, 0x100)
	// A poll subscription on it fails, as an event, without the Host.
	sub := make([]byte, subscriptionSize)
	binary.LittleEndian.PutUint64(sub[0:], 7)
	sub[8] = byte(EventFdRead)
	binary.LittleEndian.PutUint32(sub[16:], conn)
	x.put(0x2000, sub)
	x.want(ESUCCESS, "poll_oneoff", 0x2000, 0x3000, 1, 0x100)
	if got := Errno(binary.LittleEndian.Uint16(x.bytes(0x3000+8, 2))); x.u32(0x100) != 1 || got != ENOTCAPABLE {
		t.Errorf("poll of a descriptor without the right: %d events, errno %v", x.u32(0x100), got)
	}
	x.want(ESUCCESS, "fd_fdstat_set_rights", 3, rightsListener&^RightSockAccept, rightsConn)
	x.want(ENOTCAPABLE, "sock_accept", 3, 0, 0x100)
	if len(x.h.calls) != calls {
		t.Errorf("calls without their rights reached the host: %v", x.h.calls[calls:])
	}
}

// TestRightsSnapshot checks that dropped rights survive a snapshot: the
// restored System refuses what the original refused.
func TestRightsSnapshot(t *testing.T) {
	x := newHarness(t, Config{Preopens: []Preopen{{GuestPath: "/"}}})
	fd := x.open("f", OflagCreat, rightsFile, 0)
	x.want(ESUCCESS, "fd_fdstat_set_rights", uint64(fd), RightFdWrite|RightFdFilestatGet, 0)
	x.want(ESUCCESS, "fd_fdstat_set_rights", 3, rightsDir&^RightPathFilestatSetSize, rightsFile)
	st, err := x.s.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	y := newHarness(t, Config{})
	y.h, y.s.host = x.h, x.h
	if err := y.s.UnmarshalState(st); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*harness{x, y} {
		if _, base, inh := h.fdstat(fd); base != RightFdWrite|RightFdFilestatGet || inh != 0 {
			t.Errorf("file rights %#x %#x", base, inh)
		}
		if _, base, inh := h.fdstat(3); base != rightsDir&^RightPathFilestatSetSize || inh != rightsFile {
			t.Errorf("directory rights %#x %#x", base, inh)
		}
		iovs, n := h.iovs(0x1000, make([]byte, 4))
		h.want(ENOTCAPABLE, "fd_read", uint64(fd), iovs, n, 0x100)
		pp, pl := h.path("f")
		h.want(ENOTCAPABLE, "path_open", 3, 0, pp, pl, uint64(OflagTrunc), RightFdWrite, 0, 0, 0x9000)
	}
}

// TestRightsStateChecked checks that a state giving a descriptor rights
// beyond its kind, a directory that may seek, is refused.
func TestRightsStateChecked(t *testing.T) {
	x := newHarness(t, Config{Preopens: []Preopen{{GuestPath: "/"}}})
	x.s.fds[3].rights |= RightFdSeek
	st, err := x.s.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	y := newHarness(t, Config{})
	if err := y.s.UnmarshalState(st); err == nil {
		t.Error("a directory with fd_seek was restored")
	}
}
