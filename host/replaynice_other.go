//go:build !linux

package host

import "errors"

func threadID() int { return 0 }

// Per-thread priorities are Linux's; elsewhere replays run at the host's
// priority.
func threadNice(int) (int, error) { return 0, errors.New("per-thread priorities need Linux") }

func setThreadNice(int, int) error { return errors.New("per-thread priorities need Linux") }
