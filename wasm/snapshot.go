package wasm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Snapshot encoding. A snapshot is:
//
//	magic "FTVMSNAP", version u32, code version u32, module SHA-256 [32]
//	count u64
//	memory: present u8; pages u32; then runs of non-zero 4 KiB pages as
//	        (first page u32, page count u32, bytes), ended by first page 0xffffffff
//	globals: n u32, values u64...
//	tables: n u32, each: len u32, elems u64... (funcrefs as function index + 1)
//	segments: n datas u32, dropped bitmap bytes; n elems u32, dropped bitmap bytes
//	execution: active u8, pending function index u32 (noFunc if none),
//	           args n u32, u64...; sp u32, stack u64 * sp;
//	           current frame; frames n u32; each frame: function index u32, pc u32, bp u32
//	crc32 (IEEE) of everything before it
//
// All integers are little-endian. The program counters are positions in the
// engine's internal code, so a snapshot names the version of the compiler
// that produced it (codeVersion) and is refused by any other. The tier
// that ran the instance is not recorded, on purpose: both tiers stop at
// the same positions with the same state, so one state has one snapshot,
// byte for byte, whichever tier took it (the tiers' differential tests
// compare them so, and a snapshot of either restores on either). The log
// header records the tier (replog.Header).
// CodeVersion names the compiler's output: positions (instruction counts)
// and snapshot program counters are only meaningful between engines of the
// same CodeVersion, so snapshots and event logs record it. Any change to
// what the compiler emits (a new superinstruction, an elided instruction)
// bumps it.
const CodeVersion = 2

const codeVersion = CodeVersion

const (
	snapMagic       = "FTVMSNAP"
	snapVersion     = 1
	snapHeaderBytes = 8 + 4 + 4 + 32
)

// ErrSnapshotModule is returned when a snapshot was taken of another module.
var ErrSnapshotModule = errors.New("wasm: snapshot is of a different module")

type snapWriter struct{ b []byte }

func (w *snapWriter) u8(v byte)    { w.b = append(w.b, v) }
func (w *snapWriter) u32(v uint32) { w.b = binary.LittleEndian.AppendUint32(w.b, v) }
func (w *snapWriter) u64(v uint64) { w.b = binary.LittleEndian.AppendUint64(w.b, v) }

type snapReader struct {
	b   []byte
	err error
}

func (r *snapReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("wasm: corrupt snapshot: "+format, args...)
	}
}

func (r *snapReader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail("truncated")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *snapReader) u8() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *snapReader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *snapReader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// count reads a count of items of at least size bytes each, refusing counts
// the remaining input cannot hold (so a corrupt count cannot allocate).
func (r *snapReader) count(size int) int {
	n := r.u32()
	if r.err == nil && uint64(n)*uint64(size) > uint64(len(r.b)) {
		r.fail("count %d exceeds the remaining %d bytes", n, len(r.b))
		return 0
	}
	return int(n)
}

// Snapshot encodes the complete state of the instance: memory, globals,
// tables, dropped segments and the invocation in progress (value stack,
// frames, position, a pending host call). Restore resumes it in a fresh
// instance, in this or another process.
//
// The value stack is untyped, so function references on it are kept as
// store indices; for those to mean the same after Restore, a snapshot is
// only taken of an instance that is alone in its store, and restored into
// an empty store.
func (in *Instance) Snapshot() ([]byte, error) { return in.snapshot(true) }

// SnapshotState is Snapshot without the memory's contents: it records the
// memory's size alone, and RestoreWithMemory takes the contents apart. A
// live clone copies the memory page by page while the guest runs (see
// Memory.DirtyPages) and only the rest of the state at its final pause.
func (in *Instance) SnapshotState() ([]byte, error) { return in.snapshot(false) }

// Memory flags of a snapshot.
const (
	snapNoMemory   = 0
	snapMemory     = 1 // the contents follow
	snapMemorySize = 2 // the size in pages follows; the contents come apart
)

