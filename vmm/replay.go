package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"

	"ftvm/replog"
	"ftvm/wasi"
)

// Source supplies the entries a replaying VM consumes.
type Source interface {
	// Peek returns the next unconsumed entry if the log has one at a
	// position no greater than pos; ok is false if it certainly has none.
	// With ok false, a source that already holds its next entry returns it
	// anyway (for error messages); otherwise the entry is zero.
	// A source fed live (the backup's logging channel) blocks until it can
	// tell, or returns ErrLogEnded once no entry will ever come again.
	Peek(ctx context.Context, pos uint64) (e replog.Entry, ok bool, err error)
	// Consume moves past the entry Peek returned.
	Consume()
}

// ErrLogEnded is returned by a live Source when its log has ended for good
// (the primary is gone) and every entry has been consumed: the replaying VM
// stops at the call that found it, before performing the call, and can go
// live from there.
var ErrLogEnded = errors.New("vmm: the log has ended")

// DivergenceError reports that the guest did not do what the log recorded:
// the replay is not equivalent to the recording and stops.
type DivergenceError struct {
	// The log entry that disagrees (Seq 0 when the log had no entry).
	Seq  uint64
	Pos  uint64
	Type string
	// What the guest did instead.
	ActualPos  uint64
	ActualType string
	Detail     string
}

func (e *DivergenceError) Error() string {
	if e.Seq == 0 {
		return fmt.Sprintf("replay diverged at position %d: the guest made %s, but the log has no entry there: %s",
			e.ActualPos, e.ActualType, e.Detail)
	}
	return fmt.Sprintf("replay diverged at log entry %d: expected %s at position %d, the guest made %s at position %d: %s",
		e.Seq, e.Type, e.Pos, e.ActualType, e.ActualPos, e.Detail)
}

// FileSource reads entries from a log file.
type FileSource struct {
	r    *replog.Reader
	next *replog.Entry
	eof  bool
}

// NewFileSource returns a Source over r.
func NewFileSource(r *replog.Reader) *FileSource { return &FileSource{r: r} }

// Peek implements Source.
func (s *FileSource) Peek(_ context.Context, pos uint64) (replog.Entry, bool, error) {
	if s.next == nil && !s.eof {
		e, err := s.r.Next()
		switch {
		case err == io.EOF:
			s.eof = true
		case err != nil:
			return replog.Entry{}, false, err
		default:
			e.Data = append([]byte(nil), e.Data...)
			s.next = &e
		}
	}
	if s.next == nil {
		return replog.Entry{}, false, nil
	}
	return *s.next, s.next.Pos <= pos, nil
}

// Consume implements Source.
func (s *FileSource) Consume() { s.next = nil }

// replayer is a wasi.Host that answers every Input and Effect from the
// entry of the current call and performs nothing. Outputs to stdout and
// stderr go to the given writers (nil drops them); all other outputs are
// dropped, as the backup's hypervisor drops its VM's outputs. It follows
// the handles and clocks the results give the guest, for going live.
type replayer struct {
	src            Source
	stdout, stderr io.Writer
	track          *handleTracker
	// written, if set, reports how much of stdout and stderr the primary
	// wrote out; the replay then keeps what lies beyond (see outTail),
	// unless it writes the stream itself.
	written func() [2]uint64
	tails   [2]outTail
	// sessionOutput receives the guest's writes to sessions (see
	// Config.SessionOutput).
	sessionOutput func(id string, off uint64, data []byte)
	// sessionClosed hears the end of the guest's output to a session
	// (Config.SessionClosed).
	sessionClosed func(id string, out uint64, gone bool, in uint64)
	// mirror, if set, is this replica's own copy of the guest's files (see
	// Config.Mirror): every file effect is performed on it too.
	mirror *wasi.OSHost

	// The call in progress.
	name   string
	pos    uint64
	loaded bool
	entry  replog.Entry
	next   replog.Entry // the log's next entry when the call has none, if known
	d      *replog.Decoder
	err    error
	seq    uint64 // sequence number of the last entry consumed
	// intent is the call's intent entry, if it has one; used once the
	// call has asked for the effect it announces.
	intent *intent
	used   bool
	// inDoubt is the intent the log ended after: the call it belongs to
	// stopped with ErrLogEnded, its effect's outcome unknown (VM.Settle).
	inDoubt *intent
	// settled is the entry Settle made for the call in doubt, which the
	// call replays as if the log had it, after its intent settledIntent.
	settled       *replog.Entry
	settledIntent *intent
}

