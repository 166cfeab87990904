package wasi

// clock_res_get and clock_time_get: inputs from the Host's clocks.

func validClock(id ClockID) bool { return id <= ClockThreadCPUTime }

func (s *System) clockResGet(c *call) (Errno, error) {
	id, out := ClockID(c.u32(0)), c.u32(1)
	if !validClock(id) {
		return EINVAL, nil
	}
	if !inRange(c.mem, out, 8) {
		return EFAULT, nil
	}
	res, errno := s.host.ClockResolution(id)
	if errno != ESUCCESS {
		return errno, nil
	}
	c.mem.PutUint64(out, res)
	return ESUCCESS, nil
}

func (s *System) clockTimeGet(c *call) (Errno, error) {
	id, precision, out := ClockID(c.u32(0)), c.u64(1), c.u32(2)
	if !validClock(id) {
		return EINVAL, nil
	}
	if !inRange(c.mem, out, 8) {
		return EFAULT, nil
	}
	t, errno := s.host.ClockTime(id, precision)
	if errno != ESUCCESS {
		return errno, nil
	}
	c.mem.PutUint64(out, t)
	return ESUCCESS, nil
}
