package vmm

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"path"
	"slices"
	"strings"

	"ftvm/replog"
	"ftvm/wasi"
)

// Going live: when the primary is gone, its backup's replay stops with
// ErrLogEnded at the first call the log has no entry for, the call left
// pending. From there the VM runs on as if it had been the primary all
// along, on a real host of its own that adopts the handles the guest holds:
// the startup resources are opened again (except those the guest closed),
// files and directories are reopened by path, connections to the old
// primary are reported reset, and the clocks continue from where the guest
// last read them. The replayer has followed those handles and clocks as the
// primary's host had them (handleTracker), so the backup needs nothing from
// the primary to go live.

var errNotReplaying = errors.New("vmm: the VM is not replaying")

// Adoption returns what the host of a replaying VM must adopt for it to go
// live (see wasi.NewOSHostAdopting): the handles the guest holds beyond the
// startup ones, the startup handles it closed, and the latest clock values
// it read. It fails for a VM that does not replay, and for one restored
// from a snapshot, whose replay did not see the handles opened before it.
func (vm *VM) Adoption() (wasi.Adoption, error) {
	if vm.rep == nil {
		return wasi.Adoption{}, errNotReplaying
	}
	if vm.rep.inDoubt != nil {
		return wasi.Adoption{}, errInDoubt
	}
	return vm.rep.track.adoption()
}

var errInDoubt = errors.New("vmm: the log ended after the intent of an effect: Settle it first")

// GoLive makes a replaying VM live once its log has ended: a new OS host,
// opened from the VM's Config (which must then hold the host side: the
// preopens' host directories, the listeners' addresses, stdout and
// stderr) adopts the guest's handles, and from now on services every
// call, starting with the one pending, without recording. The VM closes the
// host in Close.
func (vm *VM) GoLive() error {
	if _, err := vm.Settle(vm.cfg.WASI); err != nil && !errors.Is(err, errNotReplaying) {
		return err
	}
	a, err := vm.Adoption()
	if err != nil {
		return err
	}
	if err := vm.checkGoLive(); err != nil {
		return err
	}
	oh, err := wasi.NewOSHostAdopting(vm.cfg.WASI, vm.cfg.Logger, a)
	if err != nil {
		return fmt.Errorf("vmm: go live: %w", err)
	}
	if err := vm.GoLiveWith(oh, oh); err != nil {
		oh.CloseAll()
		return err
	}
	return nil
}

// GoLiveWith is GoLive with a host the caller made: host services every
// call from now on; it is typically an OS host made from Adoption, or a
// Host in front of one (oh), which the VM then closes in Close (oh may be
// nil if the caller closes the host itself). The bytes of stdout and
// stderr that the replay produced and the old primary may not have written
// (see Rewritten) are written to host first.
//
// It is refused unless the VM replays, its last call did not diverge, and
// its log has no entry left: the log ended (ErrLogEnded), or a log file was
// replayed to its end.
func (vm *VM) GoLiveWith(host wasi.Host, oh *wasi.OSHost) error {
	return vm.goLive(host, oh, nil)
}

// GoLiveRecording is GoLiveWith for a VM that records from now on into
// sink, as a primary does, behind gate (whose Host is oh, or one in front
// of it): its log goes on from the entry after the last one it replayed,
// its recorder follows the guest's handles from where the replay left
// them, so that a live clone can hand them on, and the gate counts the
// guest's stdout and stderr from where the old primary's left them.
func (vm *VM) GoLiveRecording(gate *Gate, oh *wasi.OSHost, sink Sink) error {
	if gate == nil || sink == nil {
		return errors.New("vmm: go live: nil Gate or Sink")
	}
	return vm.goLive(gate, oh, sink)
}