var _ wasi.Host = (*replayer)(nil)

// begin prepares the replay of call name at pos: it loads the call's entry
// if the log has one at pos, and reports a divergence if the log has an
// entry the guest went past.
func (p *replayer) begin(ctx context.Context, pos uint64, name string) error {
	p.name, p.pos, p.loaded, p.err, p.intent, p.used = name, pos, false, nil, nil, false
	if e := p.settled; e != nil {
		p.settled = nil
		p.seq = e.Seq
		p.entry, p.loaded, p.d = *e, true, replog.NewDecoder(e.Data)
		p.intent, p.settledIntent = p.settledIntent, nil
		return nil
	}
	e, ok, err := p.src.Peek(ctx, pos)
	if err != nil {
		return err
	}
	if ok && e.Type == TypeIntent && e.Pos == pos {
		if e, ok, err = p.takeIntent(ctx, e); err != nil {
			return err
		}
	}
	if !ok {
		p.next = e
		return nil
	}
	if e.Type == TypeEnd && e.Pos == pos {
		return nil // the guest ends at this call; end checks that entry
	}
	if e.Pos < pos || e.Type == TypeEnd {
		return &DivergenceError{Seq: e.Seq, Pos: e.Pos, Type: TypeName(e.Type), ActualPos: pos, ActualType: name,
			Detail: "the guest went past the logged event"}
	}
	t, _ := callType(name)
	if e.Type != t {
		return &DivergenceError{Seq: e.Seq, Pos: e.Pos, Type: TypeName(e.Type), ActualPos: pos, ActualType: name,
			Detail: "different call at the logged position"}
	}
	p.src.Consume()
	p.seq = e.Seq
	p.entry, p.loaded, p.d = e, true, replog.NewDecoder(e.Data)
	return nil
}

// takeIntent consumes the intent entry e of the call at p.pos and returns
// what the log has next for that call, which must be the call's own entry.
// If the log ended there, the call is in doubt: it stops with ErrLogEnded.
func (p *replayer) takeIntent(ctx context.Context, e replog.Entry) (replog.Entry, bool, error) {
	div := &DivergenceError{Seq: e.Seq, Pos: e.Pos, Type: TypeName(e.Type), ActualPos: p.pos, ActualType: p.name}
	in, err := decodeIntent(e)
	if err != nil {
		return e, false, fmt.Errorf("vmm: log entry %d (an intent, at position %d) is corrupt: %w", e.Seq, e.Pos, err)
	}
	if t, _ := callType(p.name); in.call != t {
		div.Detail = fmt.Sprintf("the intent is of %s", TypeName(in.call))
		return e, false, div
	}
	p.src.Consume()
	p.seq = e.Seq
	p.intent = &in
	next, ok, err := p.src.Peek(ctx, p.pos)
	if errors.Is(err, ErrLogEnded) {
		p.inDoubt = &in
		return next, false, err
	}
	if err == nil && !ok && next.Seq == 0 {
		return next, false, fmt.Errorf("vmm: the log ends right after the intent of entry %d (position %d), without the call's own entry: the recording was cut short", e.Seq, e.Pos)
	}
	if err == nil && (!ok || next.Pos != p.pos || next.Type != in.call) {
		div.Detail = "the log has no entry for the call after its intent"
		return next, false, div
	}
	return next, ok, err
}

// effect checks an effect the call asks for against the call's intent:
// an effect announced must be the one performed, and one that would have
// been announced must be.
func (p *replayer) effect(f effect) {
	if p.err != nil || p.intent == nil {
		return
	}
	var want, got replog.Encoder
	p.intent.effect.encode(&want)
	f.encode(&got)
	if p.used || string(want.B) != string(got.B) {
		p.diverge(fmt.Sprintf("the call performs %v, but its intent announced %s", f.m, DescribeIntent(p.intentData())))
		return
	}
	p.used = true
}

// intentData re-encodes the call's intent for messages.
func (p *replayer) intentData() []byte {
	in := p.intent
	return encodeIntent(in.call, in.before, in.effect, in.probes)
}

// end checks that the call used exactly the results its entry holds, and
// performed the effect its intent announced.
func (p *replayer) end() error {
	if p.err != nil {
		return p.err
	}
	if p.loaded && p.d.Len() != 0 {
		return p.diverge("the guest's call used fewer results than were recorded")
	}
	if p.intent != nil && !p.used {
		return p.diverge("the call did not perform the effect its intent announced")
	}
	return nil
}

