package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/fsnotify/fsnotify"

	"ftvm/storage/internal/batch"
)

// WatchVMs reports the VMs whose spec or owner records change (see
// Watcher), from the file system's notifications (inotify on Linux) on the
// vms directory, each VM's directory and its owners directory: two
// watches a VM, as the system's limit on watches per user must allow
// (fs.inotify.max_user_watches on Linux).
//
// Notifications are of this machine's changes only: on a shared file
// system (NFS), changes other machines make go unreported, and the caller
// must still rescan now and then.
//
// The failpoint of SetReachable does not apply: the watch only names VMs
// to read, and the reads fail while the storage is unreachable.
func (d *Dir) WatchVMs(ctx context.Context) (<-chan []string, error) {
	vms := filepath.Join(d.root, "vms")
	// Created if missing, so that a watch can begin on an empty storage.
	if err := os.MkdirAll(vms, 0o755); err != nil {
		return nil, d.wrap("watch vms", err)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("storage %s: watch vms: %w", d.root, err)
	}
	if err := w.Add(vms); err != nil {
		w.Close()
		return nil, fmt.Errorf("storage %s: watch vms: %w", d.root, err)
	}
	// After the watch on vms, so that a VM created meanwhile is seen by
	// the listing or by the watch (or both).
	ents, err := os.ReadDir(vms)
	if err != nil {
		w.Close()
		return nil, d.wrap("watch vms", err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if err := watchVM(w, filepath.Join(vms, e.Name())); err != nil {
			w.Close()
			return nil, fmt.Errorf("storage %s: watch vm %s: %w", d.root, e.Name(), err)
		}
	}
	out := make(chan []string)
	go follow(ctx, w, vms, out)
	return out, nil
}

// watchVM adds the watches of a VM's directory and of its owners
// directory. A directory that is not there (yet, or any more) is no
// failure: the VM is reported, and its reader finds what there is.
func watchVM(w *fsnotify.Watcher, dir string) error {
	for _, p := range []string{dir, filepath.Join(dir, "owners")} {
		if err := w.Add(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// follow gathers the changed VMs from w's events into batches for out,
// until ctx ends; it closes w, then out.
func follow(ctx context.Context, w *fsnotify.Watcher, vms string, out chan<- []string) {
	defer close(out)
	defer w.Close()
	var set batch.Set
	for {
		var send chan<- []string
		if set.Ready() {
			send = out
		}
		select {
		case <-ctx.Done():
			return
		case send <- set.Batch():
			set.Sent()
		case ev, ok := <-w.Events:
			if !ok {
				return // closed only by Close
			}
			changed(w, vms, ev, &set)
		case _, ok := <-w.Errors:
			if !ok {
				return
			}
			// An overflow of the kernel's queue (fsnotify.ErrEventOverflow)
			// or a failed read: events may be lost.
			set.Lose()
		}
	}
}

// changed adds to set the VM that ev changed, if it changed its spec or
// owner records, and adds the watches of a VM or owners directory just
// created. The VM is added after its watches, so that its reader sees
// what was written before them, and the watches the rest.
func changed(w *fsnotify.Watcher, vms string, ev fsnotify.Event, set *batch.Set) {
	rel, err := filepath.Rel(vms, ev.Name)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return
	}
	parts := strings.Split(rel, string(filepath.Separator))
	vm := parts[0]
	if validName("vm", vm) != nil {
		return
	}
	// Chmod alone changes no record.
	const changes = fsnotify.Create | fsnotify.Write | fsnotify.Remove | fsnotify.Rename
	if ev.Op&changes == 0 {
		return
	}
	created := ev.Has(fsnotify.Create)
	switch {
	case len(parts) == 1: // the VM's directory
		if created {
			// VMs lists directories only.
			if fi, err := os.Lstat(ev.Name); err != nil || !fi.IsDir() {
				return
			}
			if err := watchVM(w, ev.Name); err != nil {
				set.Lose()
				return
			}
		}
	case len(parts) == 2 && parts[1] == "spec.json":
		// atomicWrite's rename of its temporary file creates spec.json.
	case len(parts) == 2 && parts[1] == "owners":
		if created {
			if err := w.Add(ev.Name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				set.Lose()
				return
			}
		}
	case len(parts) == 3 && parts[1] == "owners" && isGenName(parts[2]):
		// Claim's link of its temporary file creates the record.
	default:
		return // modules, statuses, disks, temporary files
	}
	set.Add(vm)
}

// isGenName reports whether name is an owner record's (genName), not a
// temporary file's.
func isGenName(name string) bool {
	if len(name) != 20 {
		return false
	}
	for _, c := range name {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
