//go:build !linux

package replog

// Waiting reports whether bytes from the peer wait in the kernel, not yet
// read; on this system it cannot tell, and says false.
func (c *Conn) Waiting() bool { return false }