func (p *replayer) diverge(detail string) error {
	if p.err == nil {
		e := &DivergenceError{ActualPos: p.pos, ActualType: p.name, Detail: detail}
		switch {
		case p.loaded:
			e.Seq, e.Pos, e.Type = p.entry.Seq, p.entry.Pos, TypeName(p.entry.Type)
		case p.next.Seq != 0:
			e.Seq, e.Pos, e.Type = p.next.Seq, p.next.Pos, TypeName(p.next.Type)
			e.Detail += "; the log's next entry is later"
		}
		p.err = e
	}
	return p.err
}

// take starts reading the next recorded result, which must be of method m,
// and returns its errno. After a divergence it returns zero values: the VM
// stops at the end of the call without resuming the guest.
func (p *replayer) take(m method) (*replog.Decoder, wasi.Errno) {
	if p.err != nil {
		return replog.NewDecoder(nil), 0
	}
	if !p.loaded {
		if p.next.Seq == 0 {
			p.diverge(fmt.Sprintf("the call asked the host for %v, but the log has no more entries (was the recording cut short?)", m))
			return replog.NewDecoder(nil), 0
		}
		p.diverge(fmt.Sprintf("the call asked the host for %v, which the log does not have", m))
		return replog.NewDecoder(nil), 0
	}
	got := p.d.Bytes(1)
	if got == nil || method(got[0]) != m {
		detail := "the recorded results are exhausted"
		if got != nil {
			detail = fmt.Sprintf("recorded %v", method(got[0]))
		}
		p.diverge(fmt.Sprintf("the call asked the host for %v; %s", m, detail))
		return replog.NewDecoder(nil), 0
	}
	errno := wasi.Errno(p.d.Uint())
	return p.d, errno
}

// check turns a decoding failure of the current entry into an error.
func (p *replayer) check() {
	if p.err == nil && p.loaded && p.d.Err() != nil {
		p.diverge(fmt.Sprintf("log entry data: %v", p.d.Err()))
	}
}

func (p *replayer) ClockResolution(wasi.ClockID) (uint64, wasi.Errno) {
	d, e := p.take(mClockResolution)
	v := d.Uint()
	p.check()
	return v, e
}

func (p *replayer) ClockTime(id wasi.ClockID, _ uint64) (uint64, wasi.Errno) {
	d, e := p.take(mClockTime)
	v := d.Uint()
	p.check()
	if p.err == nil && e == wasi.ESUCCESS {
		p.track.clock(id, v)
	}
	return v, e
}

func (p *replayer) Random(n uint32) ([]byte, error) {
	d, _ := p.take(mRandom)
	b := d.Blob()
	p.check()
	if p.err == nil && len(b) != int(n) {
		p.diverge(fmt.Sprintf("random_get of %d bytes, %d recorded", n, len(b)))
	}
	return b, p.err
}

func (p *replayer) Poll(context.Context, []wasi.Subscription) ([]wasi.Event, error) {
	d, _ := p.take(mPoll)
	evs := decodeEvents(d)
	p.check()
	return evs, p.err
}

func (p *replayer) Read(_ context.Context, h wasi.Handle, n uint32, _ wasi.ReadFlags) ([]byte, wasi.Errno, error) {
	d, e := p.take(mRead)
	b := d.Blob()
	p.check()
	if p.err == nil && len(b) > int(n) {
		p.diverge(fmt.Sprintf("read of at most %d bytes, %d recorded", n, len(b)))
	}
	if p.err == nil {
		p.track.read(h, len(b), e == wasi.ESUCCESS && len(b) == 0 && n > 0)
	}
	return b, e, p.err
}

func (p *replayer) Accept(context.Context, wasi.Handle, bool) (wasi.Handle, wasi.Errno, error) {
	d, e := p.take(mAccept)
	h := wasi.Handle(d.Uint())
	id := d.String()
	p.check()
	if p.err == nil && e == wasi.ESUCCESS {
		p.track.accepted(h, id)
	}
	return h, e, p.err
}

func (p *replayer) Pread(_ wasi.Handle, _ uint64, n uint32) ([]byte, wasi.Errno) {
	d, e := p.take(mPread)
	b := d.Blob()
	p.check()
	if p.err == nil && len(b) > int(n) {
		p.diverge(fmt.Sprintf("pread of at most %d bytes, %d recorded", n, len(b)))
	}
	return b, e
}

func (p *replayer) Filestat(wasi.Handle) (wasi.Filestat, wasi.Errno) {
	d, e := p.take(mFilestat)
	st := decodeFilestat(d)
	p.check()
	return st, e
}

