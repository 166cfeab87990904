package wasi

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// futimens sets the times of an open file, as futimens(3) does:
// utimensat with a NULL path.
func futimens(f *os.File, ts *[2]unix.Timespec) error {
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, f.Fd(), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
