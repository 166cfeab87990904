package wasi

import (
	"fmt"
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

// deadlineTimer wakes a waiting Poll at its deadline, or at the end of its
// coalescing, to within microseconds: a timerfd, read through Go's
// netpoller. A time.Timer fires only to the millisecond in an idle Go
// runtime (the netpoller sleeps in epoll with a timeout in milliseconds),
// so a guest asking for 500 µs would wait 1.5 ms; a timerfd's expiry wakes
// the netpoller at once.
type deadlineTimer struct {
	f    *os.File
	fire chan struct{} // a value at each expiry
}

func newDeadlineTimer() (*deadlineTimer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("wasi: timerfd_create: %w", err)
	}
	t := &deadlineTimer{f: os.NewFile(uintptr(fd), "timerfd"), fire: make(chan struct{}, 1)}
	go t.loop()
	return t, nil
}

func (t *deadlineTimer) loop() {
	var buf [8]byte // the count of expiries
	for {
		if _, err := t.f.Read(buf[:]); err != nil {
			return // closed
		}
		select {
		case t.fire <- struct{}{}:
		default:
		}
	}
}

// arm sets the timer to expire in d (> 0) and returns the channel that
// receives the expiry. An expiry left over from an earlier arming is
// dropped first.
func (t *deadlineTimer) arm(d time.Duration) <-chan struct{} {
	select {
	case <-t.fire:
	default:
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(max(d.Nanoseconds(), 1))}
	if err := unix.TimerfdSettime(int(t.f.Fd()), 0, &spec, nil); err != nil {
		// Not expected with a valid descriptor; fall back on Go's timer.
		ch := make(chan struct{})
		time.AfterFunc(d, func() { close(ch) })
		return ch
	}
	return t.fire
}

// disarm stops the timer.
func (t *deadlineTimer) disarm() {
	_ = unix.TimerfdSettime(int(t.f.Fd()), 0, &unix.ItimerSpec{}, nil)
}

func (t *deadlineTimer) close() { t.f.Close() }
