package wasi

import "fmt"

// sock_accept, sock_recv, sock_send and sock_shutdown: TCP connections on
// listeners the guest was handed. Received bytes and accepted connections
// are inputs; sent bytes and shutdowns are outputs whose result the guest
// gets at once.

// getSocket returns the socket descriptor fd.
func (s *System) getSocket(fd uint32) (*descriptor, Errno) {
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return nil, errno
	}
	if d.kind != kindConn && d.kind != kindListener {
		return nil, ENOTSOCK
	}
	return d, ESUCCESS
}

func (s *System) sockAccept(c *call) (Errno, error) {
	fd, flags, out := c.u32(0), c.u32(1), c.u32(2)
	d, errno := s.getSocket(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	if d.kind != kindListener {
		return EINVAL, nil
	}
	if !d.has(RightSockAccept) {
		return ENOTCAPABLE, nil
	}
	if flags&^uint32(FdflagNonblock) != 0 {
		return EINVAL, nil
	}
	if !inRange(c.mem, out, 4) {
		return EFAULT, nil
	}
	nfd, errno := s.free()
	if errno != ESUCCESS {
		return errno, nil
	}
	h, errno, err := s.host.Accept(c.ctx, d.handle, d.flags&FdflagNonblock != 0)
	if err != nil {
		return 0, err
	}
	if errno != ESUCCESS {
		return errno, nil
	}
	s.fds[nfd] = &descriptor{kind: kindConn, filetype: FiletypeSocketStream, handle: h,
		flags: uint16(flags), rights: rightsConn & d.inheriting, credit: SendWindow}
	c.mem.PutUint32(out, nfd)
	return ESUCCESS, nil
}

func (s *System) sockRecv(c *call) (Errno, error) {
	fd, iovsPtr, iovsLen, riflags, outLen, outFlags := c.u32(0), c.u32(1), c.u32(2), c.u32(3), c.u32(4), c.u32(5)
	d, errno := s.getSocket(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	if d.kind != kindConn {
		return ENOTCONN, nil
	}
	if riflags&^uint32(RecvPeek|RecvWaitall) != 0 {
		return EINVAL, nil
	}
	if !d.has(RightFdRead) {
		return ENOTCAPABLE, nil
	}
	iovs, total, errno := readIovecs(c.mem, iovsPtr, iovsLen)
	if errno != ESUCCESS {
		return errno, nil
	}
	if !inRange(c.mem, outLen, 4) || !inRange(c.mem, outFlags, 2) {
		return EFAULT, nil
	}
	var flags ReadFlags
	if riflags&uint32(RecvPeek) != 0 {
		flags |= ReadPeek
	}
	if riflags&uint32(RecvWaitall) != 0 {
		flags |= ReadWaitAll
	}
	n, roflags, errno, err := s.readStream(c, d, iovs, total, flags)
	if err != nil || errno != ESUCCESS {
		return errno, err
	}
	c.mem.PutUint32(outLen, n)
	c.mem.Write(outFlags, []byte{byte(roflags), byte(roflags >> 8)})
	return ESUCCESS, nil
}

func (s *System) sockSend(c *call) (Errno, error) {
	fd, iovsPtr, iovsLen, siflags, out := c.u32(0), c.u32(1), c.u32(2), c.u32(3), c.u32(4)
	d, errno := s.getSocket(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	if d.kind != kindConn {
		return ENOTCONN, nil
	}
	if siflags != 0 {
		return EINVAL, nil
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
	n, errno, err := s.writeStream(c, d, iovs, total)
	if err != nil || errno != ESUCCESS {
		return errno, err
	}
	c.mem.PutUint32(out, n)
	return ESUCCESS, nil
}

func (s *System) sockShutdown(c *call) (Errno, error) {
	fd, how := c.u32(0), c.u32(1)
	d, errno := s.getSocket(fd)
	if errno != ESUCCESS {
		return errno, nil
	}
	if how == 0 || how&^uint32(ShutRd|ShutWr) != 0 {
		return EINVAL, nil
	}
	if d.kind != kindConn {
		return ENOTCONN, nil
	}
	if !d.has(RightSockShutdown) {
		return ENOTCAPABLE, nil
	}
	d.shut |= uint8(how)
	if err := s.host.Shutdown(d.handle, uint8(how)); err != nil {
		return 0, fmt.Errorf("shutting down handle %d: %w", d.handle, err)
	}
	return ESUCCESS, nil
}
