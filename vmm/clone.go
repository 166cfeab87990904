package vmm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"

	"ftvm/replog"
	"ftvm/wasi"
	"ftvm/wasm"
)

// Live clone (VMware FT's FT VMotion): a primary running alone hands a
// running copy of its VM to a new backup without stopping the guest but
// for one short pause.
//
//   - Pre-copy: the memory crosses in rounds while the guest runs. The
//     first round takes every page that is not zero; each later one the
//     pages the guest wrote since the round before (the engine's dirty
//     pages). A CloneSource copies them on the VM's goroutine, between two
//     runs of the guest, a bounded amount at a time, and the caller sends
//     them; a CloneTarget lays them into an image of the memory.
//   - Stop-and-copy: at a pause between two runs (CloneSource.Finish), the
//     pages still to send, the engine's state without its memory, the WASI
//     state, the handles the guest holds as the primary's host has them
//     (the recorder tracks them as a backup's replay does, so the new
//     backup can go live later), what the primary has not yet written of
//     stdout and stderr, and the log position: the last entry S. The new
//     backup (CloneTarget.Finish) restores a replaying VM from them, whose
//     log starts at entry S+1.
//
// The clone point is between two calls of the guest (or at a call not yet
// serviced), so the new backup needs nothing of a call in progress.

// CloneChunk is a batch of memory pages of a pre-copy round.
type CloneChunk struct {
	// Pages is the memory's size in 64 KiB pages when the chunk was
	// copied: the target grows its image to it.
	Pages uint32
	// Runs are runs of consecutive 4 KiB pages.
	Runs []PageRun
}

// PageRun is Data for the 4 KiB pages from First on.
type PageRun struct {
	First uint32
	Data  []byte
}

// Bytes returns how many bytes of memory the chunk carries.
func (c CloneChunk) Bytes() int {
	n := 0
	for _, r := range c.Runs {
		n += len(r.Data)
	}
	return n
}

// CloneSource is the primary's side of a live clone. Its methods run on
// the VM's goroutine, between two runs of the guest.
type CloneSource struct {
	vm     *VM
	todo   []uint32 // pages of the current round not yet copied, increasing
	round  int
	sent   uint64 // bytes of memory copied so far
	verify bool
}

// Verify makes the final state carry a hash of the whole memory at the
// clone point, which the target checks its restored memory against: a
// check of the pre-copy, at the cost of hashing the memory in the pause.
func (c *CloneSource) Verify() { c.verify = true }

// StartClone begins a live clone of a recording VM; its first round takes
// every page of memory that is not zero.
func (vm *VM) StartClone() (*CloneSource, error) {
	if vm.rec == nil {
		return nil, errors.New("vmm: only a recording VM can be cloned")
	}
	if vm.exit != nil {
		return nil, errors.New("vmm: clone of a guest that has ended")
	}
	c := &CloneSource{vm: vm, round: 1}
	if mem := vm.inst.Memory(); mem != nil {
		data := mem.Bytes()
		for p := range uint32(len(data) / wasm.DirtyPageSize) {
			if !isZeroPage(data[p*wasm.DirtyPageSize : (p+1)*wasm.DirtyPageSize]) {
				c.todo = append(c.todo, p)
			}
		}
		mem.ResetDirty()
	}
	return c, nil
}

