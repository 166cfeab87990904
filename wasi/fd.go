package wasi

import (
	"encoding/binary"
	"fmt"
	"math"
)

// The fd_* functions: operations on open descriptors. Files are read and
// written at offsets System keeps (fd_read and fd_write on a file become
// Host.Pread and Host.Pwrite), so every write the Host sees is positional
// and can be re-issued. Streams (stdin, stdout, stderr, connections) use
// Host.Read and Host.Write.

func (s *System) fdAdvise(c *call) (Errno, error) {
	fd, off, n, advice := c.u32(0), c.u64(1), c.u64(2), c.u32(3)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	if advice > 5 || off > math.MaxInt64 || n > math.MaxInt64 {
		return EINVAL, nil
	}
	switch d.kind {
	case kindFile:
		if !d.has(RightFdAdvise) {
			return ENOTCAPABLE, nil
		}
		// Advice is only a hint; ignoring it changes nothing the guest sees.
		return ESUCCESS, nil
	case kindDir:
		return EBADF, nil
	}
	return ESPIPE, nil
}

func (s *System) fdAllocate(c *call) (Errno, error) {
	fd, off, n := c.u32(0), c.u64(1), c.u64(2)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	switch d.kind {
	case kindFile:
	case kindDir:
		return EISDIR, nil
	default:
		return ESPIPE, nil
	}
	if !d.has(RightFdAllocate) {
		return ENOTCAPABLE, nil
	}
	if n == 0 {
		return EINVAL, nil
	}
	if off > math.MaxInt64 || n > math.MaxInt64 || off+n > math.MaxInt64 {
		return EFBIG, nil
	}
	return s.host.Allocate(d.handle, off, n), nil
}

func (s *System) fdClose(c *call) (Errno, error) {
	fd := c.u32(0)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	delete(s.fds, fd)
	if err := s.host.Close(d.handle); err != nil {
		return 0, fmt.Errorf("closing handle %d: %w", d.handle, err)
	}
	return ESUCCESS, nil
}

func (s *System) fdDatasync(c *call) (Errno, error) { return s.sync(c.u32(0), true), nil }
func (s *System) fdSync(c *call) (Errno, error)     { return s.sync(c.u32(0), false), nil }

func (s *System) sync(fd uint32, dataOnly bool) Errno {
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno
	}
	if d.kind != kindFile && d.kind != kindDir {
		return EINVAL
	}
	need := RightFdSync
	if dataOnly {
		need = RightFdDatasync
	}
	if !d.has(need) {
		return ENOTCAPABLE
	}
	return s.host.Sync(d.handle, dataOnly)
}

func (s *System) fdFdstatGet(c *call) (Errno, error) {
	fd, out := c.u32(0), c.u32(1)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	if !inRange(c.mem, out, 24) {
		return EFAULT, nil
	}
	var b [24]byte
	b[0] = byte(d.filetype)
	binary.LittleEndian.PutUint16(b[2:], d.flags)
	binary.LittleEndian.PutUint64(b[8:], d.rights)
	binary.LittleEndian.PutUint64(b[16:], d.inheriting)
	c.mem.Write(out, b[:])
	return ESUCCESS, nil
}

// fdFdstatSetFlags changes APPEND and NONBLOCK, which System implements;
// the synchronisation flags cannot change after path_open, as with
// fcntl(F_SETFL), and are ignored.
func (s *System) fdFdstatSetFlags(c *call) (Errno, error) {
	fd, flags := c.u32(0), c.u32(1)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	if flags&^uint32(fdflagsAll) != 0 {
		return EINVAL, nil
	}
	if !d.has(RightFdFdstatSetFlags) {
		return ENOTCAPABLE, nil
	}
	keep := FdflagAppend | FdflagNonblock
	d.flags = d.flags&^keep | uint16(flags)&keep
	return ESUCCESS, nil
}

// fdFdstatSetRights may only drop rights: asking for one the descriptor
// lacks is ENOTCAPABLE, so a capability handed away cannot come back.
func (s *System) fdFdstatSetRights(c *call) (Errno, error) {
	fd, base, inh := c.u32(0), c.u64(1), c.u64(2)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	if base&^d.rights != 0 || inh&^d.inheriting != 0 {
		return ENOTCAPABLE, nil
	}
	d.rights, d.inheriting = base, inh
	return ESUCCESS, nil
}

