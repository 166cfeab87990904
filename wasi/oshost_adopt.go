//go:build linux

package wasi

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"
)

// AdoptKind says what an adopted handle refers to.
type AdoptKind uint8

const (
	// AdoptFile is a file the guest opened; the adopting host opens it
	// again by its path.
	AdoptFile AdoptKind = iota + 1
	// AdoptDir is a directory the guest opened; it is opened again by its
	// path.
	AdoptDir
	// AdoptConn is a connection the guest accepted. A TCP connection
	// cannot move to another host: it becomes one its peer has reset.
	AdoptConn
	// AdoptLost is a handle whose resource cannot be found again (its
	// file was removed while open, or it was opened where nobody knows):
	// every operation on it fails with EBADF, and closing it succeeds.
	AdoptLost
)

func (k AdoptKind) String() string {
	switch k {
	case AdoptFile:
		return "file"
	case AdoptDir:
		return "directory"
	case AdoptConn:
		return "connection"
	case AdoptLost:
		return "lost"
	}
	return fmt.Sprintf("AdoptKind(%d)", uint8(k))
}

// Adopted is one handle a guest holds, other than the startup ones, as the
// Host it is adopted from had it.
type Adopted struct {
	Handle Handle
	Kind   AdoptKind
	// For a connection that is a session (see OSHost.Offer): its id, and
	// how many bytes of its input the guest read and of its output it
	// wrote, which the adopting host resumes it from.
	Session string
	In, Out uint64
	// For files and directories: the index in Config.Preopens of the
	// preopened directory the resource lies in, its path relative to that
	// directory ("." for the directory itself; joined lexically, as the
	// guest named it), and the request that opened it. OflagCreat,
	// OflagExcl and OflagTrunc are ignored: adopting reopens, it never
	// creates or truncates.
	Preopen int
	Rel     string
	Req     OpenRequest
}

// Adoption is what a Host needs to take over a running guest from another:
// the handles the guest holds and how far its clocks went.
type Adoption struct {
	// Handles are the handles the guest holds beyond the startup ones.
	Handles []Adopted
	// Closed are the startup handles (see Host) the guest has closed: they
	// are not served, and a closed listener is not bound again.
	Closed []Handle
	// MonotonicFloor is the latest ClockMonotonic time the guest read, and
	// CPUTimeFloor the latest of ClockProcessCPUTime and
	// ClockThreadCPUTime (the OS host serves both from the process's CPU
	// clock). The adopting host's clocks continue from at least there.
	MonotonicFloor uint64
	CPUTimeFloor   uint64
}

// NewOSHostAdopting is NewOSHost for a guest that has been running
// elsewhere until now (a backup going live in place of its primary). It
// opens the startup resources of cfg the guest has not closed, then adopts
// the guest's other handles under the same numbers:
//
//   - a file or directory is opened again by its path in its preopened
//     directory, with the same request but never creating or truncating;
//     one that cannot be (removed meanwhile, or now of another type) is
//     logged and becomes a lost handle (see AdoptLost), not an error;
//   - a connection becomes one reset by its peer: reads fail with
//     ECONNRESET, it is always ready for Poll, and writes are dropped;
//     unless it is a session that cfg.Sessions resumes: then it goes on;
//   - the handles the host chooses from now on are above every adopted
//     one, so that none is ever reused.
//
// The monotonic and CPU-time clocks are offset so that they never read
// below the Adoption's floors and advance at their real rate from there:
// the guest never sees them go back. Stdin is served from cfg.Stdin as
// given.
func NewOSHostAdopting(cfg Config, logger *slog.Logger, a Adoption) (*OSHost, error) {
	startup := Handle(3 + len(cfg.Preopens) + len(cfg.Listeners))
	closed := make(map[Handle]bool, len(a.Closed))
	for _, hd := range a.Closed {
		if hd >= startup {
			return nil, fmt.Errorf("wasi: adopt: closed handle %d is not a startup handle", hd)
		}
		closed[hd] = true
	}
	seen := make(map[Handle]bool, len(a.Handles))
	top := Handle(0)
	for _, ad := range a.Handles {
		switch {
		case ad.Handle < startup:
			return nil, fmt.Errorf("wasi: adopt: handle %d is a startup handle", ad.Handle)
		case ad.Handle == math.MaxUint64:
			return nil, fmt.Errorf("wasi: adopt: handle %d out of range", ad.Handle)
		case seen[ad.Handle]:
			return nil, fmt.Errorf("wasi: adopt: handle %d adopted twice", ad.Handle)
		}
		seen[ad.Handle] = true
		top = max(top, ad.Handle)
		switch ad.Kind {
		case AdoptFile, AdoptDir:
			if ad.Preopen < 0 || ad.Preopen >= len(cfg.Preopens) {
				return nil, fmt.Errorf("wasi: adopt: handle %d: no preopen %d", ad.Handle, ad.Preopen)
			}
		case AdoptConn, AdoptLost:
		default:
			return nil, fmt.Errorf("wasi: adopt: handle %d: unknown kind %v", ad.Handle, ad.Kind)
		}
	}

	h, err := newOSHost(cfg, logger, func(hd Handle) bool { return closed[hd] })
	if err != nil {
		return nil, err
	}
	// Above every adopted handle before reopening anything: the handles
	// Open gives while adopting are never one of them.
	h.next = max(h.next, top+1)
	for _, ad := range a.Handles {
		r := h.adopt(ad)
		h.mu.Lock()
		h.res[ad.Handle] = r
		h.mu.Unlock()
	}
	// The preopens the guest closed were opened only to reopen what lies
	// in them.
	for _, hd := range slices.Sorted(maps.Keys(closed)) {
		if hd < 3 || hd >= Handle(3+len(cfg.Preopens)) {
			continue
		}
		h.mu.Lock()
		r := h.res[hd]
		delete(h.res, hd)
		h.mu.Unlock()
		if err := h.release(r); err != nil {
			h.log.Debug("wasi: adopt: closing preopen", "handle", hd, "err", err)
		}
	}
	h.monoOffset = clockOffset(h, ClockMonotonic, a.MonotonicFloor)
	h.cpuOffset = clockOffset(h, ClockProcessCPUTime, a.CPUTimeFloor)
	return h, nil
}

