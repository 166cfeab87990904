package vmm

import (
	"context"
	"fmt"

	"ftvm/replog"
	"ftvm/wasi"
)

// recorder is a wasi.Host that passes every call to the real Host and
// appends each Input and Effect result to the data of the current call's
// log entry. Before an effect whose outcome a backup could not tell (see
// intent.go) it logs an intent entry first. Outputs pass straight through
// (the gate, when there is one, sits in front of the real Host).
type recorder struct {
	inner wasi.Host
	enc   replog.Encoder
	// emit logs an entry (the VM's); the call in progress is the WASI
	// function call at pos.
	emit func(replog.Entry) error
	call string
	pos  uint64
	// err is set when an intent could not be logged: the effect was not
	// performed, and the call fails.
	err error
	// track follows the guest's handles and clocks as the real Host has
	// them, as a backup's replay does: what a clone hands a new backup.
	track *handleTracker
	// intent is the call's intent, once logged.
	intent *intent
	// sessionOf names the session an accepted connection is (see
	// Config.SessionOf); nil: none is.
	sessionOf func(wasi.Handle) string
	// sessionInput hears each read from a session (Config.SessionInput).
	sessionInput func(id string, pos uint64)
}

var _ wasi.Host = (*recorder)(nil)

// begin starts the record of call at pos.
func (r *recorder) begin(call string, pos uint64) {
	r.call, r.pos, r.err, r.intent = call, pos, nil, nil
	r.enc.B = r.enc.B[:0]
}

// take returns the recorded results of the call just made and starts a
// new, empty record. The slice is the recorder's: copy it to keep it.
func (r *recorder) take() []byte {
	b := r.enc.B
	r.enc.B = r.enc.B[:0]
	return b
}

// intend logs an intent for effect f, with the state just before of the
// paths it touches, and reports whether f may be performed: the Gate in
// front of the real Host then holds it until the backup has the intent.
func (r *recorder) intend(f effect) bool {
	var probes [maxProbes]probe
	n := 0
	look := func(dir wasi.Handle, path string, follow bool) {
		probes[n] = probeOf(r.inner.PathFilestat(dir, path, follow))
		n++
	}
	switch f.m {
	case mRename:
		look(f.dir, f.path, false)
		look(f.dir2, f.path2, false)
	case mLink:
		look(f.dir, f.path, f.follow)
		look(f.dir2, f.path2, false)
	case mPwrite:
	default:
		look(f.dir, f.path, false)
	}
	t, ok := callType(r.call)
	if !ok {
		r.err = fmt.Errorf("no entry type for %s", r.call)
		return false
	}
	data := encodeIntent(t, r.enc.B, f, probes[:n])
	if err := r.emit(replog.Entry{Pos: r.pos, Type: TypeIntent, Data: data}); err != nil {
		r.err = err
		return false
	}
	r.intent = &intent{call: t, effect: f, probes: append([]probe(nil), probes[:n]...)}
	return true
}

// needsIntent reports whether an Open must be preceded by an intent: only
// an exclusive create, which fails if performed twice.
func needsIntent(req wasi.OpenRequest) bool {
	return req.Oflags&(wasi.OflagCreat|wasi.OflagExcl) == wasi.OflagCreat|wasi.OflagExcl
}

func (r *recorder) op(m method, errno wasi.Errno) {
	r.enc.B = append(r.enc.B, byte(m))
	r.enc.Uint(uint64(errno))
}

func (r *recorder) ClockResolution(id wasi.ClockID) (uint64, wasi.Errno) {
	v, e := r.inner.ClockResolution(id)
	r.op(mClockResolution, e)
	r.enc.Uint(v)
	return v, e
}

func (r *recorder) ClockTime(id wasi.ClockID, precision uint64) (uint64, wasi.Errno) {
	v, e := r.inner.ClockTime(id, precision)
	if e == wasi.ESUCCESS {
		r.track.clock(id, v)
	}
	r.op(mClockTime, e)
	r.enc.Uint(v)
	return v, e
}

func (r *recorder) Random(n uint32) ([]byte, error) {
	b, err := r.inner.Random(n)
	if err != nil {
		return nil, err
	}
	r.op(mRandom, 0)
	r.enc.Blob(b)
	return b, nil
}

func (r *recorder) Poll(ctx context.Context, subs []wasi.Subscription) ([]wasi.Event, error) {
	evs, err := r.inner.Poll(ctx, subs)
	if err != nil {
		return nil, err
	}
	r.op(mPoll, 0)
	encodeEvents(&r.enc, evs)
	return evs, nil
}