func isZeroPage(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// Round returns the pre-copy round in progress, from 1.
func (c *CloneSource) Round() int { return c.round }

// Sent returns how many bytes of memory the clone has copied so far.
func (c *CloneSource) Sent() uint64 { return c.sent }

// Remaining returns how many bytes of memory the target does not have as
// the guest has them now: the current round's pages not yet copied and the
// pages written since it began (counted once each).
func (c *CloneSource) Remaining() uint64 {
	return uint64(len(c.pending())) * wasm.DirtyPageSize
}

// pending returns the pages the target does not have as the guest has them
// now, in increasing order.
func (c *CloneSource) pending() []uint32 {
	mem := c.vm.inst.Memory()
	if mem == nil {
		return nil
	}
	set := append(mem.DirtyPages(), c.todo...)
	slices.Sort(set)
	return slices.Compact(set)
}

// Copy copies up to limit bytes of the pages to send (at least one page), and
// starts the next round when the current one is done. An empty chunk means
// nothing is left to send now.
func (c *CloneSource) Copy(limit int) CloneChunk {
	mem := c.vm.inst.Memory()
	if mem == nil {
		return CloneChunk{}
	}
	if len(c.todo) == 0 {
		c.todo = mem.DirtyPages()
		mem.ResetDirty()
		if len(c.todo) == 0 {
			return CloneChunk{Pages: mem.Pages()}
		}
		c.round++
	}
	n := min(len(c.todo), max(1, limit/wasm.DirtyPageSize))
	chunk := copyPages(mem, c.todo[:n])
	c.todo = c.todo[n:]
	c.sent += uint64(chunk.Bytes())
	return chunk
}

// copyPages copies the pages (increasing) of mem into runs.
func copyPages(mem *wasm.Memory, pages []uint32) CloneChunk {
	data := mem.Bytes()
	chunk := CloneChunk{Pages: mem.Pages()}
	for i := 0; i < len(pages); {
		j := i + 1
		for j < len(pages) && pages[j] == pages[j-1]+1 {
			j++
		}
		lo, hi := pages[i]*wasm.DirtyPageSize, (pages[j-1]+1)*wasm.DirtyPageSize
		chunk.Runs = append(chunk.Runs, PageRun{First: pages[i], Data: append([]byte(nil), data[lo:hi]...)})
		i = j
	}
	runtime.KeepAlive(mem) // data may lie in mem's mapping
	return chunk
}

// FinishPages is the first part of the clone's final pause, before Finish:
// it returns the pages still to send, in chunks of at most limit bytes (at
// least a page each), so that no frame that carries them grows with what
// the guest wrote last; Finish then has none to carry. If they come to
// more than most bytes, it takes none and returns false, with how many
// bytes they come to.
func (c *CloneSource) FinishPages(limit int, most uint64) ([]CloneChunk, uint64, bool) {
	mem := c.vm.inst.Memory()
	if mem == nil {
		return nil, 0, true
	}
	pages := c.pending()
	if left := uint64(len(pages)) * wasm.DirtyPageSize; left > most {
		return nil, left, false
	}
	mem.ResetDirty()
	c.todo = nil
	per := max(1, limit/wasm.DirtyPageSize)
	var out []CloneChunk
	for len(pages) > 0 {
		n := min(len(pages), per)
		chunk := copyPages(mem, pages[:n])
		c.sent += uint64(chunk.Bytes())
		out = append(out, chunk)
		pages = pages[n:]
	}
	return out, 0, true
}

// Finish is the clone's final pause: it returns the pages still to send
// and the rest of the VM's state, as of now, for CloneTarget.Finish, and
// the last log entry of the state (the new backup's log starts after it).
// The guest must not run between Finish and the moment the caller resumes
// it with the new backup attached.
func (c *CloneSource) Finish(written [2]uint64, unwritten [2][]byte) (final []byte, seq uint64, err error) {
	vm := c.vm
	var pages CloneChunk
	if mem := vm.inst.Memory(); mem != nil {
		pages = copyPages(mem, c.pending())
		mem.ResetDirty()
		c.todo = nil
		c.sent += uint64(pages.Bytes())
	}
	eng, err := vm.inst.SnapshotState()
	if err != nil {
		return nil, 0, err
	}
	st, err := vm.sys.MarshalState()
	if err != nil {
		return nil, 0, err
	}
	var e replog.Encoder
	e.B = append(e.B, cloneMagic...)
	encodeChunk(&e, pages)
	e.Blob(eng)
	e.Blob(st)
	e.Uint(vm.seq)
	if vm.startAfter != nil {
		e.Uint(1)
	} else {
		e.Uint(0)
	}
	vm.rec.track.encode(&e)
	for i := range 2 {
		e.Uint(written[i] + uint64(len(unwritten[i])))
		e.Blob(unwritten[i])
	}
	var sum []byte
	if mem := vm.inst.Memory(); c.verify && mem != nil {
		h := sha256.Sum256(mem.Bytes())
		sum = h[:]
	}
	e.Blob(sum)
	return replog.AppendFrame(nil, e.B), vm.seq, nil
}

const cloneMagic = "FTVMCLN2"

// Replaying turns vm, a recording VM paused between two runs, into a VM
// that replays (cfg.Replay, with the entries after the one it returns)
// from where vm stands, in this process: a primary that handed its VM
// over becomes its new primary's backup. The state crosses as a clone's
// final state would, but the memory is copied straight from vm's, and vm
// must never run again. written and unwritten are as for Finish.
func (vm *VM) Replaying(cm *wasm.CompiledModule, cfg Config, written [2]uint64, unwritten [2][]byte) (*VM, uint64, error) {
	if vm.rec == nil {
		return nil, 0, errors.New("vmm: only a recording VM can become a replaying one")
	}
	if vm.exit != nil {
		return nil, 0, errors.New("vmm: the guest has ended")
	}
	t := NewCloneTarget(cm)
	if mem := vm.inst.Memory(); mem != nil {
		// Finish then carries no pages: the target has them all. The
		// target holds mem itself, not its bytes, which mem's mapping
		// backs only while mem is reachable.
		mem.ResetDirty()
		t.img = mem
	}
	final, seq, err := (&CloneSource{vm: vm}).Finish(written, unwritten)
	if err != nil {
		return nil, 0, err
	}
	nvm, _, err := t.Finish(cm, cfg, final)
	if err != nil {
		return nil, 0, err
	}
	return nvm, seq, nil
}

// EncodeChunk appends the encoding of a pre-copy chunk to b, for the
// channel that carries it.
func EncodeChunk(b []byte, c CloneChunk) []byte {
	e := replog.Encoder{B: b}
	encodeChunk(&e, c)
	return e.B
}

func encodeChunk(e *replog.Encoder, c CloneChunk) {
	e.Uint(uint64(c.Pages))
	e.Uint(uint64(len(c.Runs)))
	for _, r := range c.Runs {
		e.Uint(uint64(r.First))
		e.Blob(r.Data)
	}
}

// DecodeChunk decodes a pre-copy chunk. Its runs alias b.
func DecodeChunk(b []byte) (CloneChunk, error) {
	d := replog.NewDecoder(b)
	c := decodeChunk(d)
	if err := d.Finish(); err != nil {
		return CloneChunk{}, fmt.Errorf("vmm: clone chunk: %w", err)
	}
	return c, nil
}

func decodeChunk(d *replog.Decoder) CloneChunk {
	c := CloneChunk{Pages: uint32(d.Uint())}
	n := d.Uint()
	if n > uint64(d.Len()) {
		d.Bytes(d.Len() + 1) // poison: more runs than bytes
		return CloneChunk{}
	}
	for range n {
		c.Runs = append(c.Runs, PageRun{First: uint32(d.Uint()), Data: d.Blob()})
	}
	return c
}

// CloneTarget is the new backup's side of a live clone: the image of the
// guest's memory as the chunks build it.
type CloneTarget struct {
	img   *wasm.Memory // nil until the first chunk
	own   bool         // img is the target's own, to free once restored
	bytes uint64       // received
	limit uint32       // the most 64 KiB pages the memory may have
}

// NewCloneTarget returns a target for a clone of a VM of cm.
func NewCloneTarget(cm *wasm.CompiledModule) *CloneTarget {
	limit, _ := cm.MemoryLimit()
	return &CloneTarget{limit: limit}
}

// Received returns how many bytes of memory the target has received.
func (t *CloneTarget) Received() uint64 { return t.bytes }

// Apply lays a chunk into the image.
func (t *CloneTarget) Apply(c CloneChunk) error {
	if c.Pages > t.limit {
		return fmt.Errorf("vmm: clone: memory of %d pages, beyond the module's %d", c.Pages, t.limit)
	}
	if t.img == nil {
		// A wasm.Memory, for its backing: a mapping that grows in place,
		// whose pages are touched only as chunks fill them.
		t.img, t.own = wasm.NewMemory(0, t.limit), true
	}
	if n := t.img.Pages(); n < c.Pages && t.img.Grow(c.Pages-n) < 0 {
		return fmt.Errorf("vmm: clone: memory of %d pages cannot be had", c.Pages)
	}
	for _, r := range c.Runs {
		off := uint64(r.First) * wasm.DirtyPageSize
		if len(r.Data)%wasm.DirtyPageSize != 0 || off+uint64(len(r.Data)) > uint64(t.img.Size()) {
			return fmt.Errorf("vmm: clone: %d bytes at page %d do not fit a memory of %d pages", len(r.Data), r.First, c.Pages)
		}
		t.img.Write(uint32(off), r.Data)
		t.bytes += uint64(len(r.Data))
	}
	return nil
}

// CloneState is a clone's final state, decoded (see DecodeFinal).
type CloneState struct {
	pages        CloneChunk
	eng, sys     []byte
	seq          uint64
	startPending bool
	track        []byte // the tracker's encoding, read against the VM's configuration
	produced     [2]uint64
	unwritten    [2][]byte
	memSum       []byte // sha256 of the memory at the clone point, if verified
}

// Seq returns the last log entry the state has: the new backup's log
// starts after it.
func (s *CloneState) Seq() uint64 { return s.seq }

// DecodeFinal decodes a clone's final state (CloneSource.Finish).
func (t *CloneTarget) DecodeFinal(final []byte) (*CloneState, error) {
	payload, n, err := replog.DecodeFrame(final)
	if err != nil || n != len(final) {
		return nil, fmt.Errorf("vmm: not a clone's final state, or corrupt: %v", errOr(err, "trailing bytes"))
	}
	d := replog.NewDecoder(payload)
	if string(d.Bytes(len(cloneMagic))) != cloneMagic {
		return nil, errors.New("vmm: not a clone's final state")
	}
	s := &CloneState{pages: decodeChunk(d)}
	s.eng, s.sys, s.seq = d.Blob(), d.Blob(), d.Uint()
	s.startPending = d.Uint() == 1
	before := d.Len()
	decodeTracker(d, nil) // read against the VM's configuration at Restore
	s.track = payload[len(payload)-before : len(payload)-d.Len()]
	for i := range 2 {
		// Copied: the state outlives the buffer it was read into.
		s.produced[i], s.unwritten[i] = d.Uint(), bytes.Clone(d.Blob())
		if uint64(len(s.unwritten[i])) > s.produced[i] {
			d.Bytes(d.Len() + 1) // poison
		}
	}
	if s.memSum = bytes.Clone(d.Blob()); len(s.memSum) != 0 && len(s.memSum) != sha256.Size {
		d.Bytes(d.Len() + 1) // poison
	}
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("vmm: corrupt clone state: %w", err)
	}
	return s, nil
}