func (in *Instance) snapshot(withMemory bool) ([]byte, error) {
	if err := in.aloneInStore(); err != nil {
		return nil, err
	}
	w := &snapWriter{b: make([]byte, 0, 1024)}
	w.b = append(w.b, snapMagic...)
	w.u32(snapVersion)
	w.u32(codeVersion)
	w.b = append(w.b, in.cm.Hash[:]...)
	e := &in.exec
	w.u64(e.count)

	switch {
	case in.mem == nil:
		w.u8(snapNoMemory)
	case withMemory:
		w.u8(snapMemory)
		writeMemory(w, in.mem.data)
	default:
		w.u8(snapMemorySize)
		w.u32(in.mem.Pages())
	}

	w.u32(uint32(len(in.globals)))
	for _, g := range in.globals {
		v := g.val
		if g.typ.Type == FuncRef {
			var err error
			if v, err = in.refToIndex(v); err != nil {
				return nil, err
			}
		}
		w.u64(v)
	}
	w.u32(uint32(len(in.tables)))
	for _, t := range in.tables {
		w.u32(uint32(len(t.elems)))
		for _, v := range t.elems {
			if t.typ.Elem == FuncRef {
				var err error
				if v, err = in.refToIndex(v); err != nil {
					return nil, err
				}
			}
			w.u64(v)
		}
	}
	w.u32(uint32(len(in.datas)))
	w.b = append(w.b, droppedBitmap(len(in.datas), func(i int) bool { return in.datas[i] == nil })...)
	w.u32(uint32(len(in.elems)))
	w.b = append(w.b, droppedBitmap(len(in.elems), func(i int) bool { return in.elems[i] == nil })...)

	if !e.active || e.cur.fn == nil || e.cur.fn.code == nil {
		if e.active {
			return nil, errors.New("wasm: snapshot of a direct host-function invocation is not supported")
		}
		w.u8(0)
	} else {
		w.u8(1)
		pending := noFunc
		if e.pending != nil {
			idx, err := in.funcIndex(e.pending)
			if err != nil {
				return nil, err
			}
			pending = idx
		}
		w.u32(pending)
		w.u32(uint32(len(e.args)))
		for _, a := range e.args {
			w.u64(a)
		}
		w.u32(uint32(e.sp))
		for _, v := range e.stack[:e.sp] {
			w.u64(v)
		}
		// Stack slots hold funcrefs as raw store indices; within one
		// instance a store index is stable across Restore because functions
		// are registered in index order (checked there).
		if err := in.writeFrame(w, e.cur); err != nil {
			return nil, err
		}
		w.u32(uint32(len(e.frames)))
		for _, f := range e.frames {
			if err := in.writeFrame(w, f); err != nil {
				return nil, err
			}
		}
	}
	w.u32(crc32.ChecksumIEEE(w.b))
	return w.b, nil
}

func writeMemory(w *snapWriter, data []byte) {
	w.u32(uint32(len(data) / PageSize))
	const ps = DirtyPageSize
	n := len(data) / ps
	for p := 0; p < n; {
		if isZero(data[p*ps : (p+1)*ps]) {
			p++
			continue
		}
		q := p + 1
		for q < n && !isZero(data[q*ps:(q+1)*ps]) {
			q++
		}
		w.u32(uint32(p))
		w.u32(uint32(q - p))
		w.b = append(w.b, data[p*ps:q*ps]...)
		p = q
	}
	w.u32(^uint32(0))
}

func isZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

func droppedBitmap(n int, dropped func(int) bool) []byte {
	b := make([]byte, (n+7)/8)
	for i := range n {
		if dropped(i) {
			b[i/8] |= 1 << (i % 8)
		}
	}
	return b
}

func (in *Instance) writeFrame(w *snapWriter, f frame) error {
	idx, err := in.funcIndex(f.fn)
	if err != nil {
		return err
	}
	w.u32(idx)
	w.u32(uint32(f.pc))
	w.u32(uint32(f.bp))
	return nil
}

func (in *Instance) aloneInStore() error {
	if len(in.store.funcs) != len(in.funcs) {
		return errors.New("wasm: snapshot: the instance shares its store with other instances")
	}
	for i, f := range in.funcs {
		if f.ref != uint64(i+1) {
			return errors.New("wasm: snapshot: the instance shares its store with other instances")
		}
	}
	return nil
}

// funcIndex finds f in the instance's function index space.
func (in *Instance) funcIndex(f *Function) (uint32, error) {
	if f.inst == in && f.code != nil {
		return f.code.idx, nil
	}
	for i, g := range in.funcs {
		if g == f {
			return uint32(i), nil
		}
	}
	return 0, fmt.Errorf("wasm: snapshot: function %s.%s is not part of the instance", f.Module, f.Name)
}

func (in *Instance) refToIndex(ref uint64) (uint64, error) {
	if ref == 0 {
		return 0, nil
	}
	f := in.store.funcByRef(ref)
	if f == nil {
		return 0, errors.New("wasm: snapshot: dangling function reference")
	}
	idx, err := in.funcIndex(f)
	return uint64(idx) + 1, err
}

func (in *Instance) indexToRef(v uint64) (uint64, bool) {
	if v == 0 {
		return 0, true
	}
	if v-1 >= uint64(len(in.funcs)) {
		return 0, false
	}
	return in.funcs[v-1].ref, true
}