func (vm *VM) goLive(host wasi.Host, oh *wasi.OSHost, sink Sink) error {
	if host == nil {
		return errors.New("vmm: go live: nil Host")
	}
	if err := vm.checkGoLive(); err != nil {
		return err
	}
	var written [2]uint64
	if w := vm.rep.written; w != nil {
		written = w()
	}
	if g, ok := host.(*Gate); ok {
		g.startWritten(written)
	}
	if sink != nil {
		vm.rec = vm.newRecorder(host, vm.rep.track, oh)
		vm.cfg.Record = sink
		host = vm.rec
	}
	if err := vm.sys.SetHost(host); err != nil {
		return err
	}
	if vm.rep.written != nil {
		// What the old primary may not have written goes first.
		for i := range vm.rep.tails {
			if n := vm.rep.tails[i].lost; n > 0 {
				vm.cfg.Logger.Warn("output the old primary may not have written was not kept: it may be lost",
					"stream", i+1, "bytes", n)
			}
			if b := vm.rep.tails[i].pending(written[i]); len(b) > 0 && host.Write(wasi.Handle(i+1), b) == nil {
				vm.rewritten[i] = len(b)
			}
		}
	}
	vm.seq = vm.rep.seq
	vm.closeMirror()
	vm.rep = nil
	vm.os = oh
	return nil
}

// Unwritten returns, for a replaying VM whose source reports what the
// primary wrote (a backup), the bytes of stdout and stderr its replay
// produced beyond that: what the primary may not have written. A backup
// whose guest ended, and whose primary then failed, writes them.
func (vm *VM) Unwritten() (stdout, stderr []byte) {
	if vm.rep == nil || vm.rep.written == nil {
		return nil, nil
	}
	w := vm.rep.written()
	return vm.rep.tails[0].pending(w[0]), vm.rep.tails[1].pending(w[1])
}

// Rewritten returns how many bytes of stdout and stderr the VM wrote again
// when it went live: those its replay produced beyond what the old primary
// reported written, which it may or may not have written before it died.
func (vm *VM) Rewritten() (stdout, stderr int) { return vm.rewritten[0], vm.rewritten[1] }

// checkGoLive tells whether the VM may go live now.
func (vm *VM) checkGoLive() error {
	if vm.rep == nil {
		return errNotReplaying
	}
	if vm.rep.err != nil {
		return fmt.Errorf("vmm: go live after a divergence: %w", vm.rep.err)
	}
	if vm.rep.inDoubt != nil {
		return errInDoubt
	}
	// Ask the source whether an entry is left, without waiting for one.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e, _, err := vm.rep.src.Peek(ctx, math.MaxUint64)
	switch {
	case errors.Is(err, ErrLogEnded):
		return nil
	case err != nil:
		return fmt.Errorf("vmm: go live before the log ended: %w", err)
	case e.Seq != 0:
		return fmt.Errorf("vmm: go live with log entry %d not replayed", e.Seq)
	}
	return nil
}

// handleTracker follows, during a replay, the host handles the guest holds
// as the primary's host has them, and the latest clock values the guest
// read: what a host must adopt for the VM to go live.
type handleTracker struct {
	startup wasi.Handle // handles below it are the startup ones
	// Directories (the preopens, then those opened), files and
	// connections, by handle.
	handles map[wasi.Handle]*tracked
	closed  map[wasi.Handle]bool // startup handles the guest closed
	mono    uint64
	cpu     uint64
	// complete is set when the tracker has seen every call since the guest
	// started (not so after a restore from a snapshot).
	complete bool
}

type tracked struct {
	kind wasi.AdoptKind
	// For a session (see wasi.Session): its id, and how many bytes of its
	// input the guest read and of its output it wrote.
	session string
	in, out uint64
	// eof: the guest read the session's end; shut: it ended its output.
	eof, shut bool

	preopen int
	rel     string // in the preopen
	req     wasi.OpenRequest
	startup bool // a preopened directory
}

func newHandleTracker(cfg wasi.Config) *handleTracker {
	t := &handleTracker{
		startup: wasi.Handle(3 + len(cfg.Preopens) + len(cfg.Listeners)),
		handles: make(map[wasi.Handle]*tracked),
		closed:  make(map[wasi.Handle]bool),
	}
	for i := range cfg.Preopens {
		t.handles[wasi.Handle(3+i)] = &tracked{kind: wasi.AdoptDir, preopen: i, rel: ".", startup: true}
	}
	return t
}

