package wasi

// args_get, args_sizes_get, environ_get and environ_sizes_get: the argument
// vector and the environment, laid out as C's argv and environ are.

func (s *System) argsGet(c *call) (Errno, error) {
	return putStrings(c.mem, s.args, c.u32(0), c.u32(1)), nil
}

func (s *System) argsSizesGet(c *call) (Errno, error) {
	return putSizes(c.mem, s.args, c.u32(0), c.u32(1)), nil
}

func (s *System) environGet(c *call) (Errno, error) {
	return putStrings(c.mem, s.env, c.u32(0), c.u32(1)), nil
}

func (s *System) environSizesGet(c *call) (Errno, error) {
	return putSizes(c.mem, s.env, c.u32(0), c.u32(1)), nil
}

// bufSize is the size of the NUL-terminated strings of list laid end to end.
func bufSize(list []string) uint64 {
	var n uint64
	for _, v := range list {
		n += uint64(len(v)) + 1
	}
	return n
}

// putStrings writes a pointer to each string of list at ptrs and the
// NUL-terminated strings at buf.
func putStrings(mem Memory, list []string, ptrs, buf uint32) Errno {
	size := bufSize(list)
	if size > uint64(mem.Size()) || !inRange(mem, buf, uint32(size)) ||
		uint64(len(list))*4 > uint64(mem.Size()) || !inRange(mem, ptrs, uint32(len(list))*4) {
		return EFAULT
	}
	for i, v := range list {
		mem.PutUint32(ptrs+uint32(i)*4, buf)
		b := make([]byte, len(v)+1)
		copy(b, v)
		mem.Write(buf, b)
		buf += uint32(len(b))
	}
	return ESUCCESS
}

// putSizes writes the number of strings of list at countPtr and the size
// putStrings needs for them at sizePtr.
func putSizes(mem Memory, list []string, countPtr, sizePtr uint32) Errno {
	if !inRange(mem, countPtr, 4) || !inRange(mem, sizePtr, 4) {
		return EFAULT
	}
	size := bufSize(list)
	if size > 1<<32-1 {
		return EOVERFLOW
	}
	mem.PutUint32(countPtr, uint32(len(list)))
	mem.PutUint32(sizePtr, uint32(size))
	return ESUCCESS
}