// putFilestat writes st in the 64-byte layout of filestat.
func putFilestat(mem Memory, out uint32, st Filestat) {
	var b [64]byte
	binary.LittleEndian.PutUint64(b[0:], st.Dev)
	binary.LittleEndian.PutUint64(b[8:], st.Ino)
	b[16] = byte(st.Filetype)
	binary.LittleEndian.PutUint64(b[24:], st.Nlink)
	binary.LittleEndian.PutUint64(b[32:], st.Size)
	binary.LittleEndian.PutUint64(b[40:], st.Atim)
	binary.LittleEndian.PutUint64(b[48:], st.Mtim)
	binary.LittleEndian.PutUint64(b[56:], st.Ctim)
	mem.Write(out, b[:])
}

func (s *System) fdFilestatGet(c *call) (Errno, error) {
	fd, out := c.u32(0), c.u32(1)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	if !inRange(c.mem, out, 64) {
		return EFAULT, nil
	}
	if !d.has(RightFdFilestatGet) {
		return ENOTCAPABLE, nil
	}
	var st Filestat
	switch d.kind {
	case kindFile, kindDir:
		st, errno = s.host.Filestat(d.handle)
		if errno != ESUCCESS {
			return errno, nil
		}
	default:
		// Streams and sockets have no metadata worth asking the Host
		// for; reporting their type alone keeps the call deterministic.
		st = Filestat{Filetype: d.filetype, Nlink: 1}
	}
	putFilestat(c.mem, out, st)
	return ESUCCESS, nil
}

func (s *System) fdFilestatSetSize(c *call) (Errno, error) {
	fd, size := c.u32(0), c.u64(1)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	switch d.kind {
	case kindFile:
	case kindDir:
		return EISDIR, nil
	default:
		return EINVAL, nil
	}
	if !d.has(RightFdFilestatSetSize) {
		return ENOTCAPABLE, nil
	}
	if size > math.MaxInt64 {
		return EFBIG, nil
	}
	return s.host.SetSize(d.handle, size), nil
}

func validFstflags(flags uint32) bool {
	f := uint16(flags)
	return flags&^uint32(fstflagsAll) == 0 &&
		f&(FstflagAtim|FstflagAtimNow) != FstflagAtim|FstflagAtimNow &&
		f&(FstflagMtim|FstflagMtimNow) != FstflagMtim|FstflagMtimNow
}

func (s *System) fdFilestatSetTimes(c *call) (Errno, error) {
	fd, atim, mtim, flags := c.u32(0), c.u64(1), c.u64(2), c.u32(3)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	if !validFstflags(flags) {
		return EINVAL, nil
	}
	if d.kind != kindFile && d.kind != kindDir {
		return ENOTSUP, nil
	}
	if !d.has(RightFdFilestatSetTimes) {
		return ENOTCAPABLE, nil
	}
	return s.host.SetTimes(d.handle, atim, mtim, uint16(flags)), nil
}

func (s *System) fdPread(c *call) (Errno, error) {
	fd, iovsPtr, iovsLen, off, out := c.u32(0), c.u32(1), c.u32(2), c.u64(3), c.u32(4)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	switch d.kind {
	case kindFile:
	case kindDir:
		return EISDIR, nil
	default:
		return ESPIPE, nil
	}
	// Reading at an offset is a read and a seek, as in the rights model's
	// reference implementations.
	if !d.has(RightFdRead | RightFdSeek) {
		return ENOTCAPABLE, nil
	}
	if off > math.MaxInt64 {
		return EINVAL, nil
	}
	iovs, total, errno := readIovecs(c.mem, iovsPtr, iovsLen)
	if errno != ESUCCESS {
		return errno, nil
	}
	if !inRange(c.mem, out, 4) {
		return EFAULT, nil
	}
	n, errno, err := s.readFile(c, d, iovs, total, off)
	if err != nil || errno != ESUCCESS {
		return errno, err
	}
	c.mem.PutUint32(out, n)
	return ESUCCESS, nil
}

// readFile reads into iovs from file d at off and returns the bytes read.
func (s *System) readFile(c *call, d *descriptor, iovs []iovec, total, off uint64) (uint32, Errno, error) {
	want := uint32(min(total, maxIO))
	if want == 0 {
		return 0, ESUCCESS, nil
	}
	data, errno := s.host.Pread(d.handle, off, want)
	if errno != ESUCCESS {
		return 0, errno, nil
	}
	if uint64(len(data)) > uint64(want) {
		return 0, 0, fmt.Errorf("host read %d bytes, at most %d asked", len(data), want)
	}
	return scatter(c.mem, iovs, data), ESUCCESS, nil
}

