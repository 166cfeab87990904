package storage

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncAll makes the files durable, with one syncfs of the file system
// that holds them (one journal commit and one flush of the disk's cache)
// rather than an fsync each, which costs a flush apiece even once their
// commit is done.
func syncAll(files []*os.File) error {
	for _, f := range files {
		if f != nil {
			return unix.Syncfs(int(f.Fd()))
		}
	}
	return nil
}
