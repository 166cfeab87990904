//go:build !unix

package guesttest

import "time"

// ProcessCPUTime returns false: the platform does not report the CPU time
// of the process.
func ProcessCPUTime() (time.Duration, bool) { return 0, false }