// clockOffset returns what to add to clock id so that it reads at least
// floor from now on.
func clockOffset(h *OSHost, id ClockID, floor uint64) uint64 {
	now, errno := h.ClockTime(id, 0)
	if errno != ESUCCESS || now >= floor {
		return 0
	}
	return floor - now
}

// adopt returns the resource of an adopted handle; nil is a lost one.
func (h *OSHost) adopt(ad Adopted) any {
	switch ad.Kind {
	case AdoptConn:
		if ad.Session != "" && h.sessions != nil {
			c, err := h.sessions(ad.Session, ad.In, ad.Out)
			if err == nil {
				h.mu.Lock()
				defer h.mu.Unlock()
				oc := h.newConn(c)
				oc.session = ad.Session
				return oc
			}
			h.log.Warn("wasi: adopt: cannot resume a session; it is reset", "handle", ad.Handle, "session", ad.Session, "err", err)
		}
		return newDeadConn()
	case AdoptFile, AdoptDir:
		r, err := h.reopen(ad)
		if err != nil {
			h.log.Warn("wasi: adopt: cannot reopen; the guest's descriptor fails from now on",
				"handle", ad.Handle, "kind", ad.Kind, "preopen", ad.Preopen, "path", ad.Rel, "err", err)
			return nil
		}
		return r
	}
	return nil
}

// reopen opens an adopted file or directory again, in its preopen.
func (h *OSHost) reopen(ad Adopted) (any, error) {
	req := ad.Req
	req.Oflags &^= OflagCreat | OflagExcl | OflagTrunc
	if checkPath(ad.Rel) != ESUCCESS {
		return nil, fmt.Errorf("bad path %q", ad.Rel)
	}
	d, errno := h.dir(Handle(3 + ad.Preopen))
	if errno != ESUCCESS {
		return nil, errno
	}
	res, errno := h.open(d, ad.Rel, req) // files in OrphanDir too
	if errno != ESUCCESS {
		return nil, errno
	}
	h.mu.Lock()
	r := h.res[res.Handle]
	delete(h.res, res.Handle)
	if f, ok := r.(*osFile); ok && strings.HasPrefix(ad.Rel, OrphanDir+"/") {
		f.orphan = ad.Rel // removed at its last close here too
	}
	h.mu.Unlock()
	if isDir := res.Filetype == FiletypeDirectory; isDir != (ad.Kind == AdoptDir) {
		h.release(r)
		return nil, errors.New("the path names a resource of another type now")
	}
	return r, nil
}

// deadConn is the far side of a connection that did not survive the move
// to another host: reads fail as if the peer had reset it, and writes
// vanish (a write is an output, whose result the guest has had).
type deadConn struct{}

func (deadConn) Read([]byte) (int, error)         { return 0, syscall.ECONNRESET }
func (deadConn) Write(b []byte) (int, error)      { return len(b), nil }
func (deadConn) Close() error                     { return nil }
func (deadConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (deadConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (deadConn) SetDeadline(time.Time) error      { return nil }
func (deadConn) SetReadDeadline(time.Time) error  { return nil }
func (deadConn) SetWriteDeadline(time.Time) error { return nil }
