package wasm

import (
	"fmt"
	"runtime"
	"unsafe"

	"ftvm/wasm/internal/amd64"
	"ftvm/wasm/internal/native"
)

// The compiler tier translates each function's internal code (ir.go, after
// the peephole) to x86-64, one internal instruction at a time, and works on
// the interpreter's own state: the value stack, the frames, the memory and
// the globals. Native code is entered at some program counters, runs until
// an exit, and leaves that state complete and current, so everything that
// looks at the state (host calls, snapshots, Resume, the dirty pages) works
// as under the interpreter, and the interpreter takes over at any exit.
//
// The unit of native execution is a segment: a run of natively compiled
// instructions that starts at a leader (a branch target, the instruction
// after a branch, or after one the interpreter must execute) and ends at a
// branch or before the next leader. A segment's first instruction charges
// the whole segment to the budget at once; when the budget is short, native
// code exits before the segment and the interpreter runs out the budget, so
// Run stops at exactly the count the interpreter would. An instruction that
// would trap gives back the instructions of its segment from itself on, and
// exits so that the interpreter executes it again and traps as usual.
//
// Native code makes calls and returns itself, without a machine stack:
// a call of a function of the same instance (direct, or through table 0
// after the interpreter's checks) pushes a frame record (nativeFrame: the
// caller's interpreter frame and the native address to return to), moves
// the frame base to the callee's frame, zeroes its locals and jumps to the
// callee's entry; a return copies the results down, pops the record and
// jumps back. Go turns the records into the interpreter's frames at every
// exit and the innermost frames back into records at every entry
// (enterFrames, exitFrames), so the frames are the interpreter's at every
// exit. A call ends its segment (the callee charges its own instructions).
// A call that needs Go (an import or host function, another instance's
// function, a value stack to grow, records or call depth run out) exits
// before it, and so does a return without a record; the tier's loop
// (runCompiled) makes those as the interpreter would.
//
// Native code exits at every other instruction it does not translate
// (memory.grow, memory.init, data.drop, the reference and table
// instructions), which the interpreter executes, exactly that one
// instruction, before native code is entered again after it.

// nativeCtx is what native code reads and writes, through RDI. Native code
// writes only the integer fields (remaining and the exit record); the
// pointer fields are set by Go before each entry and keep what they point
// to alive for the call, but for mem, which may point into a mapping the GC
// does not see: the instance, live across the call, keeps its Memory.
type nativeCtx struct {
	stack     unsafe.Pointer // &stack[0]
	bp        uint64         // frame base, in slots
	mem       unsafe.Pointer // &memory[0], nil without memory or with size 0
	memLen    uint64
	dirty     unsafe.Pointer // &dirty bitmap[0]
	globals   unsafe.Pointer // &inst.globals[0] ([]*Global)
	remaining uint64         // budget left; native code updates it
	target    uintptr        // address to enter at
	exit      uint64         // pc<<1 | exitBudget or exitStep
	exitSP    uint64         // sp - bp at the exit

	// Native calls and returns (see nativeFrame).
	stackEnd  uint64         // address of &stack[len(stack)]
	funcs     unsafe.Pointer // &CompiledModule.nativeCallees[0]
	inst      uint64         // the *Instance native code runs for, as a number to compare
	table     unsafe.Pointer // &tables[0].elems[0], nil if none or empty
	tableLen  uint64
	refs      unsafe.Pointer // &store.funcs[0] (read only), nil if none
	refsLen   uint64
	typeIDs   unsafe.Pointer // &inst.typeIDs[0] (read only), nil if none
	fpStart   uint64         // address of the first frame record
	fp        uint64         // address of the next free frame record
	fpEnd     uint64         // address past the last record a call may push
	exitFn    uint64         // function index of the frame at the exit
	exitFrame uint64         // address of that frame's base, &stack[bp]

	// gvals holds the addresses of the values of the first globals
	// (&inst.globals[i].val), so that global.get and global.set of them
	// load one address from the context rather than chase two pointers.
	// The globals are held by the instance.
	gvals [nativeFixedGlobals]uint64
}