func (p *replayer) ReadDir(_ wasi.Handle, _ uint64, max uint32) ([]wasi.Dirent, wasi.Errno) {
	d, e := p.take(mReadDir)
	n := d.Uint()
	if n > uint64(max) || n > uint64(d.Len()) {
		p.diverge(fmt.Sprintf("readdir of at most %d entries, %d recorded", max, n))
		return nil, 0
	}
	ds := make([]wasi.Dirent, n)
	for i := range ds {
		ds[i] = wasi.Dirent{Next: d.Uint(), Ino: d.Uint(), Type: wasi.Filetype(d.Uint()), Name: d.String()}
	}
	p.check()
	return ds, e
}

func (p *replayer) PathFilestat(wasi.Handle, string, bool) (wasi.Filestat, wasi.Errno) {
	d, e := p.take(mPathFilestat)
	st := decodeFilestat(d)
	p.check()
	return st, e
}

func (p *replayer) Readlink(wasi.Handle, string) (string, wasi.Errno) {
	d, e := p.take(mReadlink)
	s := d.String()
	p.check()
	return s, e
}

func (p *replayer) Open(dir wasi.Handle, path string, req wasi.OpenRequest) (wasi.OpenResult, wasi.Errno) {
	if needsIntent(req) {
		p.effect(effect{m: mOpen, dir: dir, path: path, oflags: req.Oflags})
	}
	d, e := p.take(mOpen)
	res := wasi.OpenResult{Handle: wasi.Handle(d.Uint()), Filetype: wasi.Filetype(d.Uint())}
	p.check()
	if p.err == nil && e == wasi.ESUCCESS {
		p.track.opened(dir, path, req, res)
	}
	p.mirrorOpen(dir, path, req, res, e)
	return res, e
}

func (p *replayer) Pwrite(h wasi.Handle, off uint64, data []byte) (uint32, wasi.Errno) {
	if p.loaded && p.d.Len() < len(p.entry.Data) {
		// Results came before: the write's offset depends on them (see
		// recorder.Pwrite).
		p.effect(effect{m: mPwrite, h: h, off: off, n: uint64(len(data))})
	}
	d, e := p.take(mPwrite)
	n := d.Uint()
	p.check()
	if p.err == nil && n > uint64(len(data)) {
		p.diverge(fmt.Sprintf("pwrite of %d bytes, %d recorded as written", len(data), n))
	}
	if p.mirror != nil && p.err == nil {
		got, ge := p.mirror.Pwrite(h, off, data)
		if ge != e || uint64(got) != n {
			p.diverge(fmt.Sprintf("pwrite of %d bytes at offset %d to handle %d: the log has %d written (%v), this replica's own disk %d (%v)",
				len(data), off, h, n, e, got, ge))
		}
	}
	return uint32(n), e
}

func (p *replayer) errnoOnly(m method) wasi.Errno {
	_, e := p.take(m)
	p.check()
	return e
}

func (p *replayer) SetSize(h wasi.Handle, size uint64) wasi.Errno {
	e := p.errnoOnly(mSetSize)
	p.mirrorErrno(e, func(m *wasi.OSHost) wasi.Errno { return m.SetSize(h, size) }, "set the size of handle %d", h)
	return e
}

func (p *replayer) SetTimes(h wasi.Handle, atim, mtim uint64, flags uint16) wasi.Errno {
	e := p.errnoOnly(mSetTimes)
	p.mirrorErrno(e, func(m *wasi.OSHost) wasi.Errno { return m.SetTimes(h, atim, mtim, flags) }, "set the times of handle %d", h)
	return e
}

func (p *replayer) Sync(h wasi.Handle, dataOnly bool) wasi.Errno {
	e := p.errnoOnly(mSync)
	p.mirrorErrno(e, func(m *wasi.OSHost) wasi.Errno { return m.Sync(h, dataOnly) }, "sync handle %d", h)
	return e
}

func (p *replayer) Allocate(h wasi.Handle, off, n uint64) wasi.Errno {
	e := p.errnoOnly(mAllocate)
	p.mirrorErrno(e, func(m *wasi.OSHost) wasi.Errno { return m.Allocate(h, off, n) }, "allocate in handle %d", h)
	return e
}