// locate returns the preopen and the path in it of p in directory dir.
func (t *handleTracker) locate(dir wasi.Handle, p string) (preopen int, rel string, ok bool) {
	d := t.handles[dir]
	if d == nil || d.kind != wasi.AdoptDir {
		return 0, "", false
	}
	rel = path.Join(d.rel, p)
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return 0, "", false // System refuses such paths
	}
	return d.preopen, rel, true
}

// clock notes a successful ClockTime.
func (t *handleTracker) clock(id wasi.ClockID, v uint64) {
	switch id {
	case wasi.ClockMonotonic:
		t.mono = max(t.mono, v)
	case wasi.ClockProcessCPUTime, wasi.ClockThreadCPUTime:
		t.cpu = max(t.cpu, v)
	}
}

// opened notes a successful Open.
func (t *handleTracker) opened(dir wasi.Handle, p string, req wasi.OpenRequest, res wasi.OpenResult) {
	preopen, rel, ok := t.locate(dir, p)
	if !ok {
		t.handles[res.Handle] = &tracked{kind: wasi.AdoptLost}
		return
	}
	kind := wasi.AdoptFile
	if res.Filetype == wasi.FiletypeDirectory {
		kind = wasi.AdoptDir
	}
	req.Oflags &^= wasi.OflagCreat | wasi.OflagExcl | wasi.OflagTrunc
	t.handles[res.Handle] = &tracked{kind: kind, preopen: preopen, rel: rel, req: req}
}

// sessionsWritten returns how many bytes of output the guest wrote to each
// session it holds.
func (t *handleTracker) sessionsWritten() map[string]uint64 {
	out := make(map[string]uint64)
	for _, r := range t.handles {
		if r.session != "" {
			out[r.session] = r.out
		}
	}
	return out
}

// accepted notes a successful Accept of a connection, session id ("" for
// none).
func (t *handleTracker) accepted(h wasi.Handle, id string) {
	t.handles[h] = &tracked{kind: wasi.AdoptConn, session: id}
}

// read notes that the guest read n bytes from h, or its end (eof); for a
// session it returns its id and input position (its bytes, plus one once
// its end was read).
func (t *handleTracker) read(h wasi.Handle, n int, eof bool) (id string, pos uint64, ok bool) {
	r := t.handles[h]
	if r == nil || r.session == "" {
		return "", 0, false
	}
	r.in += uint64(n)
	r.eof = r.eof || eof
	pos = r.in
	if r.eof {
		pos++
	}
	return r.session, pos, true
}

// shut notes that the guest ended its output to h, or closed h (gone);
// for a session, the first time its output ends and when it is closed, it
// returns its id, output length and input position.
func (t *handleTracker) shut(h wasi.Handle, gone bool) (id string, out, in uint64, ok bool) {
	r := t.handles[h]
	if r == nil || r.session == "" || r.shut && !gone {
		return "", 0, 0, false
	}
	r.shut = true
	in = r.in
	if r.eof {
		in++
	}
	return r.session, r.out, in, true
}

// wrote notes that the guest wrote n bytes to h; for a session it returns
// its id and the offset of those bytes in its output.
func (t *handleTracker) wrote(h wasi.Handle, n int) (id string, off uint64, ok bool) {
	r := t.handles[h]
	if r == nil || r.session == "" {
		return "", 0, false
	}
	off = r.out
	r.out += uint64(n)
	return r.session, off, true
}

// released notes a Close.
func (t *handleTracker) released(h wasi.Handle) {
	if h < t.startup {
		t.closed[h] = true
	}
	delete(t.handles, h)
}

