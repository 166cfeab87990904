package wasi

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
)

// memHost is a deterministic in-memory Host for unit tests: one flat file
// system shared by all directory handles (paths are joined onto the
// directory's path), stream input from byte slices, a clock that advances
// 1 µs per reading, and counting random bytes. It records every call.
type memHost struct {
	calls   []string
	out     map[Handle][]byte
	in      map[Handle][]byte
	files   map[string][]byte // path → content
	dirs    map[string]bool   // path → exists
	links   map[string]string // path → target
	handles map[Handle]string // handle → path of a file or directory
	pending map[Handle]int    // listener → connections waiting
	room    map[Handle]uint64 // connection → what fd_write events report (ready if > 0); absent: ready, NBytes 0
	next    Handle
	now     uint64
	rnd     byte
}

func newMemHost(preopens int) *memHost {
	h := &memHost{
		out:     map[Handle][]byte{},
		in:      map[Handle][]byte{},
		files:   map[string][]byte{},
		dirs:    map[string]bool{".": true},
		links:   map[string]string{},
		handles: map[Handle]string{},
		pending: map[Handle]int{},
		room:    map[Handle]uint64{},
		next:    1000,
	}
	for i := range preopens {
		h.handles[Handle(3+i)] = "."
	}
	return h
}

func (h *memHost) log(format string, args ...any) {
	h.calls = append(h.calls, fmt.Sprintf(format, args...))
}

func (h *memHost) resolve(dir Handle, p string) (string, Errno) {
	base, ok := h.handles[dir]
	if !ok || !h.dirs[base] {
		return "", EBADF
	}
	return path.Join(base, p), ESUCCESS
}

func (h *memHost) ClockResolution(id ClockID) (uint64, Errno) {
	h.log("ClockResolution %d", id)
	return 1000, ESUCCESS
}

func (h *memHost) ClockTime(id ClockID, precision uint64) (uint64, Errno) {
	h.log("ClockTime %d %d", id, precision)
	h.now += 1000
	return h.now, ESUCCESS
}

func (h *memHost) Random(n uint32) ([]byte, error) {
	h.log("Random %d", n)
	b := make([]byte, n)
	for i := range b {
		h.rnd++
		b[i] = h.rnd
	}
	return b, nil
}

func (h *memHost) Poll(ctx context.Context, subs []Subscription) ([]Event, error) {
	var parts []string
	var events []Event
	for _, s := range subs {
		parts = append(parts, fmt.Sprintf("%d:%d:%d", s.Userdata, s.Type, s.Handle))
		switch s.Type {
		case EventClock:
			events = append(events, Event{Userdata: s.Userdata, Type: EventClock})
		case EventFdRead:
			if len(h.in[s.Handle]) > 0 || h.pending[s.Handle] > 0 {
				events = append(events, Event{Userdata: s.Userdata, Type: s.Type, NBytes: uint64(len(h.in[s.Handle]))})
			}
		case EventFdWrite:
			room, bounded := h.room[s.Handle]
			if !bounded || room > 0 {
				events = append(events, Event{Userdata: s.Userdata, Type: s.Type, NBytes: room})
			}
		}
	}
	h.log("Poll %s", strings.Join(parts, " "))
	return events, nil
}

func (h *memHost) Read(ctx context.Context, hd Handle, n uint32, flags ReadFlags) ([]byte, Errno, error) {
	h.log("Read %d %d %d", hd, n, flags)
	buf := h.in[hd]
	if len(buf) == 0 {
		if flags&ReadNonblock != 0 {
			return nil, EAGAIN, nil
		}
		return nil, ESUCCESS, nil // the end of the stream
	}
	k := min(int(n), len(buf))
	data := slices.Clone(buf[:k])
	if flags&ReadPeek == 0 {
		h.in[hd] = buf[k:]
	}
	return data, ESUCCESS, nil
}

func (h *memHost) Accept(ctx context.Context, hd Handle, nonblock bool) (Handle, Errno, error) {
	h.log("Accept %d %v", hd, nonblock)
	if h.pending[hd] == 0 {
		return 0, EAGAIN, nil
	}
	h.pending[hd]--
	h.next++
	return h.next, ESUCCESS, nil
}

