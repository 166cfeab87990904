//go:build linux

package wasi

import "fmt"

// A backup whose VM keeps its files on a disk of its own (not shared with
// its primary) performs the guest's file effects on its copy as it replays
// them, through an OS host of its own over that copy: a mirror. The mirror
// must hold each file under the handle the primary gave it, so that the
// replay's later calls name it, and an orphan (see OrphanPath) takes the
// same name on both copies. Renumber gives an opened file that handle.

// Renumber moves the resource of handle from to handle to, which must be
// free, and makes sure the host never gives to again. It fails if from is
// not held or to is.
func (h *OSHost) Renumber(from, to Handle) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if from == to {
		if _, ok := h.res[from]; !ok {
			return fmt.Errorf("wasi: renumber: handle %d is not held", from)
		}
		h.next = max(h.next, to+1)
		return nil
	}
	r, ok := h.res[from]
	if !ok {
		return fmt.Errorf("wasi: renumber: handle %d is not held", from)
	}
	if _, busy := h.res[to]; busy {
		return fmt.Errorf("wasi: renumber %d to %d: handle %d is held", from, to, to)
	}
	delete(h.res, from)
	h.res[to] = r
	h.next = max(h.next, to+1)
	return nil
}

// IsFile reports whether handle hd is a file or directory (not a stream, a
// listener or a connection).
func (h *OSHost) IsFile(hd Handle) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch h.res[hd].(type) {
	case *osFile, *osDir:
		return true
	}
	return false
}