func (r *recorder) Read(ctx context.Context, h wasi.Handle, n uint32, flags wasi.ReadFlags) ([]byte, wasi.Errno, error) {
	b, e, err := r.inner.Read(ctx, h, n, flags)
	if err != nil {
		return nil, 0, err
	}
	r.op(mRead, e)
	r.enc.Blob(b)
	if id, pos, ok := r.track.read(h, len(b), e == wasi.ESUCCESS && len(b) == 0 && n > 0); ok && r.sessionInput != nil {
		r.sessionInput(id, pos)
	}
	return b, e, nil
}

func (r *recorder) Accept(ctx context.Context, h wasi.Handle, nonblock bool) (wasi.Handle, wasi.Errno, error) {
	c, e, err := r.inner.Accept(ctx, h, nonblock)
	if err != nil {
		return 0, 0, err
	}
	id := ""
	if e == wasi.ESUCCESS {
		if r.sessionOf != nil {
			id = r.sessionOf(c)
		}
		r.track.accepted(c, id)
	}
	r.op(mAccept, e)
	r.enc.Uint(uint64(c))
	r.enc.String(id)
	return c, e, nil
}

func (r *recorder) Pread(h wasi.Handle, off uint64, n uint32) ([]byte, wasi.Errno) {
	b, e := r.inner.Pread(h, off, n)
	r.op(mPread, e)
	r.enc.Blob(b)
	return b, e
}

func (r *recorder) Filestat(h wasi.Handle) (wasi.Filestat, wasi.Errno) {
	st, e := r.inner.Filestat(h)
	r.op(mFilestat, e)
	encodeFilestat(&r.enc, st)
	return st, e
}

func (r *recorder) ReadDir(h wasi.Handle, cookie uint64, max uint32) ([]wasi.Dirent, wasi.Errno) {
	ds, e := r.inner.ReadDir(h, cookie, max)
	r.op(mReadDir, e)
	r.enc.Uint(uint64(len(ds)))
	for _, d := range ds {
		r.enc.Uint(d.Next)
		r.enc.Uint(d.Ino)
		r.enc.Uint(uint64(d.Type))
		r.enc.String(d.Name)
	}
	return ds, e
}

func (r *recorder) PathFilestat(dir wasi.Handle, path string, follow bool) (wasi.Filestat, wasi.Errno) {
	st, e := r.inner.PathFilestat(dir, path, follow)
	r.op(mPathFilestat, e)
	encodeFilestat(&r.enc, st)
	return st, e
}

func (r *recorder) Readlink(dir wasi.Handle, path string) (string, wasi.Errno) {
	s, e := r.inner.Readlink(dir, path)
	r.op(mReadlink, e)
	r.enc.String(s)
	return s, e
}

func (r *recorder) Open(dir wasi.Handle, path string, req wasi.OpenRequest) (wasi.OpenResult, wasi.Errno) {
	if needsIntent(req) && !r.intend(effect{m: mOpen, dir: dir, path: path, oflags: req.Oflags}) {
		return wasi.OpenResult{}, wasi.EIO
	}
	res, e := r.inner.Open(dir, path, req)
	if e == wasi.ESUCCESS {
		r.track.opened(dir, path, req, res)
	}
	r.op(mOpen, e)
	r.enc.Uint(uint64(res.Handle))
	r.enc.Uint(uint64(res.Filetype))
	return res, e
}

func (r *recorder) Pwrite(h wasi.Handle, off uint64, data []byte) (uint32, wasi.Errno) {
	// A write whose offset the call took from the Host (an append) has
	// it logged first; any other write is at an offset System keeps.
	if len(r.enc.B) > 0 && !r.intend(effect{m: mPwrite, h: h, off: off, n: uint64(len(data))}) {
		return 0, wasi.EIO
	}
	n, e := r.inner.Pwrite(h, off, data)
	r.op(mPwrite, e)
	r.enc.Uint(uint64(n))
	return n, e
}

func (r *recorder) SetSize(h wasi.Handle, size uint64) wasi.Errno {
	e := r.inner.SetSize(h, size)
	r.op(mSetSize, e)
	return e
}

func (r *recorder) SetTimes(h wasi.Handle, atim, mtim uint64, flags uint16) wasi.Errno {
	e := r.inner.SetTimes(h, atim, mtim, flags)
	r.op(mSetTimes, e)
	return e
}

func (r *recorder) Sync(h wasi.Handle, dataOnly bool) wasi.Errno {
	e := r.inner.Sync(h, dataOnly)
	r.op(mSync, e)
	return e
}

func (r *recorder) Allocate(h wasi.Handle, off, n uint64) wasi.Errno {
	e := r.inner.Allocate(h, off, n)
	r.op(mAllocate, e)
	return e
}