// Restore creates an instance of cm in the store, linked through resolve,
// in the state recorded by snap. Its segments are not applied again: their
// effects are in the snapshot.
func (s *Store) Restore(cm *CompiledModule, resolve Resolver, snap []byte) (*Instance, error) {
	return s.restore(cm, resolve, snap, nil)
}

// RestoreWithMemory is Restore for a snapshot made by SnapshotState: mem is
// the memory's contents, of the size the snapshot records, which the
// instance copies (it keeps no reference to mem).
func (s *Store) RestoreWithMemory(cm *CompiledModule, resolve Resolver, snap, mem []byte) (*Instance, error) {
	if mem == nil {
		mem = []byte{}
	}
	return s.restore(cm, resolve, snap, mem)
}

func (s *Store) restore(cm *CompiledModule, resolve Resolver, snap, mem []byte) (*Instance, error) {
	if len(snap) < snapHeaderBytes+4 || string(snap[:8]) != snapMagic {
		return nil, errors.New("wasm: not a snapshot")
	}
	body, sum := snap[:len(snap)-4], binary.LittleEndian.Uint32(snap[len(snap)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return nil, errors.New("wasm: corrupt snapshot: checksum mismatch")
	}
	r := &snapReader{b: body[8:]}
	if v := r.u32(); v != snapVersion {
		return nil, fmt.Errorf("wasm: snapshot format version %d, this engine reads %d", v, snapVersion)
	}
	if v := r.u32(); v != codeVersion {
		return nil, fmt.Errorf("wasm: snapshot made by engine code version %d, this engine is %d", v, codeVersion)
	}
	if string(r.take(32)) != string(cm.Hash[:]) {
		return nil, fmt.Errorf("%w (snapshot module sha256 %x, given %x)", ErrSnapshotModule, snap[16:48], cm.Hash)
	}
	if len(s.funcs) != 0 {
		return nil, errors.New("wasm: restore needs an empty store")
	}
	in, err := s.allocate(cm, resolve)
	if err != nil {
		return nil, err
	}
	if err := in.restore(r, mem); err != nil {
		return nil, err
	}
	return in, nil
}

// restore reads the state; mem, if not nil, is the memory's contents for a
// snapshot that records its size alone.
func (in *Instance) restore(r *snapReader, mem []byte) error {
	e := &in.exec
	e.count = r.u64()
	switch flag := r.u8(); {
	case r.err != nil:
	case (flag == snapNoMemory) != (in.mem == nil):
		r.fail("memory presence does not match the module")
	case flag == snapMemory && mem == nil:
		in.readMemory(r)
	case flag == snapMemorySize && mem != nil:
		in.adoptMemory(r, mem)
	case flag != snapNoMemory:
		r.fail("memory flag %d, with memory given apart: %v", flag, mem != nil)
	}
	if n := r.count(8); r.err == nil && n != len(in.globals) {
		r.fail("%d globals, module has %d", n, len(in.globals))
	}
	for _, g := range in.globals {
		v := r.u64()
		if g.typ.Type == FuncRef {
			ref, ok := in.indexToRef(v)
			if !ok {
				r.fail("bad function reference in a global")
			}
			v = ref
		}
		g.val = v
	}
	if n := r.count(4); r.err == nil && n != len(in.tables) {
		r.fail("%d tables, module has %d", n, len(in.tables))
	}
	for _, t := range in.tables {
		n := r.count(8)
		if r.err != nil {
			break
		}
		t.elems = make([]uint64, n)
		for i := range t.elems {
			v := r.u64()
			if t.typ.Elem == FuncRef {
				ref, ok := in.indexToRef(v)
				if !ok {
					r.fail("bad function reference in a table")
				}
				v = ref
			}
			t.elems[i] = v
		}
	}
	readDropped(r, len(in.datas), func(i int) { in.datas[i] = nil })
	readDropped(r, len(in.elems), func(i int) { in.elems[i] = nil })

	if active := r.u8(); active == 1 {
		pending := r.u32()
		args := make([]uint64, r.count(8))
		for i := range args {
			args[i] = r.u64()
		}
		sp := r.count(8)
		if r.err == nil && sp > in.cfg.MaxStackValues {
			r.fail("stack of %d values exceeds the limit", sp)
		}
		if r.err != nil {
			return r.err
		}
		stack := make([]uint64, max(sp+1024, 1024))
		for i := range sp {
			stack[i] = r.u64()
		}
		cur := in.readFrame(r)
		nf := r.count(12)
		frames := make([]frame, nf)
		for i := range frames {
			frames[i] = in.readFrame(r)
		}
		if r.err != nil {
			return r.err
		}
		if err := in.checkFrames(cur, frames, sp); err != nil {
			return err
		}
		need := cur.bp + cur.fn.code.numLocals + cur.fn.code.maxHeight
		if need > len(stack) {
			stack = append(stack, make([]uint64, need-len(stack))...)
		}
		e.stack, e.sp, e.cur, e.frames, e.active, e.args = stack, sp, cur, frames, true, args
		if pending != noFunc {
			if pending >= uint32(len(in.funcs)) || !in.funcs[pending].IsHost() {
				return errors.New("wasm: corrupt snapshot: pending call of a function that is not a host function")
			}
			e.pending = in.funcs[pending]
			if len(args) != len(e.pending.typ.Params) {
				return errors.New("wasm: corrupt snapshot: pending call arguments do not match its type")
			}
		}
	} else if active != 0 {
		r.fail("bad execution flag")
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	return r.err
}

func (in *Instance) readMemory(r *snapReader) {
	pages := r.u32()
	if r.err != nil {
		return
	}
	if pages < in.mem.Pages() || pages > in.mem.max {
		r.fail("memory of %d pages is outside the module's limits", pages)
		return
	}
	if in.mem.grow(pages-in.mem.Pages()) < 0 {
		r.fail("memory of %d pages cannot be had", pages)
		return
	}
	in.mem.zero()
	data := in.mem.data
	for r.err == nil {
		first := r.u32()
		if first == ^uint32(0) {
			break
		}
		n := r.u32()
		end := uint64(first) + uint64(n)
		if end*DirtyPageSize > uint64(len(data)) {
			r.fail("memory page run past the end of memory")
			return
		}
		b := r.take(int(n) * DirtyPageSize)
		copy(data[uint64(first)*DirtyPageSize:], b)
	}
	in.mem.ResetDirty()
}

// adoptMemory copies mem in as the memory's contents, of the size r records:
// the memory keeps its own backing (a mapping that never moves), and mem
// stays the caller's.
func (in *Instance) adoptMemory(r *snapReader, mem []byte) {
	pages := r.u32()
	switch {
	case r.err != nil:
		return
	case pages < in.mem.Pages() || pages > in.mem.max:
		r.fail("memory of %d pages is outside the module's limits", pages)
		return
	case uint64(len(mem)) != uint64(pages)*PageSize:
		r.fail("memory of %d pages given %d bytes", pages, len(mem))
		return
	}
	if in.mem.grow(pages-in.mem.Pages()) < 0 {
		r.fail("memory of %d pages cannot be had", pages)
		return
	}
	in.mem.zero()
	in.mem.copyIn(mem)
	in.mem.ResetDirty()
}

func readDropped(r *snapReader, n int, drop func(int)) {
	if got := r.count(0); r.err == nil && got != n {
		r.fail("%d segments, module has %d", got, n)
		return
	}
	b := r.take((n + 7) / 8)
	if r.err != nil {
		return
	}
	for i := range n {
		if b[i/8]&(1<<(i%8)) != 0 {
			drop(i)
		}
	}
}

func (in *Instance) readFrame(r *snapReader) frame {
	idx, pc, bp := r.u32(), r.u32(), r.u32()
	if r.err != nil {
		return frame{}
	}
	if idx >= uint32(len(in.funcs)) || in.funcs[idx].code == nil || in.funcs[idx].inst != in {
		r.fail("frame of function %d, which is not defined by the module", idx)
		return frame{}
	}
	return frame{fn: in.funcs[idx], pc: int(pc), bp: int(bp)}
}

// checkFrames verifies that restored frames are consistent, so a corrupt
// snapshot is an error rather than an out-of-range access later.
func (in *Instance) checkFrames(cur frame, frames []frame, sp int) error {
	bad := func(msg string) error { return errors.New("wasm: corrupt snapshot: " + msg) }
	prevTop := 0
	for i, f := range append(frames[:len(frames):len(frames)], cur) {
		c := f.fn.code
		if f.pc < 0 || f.pc > len(c.code) {
			return bad("program counter out of range")
		}
		if f.pc > 0 && i < len(frames) && c.code[f.pc-1].op != opCall && c.code[f.pc-1].op != opCallIndirect {
			return bad("caller frame not at a call")
		}
		if f.bp < prevTop || f.bp+c.numLocals > sp {
			return bad("frame base out of range")
		}
		prevTop = f.bp + c.numLocals
	}
	if sp > cur.bp+cur.fn.code.numLocals+cur.fn.code.maxHeight {
		return bad("operand stack deeper than the function allows")
	}
	return nil
}