// Restore restores, from a clone's final state, a VM that replays
// (cfg.Replay must be set, with the entries after the state's last one) and
// can go live when its log ends.
func (t *CloneTarget) Restore(cm *wasm.CompiledModule, cfg Config, s *CloneState) (*VM, error) {
	if cfg.Replay == nil {
		return nil, errors.New("vmm: a cloned VM must replay from a log")
	}
	d := replog.NewDecoder(s.track)
	track := decodeTracker(d, &cfg.WASI)
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("vmm: corrupt clone state: handles: %w", err)
	}
	if err := t.Apply(s.pages); err != nil {
		return nil, err
	}
	// Apply made t.img; t holds it while its bytes are in use.
	mem := t.img.Bytes()
	if len(s.memSum) != 0 {
		if got := sha256.Sum256(mem); !bytes.Equal(got[:], s.memSum) {
			return nil, fmt.Errorf("vmm: clone: the restored memory differs from the primary's at the clone point (sha256 %x, the primary's %x)", got[:8], s.memSum[:8])
		}
	}
	vm, err := newVM(cm, cfg)
	if err != nil {
		return nil, err
	}
	var inst *wasm.Instance
	if _, ok := cm.MemoryLimit(); ok {
		inst, err = wasm.NewStore().RestoreWithMemory(cm, resolveWASI, s.eng, mem)
	} else {
		inst, err = wasm.NewStore().Restore(cm, resolveWASI, s.eng)
	}
	if t.own {
		// The instance has copied it: its pages go back now, not at
		// the next GC, or a clone of a large guest would hold its
		// memory twice for a while.
		t.img.Free()
	}
	runtime.KeepAlive(t.img)
	if err != nil {
		vm.Close()
		return nil, fmt.Errorf("vmm: clone: %w", err)
	}
	t.img = nil
	vm.inst = inst
	if err := vm.sys.UnmarshalState(s.sys); err != nil {
		vm.Close()
		return nil, err
	}
	if s.startPending {
		vm.startAfter = inst.ExportedFunc("_start")
	}
	track.complete = true
	vm.rep.track, vm.rep.seq = track, s.seq
	for i := range 2 {
		// The stream from the start, of which the primary had written all
		// but unwritten.
		vm.rep.tails[i] = outTail{end: s.produced[i], buf: s.unwritten[i]}
	}
	return vm, nil
}