// removed notes a successful Unlink or Rmdir: what was open there is no
// longer at that path (reopening it later could find another file). A
// file unlinked while open went to wasi.OrphanDir, named after the lowest
// handle holding it, as the OS host does; anything else is lost.
func (t *handleTracker) removed(dir wasi.Handle, p string, unlink bool) {
	preopen, rel, ok := t.locate(dir, p)
	if !ok {
		return
	}
	var holders []wasi.Handle
	for hd, h := range t.handles {
		if h.startup || h.kind == wasi.AdoptLost || h.kind == wasi.AdoptConn || h.preopen != preopen || h.rel != rel {
			continue
		}
		if unlink && h.kind == wasi.AdoptFile {
			holders = append(holders, hd)
		} else {
			h.kind = wasi.AdoptLost
		}
	}
	if len(holders) > 0 {
		orphan := wasi.OrphanPath(slices.Min(holders))
		for _, hd := range holders {
			t.handles[hd].rel = orphan
		}
	}
}

// renamed notes a successful Rename: what was open at or under the old
// path is now at the new one, and what was open at the new path was
// replaced (unless same says both paths were links to one file, which a
// rename leaves as they are): a file held open went to wasi.OrphanDir,
// named after the lowest handle holding it, as the OS host links it there;
// a directory is lost.
func (t *handleTracker) renamed(oldDir wasi.Handle, oldPath string, newDir wasi.Handle, newPath string, same bool) {
	op, orel, ok1 := t.locate(oldDir, oldPath)
	np, nrel, ok2 := t.locate(newDir, newPath)
	if !ok1 || !ok2 || op != np || orel == nrel || orel == "." || nrel == "." || same {
		return
	}
	var replaced []wasi.Handle
	for hd, h := range t.handles {
		if h.startup || h.kind == wasi.AdoptLost || h.kind == wasi.AdoptConn || h.preopen != op {
			continue
		}
		switch {
		case h.rel == nrel && h.kind == wasi.AdoptFile:
			replaced = append(replaced, hd)
		case h.rel == nrel:
			h.kind = wasi.AdoptLost
		case h.rel == orel:
			h.rel = nrel
		case strings.HasPrefix(h.rel, orel+"/"):
			h.rel = nrel + h.rel[len(orel):]
		}
	}
	if len(replaced) > 0 {
		orphan := wasi.OrphanPath(slices.Min(replaced))
		for _, hd := range replaced {
			t.handles[hd].rel = orphan
		}
	}
}

// sameFile reports whether the probes of a rename's intent say its old and
// new paths were links to one file (false without an intent).
func sameFile(in *intent) bool {
	if in == nil || in.effect.m != mRename || len(in.probes) != 2 {
		return false
	}
	a, b := in.probes[0], in.probes[1]
	return a.exists() && b.exists() && a.ino == b.ino
}

// adoption returns what the tracker saw, in handle order.
func (t *handleTracker) adoption() (wasi.Adoption, error) {
	if !t.complete {
		return wasi.Adoption{}, errors.New("vmm: the VM was restored from a snapshot: the handles its guest opened before are unknown")
	}
	a := wasi.Adoption{MonotonicFloor: t.mono, CPUTimeFloor: t.cpu}
	for _, h := range slices.Sorted(maps.Keys(t.handles)) {
		r := t.handles[h]
		if r.startup {
			continue
		}
		ad := wasi.Adopted{Handle: h, Kind: r.kind, Session: r.session, In: r.in, Out: r.out}
		if r.kind == wasi.AdoptFile || r.kind == wasi.AdoptDir {
			ad.Preopen, ad.Rel, ad.Req = r.preopen, r.rel, r.req
		}
		a.Handles = append(a.Handles, ad)
	}
	a.Closed = slices.Sorted(maps.Keys(t.closed))
	return a, nil
}

// Settlement is what Settle decided.
type Settlement struct {
	// InDoubt is set when the log ended after the intent of the call the
	// VM stopped at: the effect it announced may or may not have happened.
	InDoubt bool
	// Effect describes that effect, for people.
	Effect string
	// Done is set when the disk shows that the old primary performed it:
	// the call was completed as if the log had its entry. Otherwise the
	// call runs again once the VM is live, and performs it.
	Done bool
}