func (h *memHost) Pread(hd Handle, off uint64, n uint32) ([]byte, Errno) {
	h.log("Pread %d %d %d", hd, off, n)
	p, ok := h.handles[hd]
	if !ok {
		return nil, EBADF
	}
	data := h.files[p]
	if off >= uint64(len(data)) {
		return nil, ESUCCESS
	}
	return slices.Clone(data[off:min(off+uint64(n), uint64(len(data)))]), ESUCCESS
}

func (h *memHost) Filestat(hd Handle) (Filestat, Errno) {
	h.log("Filestat %d", hd)
	p, ok := h.handles[hd]
	if !ok {
		return Filestat{}, EBADF
	}
	return h.stat(p)
}

func (h *memHost) stat(p string) (Filestat, Errno) {
	if h.dirs[p] {
		return Filestat{Filetype: FiletypeDirectory, Nlink: 1}, ESUCCESS
	}
	if _, ok := h.links[p]; ok {
		return Filestat{Filetype: FiletypeSymbolicLink, Nlink: 1}, ESUCCESS
	}
	data, ok := h.files[p]
	if !ok {
		return Filestat{}, ENOENT
	}
	return Filestat{Filetype: FiletypeRegularFile, Nlink: 1, Size: uint64(len(data))}, ESUCCESS
}

func (h *memHost) ReadDir(hd Handle, cookie uint64, max uint32) ([]Dirent, Errno) {
	h.log("ReadDir %d %d %d", hd, cookie, max)
	p, ok := h.handles[hd]
	if !ok || !h.dirs[p] {
		return nil, EBADF
	}
	names := []string{".", ".."}
	var children []string
	for name := range h.files {
		if path.Dir(name) == p {
			children = append(children, path.Base(name))
		}
	}
	for name := range h.dirs {
		if name != p && path.Dir(name) == p {
			children = append(children, path.Base(name))
		}
	}
	slices.Sort(children)
	names = append(names, children...)
	var out []Dirent
	for i := cookie; i < uint64(len(names)) && len(out) < int(max); i++ {
		ft := FiletypeRegularFile
		if h.dirs[path.Join(p, names[i])] {
			ft = FiletypeDirectory
		}
		out = append(out, Dirent{Next: i + 1, Ino: i + 1, Type: ft, Name: names[i]})
	}
	return out, ESUCCESS
}

func (h *memHost) PathFilestat(dir Handle, p string, follow bool) (Filestat, Errno) {
	h.log("PathFilestat %d %s %v", dir, p, follow)
	full, errno := h.resolve(dir, p)
	if errno != ESUCCESS {
		return Filestat{}, errno
	}
	return h.stat(full)
}

func (h *memHost) Readlink(dir Handle, p string) (string, Errno) {
	h.log("Readlink %d %s", dir, p)
	full, errno := h.resolve(dir, p)
	if errno != ESUCCESS {
		return "", errno
	}
	t, ok := h.links[full]
	if !ok {
		return "", EINVAL
	}
	return t, ESUCCESS
}

func (h *memHost) Open(dir Handle, p string, req OpenRequest) (OpenResult, Errno) {
	h.log("Open %d %s %+v", dir, p, req)
	full, errno := h.resolve(dir, p)
	if errno != ESUCCESS {
		return OpenResult{}, errno
	}
	h.next++
	if h.dirs[full] {
		if req.Write {
			return OpenResult{}, EISDIR
		}
		h.handles[h.next] = full
		return OpenResult{Handle: h.next, Filetype: FiletypeDirectory}, ESUCCESS
	}
	if req.Oflags&OflagDirectory != 0 {
		return OpenResult{}, ENOTDIR
	}
	_, exists := h.files[full]
	switch {
	case exists && req.Oflags&OflagExcl != 0:
		return OpenResult{}, EEXIST
	case !exists && req.Oflags&OflagCreat == 0:
		return OpenResult{}, ENOENT
	case !exists && !h.dirs[path.Dir(full)]:
		return OpenResult{}, ENOENT
	}
	if !exists || req.Oflags&OflagTrunc != 0 {
		h.files[full] = nil
	}
	h.handles[h.next] = full
	return OpenResult{Handle: h.next, Filetype: FiletypeRegularFile}, ESUCCESS
}