func (s *System) fdPrestatGet(c *call) (Errno, error) {
	fd, out := c.u32(0), c.u32(1)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	if !d.isPreopen {
		// wasi-libc stops scanning for preopens at the first EBADF and
		// fails on any other error, so EBADF it is.
		return EBADF, nil
	}
	if !inRange(c.mem, out, 8) {
		return EFAULT, nil
	}
	var b [8]byte // tag 0: a directory
	binary.LittleEndian.PutUint32(b[4:], uint32(len(d.preopen)))
	c.mem.Write(out, b[:])
	return ESUCCESS, nil
}

func (s *System) fdPrestatDirName(c *call) (Errno, error) {
	fd, buf, n := c.u32(0), c.u32(1), c.u32(2)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	if !d.isPreopen {
		return EBADF, nil
	}
	if uint64(n) < uint64(len(d.preopen)) {
		return ENAMETOOLONG, nil
	}
	if !inRange(c.mem, buf, uint32(len(d.preopen))) {
		return EFAULT, nil
	}
	c.mem.Write(buf, []byte(d.preopen))
	return ESUCCESS, nil
}

func (s *System) fdPwrite(c *call) (Errno, error) {
	fd, iovsPtr, iovsLen, off, out := c.u32(0), c.u32(1), c.u32(2), c.u64(3), c.u32(4)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	switch d.kind {
	case kindFile:
	case kindDir:
		return EISDIR, nil
	default:
		return ESPIPE, nil
	}
	if !d.has(RightFdWrite | RightFdSeek) {
		return ENOTCAPABLE, nil
	}
	iovs, total, errno := readIovecs(c.mem, iovsPtr, iovsLen)
	if errno != ESUCCESS {
		return errno, nil
	}
	if !inRange(c.mem, out, 4) {
		return EFAULT, nil
	}
	if off > math.MaxInt64 || off+total > math.MaxInt64 {
		return EFBIG, nil
	}
	n, errno, err := s.writeFile(c, iovs, total, d, off)
	if err != nil || errno != ESUCCESS {
		return errno, err
	}
	c.mem.PutUint32(out, n)
	return ESUCCESS, nil
}

// writeFile writes the iovecs to file d at off.
func (s *System) writeFile(c *call, iovs []iovec, total uint64, d *descriptor, off uint64) (uint32, Errno, error) {
	if total == 0 {
		return 0, ESUCCESS, nil
	}
	data := gather(c.mem, iovs, total, maxWrite)
	n, errno := s.host.Pwrite(d.handle, off, data)
	if errno != ESUCCESS {
		return 0, errno, nil
	}
	if int(n) > len(data) {
		return 0, 0, fmt.Errorf("host wrote %d bytes of %d", n, len(data))
	}
	return n, ESUCCESS, nil
}

func (s *System) fdRead(c *call) (Errno, error) {
	fd, iovsPtr, iovsLen, out := c.u32(0), c.u32(1), c.u32(2), c.u32(3)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	switch d.kind {
	case kindDir:
		return EISDIR, nil
	case kindStdout:
		return EBADF, nil
	case kindListener:
		return ENOTCONN, nil
	}
	if !d.has(RightFdRead) {
		return ENOTCAPABLE, nil
	}
	iovs, total, errno := readIovecs(c.mem, iovsPtr, iovsLen)
	if errno != ESUCCESS {
		return errno, nil
	}
	if !inRange(c.mem, out, 4) {
		return EFAULT, nil
	}
	var n uint32
	var err error
	if d.kind == kindFile {
		n, errno, err = s.readFile(c, d, iovs, total, d.offset)
		if errno == ESUCCESS && err == nil {
			d.offset += uint64(n)
		}
	} else {
		n, _, errno, err = s.readStream(c, d, iovs, total, 0)
	}
	if err != nil || errno != ESUCCESS {
		return errno, err
	}
	c.mem.PutUint32(out, n)
	return ESUCCESS, nil
}

// readStream reads into iovs from stdin or a connection, honouring the
// descriptor's NONBLOCK flag.
func (s *System) readStream(c *call, d *descriptor, iovs []iovec, total uint64, flags ReadFlags) (uint32, uint16, Errno, error) {
	if d.shut&ShutRd != 0 {
		return 0, 0, ESUCCESS, nil
	}
	want := uint32(min(total, maxIO))
	if want == 0 {
		return 0, 0, ESUCCESS, nil
	}
	if d.flags&FdflagNonblock != 0 {
		flags |= ReadNonblock
	}
	data, errno, err := s.host.Read(c.ctx, d.handle, want, flags)
	if err != nil {
		return 0, 0, 0, err
	}
	if errno != ESUCCESS {
		return 0, 0, errno, nil
	}
	if uint64(len(data)) > uint64(want) {
		return 0, 0, 0, fmt.Errorf("host read %d bytes, at most %d asked", len(data), want)
	}
	return scatter(c.mem, iovs, data), 0, ESUCCESS, nil
}