func (r *recorder) Mkdir(dir wasi.Handle, path string) wasi.Errno {
	if !r.intend(effect{m: mMkdir, dir: dir, path: path}) {
		return wasi.EIO
	}
	e := r.inner.Mkdir(dir, path)
	r.op(mMkdir, e)
	return e
}

func (r *recorder) Rmdir(dir wasi.Handle, path string) wasi.Errno {
	if !r.intend(effect{m: mRmdir, dir: dir, path: path}) {
		return wasi.EIO
	}
	e := r.inner.Rmdir(dir, path)
	if e == wasi.ESUCCESS {
		r.track.removed(dir, path, false)
	}
	r.op(mRmdir, e)
	return e
}

func (r *recorder) Unlink(dir wasi.Handle, path string) wasi.Errno {
	if !r.intend(effect{m: mUnlink, dir: dir, path: path}) {
		return wasi.EIO
	}
	e := r.inner.Unlink(dir, path)
	if e == wasi.ESUCCESS {
		r.track.removed(dir, path, true)
	}
	r.op(mUnlink, e)
	return e
}

func (r *recorder) Rename(oldDir wasi.Handle, oldPath string, newDir wasi.Handle, newPath string) wasi.Errno {
	if !r.intend(effect{m: mRename, dir: oldDir, path: oldPath, dir2: newDir, path2: newPath}) {
		return wasi.EIO
	}
	e := r.inner.Rename(oldDir, oldPath, newDir, newPath)
	if e == wasi.ESUCCESS {
		r.track.renamed(oldDir, oldPath, newDir, newPath, sameFile(r.intent))
	}
	r.op(mRename, e)
	return e
}

func (r *recorder) Link(oldDir wasi.Handle, oldPath string, follow bool, newDir wasi.Handle, newPath string) wasi.Errno {
	if !r.intend(effect{m: mLink, dir: oldDir, path: oldPath, dir2: newDir, path2: newPath, follow: follow}) {
		return wasi.EIO
	}
	e := r.inner.Link(oldDir, oldPath, follow, newDir, newPath)
	r.op(mLink, e)
	return e
}

func (r *recorder) Symlink(target string, dir wasi.Handle, path string) wasi.Errno {
	if !r.intend(effect{m: mSymlink, dir: dir, path: path, target: target}) {
		return wasi.EIO
	}
	e := r.inner.Symlink(target, dir, path)
	r.op(mSymlink, e)
	return e
}

func (r *recorder) PathSetTimes(dir wasi.Handle, path string, follow bool, atim, mtim uint64, flags uint16) wasi.Errno {
	e := r.inner.PathSetTimes(dir, path, follow, atim, mtim, flags)
	r.op(mPathSetTimes, e)
	return e
}

func (r *recorder) Write(h wasi.Handle, data []byte) error {
	r.track.wrote(h, len(data))
	return r.inner.Write(h, data)
}

func (r *recorder) Shutdown(h wasi.Handle, how uint8) error { return r.inner.Shutdown(h, how) }

func (r *recorder) Close(h wasi.Handle) error {
	r.track.released(h)
	return r.inner.Close(h)
}

func encodeFilestat(e *replog.Encoder, st wasi.Filestat) {
	e.Uint(st.Dev)
	e.Uint(st.Ino)
	e.Uint(uint64(st.Filetype))
	e.Uint(st.Nlink)
	e.Uint(st.Size)
	e.Uint(st.Atim)
	e.Uint(st.Mtim)
	e.Uint(st.Ctim)
}

func decodeFilestat(d *replog.Decoder) wasi.Filestat {
	return wasi.Filestat{
		Dev: d.Uint(), Ino: d.Uint(), Filetype: wasi.Filetype(d.Uint()), Nlink: d.Uint(),
		Size: d.Uint(), Atim: d.Uint(), Mtim: d.Uint(), Ctim: d.Uint(),
	}
}

func encodeEvents(e *replog.Encoder, evs []wasi.Event) {
	e.Uint(uint64(len(evs)))
	for _, ev := range evs {
		e.Uint(ev.Userdata)
		e.Uint(uint64(ev.Errno))
		e.Uint(uint64(ev.Type))
		e.Uint(ev.NBytes)
		e.Uint(uint64(ev.Flags))
	}
}

func decodeEvents(d *replog.Decoder) []wasi.Event {
	n := d.Uint()
	if n > uint64(d.Len()) {
		d.Bytes(d.Len() + 1) // poison: count exceeds what is left
		return nil
	}
	evs := make([]wasi.Event, n)
	for i := range evs {
		evs[i] = wasi.Event{
			Userdata: d.Uint(), Errno: wasi.Errno(d.Uint()), Type: wasi.EventType(d.Uint()),
			NBytes: d.Uint(), Flags: uint16(d.Uint()),
		}
	}
	return evs
}
