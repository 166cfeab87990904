//go:build linux

package wasi

import (
	"fmt"
	"os"
	"path"
	"strings"
)

// StatPath returns the metadata of path rel in the host directory of
// cfg.Preopens[preopen], as PathFilestat through a handle of that directory
// would, without a Host: a backup about to go live looks at the disk with it
// to settle an effect whose outcome it does not know, before it has a Host
// of its own. A symbolic link in the last component is followed if follow.
// A path into OrphanDir does not exist, as for the guest, unless orphans
// (the backup's tracking names a file unlinked while open by its place
// there).
func StatPath(cfg Config, preopen int, rel string, follow, orphans bool) (Filestat, Errno) {
	if preopen < 0 || preopen >= len(cfg.Preopens) || cfg.Preopens[preopen].HostDir == "" {
		return Filestat{}, EBADF
	}
	if errno := checkPath(rel); errno != ESUCCESS {
		return Filestat{}, errno
	}
	if first, _, _ := strings.Cut(path.Clean(rel), "/"); first == OrphanDir && !orphans {
		return Filestat{}, ENOENT
	}
	root, err := os.OpenRoot(cfg.Preopens[preopen].HostDir)
	if err != nil {
		return Filestat{}, errnoOf(fmt.Errorf("wasi: stat in preopen %d: %w", preopen, err))
	}
	defer root.Close()
	var fi os.FileInfo
	if follow {
		fi, err = root.Stat(rel)
	} else {
		fi, err = root.Lstat(rel)
	}
	if err != nil {
		return Filestat{}, errnoOf(err)
	}
	return filestatOf(fi), ESUCCESS
}