// direntSize is the size of a dirent header; the name follows it.
const direntSize = 24

func (s *System) fdReaddir(c *call) (Errno, error) {
	fd, buf, bufLen, cookie, out := c.u32(0), c.u32(1), c.u32(2), c.u64(3), c.u32(4)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	if d.kind != kindDir {
		return ENOTDIR, nil
	}
	if !d.has(RightFdReaddir) {
		return ENOTCAPABLE, nil
	}
	if !inRange(c.mem, buf, bufLen) || !inRange(c.mem, out, 4) {
		return EFAULT, nil
	}
	if bufLen == 0 {
		c.mem.PutUint32(out, 0)
		return ESUCCESS, nil
	}
	// Ask for one entry more than fits even if all names were empty: if
	// the Host returns that many, they overflow the buffer, which tells
	// the guest that the listing goes on.
	max := min(bufLen/direntSize+1, 4096)
	entries, errno := s.host.ReadDir(d.handle, cookie, max)
	if errno != ESUCCESS {
		return errno, nil
	}
	if uint32(len(entries)) > max {
		entries = entries[:max]
	}
	b := make([]byte, 0, bufLen)
	for _, e := range entries {
		var h [direntSize]byte
		binary.LittleEndian.PutUint64(h[0:], e.Next)
		binary.LittleEndian.PutUint64(h[8:], e.Ino)
		binary.LittleEndian.PutUint32(h[16:], uint32(len(e.Name)))
		h[20] = byte(e.Type)
		b = append(b, h[:]...)
		b = append(b, e.Name...)
		if uint64(len(b)) >= uint64(bufLen) {
			b = b[:bufLen]
			break
		}
	}
	c.mem.Write(buf, b)
	c.mem.PutUint32(out, uint32(len(b)))
	return ESUCCESS, nil
}

func (s *System) fdRenumber(c *call) (Errno, error) {
	from, to := c.u32(0), c.u32(1)
	d, errno := s.get(from)
	if errno != ESUCCESS {
		return errno, nil
	}
	old, errno := s.get(to)
	if errno != ESUCCESS {
		return errno, nil
	}
	if from == to {
		return ESUCCESS, nil
	}
	s.fds[to] = d
	delete(s.fds, from)
	if err := s.host.Close(old.handle); err != nil {
		return 0, fmt.Errorf("closing handle %d: %w", old.handle, err)
	}
	return ESUCCESS, nil
}

func (s *System) fdSeek(c *call) (Errno, error) {
	fd, delta, whence, out := c.u32(0), int64(c.u64(1)), c.u32(2), c.u32(3)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	// A directory has no offset a guest could use (listings go by cookie),
	// so seeking one fails, as with wazero; Go's os.File.Seek(0, 0) of a
	// directory resets its cookie without calling fd_seek.
	switch d.kind {
	case kindFile:
	case kindDir:
		return EISDIR, nil
	default:
		return ESPIPE, nil
	}
	// Asking where the offset is (0 from the current one) is fd_tell.
	need := RightFdSeek
	if delta == 0 && whence == uint32(WhenceCur) {
		need = RightFdTell
	}
	if !d.has(need) {
		return ENOTCAPABLE, nil
	}
	if !inRange(c.mem, out, 8) {
		return EFAULT, nil
	}
	if whence > uint32(WhenceEnd) {
		return EINVAL, nil
	}
	var base int64
	switch uint8(whence) {
	case WhenceSet:
	case WhenceCur:
		base = int64(d.offset)
	case WhenceEnd:
		st, errno := s.host.Filestat(d.handle)
		if errno != ESUCCESS {
			return errno, nil
		}
		if st.Size > math.MaxInt64 {
			return EOVERFLOW, nil
		}
		base = int64(st.Size)
	}
	if (delta > 0 && base > math.MaxInt64-delta) || base+delta < 0 {
		return EINVAL, nil
	}
	d.offset = uint64(base + delta)
	c.mem.PutUint64(out, d.offset)
	return ESUCCESS, nil
}