// Finish is DecodeFinal then Restore: it returns the VM and the last entry
// of the state.
func (t *CloneTarget) Finish(cm *wasm.CompiledModule, cfg Config, final []byte) (*VM, uint64, error) {
	s, err := t.DecodeFinal(final)
	if err != nil {
		return nil, 0, err
	}
	vm, err := t.Restore(cm, cfg, s)
	if err != nil {
		return nil, 0, err
	}
	return vm, s.seq, nil
}

// encode appends the tracker's state (all but the startup handles, which
// follow from the configuration).
func (t *handleTracker) encode(e *replog.Encoder) {
	var hs []wasi.Handle
	for _, h := range slices.Sorted(maps.Keys(t.handles)) {
		if !t.handles[h].startup {
			hs = append(hs, h)
		}
	}
	e.Uint(uint64(len(hs)))
	for _, h := range hs {
		r := t.handles[h]
		e.Uint(uint64(h))
		e.Uint(uint64(r.kind))
		e.Uint(uint64(r.preopen))
		e.String(r.rel)
		e.Uint(uint64(r.req.Oflags))
		e.Uint(uint64(r.req.Fdflags))
		e.Uint(flags(r.req.Read, r.req.Write, r.req.Follow, r.eof, r.shut))
		e.String(r.session)
		e.Uint(r.in)
		e.Uint(r.out)
	}
	closed := slices.Sorted(maps.Keys(t.closed))
	e.Uint(uint64(len(closed)))
	for _, h := range closed {
		e.Uint(uint64(h))
	}
	e.Uint(t.mono)
	e.Uint(t.cpu)
}

