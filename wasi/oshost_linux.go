package wasi

import (
	"os"
	"time"
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

// sleepPrecise blocks the calling goroutine's thread for d. Unlike
// time.Sleep, whose timers an idle Go runtime services only to the
// millisecond (its netpoller waits in epoll with a timeout in
// milliseconds), nanosleep(2) wakes within the thread's timer slack
// (50 µs by default), which matters for waits of tens of microseconds.
func sleepPrecise(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for {
		var rem unix.Timespec
		if err := unix.Nanosleep(&ts, &rem); err != unix.EINTR {
			return
		}
		ts = rem
	}
}
