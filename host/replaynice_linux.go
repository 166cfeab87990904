package host

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func threadID() int { return unix.Gettid() }

// threadNice returns a thread's nice value. The system call returns it as
// 20 - nice, so that it is never negative.
func threadNice(tid int) (int, error) {
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		return 0, fmt.Errorf("getpriority of thread %d: %w", tid, err)
	}
	return 20 - prio, nil
}

func setThreadNice(tid, nice int) error {
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil {
		return fmt.Errorf("setpriority of thread %d to %d: %w", tid, nice, err)
	}
	return nil
}
