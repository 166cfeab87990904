//go:build !linux

package storage

import "os"

// syncAll makes the files durable, an fsync each.
func syncAll(files []*os.File) error {
	for _, f := range files {
		if f != nil {
			if err := f.Sync(); err != nil {
				return err
			}
		}
	}
	return nil
}
