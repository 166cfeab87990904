package host

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// vmNice is the nice value of the threads that execute guests. Guest code
// is the only long-running computation in a host; everything that must
// happen promptly (reading acks and releasing outputs, sending the log,
// heartbeats) runs on other threads, which the kernel then schedules ahead
// of a busy guest instead of letting them wait for its time slice. On an
// otherwise idle core a niced thread runs at full speed.
const vmNice = 10

// lowerVMThread locks the calling goroutine to its thread and lowers the
// thread's priority; the thread ends with the goroutine. It is best effort:
// where the priority cannot be changed the guest runs at normal priority.
func lowerVMThread() {
	runtime.LockOSThread()
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), vmNice)
}