// nativeFixedGlobals is how many globals have their addresses in the
// context.
const nativeFixedGlobals = 32

// nativeFrame is the record of a caller that native code called from: the
// interpreter's frame (function index and resume pc in info, the base as
// an address into the value stack) and the native address that its return
// jumps to. Native code pushes one at every call and pops one at every
// return; Go turns them into the interpreter's frames at every exit, and
// turns the innermost frames back into records at every entry, so that
// returns to them stay native too. Records hold no Go pointers: the value
// stack they point into is held by nativeCtx.stack for the whole entry and
// never moves during it (it grows only in Go).
type nativeFrame struct {
	info  uint64 // function index<<32 | pc
	frame uint64 // &stack[bp]
	ret   uint64 // native address of the entry at pc
	_     uint64
}

// nativeCallee is what a native call needs of the function it calls: the
// address of its native code at its start (0 if it has none: imports,
// functions without native code), the value-stack bytes its frame needs
// beyond its base ((locals + maxHeight) * 8), and its locals, parameters
// included.
type nativeCallee struct {
	entry  uint64
	need   uint32
	locals uint32
}

// nativeCalleeSize is the size of a nativeCallee (a power of two).
const nativeCalleeSize = 16

// nativeFrameSize is the size of a nativeFrame (a power of two).
const nativeFrameSize = 32

const (
	// nativeFrameRecords bounds the frames native code may push in one
	// entry (past them, the call exits and Go makes it).
	nativeFrameRecords = 1024
	// nativeFramesMoved bounds the innermost interpreter frames made into
	// records again at an entry.
	nativeFramesMoved = 64
)

// Exit reasons, in the low bit of nativeCtx.exit.
const (
	// exitStep: the interpreter executes the instruction at pc, then
	// native code may go on.
	exitStep = 0
	// exitBudget: the segment at pc needs more budget than is left; the
	// interpreter runs out the rest.
	exitBudget = 1
)

var (
	ctxStack     = int32(unsafe.Offsetof(nativeCtx{}.stack))
	ctxBP        = int32(unsafe.Offsetof(nativeCtx{}.bp))
	ctxMem       = int32(unsafe.Offsetof(nativeCtx{}.mem))
	ctxMemLen    = int32(unsafe.Offsetof(nativeCtx{}.memLen))
	ctxDirty     = int32(unsafe.Offsetof(nativeCtx{}.dirty))
	ctxGlobals   = int32(unsafe.Offsetof(nativeCtx{}.globals))
	ctxRemaining = int32(unsafe.Offsetof(nativeCtx{}.remaining))
	ctxTarget    = int32(unsafe.Offsetof(nativeCtx{}.target))
	ctxExit      = int32(unsafe.Offsetof(nativeCtx{}.exit))
	ctxExitSP    = int32(unsafe.Offsetof(nativeCtx{}.exitSP))
	ctxStackEnd  = int32(unsafe.Offsetof(nativeCtx{}.stackEnd))
	ctxFuncs     = int32(unsafe.Offsetof(nativeCtx{}.funcs))
	ctxFPStart   = int32(unsafe.Offsetof(nativeCtx{}.fpStart))
	ctxFP        = int32(unsafe.Offsetof(nativeCtx{}.fp))
	ctxFPEnd     = int32(unsafe.Offsetof(nativeCtx{}.fpEnd))
	ctxExitFn    = int32(unsafe.Offsetof(nativeCtx{}.exitFn))
	ctxExitFrame = int32(unsafe.Offsetof(nativeCtx{}.exitFrame))
	ctxInst      = int32(unsafe.Offsetof(nativeCtx{}.inst))
	ctxTable     = int32(unsafe.Offsetof(nativeCtx{}.table))
	ctxTableLen  = int32(unsafe.Offsetof(nativeCtx{}.tableLen))
	ctxRefs      = int32(unsafe.Offsetof(nativeCtx{}.refs))
	ctxRefsLen   = int32(unsafe.Offsetof(nativeCtx{}.refsLen))
	ctxTypeIDs   = int32(unsafe.Offsetof(nativeCtx{}.typeIDs))
	ctxGVals     = int32(unsafe.Offsetof(nativeCtx{}.gvals))
	fnTypeID     = int32(unsafe.Offsetof(Function{}.typeID))
	fnInst       = int32(unsafe.Offsetof(Function{}.inst))
	fnCode       = int32(unsafe.Offsetof(Function{}.code))
	cfIdx        = int32(unsafe.Offsetof(compiledFunc{}.idx))
	calleeNeed   = int32(unsafe.Offsetof(nativeCallee{}.need))
	calleeLocals = int32(unsafe.Offsetof(nativeCallee{}.locals))
	globalVal    = int32(unsafe.Offsetof(Global{}.val))
)

