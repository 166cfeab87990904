package wasi

import "fmt"

// random_get: an input from the Host's random source.

func (s *System) randomGet(c *call) (Errno, error) {
	buf, n := c.u32(0), c.u32(1)
	if !inRange(c.mem, buf, n) {
		return EFAULT, nil
	}
	for n > 0 {
		k := min(n, maxIO)
		b, err := s.host.Random(k)
		if err != nil {
			return 0, err
		}
		if uint32(len(b)) != k {
			return 0, fmt.Errorf("host returned %d random bytes, want %d", len(b), k)
		}
		c.mem.Write(buf, b)
		buf += k
		n -= k
	}
	return ESUCCESS, nil
}
