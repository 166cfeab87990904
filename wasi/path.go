package wasi

import (
	"fmt"
	"strings"
)

// The path_* functions: operations on paths relative to a directory
// descriptor. System checks each path lexically before the Host sees it:
// absolute paths and ".." components that climb above the directory fail
// with ENOTCAPABLE. The Host confines what the lexical check cannot see,
// symbolic links (see NewOSHost).

// checkPath validates a path relative to a directory descriptor.
func checkPath(p string) Errno {
	if p == "" {
		return ENOENT
	}
	if p[0] == '/' {
		return ENOTCAPABLE
	}
	depth := 0
	for comp := range strings.SplitSeq(p, "/") {
		switch comp {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return ENOTCAPABLE
			}
		default:
			depth++
		}
	}
	return ESUCCESS
}

// dirPath returns the directory descriptor fd, which must hold the rights
// need, and the checked path at ptr, n.
func (s *System) dirPath(c *call, fd, ptr, n uint32, need uint64) (*descriptor, string, Errno) {
	d, errno := s.getDir(fd)
	if errno != ESUCCESS {
		return nil, "", errno
	}
	if !d.has(need) {
		return nil, "", ENOTCAPABLE
	}
	p, errno := readPath(c.mem, ptr, n)
	if errno != ESUCCESS {
		return nil, "", errno
	}
	if errno := checkPath(p); errno != ESUCCESS {
		return nil, "", errno
	}
	return d, p, ESUCCESS
}

func (s *System) pathCreateDirectory(c *call) (Errno, error) {
	d, p, errno := s.dirPath(c, c.u32(0), c.u32(1), c.u32(2), RightPathCreateDirectory)
	if errno != ESUCCESS {
		return errno, nil
	}
	return s.host.Mkdir(d.handle, p), nil
}

func (s *System) pathFilestatGet(c *call) (Errno, error) {
	flags, out := c.u32(1), c.u32(4)
	d, p, errno := s.dirPath(c, c.u32(0), c.u32(2), c.u32(3), RightPathFilestatGet)
	if errno != ESUCCESS {
		return errno, nil
	}
	if !inRange(c.mem, out, 64) {
		return EFAULT, nil
	}
	st, errno := s.host.PathFilestat(d.handle, p, flags&LookupSymlinkFollow != 0)
	if errno != ESUCCESS {
		return errno, nil
	}
	putFilestat(c.mem, out, st)
	return ESUCCESS, nil
}

func (s *System) pathFilestatSetTimes(c *call) (Errno, error) {
	flags, atim, mtim, fst := c.u32(1), c.u64(4), c.u64(5), c.u32(6)
	d, p, errno := s.dirPath(c, c.u32(0), c.u32(2), c.u32(3), RightPathFilestatSetTimes)
	if errno != ESUCCESS {
		return errno, nil
	}
	if !validFstflags(fst) {
		return EINVAL, nil
	}
	return s.host.PathSetTimes(d.handle, p, flags&LookupSymlinkFollow != 0, atim, mtim, uint16(fst)), nil
}

func (s *System) pathLink(c *call) (Errno, error) {
	oldFlags := c.u32(1)
	od, op, errno := s.dirPath(c, c.u32(0), c.u32(2), c.u32(3), RightPathLinkSource)
	if errno != ESUCCESS {
		return errno, nil
	}
	nd, np, errno := s.dirPath(c, c.u32(4), c.u32(5), c.u32(6), RightPathLinkTarget)
	if errno != ESUCCESS {
		return errno, nil
	}
	return s.host.Link(od.handle, op, oldFlags&LookupSymlinkFollow != 0, nd.handle, np), nil
}