func (s *System) fdTell(c *call) (Errno, error) {
	fd, out := c.u32(0), c.u32(1)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	switch d.kind {
	case kindFile:
	case kindDir:
		return EISDIR, nil
	default:
		return ESPIPE, nil
	}
	if !d.has(RightFdTell) {
		return ENOTCAPABLE, nil
	}
	if !c.mem.PutUint64(out, d.offset) {
		return EFAULT, nil
	}
	return ESUCCESS, nil
}

func (s *System) fdWrite(c *call) (Errno, error) {
	fd, iovsPtr, iovsLen, out := c.u32(0), c.u32(1), c.u32(2), c.u32(3)
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	switch d.kind {
	case kindDir:
		return EISDIR, nil // as fd_pwrite, and as wazero
	case kindStdin:
		return EBADF, nil
	case kindListener:
		return ENOTCONN, nil
	}
	if !d.has(RightFdWrite) {
		return ENOTCAPABLE, nil
	}
	iovs, total, errno := readIovecs(c.mem, iovsPtr, iovsLen)
	if errno != ESUCCESS {
		return errno, nil
	}
	if !inRange(c.mem, out, 4) {
		return EFAULT, nil
	}
	var n uint32
	var err error
	if d.kind == kindFile {
		off := d.offset
		if d.flags&FdflagAppend != 0 {
			st, errno := s.host.Filestat(d.handle)
			if errno != ESUCCESS {
				return errno, nil
			}
			off = st.Size
		}
		if off > math.MaxInt64 || off+total > math.MaxInt64 {
			return EFBIG, nil
		}
		n, errno, err = s.writeFile(c, iovs, total, d, off)
		if errno == ESUCCESS && err == nil {
			d.offset = off + uint64(n)
		}
	} else {
		n, errno, err = s.writeStream(c, d, iovs, total)
	}
	if err != nil || errno != ESUCCESS {
		return errno, err
	}
	c.mem.PutUint32(out, n)
	return ESUCCESS, nil
}

// writeStream sends the iovecs to stdout, stderr or a connection. The
// guest sees the length written at once: the Host may deliver the bytes
// later (the Output Rule), and delivery failures surface as inputs. The
// length is all of it up to maxWrite, and for a connection up to its
// credit: with none left, a non-blocking descriptor gets EAGAIN and a
// blocking one waits, through Poll, for the peer to take some.
func (s *System) writeStream(c *call, d *descriptor, iovs []iovec, total uint64) (uint32, Errno, error) {
	if d.shut&ShutWr != 0 {
		return 0, EPIPE, nil
	}
	if total == 0 {
		return 0, ESUCCESS, nil
	}
	limit := uint64(maxWrite)
	if d.kind == kindConn {
		if d.credit == 0 {
			if d.flags&FdflagNonblock != 0 {
				return 0, EAGAIN, nil
			}
			if errno, err := s.awaitCredit(c, d); err != nil || errno != ESUCCESS {
				return 0, errno, err
			}
		}
		limit = min(limit, d.credit)
	}
	data := gather(c.mem, iovs, total, uint32(limit))
	if d.kind == kindConn {
		d.credit -= uint64(len(data))
	}
	if err := s.host.Write(d.handle, data); err != nil {
		return 0, 0, fmt.Errorf("writing to handle %d: %w", d.handle, err)
	}
	return uint32(len(data)), ESUCCESS, nil
}

// awaitCredit waits, for a blocking write, until the Host has room on
// connection d.
func (s *System) awaitCredit(c *call, d *descriptor) (Errno, error) {
	sub := Subscription{Type: EventFdWrite, Handle: d.handle}
	for d.credit == 0 {
		events, err := s.host.Poll(c.ctx, []Subscription{sub})
		if err != nil {
			return 0, err
		}
		if len(events) == 0 {
			return 0, fmt.Errorf("host returned no event for a write subscription of handle %d", d.handle)
		}
		for _, e := range events {
			if e.Type != EventFdWrite {
				continue
			}
			if e.Errno != ESUCCESS {
				return e.Errno, nil
			}
			d.credit = writeCredit(e)
		}
	}
	return ESUCCESS, nil
}

// writeCredit is the credit an fd_write event of a connection grants (see
// Host.Write).
func writeCredit(e Event) uint64 {
	if e.NBytes == 0 || e.Flags&EventFdHangup != 0 {
		// No bound, or nothing more will be delivered: writes go on, and
		// the guest learns of the hangup from its reads.
		return SendWindow
	}
	return min(e.NBytes, SendWindow)
}
