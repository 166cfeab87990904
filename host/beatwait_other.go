//go:build !linux

package host

// beatsWaiting cannot tell here.
func (h *Host) beatsWaiting() bool { return false }