// nativeFunc is the native code of one function.
type nativeFunc struct {
	code *native.Code // shared by the module's functions; keeps the memory mapped
	// entry[pc] says where native code that starts at pc is; its offset
	// is 0 where native code cannot be entered.
	entry []nativeEntry
}

// nativeEntry is an entry point of native code: its offset in the code,
// and the value stack's height above the frame base (sp - bp) it expects.
// The two sit together because the loop that enters native code reads both.
type nativeEntry struct {
	off, height uint32
}

// Engine selects how a compiled module's code runs.
type Engine uint8

// Engines.
const (
	// EngineInterpreter interprets the internal code: the reference, and
	// the engine on every platform.
	EngineInterpreter Engine = iota
	// EngineCompiler runs native code translated from the internal code,
	// on linux/amd64; elsewhere it falls back to the interpreter (see
	// CompilerAvailable). Counts, results, traps and snapshots are the
	// interpreter's.
	EngineCompiler
)

func (e Engine) String() string {
	switch e {
	case EngineInterpreter:
		return "interp"
	case EngineCompiler:
		return "compiler"
	}
	return fmt.Sprintf("engine(%d)", int(e))
}

// ParseEngine parses "interp" or "compiler".
func ParseEngine(s string) (Engine, error) {
	switch s {
	case "interp", "interpreter":
		return EngineInterpreter, nil
	case "compiler":
		return EngineCompiler, nil
	}
	return 0, fmt.Errorf("wasm: unknown engine %q (want interp or compiler)", s)
}

// CompilerAvailable reports whether EngineCompiler runs native code on this
// platform (linux/amd64).
func CompilerAvailable() bool { return native.Available }

// Engine returns the engine the module's code runs on: EngineCompiler only
// if it was asked for and is available.
func (cm *CompiledModule) Engine() Engine {
	if cm.native {
		return EngineCompiler
	}
	return EngineInterpreter
}

// compileNative translates every function of cm to native code. A function
// the translation cannot handle (one whose operand heights do not check
// out, or too large for the exit record) keeps no native code and is
// interpreted. An error (executable memory refused, say) fails Compile.
func compileNative(cm *CompiledModule) error {
	var a amd64.Asm
	n := 0
	for _, f := range cm.funcs {
		n += len(f.code)
	}
	a.Grow(n*nativeBytesPerInstr, n/2, n/2)
	emitPrologue(&a)
	exit := a.NewLabel()
	a.Bind(exit)
	a.Store(amd64.W64, amd64.M(amd64.RDI, ctxRemaining), rBudget)
	a.Ret()
	type fnLabels struct {
		f      *compiledFunc
		labels []amd64.Label // per pc, or -1
		height []uint32
	}
	var done []fnLabels
	for _, f := range cm.funcs {
		g := newFuncGen(&a, cm, f, exit)
		if g == nil {
			continue
		}
		g.emit()
		if g.failed {
			continue
		}
		done = append(done, fnLabels{f, g.entries, g.entryHeight})
	}
	code, err := a.Finish()
	if err != nil {
		return err
	}
	nc, err := native.New(code)
	if err != nil {
		return err
	}
	// The entry of every function at its start, for native calls; 0 where
	// there is none (imports, functions without native code).
	cm.nativeCallees = make([]nativeCallee, int(cm.Module.NumImportedFuncs)+len(cm.funcs))
	for _, d := range done {
		nf := &nativeFunc{code: nc, entry: make([]nativeEntry, len(d.f.code))}
		for pc, l := range d.labels {
			if l < 0 {
				continue
			}
			off, ok := a.Bound(l)
			if !ok {
				return fmt.Errorf("wasm: native code of function %d: entry at %d not bound", d.f.idx, pc)
			}
			nf.entry[pc] = nativeEntry{uint32(off), d.height[pc]}
			if pc == 0 {
				cm.nativeCallees[d.f.idx] = nativeCallee{
					entry:  uint64(nc.Addr(off)),
					need:   uint32(8 * (d.f.numLocals + d.f.maxHeight)),
					locals: uint32(d.f.numLocals),
				}
			}
		}
		d.f.native = nf
	}
	cm.native = true
	return nil
}