func (h *memHost) Pwrite(hd Handle, off uint64, data []byte) (uint32, Errno) {
	h.log("Pwrite %d %d %q", hd, off, data)
	p, ok := h.handles[hd]
	if !ok || h.dirs[p] {
		return 0, EBADF
	}
	if off > 1<<24 {
		return 0, EFBIG
	}
	f := h.files[p]
	if end := int(off) + len(data); end > len(f) {
		f = append(f, make([]byte, end-len(f))...)
	}
	copy(f[off:], data)
	h.files[p] = f
	return uint32(len(data)), ESUCCESS
}

func (h *memHost) SetSize(hd Handle, size uint64) Errno {
	h.log("SetSize %d %d", hd, size)
	p, ok := h.handles[hd]
	if !ok {
		return EBADF
	}
	if size > 1<<24 {
		return EFBIG
	}
	f := h.files[p]
	if int(size) <= len(f) {
		f = f[:size]
	} else {
		f = append(f, make([]byte, int(size)-len(f))...)
	}
	h.files[p] = f
	return ESUCCESS
}

func (h *memHost) SetTimes(hd Handle, atim, mtim uint64, flags uint16) Errno {
	h.log("SetTimes %d %d %d %d", hd, atim, mtim, flags)
	return ESUCCESS
}

func (h *memHost) Sync(hd Handle, dataOnly bool) Errno {
	h.log("Sync %d %v", hd, dataOnly)
	return ESUCCESS
}

func (h *memHost) Allocate(hd Handle, off, n uint64) Errno {
	h.log("Allocate %d %d %d", hd, off, n)
	return ESUCCESS
}

func (h *memHost) Mkdir(dir Handle, p string) Errno {
	h.log("Mkdir %d %s", dir, p)
	full, errno := h.resolve(dir, p)
	if errno != ESUCCESS {
		return errno
	}
	if h.dirs[full] || h.files[full] != nil {
		return EEXIST
	}
	h.dirs[full] = true
	return ESUCCESS
}

func (h *memHost) Rmdir(dir Handle, p string) Errno {
	h.log("Rmdir %d %s", dir, p)
	full, errno := h.resolve(dir, p)
	if errno != ESUCCESS {
		return errno
	}
	if !h.dirs[full] {
		return ENOENT
	}
	delete(h.dirs, full)
	return ESUCCESS
}

func (h *memHost) Unlink(dir Handle, p string) Errno {
	h.log("Unlink %d %s", dir, p)
	full, errno := h.resolve(dir, p)
	if errno != ESUCCESS {
		return errno
	}
	if _, ok := h.files[full]; !ok {
		return ENOENT
	}
	delete(h.files, full)
	return ESUCCESS
}

func (h *memHost) Rename(oldDir Handle, oldPath string, newDir Handle, newPath string) Errno {
	h.log("Rename %d %s %d %s", oldDir, oldPath, newDir, newPath)
	from, errno := h.resolve(oldDir, oldPath)
	if errno != ESUCCESS {
		return errno
	}
	to, errno := h.resolve(newDir, newPath)
	if errno != ESUCCESS {
		return errno
	}
	data, ok := h.files[from]
	if !ok {
		return ENOENT
	}
	delete(h.files, from)
	h.files[to] = data
	return ESUCCESS
}

func (h *memHost) Link(oldDir Handle, oldPath string, follow bool, newDir Handle, newPath string) Errno {
	h.log("Link %d %s %v %d %s", oldDir, oldPath, follow, newDir, newPath)
	return ENOTSUP
}

func (h *memHost) Symlink(target string, dir Handle, p string) Errno {
	h.log("Symlink %s %d %s", target, dir, p)
	full, errno := h.resolve(dir, p)
	if errno != ESUCCESS {
		return errno
	}
	h.links[full] = target
	return ESUCCESS
}

func (h *memHost) PathSetTimes(dir Handle, p string, follow bool, atim, mtim uint64, flags uint16) Errno {
	h.log("PathSetTimes %d %s %v %d %d %d", dir, p, follow, atim, mtim, flags)
	return ESUCCESS
}

func (h *memHost) Write(hd Handle, data []byte) error {
	h.log("Write %d %q", hd, data)
	h.out[hd] = append(h.out[hd], data...)
	return nil
}

func (h *memHost) Shutdown(hd Handle, how uint8) error {
	h.log("Shutdown %d %d", hd, how)
	return nil
}

func (h *memHost) Close(hd Handle) error {
	h.log("Close %d", hd)
	delete(h.handles, hd)
	return nil
}
