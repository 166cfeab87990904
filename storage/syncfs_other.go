//go:build !linux

package storage

import "os"

// syncAll makes the files durable, an fsync each.
func syncAll(files []*os.File) error { return syncEach(files) }