func flags(bs ...bool) uint64 {
	var v uint64
	for i, b := range bs {
		if b {
			v |= 1 << i
		}
	}
	return v
}

// decodeTracker reads a tracker's state for a VM configured by cfg; with
// cfg nil it only reads past it.
func decodeTracker(d *replog.Decoder, cfg *wasi.Config) *handleTracker {
	var t *handleTracker
	if cfg != nil {
		t = newHandleTracker(*cfg)
	}
	bad := func() *handleTracker {
		d.Bytes(d.Len() + 1) // poison
		return t
	}
	n := d.Uint()
	if n > uint64(d.Len()) {
		return bad()
	}
	for range n {
		h := wasi.Handle(d.Uint())
		r := &tracked{kind: wasi.AdoptKind(d.Uint()), preopen: int(d.Uint()), rel: d.String()}
		r.req.Oflags, r.req.Fdflags = uint16(d.Uint()), uint16(d.Uint())
		f := d.Uint()
		r.req.Read, r.req.Write, r.req.Follow = f&1 != 0, f&2 != 0, f&4 != 0
		r.eof, r.shut = f&8 != 0, f&16 != 0
		r.session, r.in, r.out = d.String(), d.Uint(), d.Uint()
		if r.session != "" && r.kind != wasi.AdoptConn {
			return bad()
		}
		if t == nil {
			continue
		}
		files := r.kind == wasi.AdoptFile || r.kind == wasi.AdoptDir
		if h < t.startup || files && (r.preopen < 0 || r.preopen >= len(cfg.Preopens)) {
			return bad()
		}
		t.handles[h] = r
	}
	n = d.Uint()
	if n > uint64(d.Len()) {
		return bad()
	}
	for range n {
		h := wasi.Handle(d.Uint())
		if t == nil {
			continue
		}
		if h >= t.startup {
			return bad()
		}
		t.closed[h] = true
		delete(t.handles, h)
	}
	mono, cpu := d.Uint(), d.Uint()
	if t != nil {
		t.mono, t.cpu = mono, cpu
	}
	return t
}