// nativeBytesPerInstr is about how many bytes of native code an internal
// instruction becomes, to size the buffer once.
const nativeBytesPerInstr = 40

// Registers of native code.
const (
	rCtx    = amd64.RDI // *nativeCtx
	rFrame  = amd64.RBX // &stack[bp]
	rMem    = amd64.R8  // &memory[0]
	rMemLen = amd64.R9
	rBudget = amd64.R10
	rDirty  = amd64.R11
)

// emitPrologue emits the code every entry starts with: load the registers
// from the context and jump to the target. It is at offset 0.
func emitPrologue(a *amd64.Asm) {
	a.Load(amd64.W64, rFrame, amd64.M(rCtx, ctxStack))
	a.Load(amd64.W64, amd64.RAX, amd64.M(rCtx, ctxBP))
	a.Lea(rFrame, amd64.MI(rFrame, amd64.RAX, 8, 0))
	a.Load(amd64.W64, rMem, amd64.M(rCtx, ctxMem))
	a.Load(amd64.W64, rMemLen, amd64.M(rCtx, ctxMemLen))
	a.Load(amd64.W64, rDirty, amd64.M(rCtx, ctxDirty))
	a.Load(amd64.W64, rBudget, amd64.M(rCtx, ctxRemaining))
	a.JmpMem(amd64.M(rCtx, ctxTarget))
}

// nativeSlice bounds the budget of one call of native code. A goroutine in
// native code cannot be preempted (the garbage collector's stop-the-world
// waits for it), so native code returns to Go after at most this many
// instructions, about a millisecond, whatever the budget of Run. Short,
// because the wait is the whole process's: a backup's replay runs on a
// thread of lower priority (host/replaynice_linux.go), which a busy machine
// may leave without a CPU for many times its slice's length, while every
// goroutine of its host, heartbeats included, waits for the collection.
// An entry costs well under a microsecond, a thousandth of a slice.
const nativeSlice = 1 << 20