func (p *replayer) Mkdir(dir wasi.Handle, path string) wasi.Errno {
	p.effect(effect{m: mMkdir, dir: dir, path: path})
	e := p.errnoOnly(mMkdir)
	p.mirrorErrno(e, func(m *wasi.OSHost) wasi.Errno { return m.Mkdir(dir, path) }, "mkdir %q", path)
	return e
}

func (p *replayer) Rmdir(dir wasi.Handle, path string) wasi.Errno {
	p.effect(effect{m: mRmdir, dir: dir, path: path})
	e := p.errnoOnly(mRmdir)
	if p.err == nil && e == wasi.ESUCCESS {
		p.track.removed(dir, path, false)
	}
	p.mirrorErrno(e, func(m *wasi.OSHost) wasi.Errno { return m.Rmdir(dir, path) }, "rmdir %q", path)
	return e
}

func (p *replayer) Unlink(dir wasi.Handle, path string) wasi.Errno {
	p.effect(effect{m: mUnlink, dir: dir, path: path})
	e := p.errnoOnly(mUnlink)
	if p.err == nil && e == wasi.ESUCCESS {
		p.track.removed(dir, path, true)
	}
	p.mirrorErrno(e, func(m *wasi.OSHost) wasi.Errno { return m.Unlink(dir, path) }, "unlink %q", path)
	return e
}

func (p *replayer) Rename(oldDir wasi.Handle, oldPath string, newDir wasi.Handle, newPath string) wasi.Errno {
	p.effect(effect{m: mRename, dir: oldDir, path: oldPath, dir2: newDir, path2: newPath})
	e := p.errnoOnly(mRename)
	if p.err == nil && e == wasi.ESUCCESS {
		p.track.renamed(oldDir, oldPath, newDir, newPath, sameFile(p.intent))
	}
	p.mirrorErrno(e, func(m *wasi.OSHost) wasi.Errno { return m.Rename(oldDir, oldPath, newDir, newPath) }, "rename %q to %q", oldPath, newPath)
	return e
}

func (p *replayer) Link(oldDir wasi.Handle, oldPath string, follow bool, newDir wasi.Handle, newPath string) wasi.Errno {
	p.effect(effect{m: mLink, dir: oldDir, path: oldPath, dir2: newDir, path2: newPath, follow: follow})
	e := p.errnoOnly(mLink)
	p.mirrorErrno(e, func(m *wasi.OSHost) wasi.Errno { return m.Link(oldDir, oldPath, follow, newDir, newPath) }, "link %q to %q", newPath, oldPath)
	return e
}

func (p *replayer) Symlink(target string, dir wasi.Handle, path string) wasi.Errno {
	p.effect(effect{m: mSymlink, dir: dir, path: path, target: target})
	e := p.errnoOnly(mSymlink)
	p.mirrorErrno(e, func(m *wasi.OSHost) wasi.Errno { return m.Symlink(target, dir, path) }, "symlink %q", path)
	return e
}

func (p *replayer) PathSetTimes(dir wasi.Handle, path string, follow bool, atim, mtim uint64, flags uint16) wasi.Errno {
	e := p.errnoOnly(mPathSetTimes)
	p.mirrorErrno(e, func(m *wasi.OSHost) wasi.Errno { return m.PathSetTimes(dir, path, follow, atim, mtim, flags) }, "set the times of %q", path)
	return e
}

// Write reproduces stdout and stderr, or keeps what the primary may not
// have written of them; every other output is dropped.
func (p *replayer) Write(h wasi.Handle, data []byte) error {
	var w io.Writer
	switch h {
	case 1:
		w = p.stdout
	case 2:
		w = p.stderr
	default:
		if id, off, ok := p.track.wrote(h, len(data)); ok && p.sessionOutput != nil {
			p.sessionOutput(id, off, data)
		}
		return nil
	}
	if w != nil {
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("replay output: %w", err)
		}
	} else if p.written != nil {
		p.tails[h-1].add(data, p.written()[h-1])
	}
	return nil
}

func (p *replayer) Shutdown(h wasi.Handle, how uint8) error {
	if how&wasi.ShutWr != 0 {
		p.endSession(h, false)
	}
	return nil
}

func (p *replayer) Close(h wasi.Handle) error {
	p.endSession(h, true)
	p.track.released(h)
	p.mirrorClose(h)
	return nil
}

// endSession tells the host that the guest's output to h ended, or that
// it closed h (gone), if h is a session.
func (p *replayer) endSession(h wasi.Handle, gone bool) {
	if id, out, in, ok := p.track.shut(h, gone); ok && p.sessionClosed != nil {
		p.sessionClosed(id, out, gone, in)
	}
}