// Settle decides, for a replaying VM whose log ended after the intent of
// the call it stopped at, whether the effect that intent announced happened
// (see intent.go), and if it did, completes the call as the old primary did.
// It must be called once the old primary can perform nothing more (it
// crashed, or it was fenced), and before Adoption: the call's effect
// changes what the guest's handles refer to. cfg holds the host side of the
// VM's preopens (their host directories), where the VM's disk is. A VM whose
// log ended elsewhere has nothing to settle.
func (vm *VM) Settle(cfg wasi.Config) (Settlement, error) {
	if vm.rep == nil {
		return Settlement{}, errNotReplaying
	}
	in := vm.rep.inDoubt
	if in == nil {
		return Settlement{}, nil
	}
	s := Settlement{InDoubt: true, Effect: DescribeIntent(encodeIntent(in.call, in.before, in.effect, in.probes))}
	f, args, ok := vm.inst.Pending()
	if !ok || vm.inst.Count() != in.pos {
		return s, fmt.Errorf("vmm: settle: the VM is not at the call of the intent (position %d)", in.pos)
	}
	result, done := settle(*in, vm.rep.track, cfg)
	vm.rep.inDoubt = nil
	if !done {
		return s, nil
	}
	s.Done = true
	data := append(append([]byte(nil), in.before...), result...)
	vm.rep.settled = &replog.Entry{Seq: in.seq + 1, Pos: in.pos, Type: in.call, Data: data}
	vm.rep.settledIntent = in
	if _, err := vm.service(context.Background(), f, args); err != nil {
		return s, fmt.Errorf("vmm: settle: completing the call: %w", err)
	}
	return s, nil
}

// settle decides whether the old primary performed the effect of intent in,
// by looking at the paths it touches now, and returns the effect's result
// as the call's entry holds it when it did.
func settle(in intent, t *handleTracker, cfg wasi.Config) (result []byte, done bool) {
	f := in.effect
	look := func(dir wasi.Handle, p string, follow bool) probe {
		preopen, rel, ok := t.locate(dir, p)
		if !ok {
			return probe{errno: wasi.EBADF}
		}
		return probeOf(wasi.StatPath(cfg, preopen, rel, follow, false))
	}
	var e replog.Encoder
	ok := func(m method) { e.B = append(e.B, byte(m)); e.Uint(0) }
	switch f.m {
	case mPwrite:
		// An append: the file grew past the offset the intent holds.
		h := t.handles[f.h]
		if h == nil || h.kind != wasi.AdoptFile {
			return nil, false // unknown here: the handle fails on the new host anyway
		}
		st, errno := wasi.StatPath(cfg, h.preopen, h.rel, true, true)
		if errno != wasi.ESUCCESS || st.Size <= f.off {
			return nil, false
		}
		ok(mPwrite)
		e.Uint(min(f.n, st.Size-f.off))
		return e.B, true
	case mOpen:
		pre, now := in.probes[0], look(f.dir, f.path, false)
		if pre.exists() || !now.exists() {
			return nil, false
		}
		ok(mOpen)
		e.Uint(uint64(t.fresh()))
		e.Uint(uint64(now.filetype))
		return e.B, true
	case mMkdir, mSymlink:
		want := wasi.FiletypeDirectory
		if f.m == mSymlink {
			want = wasi.FiletypeSymbolicLink
		}
		pre, now := in.probes[0], look(f.dir, f.path, false)
		done = !pre.exists() && now.exists() && now.filetype == want
	case mRmdir, mUnlink:
		pre, now := in.probes[0], look(f.dir, f.path, false)
		done = pre.exists() && now.errno == wasi.ENOENT
	case mLink, mRename:
		old, dst := in.probes[0], in.probes[1]
		now := look(f.dir2, f.path2, false)
		same := dst.exists() && dst.ino == old.ino // renaming a file onto itself changes nothing
		done = old.exists() && !same && now.exists() && now.ino == old.ino
	}
	if !done {
		return nil, false
	}
	ok(f.m)
	return e.B, true
}

// fresh returns a handle number that no handle the guest holds has, above
// the startup ones, for a resource the old primary's host opened for a call
// whose entry it never sent.
func (t *handleTracker) fresh() wasi.Handle {
	h := t.startup
	for k := range t.handles {
		h = max(h, k+1)
	}
	return h
}