// runCompiled is Run for an instance whose module has native code: native
// code where it can be entered, the interpreter for single instructions in
// between and for the rest of a budget too short for a segment.
func (in *Instance) runCompiled(budget uint64) (Stop, error) {
	e := &in.exec
	if e.nat == nil {
		e.nat = new(nativeCtx)
	}
	c := e.nat
	left := budget
	for left > 0 {
		fn := e.cur.fn
		cf := fn.code
		nf := cf.native
		if nf == nil {
			// Interpreted function: a slice of budget at a time, so native
			// code is entered again soon after a return to it.
			n := min(left, 256)
			c0 := e.count
			st, err := in.run(n)
			if err != nil || st.Reason != StopBudget {
				return st, err
			}
			left -= e.count - c0
			continue
		}
		pc := e.cur.pc
		if ent := nf.entry[pc]; ent.off != 0 && e.sp == e.cur.bp+int(ent.height) &&
			e.cur.bp+cf.numLocals+cf.maxHeight <= len(e.stack) {
			inst := fn.inst
			// nil if the stack is empty, when native code uses no slot.
			c.stack = unsafe.Pointer(unsafe.SliceData(e.stack))
			base := uint64(uintptr(c.stack))
			c.stackEnd = base + 8*uint64(len(e.stack))
			c.bp = uint64(e.cur.bp)
			c.mem, c.memLen, c.dirty = nil, 0, nil
			if m := inst.mem; m != nil && len(m.data) > 0 {
				c.mem = unsafe.Pointer(&m.data[0])
				c.memLen = uint64(len(m.data))
				c.dirty = unsafe.Pointer(&m.dirty[0])
			}
			c.globals = nil
			if len(inst.globals) > 0 {
				c.globals = unsafe.Pointer(&inst.globals[0])
			}
			for i, gl := range inst.globals[:min(len(inst.globals), nativeFixedGlobals)] {
				c.gvals[i] = uint64(uintptr(unsafe.Pointer(&gl.val)))
			}
			c.funcs = unsafe.Pointer(&inst.cm.nativeCallees[0])
			c.inst = uint64(uintptr(unsafe.Pointer(inst)))
			c.table, c.tableLen = nil, 0
			if len(inst.tables) > 0 && len(inst.tables[0].elems) > 0 {
				c.table = unsafe.Pointer(&inst.tables[0].elems[0])
				c.tableLen = uint64(len(inst.tables[0].elems))
			}
			c.refs, c.refsLen = nil, 0
			if fs := in.store.funcs; len(fs) > 0 {
				c.refs = unsafe.Pointer(&fs[0])
				c.refsLen = uint64(len(fs))
			}
			c.typeIDs = nil
			if len(inst.typeIDs) > 0 {
				c.typeIDs = unsafe.Pointer(&inst.typeIDs[0])
			}
			in.enterFrames(inst, base)
			slice := min(left, nativeSlice)
			c.remaining = slice
			c.target = nf.code.Addr(int(ent.off))
			nf.code.Call(nf.code.Addr(0), unsafe.Pointer(c))
			in.exitFrames(inst, base)
			used := slice - c.remaining
			e.count += used
			e.nativeCount += used
			left -= used
			e.cur = frame{fn: inst.funcs[c.exitFn], pc: int(c.exit >> 1), bp: int((c.exitFrame - base) / 8)}
			e.sp = e.cur.bp + int(c.exitSP)
			if c.exit&1 == exitBudget {
				if used > 0 {
					// Perhaps only the slice was short: if so, let the
					// scheduler and a waiting stop-the-world have the
					// goroutine (native code and this loop have no
					// preemption point). Then enter again.
					if slice < left+used {
						runtime.Gosched()
					}
					continue
				}
				// The segment at pc needs more than is left (or than a
				// slice): the interpreter runs out the budget, a slice at a
				// time.
				n := min(left, nativeSlice)
				c0 := e.count
				st, err := in.run(n)
				if err != nil || st.Reason != StopBudget {
					return st, err
				}
				left -= e.count - c0
				continue
			}
			if left == 0 {
				break
			}
		}
		// Native code may have exited in another function than it entered.
		if op := e.cur.fn.code.code[e.cur.pc].op; (op == opReturn && in.returnToCaller()) ||
			(op == opCall || op == opCallIndirect) && in.call() {
			e.count++
			left--
			continue
		}
		st, err := in.run(1)
		if err != nil || st.Reason != StopBudget {
			return st, err
		}
		left--
	}
	return Stop{Reason: StopBudget}, nil
}

