//go:build unix

package guesttest

import (
	"syscall"
	"time"
)

// ProcessCPUTime returns the CPU time (user plus system) the process has
// used so far, over all its threads, and true; false where the platform
// does not say.
func ProcessCPUTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