func (s *System) pathOpen(c *call) (Errno, error) {
	dirflags, oflags32, base, inh, fdflags32, out := c.u32(1), c.u32(4), c.u64(5), c.u64(6), c.u32(7), c.u32(8)
	// Creating and truncating are rights of the directory, beyond opening.
	need := RightPathOpen
	if oflags32&uint32(OflagCreat) != 0 {
		need |= RightPathCreateFile
	}
	if oflags32&uint32(OflagTrunc) != 0 {
		need |= RightPathFilestatSetSize
	}
	d, p, errno := s.dirPath(c, c.u32(0), c.u32(2), c.u32(3), need)
	if errno != ESUCCESS {
		return errno, nil
	}
	if oflags32&^uint32(oflagsAll) != 0 || fdflags32&^uint32(fdflagsAll) != 0 {
		return EINVAL, nil
	}
	oflags, fdflags := uint16(oflags32), uint16(fdflags32)
	if !inRange(c.mem, out, 4) {
		return EFAULT, nil
	}
	fd, errno := s.free()
	if errno != ESUCCESS {
		return errno, nil
	}
	// A descriptor gets at most the rights its directory passes on.
	base &= d.inheriting
	inh &= d.inheriting
	write := base&RightFdWrite != 0 || oflags&OflagTrunc != 0 || fdflags&FdflagAppend != 0
	read := base&(RightFdRead|RightFdReaddir) != 0 || !write
	req := OpenRequest{
		Oflags:  oflags,
		Fdflags: fdflags & fdflagsSync,
		Read:    read,
		Write:   write,
		Follow:  dirflags&LookupSymlinkFollow != 0,
	}
	res, errno := s.host.Open(d.handle, p, req)
	if errno != ESUCCESS {
		return errno, nil
	}
	nd := &descriptor{handle: res.Handle, filetype: res.Filetype, flags: fdflags, inheriting: inh}
	if res.Filetype == FiletypeDirectory {
		nd.kind, nd.rights = kindDir, base&rightsDir
		// A directory that may hand out files it can truncate
		// (fd_filestat_set_size inherited) may also open them with
		// O_TRUNC, which gives no more power. Go's wasip1 port opens
		// directories read-only without path_filestat_set_size, which
		// would otherwise make every os.Root.Create fail; a guest that
		// drops the right later still loses O_TRUNC.
		if inh&RightFdFilestatSetSize != 0 {
			nd.rights |= d.inheriting & RightPathFilestatSetSize
		}
		nd.flags &^= FdflagAppend
	} else {
		if oflags&OflagDirectory != 0 {
			if err := s.host.Close(res.Handle); err != nil {
				return 0, fmt.Errorf("closing handle %d: %w", res.Handle, err)
			}
			return ENOTDIR, nil
		}
		nd.kind, nd.rights = kindFile, base&rightsFile
	}
	s.fds[fd] = nd
	c.mem.PutUint32(out, fd)
	return ESUCCESS, nil
}

func (s *System) pathReadlink(c *call) (Errno, error) {
	buf, bufLen, out := c.u32(3), c.u32(4), c.u32(5)
	d, p, errno := s.dirPath(c, c.u32(0), c.u32(1), c.u32(2), RightPathReadlink)
	if errno != ESUCCESS {
		return errno, nil
	}
	if !inRange(c.mem, buf, bufLen) || !inRange(c.mem, out, 4) {
		return EFAULT, nil
	}
	target, errno := s.host.Readlink(d.handle, p)
	if errno != ESUCCESS {
		return errno, nil
	}
	// Like readlink(2), a target longer than the buffer is truncated.
	n := min(uint32(min(len(target), maxPathLen)), bufLen)
	c.mem.Write(buf, []byte(target[:n]))
	c.mem.PutUint32(out, n)
	return ESUCCESS, nil
}

func (s *System) pathRemoveDirectory(c *call) (Errno, error) {
	d, p, errno := s.dirPath(c, c.u32(0), c.u32(1), c.u32(2), RightPathRemoveDirectory)
	if errno != ESUCCESS {
		return errno, nil
	}
	return s.host.Rmdir(d.handle, p), nil
}

func (s *System) pathRename(c *call) (Errno, error) {
	od, op, errno := s.dirPath(c, c.u32(0), c.u32(1), c.u32(2), RightPathRenameSource)
	if errno != ESUCCESS {
		return errno, nil
	}
	nd, np, errno := s.dirPath(c, c.u32(3), c.u32(4), c.u32(5), RightPathRenameTarget)
	if errno != ESUCCESS {
		return errno, nil
	}
	return s.host.Rename(od.handle, op, nd.handle, np), nil
}

// pathSymlink creates a symbolic link. Its target may be any relative
// path (following it later is confined by the Host), but not an absolute
// one, which could only ever point outside the guest's directories.
func (s *System) pathSymlink(c *call) (Errno, error) {
	target, errno := readPath(c.mem, c.u32(0), c.u32(1))
	if errno != ESUCCESS {
		return errno, nil
	}
	d, p, errno := s.dirPath(c, c.u32(2), c.u32(3), c.u32(4), RightPathSymlink)
	if errno != ESUCCESS {
		return errno, nil
	}
	switch {
	case target == "":
		return ENOENT, nil
	case target[0] == '/':
		return ENOTCAPABLE, nil
	}
	return s.host.Symlink(target, d.handle, p), nil
}

func (s *System) pathUnlinkFile(c *call) (Errno, error) {
	d, p, errno := s.dirPath(c, c.u32(0), c.u32(1), c.u32(2), RightPathUnlinkFile)
	if errno != ESUCCESS {
		return errno, nil
	}
	return s.host.Unlink(d.handle, p), nil
}