// enterFrames makes the innermost frames of the interpreter that native code
// can return to (frames of inst's functions whose resume pc has an entry)
// into frame records, up to nativeFramesMoved of them, and sets the bounds
// of the records for the entry: native code may push records as long as the
// interpreter's frames and the records stay below MaxCallDepth, so that a
// call beyond it exits and the interpreter raises the same trap at the same
// count.
func (in *Instance) enterFrames(inst *Instance, base uint64) {
	e := &in.exec
	c := e.nat
	if e.natFrames == nil {
		e.natFrames = make([]nativeFrame, nativeFramesMoved+nativeFrameRecords)
	}
	k := 0
	for k < nativeFramesMoved && k < len(e.frames) {
		fr := e.frames[len(e.frames)-1-k]
		if fr.fn.inst != inst || fr.fn.code == nil || fr.fn.code.native == nil ||
			fr.pc >= len(fr.fn.code.native.entry) || fr.fn.code.native.entry[fr.pc].off == 0 {
			break
		}
		k++
	}
	recs := e.natFrames
	for i, fr := range e.frames[len(e.frames)-k:] {
		nf := fr.fn.code.native
		recs[i] = nativeFrame{
			info:  uint64(fr.fn.code.idx)<<32 | uint64(fr.pc),
			frame: base + 8*uint64(fr.bp),
			ret:   uint64(nf.code.Addr(int(nf.entry[fr.pc].off))),
		}
	}
	e.frames = e.frames[:len(e.frames)-k]
	start := uint64(uintptr(unsafe.Pointer(&recs[0])))
	n := min(len(recs), max(0, in.cfg.MaxCallDepth-len(e.frames)))
	c.fpStart = start
	c.fp = start + nativeFrameSize*uint64(k)
	c.fpEnd = start + nativeFrameSize*uint64(n)
}

// exitFrames makes the frame records native code left into the
// interpreter's frames again.
func (in *Instance) exitFrames(inst *Instance, base uint64) {
	e := &in.exec
	c := e.nat
	n := int((c.fp - c.fpStart) / nativeFrameSize)
	for _, r := range e.natFrames[:n] {
		e.frames = append(e.frames, frame{fn: inst.funcs[r.info>>32], pc: int(uint32(r.info)), bp: int((r.frame - base) / 8)})
	}
}

// call executes the instruction at the current pc if it is a call or an
// indirect call of a function defined in WebAssembly, exactly as the
// interpreter does (run's opCall, opCallIndirect and call), and reports
// whether it did; the caller counts the instruction. It leaves anything
// else, and a call that traps, to the interpreter. Native code exits at
// every call and return, so this and returnToCaller are the compiler tier's
// hottest path between two stretches of native code.
func (in *Instance) call() bool {
	e := &in.exec
	fn := e.cur.fn
	ins := &fn.code.code[e.cur.pc]
	var callee *Function
	sp := e.sp
	switch ins.op {
	case opCall:
		callee = fn.inst.funcs[ins.a]
	case opCallIndirect:
		// Any trap is the interpreter's to raise.
		tab := fn.inst.tables[ins.b]
		i := uint32(e.stack[sp-1])
		if i >= uint32(len(tab.elems)) {
			return false
		}
		callee = in.store.funcByRef(tab.elems[i])
		if callee == nil || callee.typeID != fn.inst.typeIDs[ins.a] {
			return false
		}
		sp--
	default:
		return false
	}
	if ccf := callee.code; ccf != nil && len(e.frames) < in.cfg.MaxCallDepth {
		nbp := sp - ccf.numParams
		need := nbp + ccf.numLocals + ccf.maxHeight
		if need > len(e.stack) {
			if need > in.cfg.MaxStackValues {
				return false
			}
			ns := make([]uint64, min(max(2*len(e.stack), need), in.cfg.MaxStackValues))
			copy(ns, e.stack[:sp])
			e.stack = ns
		}
		e.frames = append(e.frames, frame{fn, e.cur.pc + 1, e.cur.bp})
		clear(e.stack[sp : nbp+ccf.numLocals])
		e.sp = nbp + ccf.numLocals
		e.cur = frame{fn: callee, bp: nbp}
		return true
	}
	return false
}

// returnToCaller executes a return to a caller, as run's opReturn does,
// and reports whether it did (the return of the invoked function is the
// interpreter's).
func (in *Instance) returnToCaller() bool {
	e := &in.exec
	if len(e.frames) == 0 {
		return false
	}
	n := len(e.cur.fn.code.typ.Results)
	bp, sp := e.cur.bp, e.sp
	copy(e.stack[bp:bp+n], e.stack[sp-n:sp])
	e.sp = bp + n
	e.cur = e.frames[len(e.frames)-1]
	e.frames = e.frames[:len(e.frames)-1]
	return true
}
