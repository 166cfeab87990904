package wasm

import (
	"math"

	"golang.org/x/sys/cpu"

	"ftvm/wasm/internal/amd64"
)

// funcGen translates one function's internal code to native code.
type funcGen struct {
	a    *amd64.Asm
	cm   *CompiledModule
	m    *Module
	f    *compiledFunc
	exit amd64.Label // stores the budget and returns
	n    int
	nl   int32 // locals, parameters included

	height []int32       // operand height before each pc; -1 if unreachable
	target []bool        // pc is a branch target
	nat    []bool        // pc is translated
	leader []bool        // a segment starts at pc
	run    []int32       // instructions from pc to the end of its segment
	labels []amd64.Label // per pc; -1 if none

	entries     []amd64.Label // per pc, where native code may be entered; -1 if not
	entryHeight []uint32

	slowLabels map[int]amd64.Label
	stubs      []func()
	failed     bool

	// RAX caching across two instructions: prevOK says that the
	// instruction before ended by storing RAX to the frame slot at
	// displacement prevDisp (and no label lies between), so the next one
	// need not load that slot into RAX again if it starts by doing so.
	prevOK     bool
	prevDisp   int32
	instrStart int // where the instruction being translated starts
	storeEnd   int // where the last storeRAX to a frame slot ended
	storeDisp  int32
}

// maxNativePC bounds the pcs an exit record can hold (pc<<1 in an int32).
const maxNativePC = 1 << 29

// newFuncGen analyses f: the operand height at every reachable pc, branch
// targets, which instructions are translated, and the segments. It returns
// nil if f is not to be translated.
func newFuncGen(a *amd64.Asm, cm *CompiledModule, f *compiledFunc, exit amd64.Label) *funcGen {
	m := cm.Module
	n := len(f.code)
	if n == 0 || n >= maxNativePC || int64(f.numLocals+f.maxHeight)*8 >= math.MaxInt32 {
		return nil
	}
	g := &funcGen{a: a, cm: cm, m: m, f: f, exit: exit, n: n, nl: int32(f.numLocals)}
	if !g.heights() {
		return nil
	}
	g.nat = make([]bool, n)
	for pc := range n {
		g.nat[pc] = g.height[pc] >= 0 && g.supported(f.code[pc])
	}
	g.leader = make([]bool, n)
	for pc := range n {
		g.leader[pc] = g.nat[pc] && (pc == 0 || g.target[pc] || !g.nat[pc-1] || endsSegment(f.code[pc-1].op))
	}
	g.run = make([]int32, n)
	for pc := n - 1; pc >= 0; pc-- {
		switch {
		case !g.nat[pc]:
		case endsSegment(f.code[pc].op) || pc+1 == n || !g.nat[pc+1] || g.leader[pc+1]:
			g.run[pc] = 1
		default:
			g.run[pc] = 1 + g.run[pc+1]
		}
	}
	g.labels = make([]amd64.Label, n)
	g.entries = make([]amd64.Label, n)
	g.entryHeight = make([]uint32, n)
	for pc := range n {
		g.labels[pc] = -1
		g.entries[pc] = -1
		if g.target[pc] || g.leader[pc] || g.needsExitStub(pc) {
			g.labels[pc] = a.NewLabel()
		}
		if g.leader[pc] {
			g.entries[pc] = g.labels[pc]
			g.entryHeight[pc] = uint32(g.nl + g.height[pc])
		}
	}
	g.slowLabels = map[int]amd64.Label{}
	return g
}

// needsExitStub reports whether an untranslated pc is reached from native
// code: by a branch, or by falling through from a translated instruction.
func (g *funcGen) needsExitStub(pc int) bool {
	if g.height[pc] < 0 || g.nat[pc] {
		return false
	}
	return g.target[pc] || pc > 0 && g.nat[pc-1] && !isJump(g.f.code[pc-1].op)
}

// endsSegment reports whether op is a branch or a call: the instruction
// after it starts a segment of its own (after a call, because the callee
// charges its own instructions before the caller's next ones run).
func endsSegment(op opcode) bool {
	switch op {
	case opBr, opBrDrop, opBrIf, opBrIfDrop, opBrUnless, opBrTable, opCall, opCallIndirect:
		return true
	}
	return false
}

// isJump reports whether op never falls through.
func isJump(op opcode) bool {
	switch op {
	case opBr, opBrDrop, opBrTable, opReturn, opUnreachable:
		return true
	}
	return false
}

// heights computes the operand height at each reachable pc, which
// validation guarantees is the same on every path; it reports false if it
// is not (then the function is not translated).
func (g *funcGen) heights() bool {
	f := g.f
	n := g.n
	g.height = make([]int32, n)
	g.target = make([]bool, n)
	for i := range g.height {
		g.height[i] = -1
	}
	maxH := int32(f.maxHeight)
	work := []int{0}
	g.height[0] = 0
	ok := true
	set := func(pc int, h int32) {
		if pc < 0 || pc >= n || h < 0 || h > maxH {
			ok = false
			return
		}
		switch g.height[pc] {
		case -1:
			g.height[pc] = h
			work = append(work, pc)
		case h:
		default:
			ok = false
		}
	}
	branch := func(pc int, h int32) {
		if pc >= 0 && pc < n {
			g.target[pc] = true
		}
		set(pc, h)
	}
	for len(work) > 0 && ok {
		pc := work[len(work)-1]
		work = work[:len(work)-1]
		ins := f.code[pc]
		h := g.height[pc]
		switch ins.op {
		case opUnreachable, opReturn:
		case opBr:
			branch(int(ins.a), h)
		case opBrDrop:
			keep, drop := int32(ins.b>>32), int32(uint32(ins.b))
			if keep+drop > h {
				return false
			}
			branch(int(ins.a), h-drop)
		case opBrIf, opBrUnless:
			if h < 1 {
				return false
			}
			branch(int(ins.a), h-1)
			set(pc+1, h-1)
		case opBrIfDrop:
			keep, drop := int32(ins.b>>32), int32(uint32(ins.b))
			if h < 1 || keep+drop > h-1 {
				return false
			}
			branch(int(ins.a), h-1-drop)
			set(pc+1, h-1)
		case opBrTable:
			if h < 1 || ins.a > uint32(len(f.brTargets)) || ins.b == 0 || ins.b > uint64(len(f.brTargets))-uint64(ins.a) {
				return false
			}
			for _, t := range f.brTargets[ins.a : uint64(ins.a)+ins.b] {
				if int32(t.keep)+int32(t.drop) > h-1 {
					return false
				}
				branch(int(t.pc), h-1-int32(t.drop))
			}
		default:
			pop, push, known := g.effect(ins)
			if !known || int32(pop) > h {
				return false
			}
			set(pc+1, h-int32(pop)+int32(push))
		}
	}
	return ok
}

// effect returns how many operands ins pops and pushes.
func (g *funcGen) effect(ins instr) (pop, push int, ok bool) {
	switch ins.op {
	case opDrop:
		return 1, 0, true
	case opSelect:
		return 3, 1, true
	case opLocalGet, opGlobalGet, opMemorySize, opConst, opRefFunc, opTableSize:
		return 0, 1, true
	case opLocalSet, opGlobalSet:
		return 1, 0, true
	case opLocalTee, opTableGet, opMemoryGrow, opRefIsNull, opTruncSat,
		opLocalSetGet, opI32AddConst, opI64AddConst:
		return 1, 1, true
	case opTableSet:
		return 2, 0, true
	case opCall:
		ft, ok := g.m.FuncType(ins.a)
		return len(ft.Params), len(ft.Results), ok
	case opCallIndirect:
		if ins.a >= uint32(len(g.m.Types)) {
			return 0, 0, false
		}
		ft := g.m.Types[ins.a]
		return 1 + len(ft.Params), len(ft.Results), true
	case opMemoryInit, opMemoryCopy, opMemoryFill, opTableInit, opTableCopy, opTableFill:
		return 3, 0, true
	case opDataDrop, opElemDrop:
		return 0, 0, true
	case opTableGrow:
		return 2, 1, true
	case opLocalGet2, opLocalGetConst:
		return 0, 2, true
	case opLocalI32AddConst, opLocalI64AddConst, opLocalI32Load, opLocalI64Load:
		return 0, 1, true
	}
	switch {
	case ins.op >= opcodeI32Load && ins.op <= opcodeI64Load32U:
		return 1, 1, true
	case ins.op >= opcodeI32Store && ins.op <= opcodeI64Store32:
		return 2, 0, true
	case ins.op >= opcodeI32Eqz && ins.op <= opcodeI64Extend32S:
		_, _, _, k := numericSig(byte(ins.op))
		switch k {
		case 1:
			return 1, 1, true
		case 2:
			return 2, 1, true
		}
	}
	return 0, 0, false
}

// supported reports whether ins is translated (else the interpreter
// executes it).
func (g *funcGen) supported(ins instr) bool {
	switch ins.op {
	case opConst, opLocalGet, opLocalSet, opLocalTee, opGlobalGet, opGlobalSet, opDrop, opSelect,
		opMemorySize,
		opBr, opBrDrop, opBrIf, opBrIfDrop, opBrUnless, opBrTable,
		opLocalGet2, opLocalGetConst, opLocalSetGet, opI32AddConst, opI64AddConst,
		opLocalI32AddConst, opLocalI64AddConst, opLocalI32Load, opLocalI64Load,
		opReturn, opMemoryCopy, opMemoryFill:
		return true
	case opCall:
		return g.callee(ins.a) != nil
	case opCallIndirect:
		return ins.b == 0 && ins.a < uint32(len(g.m.Types))
	case opcodeI32Popcnt, opcodeI64Popcnt:
		return cpu.X86.HasPOPCNT
	}
	switch {
	case ins.op >= opcodeI32Load && ins.op <= opcodeI64Store32:
		return true
	case ins.op >= opcodeI32Eqz && ins.op <= opcodeI64GeU:
		return true
	case ins.op >= opcodeI32Clz && ins.op <= opcodeI64Rotr:
		return true
	}
	switch ins.op {
	case opcodeI32WrapI64, opcodeI64ExtendI32S,
		opcodeI32Extend8S, opcodeI32Extend16S, opcodeI64Extend8S, opcodeI64Extend16S, opcodeI64Extend32S:
		return true
	case opcodeF32Eq, opcodeF32Ne, opcodeF32Lt, opcodeF32Gt, opcodeF32Le, opcodeF32Ge,
		opcodeF64Eq, opcodeF64Ne, opcodeF64Lt, opcodeF64Gt, opcodeF64Le, opcodeF64Ge,
		opcodeF32Abs, opcodeF32Neg, opcodeF32Sqrt, opcodeF32Add, opcodeF32Sub, opcodeF32Mul, opcodeF32Div, opcodeF32Copysign,
		opcodeF64Abs, opcodeF64Neg, opcodeF64Sqrt, opcodeF64Add, opcodeF64Sub, opcodeF64Mul, opcodeF64Div, opcodeF64Copysign,
		opcodeF32Min, opcodeF32Max, opcodeF64Min, opcodeF64Max,
		opcodeF32ConvertI32S, opcodeF32ConvertI32U, opcodeF32ConvertI64S,
		opcodeF64ConvertI32S, opcodeF64ConvertI32U, opcodeF64ConvertI64S,
		opcodeF32DemoteF64, opcodeF64PromoteF32,
		opcodeI32TruncF32S, opcodeI32TruncF32U, opcodeI32TruncF64S, opcodeI32TruncF64U,
		opcodeI64TruncF32S, opcodeI64TruncF64S, opcodeI64TruncF32U, opcodeI64TruncF64U,
		opcodeF32ConvertI64U, opcodeF64ConvertI64U:
		return true
	case opTruncSat:
		return ins.a <= opcodeMiscI64TruncSatF64U
	case opcodeF32Ceil, opcodeF32Floor, opcodeF32Trunc, opcodeF32Nearest,
		opcodeF64Ceil, opcodeF64Floor, opcodeF64Trunc, opcodeF64Nearest:
		return cpu.X86.HasSSE41
	}
	return false
}

// callee returns the function a native call of function idx enters: one
// defined in the module (an import exits to Go), else nil.
func (g *funcGen) callee(idx uint32) *compiledFunc {
	if idx < g.m.NumImportedFuncs || idx-g.m.NumImportedFuncs >= uint32(len(g.cm.funcs)) {
		return nil
	}
	return g.cm.funcs[idx-g.m.NumImportedFuncs]
}

// call translates a call of a function defined in the module: it pushes
// the caller's frame record and enters the callee at its start, as the
// interpreter's call does. A call that the interpreter would make
// differently (beyond the records or the call depth, with a value stack to
// grow, or of a function without native code at its start) exits, and Go
// or the interpreter makes it.
func (g *funcGen) call(pc int, ins instr, h int32) {
	a := g.a
	cf := g.callee(ins.a)
	slow := g.slow(pc)
	p, l, m := int32(cf.numParams), int32(cf.numLocals), int32(cf.maxHeight)
	nbp := 8 * (g.nl + h - p) // the callee's frame, from the caller's
	a.Lea(amd64.RDX, amd64.M(rFrame, nbp+8*(l+m)))
	a.ALURM(amd64.CMP, amd64.W64, amd64.RDX, amd64.M(rCtx, ctxStackEnd))
	a.Jcc(amd64.CondA, slow)
	a.Load(amd64.W64, amd64.RAX, amd64.M(rCtx, ctxFuncs))
	a.Load(amd64.W64, amd64.RAX, amd64.M(amd64.RAX, int32(nativeCalleeSize*ins.a)))
	g.pushFrame(pc, slow, nbp)
	// The locals past the parameters start at zero.
	if l-p <= 16 {
		for i := p; i < l; i++ {
			a.StoreImm(amd64.W64, g.local(uint32(i)), 0)
		}
	} else {
		a.Lea(amd64.RDX, g.local(uint32(p)))
		a.Lea(amd64.RSI, g.local(uint32(l)))
		g.clearLoop()
	}
	a.JmpReg(amd64.RAX)
}

// pushFrame takes the slow path if the callee's entry in RAX is 0 or no
// record may be pushed, else pushes the caller's record (resuming at
// pc+1) and moves the frame base nbp bytes up, to the callee's frame.
func (g *funcGen) pushFrame(pc int, slow amd64.Label, nbp int32) {
	a := g.a
	a.TestRR(amd64.W64, amd64.RAX, amd64.RAX)
	a.Jcc(amd64.CondE, slow)
	a.Load(amd64.W64, amd64.RCX, amd64.M(rCtx, ctxFP))
	a.ALURM(amd64.CMP, amd64.W64, amd64.RCX, amd64.M(rCtx, ctxFPEnd))
	a.Jcc(amd64.CondAE, slow)
	a.MovImm(amd64.RDX, uint64(g.f.idx)<<32|uint64(pc+1))
	a.Store(amd64.W64, amd64.M(amd64.RCX, 0), amd64.RDX)
	a.Store(amd64.W64, amd64.M(amd64.RCX, 8), rFrame)
	a.LeaRIP(amd64.RDX, g.label(pc+1))
	a.Store(amd64.W64, amd64.M(amd64.RCX, 16), amd64.RDX)
	a.ALURI(amd64.ADD, amd64.W64, amd64.RCX, nativeFrameSize)
	a.Store(amd64.W64, amd64.M(rCtx, ctxFP), amd64.RCX)
	a.Lea(rFrame, amd64.M(rFrame, nbp))
}

// clearLoop zeroes the slots from RDX up to RSI (none if RSI <= RDX),
// clobbering RDX.
func (g *funcGen) clearLoop() {
	a := g.a
	loop, done := a.NewLabel(), a.NewLabel()
	a.ALURR(amd64.CMP, amd64.W64, amd64.RDX, amd64.RSI)
	a.Jcc(amd64.CondAE, done)
	a.Bind(loop)
	a.StoreImm(amd64.W64, amd64.M(amd64.RDX, 0), 0)
	a.ALURI(amd64.ADD, amd64.W64, amd64.RDX, 8)
	a.ALURR(amd64.CMP, amd64.W64, amd64.RDX, amd64.RSI)
	a.Jcc(amd64.CondB, loop)
	a.Bind(done)
}

// callIndirect translates call_indirect through table 0: the element, the
// function its reference names and the type check as the interpreter has
// them, then the call as call makes it, of a function of this instance.
// Anything else (a trap, a function of another instance or a host
// function) exits, and the interpreter or Go makes the call.
func (g *funcGen) callIndirect(pc int, ins instr, h int32) {
	a := g.a
	slow := g.slow(pc)
	p := int32(len(g.m.Types[ins.a].Params))
	nbp := 8 * (g.nl + h - 1 - p)
	g.loadRAX(amd64.W32, g.slot(h-1))
	a.ALURM(amd64.CMP, amd64.W64, amd64.RAX, amd64.M(rCtx, ctxTableLen))
	a.Jcc(amd64.CondAE, slow)
	a.Load(amd64.W64, amd64.RDX, amd64.M(rCtx, ctxTable))
	a.Load(amd64.W64, amd64.RAX, amd64.MI(amd64.RDX, amd64.RAX, 8, 0))
	// A null reference (0) becomes the largest index, out of range too.
	a.ALURI(amd64.SUB, amd64.W64, amd64.RAX, 1)
	a.ALURM(amd64.CMP, amd64.W64, amd64.RAX, amd64.M(rCtx, ctxRefsLen))
	a.Jcc(amd64.CondAE, slow)
	a.Load(amd64.W64, amd64.RDX, amd64.M(rCtx, ctxRefs))
	a.Load(amd64.W64, amd64.RAX, amd64.MI(amd64.RDX, amd64.RAX, 8, 0)) // *Function
	a.Load(amd64.W32, amd64.RDX, amd64.M(amd64.RAX, fnTypeID))
	a.Load(amd64.W64, amd64.RSI, amd64.M(rCtx, ctxTypeIDs))
	a.ALURM(amd64.CMP, amd64.W32, amd64.RDX, amd64.M(amd64.RSI, int32(4*ins.a)))
	a.Jcc(amd64.CondNE, slow)
	a.Load(amd64.W64, amd64.RDX, amd64.M(amd64.RAX, fnInst))
	a.ALURM(amd64.CMP, amd64.W64, amd64.RDX, amd64.M(rCtx, ctxInst))
	a.Jcc(amd64.CondNE, slow)
	a.Load(amd64.W64, amd64.RDX, amd64.M(amd64.RAX, fnCode))
	a.TestRR(amd64.W64, amd64.RDX, amd64.RDX)
	a.Jcc(amd64.CondE, slow)
	a.Load(amd64.W32, amd64.RDX, amd64.M(amd64.RDX, cfIdx))
	a.ShiftImm(amd64.SHL, amd64.W64, amd64.RDX, 4) // * nativeCalleeSize
	a.ALURM(amd64.ADD, amd64.W64, amd64.RDX, amd64.M(rCtx, ctxFuncs))
	// RDX: the callee's nativeCallee. Its frame must fit the value stack.
	a.Load(amd64.W32, amd64.RSI, amd64.M(amd64.RDX, calleeNeed))
	a.Lea(amd64.RSI, amd64.MI(rFrame, amd64.RSI, 1, nbp))
	a.ALURM(amd64.CMP, amd64.W64, amd64.RSI, amd64.M(rCtx, ctxStackEnd))
	a.Jcc(amd64.CondA, slow)
	a.Load(amd64.W32, amd64.RSI, amd64.M(amd64.RDX, calleeLocals))
	a.Load(amd64.W64, amd64.RAX, amd64.M(amd64.RDX, 0))
	g.pushFrame(pc, slow, nbp)
	// The locals past the parameters start at zero: from p up to the
	// callee's count, in RSI.
	a.Lea(amd64.RSI, amd64.MI(rFrame, amd64.RSI, 8, 0))
	a.Lea(amd64.RDX, g.local(uint32(p)))
	g.clearLoop()
	a.JmpReg(amd64.RAX)
}

// ret translates a return: to a caller with a frame record, natively, as
// the interpreter's return does; without one, native code exits and Go
// returns.
func (g *funcGen) ret(pc int, h int32) {
	a := g.a
	n := int32(len(g.f.typ.Results))
	a.Load(amd64.W64, amd64.RCX, amd64.M(rCtx, ctxFP))
	a.ALURM(amd64.CMP, amd64.W64, amd64.RCX, amd64.M(rCtx, ctxFPStart))
	a.Jcc(amd64.CondBE, g.slow(pc))
	a.ALURI(amd64.SUB, amd64.W64, amd64.RCX, nativeFrameSize)
	a.Store(amd64.W64, amd64.M(rCtx, ctxFP), amd64.RCX)
	for i := range n {
		if g.nl+h-n+i != i {
			g.loadRAX(amd64.W64, g.slot(h-n+i))
			g.storeRAX(g.local(uint32(i)))
		}
	}
	a.Load(amd64.W64, rFrame, amd64.M(amd64.RCX, 8))
	a.JmpMem(amd64.M(amd64.RCX, 16))
}

// global loads the address of global i's value into RAX, from the
// context for the first ones, else through the instance's globals; it
// returns the operand that holds it.
func (g *funcGen) global(i uint32) amd64.Mem {
	if i < nativeFixedGlobals {
		return amd64.M(rCtx, ctxGVals+int32(8*i))
	}
	g.loadRAX(amd64.W64, amd64.M(rCtx, ctxGlobals))
	g.loadRAX(amd64.W64, amd64.M(amd64.RAX, int32(8*i)))
	g.a.Lea(amd64.RAX, amd64.M(amd64.RAX, globalVal))
	return amd64.M(amd64.RAX, 0)
}

// local is the slot of local i; slot the operand slot at height h.
func (g *funcGen) local(i uint32) amd64.Mem { return amd64.M(rFrame, int32(8*i)) }
func (g *funcGen) slot(h int32) amd64.Mem   { return amd64.M(rFrame, 8*(g.nl+h)) }

func (g *funcGen) label(pc int) amd64.Label {
	if g.labels[pc] < 0 {
		// Every branch target got a label in newFuncGen: this cannot
		// happen, but if it does the function stays interpreted.
		g.failed = true
		return g.exit
	}
	return g.labels[pc]
}

// emitExit stores the exit record for pc and returns to Go.
func (g *funcGen) emitExit(pc int, reason int32) {
	a := g.a
	a.StoreImm(amd64.W64, amd64.M(rCtx, ctxExitFn), int32(g.f.idx))
	a.Store(amd64.W64, amd64.M(rCtx, ctxExitFrame), rFrame)
	a.StoreImm(amd64.W64, amd64.M(rCtx, ctxExit), int32(pc)<<1|reason)
	a.StoreImm(amd64.W64, amd64.M(rCtx, ctxExitSP), g.nl+g.height[pc])
	a.Jmp(g.exit)
}

// slow returns the label of pc's slow path: give back the instructions of
// the segment from pc on, and exit so that the interpreter executes pc (and
// traps).
func (g *funcGen) slow(pc int) amd64.Label {
	if l, ok := g.slowLabels[pc]; ok {
		return l
	}
	l := g.a.NewLabel()
	g.slowLabels[pc] = l
	g.stubs = append(g.stubs, func() {
		g.a.Bind(l)
		g.a.ALURI(amd64.ADD, amd64.W64, rBudget, g.run[pc])
		g.emitExit(pc, exitStep)
	})
	return l
}

// emit translates the function.
func (g *funcGen) emit() {
	a := g.a
	skip := -1
	for pc := range g.n {
		if g.height[pc] < 0 || pc == skip {
			continue
		}
		if !g.nat[pc] {
			g.prevOK = false
			if g.labels[pc] >= 0 {
				a.Bind(g.labels[pc])
				g.emitExit(pc, exitStep)
			}
			continue
		}
		if g.labels[pc] >= 0 || g.leader[pc] {
			// A join point: RAX holds nothing known.
			g.prevOK = false
		}
		if g.labels[pc] >= 0 {
			a.Bind(g.labels[pc])
		}
		if g.leader[pc] {
			short := a.NewLabel()
			a.ALURI(amd64.SUB, amd64.W64, rBudget, g.run[pc])
			a.Jcc(amd64.CondB, short)
			g.stubs = append(g.stubs, func() {
				a.Bind(short)
				a.ALURI(amd64.ADD, amd64.W64, rBudget, g.run[pc])
				g.emitExit(pc, exitBudget)
			})
		}
		g.instrStart, g.storeEnd = a.Len(), -1
		if g.fusable(pc) {
			g.compareBranch(pc)
			g.prevOK = false
			// The branch is done too. (Not pc++: the closures of the
			// stubs hold this iteration's pc.)
			skip = pc + 1
			continue
		}
		g.instr(pc)
		g.prevOK, g.prevDisp = g.storeEnd == a.Len(), g.storeDisp
	}
	g.prevOK = false // the stubs are reached from anywhere
	for i := 0; i < len(g.stubs); i++ {
		g.stubs[i]()
	}
	a.Int3()
}

// fusable reports whether the instruction at pc is an integer comparison
// that the next one, br_if or br_unless in the same segment and reached
// from nowhere else, consumes: then the two become a compare and a
// conditional jump, without the boolean on the value stack (which the
// branch pops, so nothing can see it).
func (g *funcGen) fusable(pc int) bool {
	op := g.f.code[pc].op
	if !(op >= opcodeI32Eqz && op <= opcodeI64GeU) || pc+1 >= g.n {
		return false
	}
	next := g.f.code[pc+1].op
	return (next == opBrIf || next == opBrUnless) && g.nat[pc+1] && !g.leader[pc+1] &&
		g.labels[pc+1] < 0 && g.height[pc+1] >= 0
}

// compareBranch translates the comparison at pc and the branch after it
// (see fusable).
func (g *funcGen) compareBranch(pc int) {
	a := g.a
	op := g.f.code[pc].op
	h := g.height[pc]
	var c amd64.Cond
	switch {
	case op == opcodeI32Eqz || op == opcodeI64Eqz:
		w := width(op == opcodeI64Eqz)
		g.loadRAX(w, g.slot(h-1))
		a.TestRR(w, amd64.RAX, amd64.RAX)
		c = amd64.CondE
	case op >= opcodeI32Eq && op <= opcodeI32GeU:
		g.loadRAX(amd64.W32, g.slot(h-2))
		a.ALURM(amd64.CMP, amd64.W32, amd64.RAX, g.slot(h-1))
		c = cmpConds[op-opcodeI32Eq]
	default:
		g.loadRAX(amd64.W64, g.slot(h-2))
		a.ALURM(amd64.CMP, amd64.W64, amd64.RAX, g.slot(h-1))
		c = cmpConds[op-opcodeI64Eq]
	}
	br := g.f.code[pc+1]
	if br.op == opBrUnless {
		c ^= 1 // x86 encodes each condition's negation in the low bit
	}
	a.Jcc(c, g.label(int(br.a)))
}

// loadRAX is a.Load(w, RAX, m), left out when the instruction before
// ended by storing RAX to the frame slot m and nothing of this one was
// emitted yet (a 32-bit load becomes MOV EAX, EAX, which zero-extends as
// the load would).
func (g *funcGen) loadRAX(w amd64.Width, m amd64.Mem) {
	if g.prevOK && m.Base == rFrame && m.Scale == 0 && m.Disp == g.prevDisp && g.a.Len() == g.instrStart {
		if w == amd64.W32 {
			g.a.MovRR(amd64.W32, amd64.RAX, amd64.RAX)
		}
		return
	}
	g.a.Load(w, amd64.RAX, m)
}

// storeRAX is a.Store(W64, m, RAX), remembered for loadRAX if m is a frame
// slot.
func (g *funcGen) storeRAX(m amd64.Mem) {
	g.a.Store(amd64.W64, m, amd64.RAX)
	if m.Base == rFrame && m.Scale == 0 {
		g.storeEnd, g.storeDisp = g.a.Len(), m.Disp
	}
}

// moveKeep does a branch's stack adjustment: the keep values on top of the
// operand stack of height h move down by drop slots.
func (g *funcGen) moveKeep(h, drop, keep int32) {
	for i := range keep {
		g.loadRAX(amd64.W64, g.slot(h-keep+i))
		g.storeRAX(g.slot(h - drop - keep + i))
	}
}

// condition codes of the comparisons, indexed from opcodeI32Eq (and from
// opcodeI64Eq).
var cmpConds = [10]amd64.Cond{amd64.CondE, amd64.CondNE, amd64.CondL, amd64.CondB, amd64.CondG, amd64.CondA, amd64.CondLE, amd64.CondBE, amd64.CondGE, amd64.CondAE}

// instr translates the instruction at pc.
func (g *funcGen) instr(pc int) {
	a := g.a
	ins := g.f.code[pc]
	h := g.height[pc]
	top := func(i int32) amd64.Mem { return g.slot(h - 1 - i) }
	push := g.slot(h)
	op := ins.op
	switch op {
	case opConst:
		g.storeConst(push, ins.b)
	case opLocalGet:
		g.loadRAX(amd64.W64, g.local(ins.a))
		g.storeRAX(push)
	case opLocalSet, opLocalTee:
		g.loadRAX(amd64.W64, top(0))
		g.storeRAX(g.local(ins.a))
	case opGlobalGet:
		g.loadRAX(amd64.W64, g.global(ins.a))
		g.loadRAX(amd64.W64, amd64.M(amd64.RAX, 0))
		g.storeRAX(push)
	case opGlobalSet:
		g.loadRAX(amd64.W64, g.global(ins.a))
		a.Load(amd64.W64, amd64.RCX, top(0))
		a.Store(amd64.W64, amd64.M(amd64.RAX, 0), amd64.RCX)
	case opDrop:
	case opSelect:
		g.loadRAX(amd64.W64, top(2))
		a.Load(amd64.W64, amd64.RCX, top(1))
		a.ALUMI(amd64.CMP, amd64.W32, top(0), 0)
		a.CMov(amd64.CondE, amd64.W64, amd64.RAX, amd64.RCX)
		g.storeRAX(top(2))
	case opMemorySize:
		a.MovRR(amd64.W64, amd64.RAX, rMemLen)
		a.ShiftImm(amd64.SHR, amd64.W64, amd64.RAX, 16)
		g.storeRAX(push)

	case opBr:
		a.Jmp(g.label(int(ins.a)))
	case opBrDrop:
		g.moveKeep(h, int32(uint32(ins.b)), int32(ins.b>>32))
		a.Jmp(g.label(int(ins.a)))
	case opBrIf:
		g.loadRAX(amd64.W32, top(0))
		a.TestRR(amd64.W32, amd64.RAX, amd64.RAX)
		a.Jcc(amd64.CondNE, g.label(int(ins.a)))
	case opBrUnless:
		g.loadRAX(amd64.W32, top(0))
		a.TestRR(amd64.W32, amd64.RAX, amd64.RAX)
		a.Jcc(amd64.CondE, g.label(int(ins.a)))
	case opBrIfDrop:
		skip := a.NewLabel()
		g.loadRAX(amd64.W32, top(0))
		a.TestRR(amd64.W32, amd64.RAX, amd64.RAX)
		a.Jcc(amd64.CondE, skip)
		g.moveKeep(h-1, int32(uint32(ins.b)), int32(ins.b>>32))
		a.Jmp(g.label(int(ins.a)))
		a.Bind(skip)
	case opBrTable:
		g.brTable(ins, h)
	case opCall:
		g.call(pc, ins, h)
	case opCallIndirect:
		g.callIndirect(pc, ins, h)
	case opMemoryCopy:
		g.memoryCopy(pc, top(2), top(1), top(0))
	case opMemoryFill:
		g.memoryFill(pc, top(2), top(1), top(0))
	case opReturn:
		g.ret(pc, h)

	case opLocalGet2:
		g.loadRAX(amd64.W64, g.local(ins.a))
		g.storeRAX(push)
		g.loadRAX(amd64.W64, g.local(uint32(ins.b)))
		g.storeRAX(g.slot(h + 1))
	case opLocalGetConst:
		g.loadRAX(amd64.W64, g.local(ins.a))
		g.storeRAX(push)
		g.storeConst(g.slot(h+1), ins.b)
	case opLocalSetGet:
		g.loadRAX(amd64.W64, top(0))
		g.storeRAX(g.local(ins.a))
		g.loadRAX(amd64.W64, g.local(uint32(ins.b)))
		g.storeRAX(top(0))
	case opI32AddConst:
		g.loadRAX(amd64.W32, top(0))
		a.ALURI(amd64.ADD, amd64.W32, amd64.RAX, int32(uint32(ins.b)))
		g.storeRAX(top(0))
	case opI64AddConst:
		g.loadRAX(amd64.W64, top(0))
		g.add64(amd64.RAX, ins.b)
		g.storeRAX(top(0))
	case opLocalI32AddConst:
		g.loadRAX(amd64.W32, g.local(ins.a))
		a.ALURI(amd64.ADD, amd64.W32, amd64.RAX, int32(uint32(ins.b)))
		g.storeRAX(push)
	case opLocalI64AddConst:
		g.loadRAX(amd64.W64, g.local(ins.a))
		g.add64(amd64.RAX, ins.b)
		g.storeRAX(push)
	case opLocalI32Load:
		g.address(pc, g.local(ins.a), ins.b, 4)
		g.loadRAX(amd64.W32, amd64.MI(rMem, amd64.RAX, 1, 0))
		g.storeRAX(push)
	case opLocalI64Load:
		g.address(pc, g.local(ins.a), ins.b, 8)
		g.loadRAX(amd64.W64, amd64.MI(rMem, amd64.RAX, 1, 0))
		g.storeRAX(push)

	case opcodeI32Eqz, opcodeI64Eqz:
		w := amd64.W32
		if op == opcodeI64Eqz {
			w = amd64.W64
		}
		a.ALURR(amd64.XOR, amd64.W32, amd64.RAX, amd64.RAX)
		a.ALUMI(amd64.CMP, w, top(0), 0)
		a.SetCC(amd64.CondE, amd64.RAX)
		g.storeRAX(top(0))

	case opcodeI32Add, opcodeI32Sub, opcodeI32And, opcodeI32Or, opcodeI32Xor,
		opcodeI64Add, opcodeI64Sub, opcodeI64And, opcodeI64Or, opcodeI64Xor:
		w, alu := amd64.W32, amd64.ADD
		switch op {
		case opcodeI32Sub, opcodeI64Sub:
			alu = amd64.SUB
		case opcodeI32And, opcodeI64And:
			alu = amd64.AND
		case opcodeI32Or, opcodeI64Or:
			alu = amd64.OR
		case opcodeI32Xor, opcodeI64Xor:
			alu = amd64.XOR
		}
		if op >= opcodeI64Clz {
			w = amd64.W64
		}
		a.Load(w, amd64.RAX, top(1))
		a.ALURM(alu, w, amd64.RAX, top(0))
		g.storeRAX(top(1))
	case opcodeI32Mul, opcodeI64Mul:
		w := width(op == opcodeI64Mul)
		a.Load(w, amd64.RAX, top(1))
		a.Load(w, amd64.RCX, top(0))
		a.IMul(w, amd64.RAX, amd64.RCX)
		g.storeRAX(top(1))
	case opcodeI32DivS, opcodeI64DivS, opcodeI32RemS, opcodeI64RemS:
		g.divS(pc, op, top(1), top(0))
	case opcodeI32DivU, opcodeI64DivU, opcodeI32RemU, opcodeI64RemU:
		w := width(op == opcodeI64DivU || op == opcodeI64RemU)
		a.Load(w, amd64.RCX, top(0))
		a.Load(w, amd64.RAX, top(1))
		a.TestRR(w, amd64.RCX, amd64.RCX)
		a.Jcc(amd64.CondE, g.slow(pc))
		a.ALURR(amd64.XOR, amd64.W32, amd64.RDX, amd64.RDX)
		a.Div(w, amd64.RCX)
		if op == opcodeI32DivU || op == opcodeI64DivU {
			g.storeRAX(top(1))
		} else {
			a.Store(amd64.W64, top(1), amd64.RDX)
		}
	case opcodeI32Shl, opcodeI32ShrS, opcodeI32ShrU, opcodeI32Rotl, opcodeI32Rotr,
		opcodeI64Shl, opcodeI64ShrS, opcodeI64ShrU, opcodeI64Rotl, opcodeI64Rotr:
		w := width(op >= opcodeI64Clz)
		var sh amd64.Shift
		switch op {
		case opcodeI32Shl, opcodeI64Shl:
			sh = amd64.SHL
		case opcodeI32ShrS, opcodeI64ShrS:
			sh = amd64.SAR
		case opcodeI32ShrU, opcodeI64ShrU:
			sh = amd64.SHR
		case opcodeI32Rotl, opcodeI64Rotl:
			sh = amd64.ROL
		default:
			sh = amd64.ROR
		}
		a.Load(w, amd64.RCX, top(0))
		a.Load(w, amd64.RAX, top(1))
		a.ShiftCL(sh, w, amd64.RAX)
		g.storeRAX(top(1))
	case opcodeI32Clz, opcodeI64Clz:
		w := width(op == opcodeI64Clz)
		a.Load(w, amd64.RAX, top(0))
		a.MovImm(amd64.RCX, math.MaxUint64)
		a.Bsr(w, amd64.RAX, amd64.RAX)
		a.CMov(amd64.CondE, w, amd64.RAX, amd64.RCX)
		a.MovImm(amd64.RCX, uint64(w)-1)
		a.ALURR(amd64.SUB, w, amd64.RCX, amd64.RAX)
		a.Store(amd64.W64, top(0), amd64.RCX)
	case opcodeI32Ctz, opcodeI64Ctz:
		w := width(op == opcodeI64Ctz)
		a.Load(w, amd64.RAX, top(0))
		a.MovImm(amd64.RCX, uint64(w))
		a.Bsf(w, amd64.RAX, amd64.RAX)
		a.CMov(amd64.CondE, w, amd64.RAX, amd64.RCX)
		g.storeRAX(top(0))
	case opcodeI32Popcnt, opcodeI64Popcnt:
		w := width(op == opcodeI64Popcnt)
		a.Load(w, amd64.RAX, top(0))
		a.Popcnt(w, amd64.RAX, amd64.RAX)
		g.storeRAX(top(0))

	case opcodeI32WrapI64:
		g.loadRAX(amd64.W32, top(0))
		g.storeRAX(top(0))
	case opcodeI64ExtendI32S, opcodeI64Extend32S:
		a.LoadSX(amd64.W32, amd64.W64, amd64.RAX, top(0))
		g.storeRAX(top(0))
	case opcodeI32Extend8S:
		a.LoadSX(amd64.W8, amd64.W32, amd64.RAX, top(0))
		g.storeRAX(top(0))
	case opcodeI32Extend16S:
		a.LoadSX(amd64.W16, amd64.W32, amd64.RAX, top(0))
		g.storeRAX(top(0))
	case opcodeI64Extend8S:
		a.LoadSX(amd64.W8, amd64.W64, amd64.RAX, top(0))
		g.storeRAX(top(0))
	case opcodeI64Extend16S:
		a.LoadSX(amd64.W16, amd64.W64, amd64.RAX, top(0))
		g.storeRAX(top(0))

	case opcodeI32TruncF32S, opcodeI32TruncF32U, opcodeI32TruncF64S, opcodeI32TruncF64U,
		opcodeI64TruncF32S, opcodeI64TruncF64S, opcodeI64TruncF32U, opcodeI64TruncF64U:
		g.truncate(pc, op, top(0))
	case opTruncSat:
		g.truncSat(ins.a, top(0))
	case opcodeF32ConvertI64U, opcodeF64ConvertI64U:
		g.convertU64(width(op == opcodeF64ConvertI64U), top(0))
	default:
		if g.float(op, top) {
			return
		}
		switch {
		case op >= opcodeI32Eq && op <= opcodeI32GeU:
			g.compare(amd64.W32, cmpConds[op-opcodeI32Eq], top(1), top(0))
		case op >= opcodeI64Eq && op <= opcodeI64GeU:
			g.compare(amd64.W64, cmpConds[op-opcodeI64Eq], top(1), top(0))
		case op >= opcodeI32Load && op <= opcodeI64Load32U:
			g.load(pc, op, top(0), ins.b)
		case op >= opcodeI32Store && op <= opcodeI64Store32:
			g.store(pc, op, top(1), top(0), ins.b)
		default:
			// supported and instr disagree: leave the function to the
			// interpreter.
			g.failed = true
		}
	}
}

func width(is64 bool) amd64.Width {
	if is64 {
		return amd64.W64
	}
	return amd64.W32
}

// storeConst stores the 64-bit constant v to m.
func (g *funcGen) storeConst(m amd64.Mem, v uint64) {
	if int64(v) == int64(int32(v)) {
		g.a.StoreImm(amd64.W64, m, int32(v))
		return
	}
	g.a.MovImm(amd64.RAX, v)
	g.storeRAX(m)
}

// add64 adds the constant v to r (clobbering amd64.RCX for large constants).
func (g *funcGen) add64(r amd64.Reg, v uint64) {
	if int64(v) == int64(int32(v)) {
		g.a.ALURI(amd64.ADD, amd64.W64, r, int32(v))
		return
	}
	g.a.MovImm(amd64.RCX, v)
	g.a.ALURR(amd64.ADD, amd64.W64, r, amd64.RCX)
}

func (g *funcGen) compare(w amd64.Width, c amd64.Cond, x, y amd64.Mem) {
	a := g.a
	a.Load(w, amd64.RAX, x)
	a.ALURM(amd64.CMP, w, amd64.RAX, y)
	a.SetCC(c, amd64.RAX)
	a.MovZX8(amd64.RAX, amd64.RAX)
	g.storeRAX(x)
}

// divS translates the signed divisions and remainders: division by zero
// and the quotient that overflows take the slow path (they trap); the
// remainder by -1 is 0 without dividing (which would fault on the minimum).
func (g *funcGen) divS(pc int, op opcode, x, y amd64.Mem) {
	a := g.a
	w := width(op == opcodeI64DivS || op == opcodeI64RemS)
	isDiv := op == opcodeI32DivS || op == opcodeI64DivS
	a.Load(w, amd64.RCX, y)
	a.Load(w, amd64.RAX, x)
	a.TestRR(w, amd64.RCX, amd64.RCX)
	a.Jcc(amd64.CondE, g.slow(pc))
	divide, done := a.NewLabel(), a.NewLabel()
	a.ALURI(amd64.CMP, w, amd64.RCX, -1)
	a.Jcc(amd64.CondNE, divide)
	if isDiv {
		if w == amd64.W32 {
			a.ALURI(amd64.CMP, amd64.W32, amd64.RAX, math.MinInt32)
		} else {
			a.MovImm(amd64.RDX, 1<<63)
			a.ALURR(amd64.CMP, amd64.W64, amd64.RAX, amd64.RDX)
		}
		a.Jcc(amd64.CondE, g.slow(pc))
	} else {
		a.StoreImm(amd64.W64, x, 0)
		a.Jmp(done)
	}
	a.Bind(divide)
	a.SignExtendAX(w)
	a.IDiv(w, amd64.RCX)
	if isDiv {
		g.storeRAX(x)
	} else {
		a.Store(amd64.W64, x, amd64.RDX)
	}
	a.Bind(done)
}

// address computes the effective address of an access of size bytes into
// amd64.RAX, and takes the slow path if it is out of bounds. It clobbers amd64.RCX.
func (g *funcGen) address(pc int, addr amd64.Mem, off uint64, size int32) {
	a := g.a
	g.loadRAX(amd64.W32, addr)
	if off != 0 {
		g.add64(amd64.RAX, off)
	}
	a.Lea(amd64.RCX, amd64.M(amd64.RAX, size))
	a.ALURR(amd64.CMP, amd64.W64, amd64.RCX, rMemLen)
	a.Jcc(amd64.CondA, g.slow(pc))
}

func (g *funcGen) load(pc int, op opcode, slot amd64.Mem, off uint64) {
	a := g.a
	_, size := loadType(byte(op))
	g.address(pc, slot, off, int32(size))
	m := amd64.MI(rMem, amd64.RAX, 1, 0)
	switch op {
	case opcodeI32Load, opcodeF32Load, opcodeI64Load32U:
		g.loadRAX(amd64.W32, m)
	case opcodeI64Load, opcodeF64Load:
		g.loadRAX(amd64.W64, m)
	case opcodeI32Load8S:
		a.LoadSX(amd64.W8, amd64.W32, amd64.RAX, m)
	case opcodeI32Load16S:
		a.LoadSX(amd64.W16, amd64.W32, amd64.RAX, m)
	case opcodeI32Load8U, opcodeI64Load8U:
		a.LoadZX(amd64.W8, amd64.RAX, m)
	case opcodeI32Load16U, opcodeI64Load16U:
		a.LoadZX(amd64.W16, amd64.RAX, m)
	case opcodeI64Load8S:
		a.LoadSX(amd64.W8, amd64.W64, amd64.RAX, m)
	case opcodeI64Load16S:
		a.LoadSX(amd64.W16, amd64.W64, amd64.RAX, m)
	case opcodeI64Load32S:
		a.LoadSX(amd64.W32, amd64.W64, amd64.RAX, m)
	}
	g.storeRAX(slot)
}

// store translates a store and marks the pages it touched dirty, as
// Memory.markStore does.
func (g *funcGen) store(pc int, op opcode, addr, val amd64.Mem, off uint64) {
	a := g.a
	_, size := storeType(byte(op))
	g.address(pc, addr, off, int32(size))
	a.Load(amd64.W64, amd64.RCX, val)
	a.Store(amd64.Width(size*8), amd64.MI(rMem, amd64.RAX, 1, 0), amd64.RCX)
	g.markDirty(amd64.RAX) // leaves the page in RDX
	if size > 1 {
		// The last byte's page, if it is another one.
		same := a.NewLabel()
		a.Lea(amd64.RAX, amd64.M(amd64.RAX, int32(size)-1))
		a.ShiftImm(amd64.SHR, amd64.W64, amd64.RAX, dirtyShift)
		a.ALURR(amd64.CMP, amd64.W64, amd64.RAX, amd64.RDX)
		a.Jcc(amd64.CondE, same)
		g.markPage(amd64.RAX, amd64.RSI, amd64.R12)
		a.Bind(same)
	}
}

// markDirty sets the dirty bit of the 4 KiB page of the address in r
// (clobbering amd64.RSI and amd64.R12), and leaves the page in amd64.RDX.
func (g *funcGen) markDirty(r amd64.Reg) {
	a := g.a
	a.MovRR(amd64.W64, amd64.RDX, r)
	a.ShiftImm(amd64.SHR, amd64.W64, amd64.RDX, dirtyShift)
	g.markPage(amd64.RDX, amd64.RSI, amd64.R12)
}

// markPage sets the dirty bit of page p, clobbering t1 and t2. A page
// already dirty (the common case: stores cluster) is not written again.
func (g *funcGen) markPage(p, t1, t2 amd64.Reg) {
	a := g.a
	done := a.NewLabel()
	a.MovRR(amd64.W64, t1, p)
	a.ShiftImm(amd64.SHR, amd64.W64, t1, 6)
	word := amd64.MI(rDirty, t1, 8, 0)
	a.Load(amd64.W64, t2, word)
	a.Bts(amd64.W64, t2, p)
	a.Jcc(amd64.CondB, done) // CF: the bit was set
	a.Store(amd64.W64, word, t2)
	a.Bind(done)
}

// markPages marks the pages from first to last (registers, first <= last)
// dirty, as Memory.MarkDirty does, clobbering first, RSI and RDX.
func (g *funcGen) markPages(first, last amd64.Reg) {
	a := g.a
	loop := a.NewLabel()
	a.Bind(loop)
	g.markPage(first, amd64.RSI, amd64.RDX)
	a.ALURI(amd64.ADD, amd64.W64, first, 1)
	a.ALURR(amd64.CMP, amd64.W64, first, last)
	a.Jcc(amd64.CondBE, loop)
}

// memoryCopy translates memory.copy as the interpreter runs it: bounds of
// both ranges (else the slow path, which traps), then a copy as memmove
// makes it (backwards if the destination overlaps the source from above)
// and the destination's pages marked dirty. RDI, the context, is kept in
// RAX while the string instruction needs it.
func (g *funcGen) memoryCopy(pc int, d, src, n amd64.Mem) {
	a := g.a
	slow := g.slow(pc)
	done, fwd, copied := a.NewLabel(), a.NewLabel(), a.NewLabel()
	a.Load(amd64.W32, amd64.R12, d)
	a.Load(amd64.W32, amd64.R13, src)
	a.Load(amd64.W32, amd64.RCX, n)
	g.rangeCheck(amd64.R12, slow)
	g.rangeCheck(amd64.R13, slow)
	a.TestRR(amd64.W64, amd64.RCX, amd64.RCX)
	a.Jcc(amd64.CondE, done)
	a.MovRR(amd64.W64, amd64.RAX, rCtx)
	a.Lea(amd64.RDI, amd64.MI(rMem, amd64.R12, 1, 0))
	a.Lea(amd64.RSI, amd64.MI(rMem, amd64.R13, 1, 0))
	a.MovRR(amd64.W64, amd64.RDX, amd64.R12)
	a.ALURR(amd64.SUB, amd64.W64, amd64.RDX, amd64.R13)
	g.pageSpan()
	// d - src below n (unsigned): the destination starts inside the
	// source, so a forward copy would read bytes it already wrote.
	a.ALURR(amd64.CMP, amd64.W64, amd64.RDX, amd64.RCX)
	a.Jcc(amd64.CondAE, fwd)
	a.Lea(amd64.RSI, amd64.MI(amd64.RSI, amd64.RCX, 1, -1))
	a.Lea(amd64.RDI, amd64.MI(amd64.RDI, amd64.RCX, 1, -1))
	a.Std()
	a.RepMovsb()
	a.Cld()
	a.Jmp(copied)
	a.Bind(fwd)
	a.RepMovsb()
	a.Bind(copied)
	a.MovRR(amd64.W64, rCtx, amd64.RAX)
	g.markPages(amd64.R12, amd64.R13)
	a.Bind(done)
}

// rangeCheck jumps to slow unless the RCX bytes at offset base (both
// zero-extended 32-bit) lie in memory. It uses RAX.
func (g *funcGen) rangeCheck(base amd64.Reg, slow amd64.Label) {
	a := g.a
	a.Lea(amd64.RAX, amd64.MI(base, amd64.RCX, 1, 0))
	a.ALURR(amd64.CMP, amd64.W64, amd64.RAX, rMemLen)
	a.Jcc(amd64.CondA, slow)
}

// pageSpan turns the range of RCX (non-zero) bytes at offset R12 into the
// first and last dirty pages it touches, in R12 and R13, for markPages.
func (g *funcGen) pageSpan() {
	a := g.a
	a.Lea(amd64.R13, amd64.MI(amd64.R12, amd64.RCX, 1, -1))
	a.ShiftImm(amd64.SHR, amd64.W64, amd64.R13, dirtyShift)
	a.ShiftImm(amd64.SHR, amd64.W64, amd64.R12, dirtyShift)
}

// memoryFill translates memory.fill as the interpreter runs it (see
// memoryCopy).
func (g *funcGen) memoryFill(pc int, d, v, n amd64.Mem) {
	a := g.a
	slow := g.slow(pc)
	done := a.NewLabel()
	a.Load(amd64.W32, amd64.R12, d)
	a.Load(amd64.W32, amd64.RCX, n)
	g.rangeCheck(amd64.R12, slow)
	a.TestRR(amd64.W64, amd64.RCX, amd64.RCX)
	a.Jcc(amd64.CondE, done)
	a.MovRR(amd64.W64, amd64.RDX, rCtx)
	a.Lea(amd64.RDI, amd64.MI(rMem, amd64.R12, 1, 0))
	a.LoadZX(amd64.W8, amd64.RAX, v)
	g.pageSpan()
	a.RepStosb()
	a.MovRR(amd64.W64, rCtx, amd64.RDX)
	g.markPages(amd64.R12, amd64.R13)
	a.Bind(done)
}

// brTable jumps through a table of 32-bit offsets; targets that drop
// values go through a stub that moves the kept ones first.
func (g *funcGen) brTable(ins instr, h int32) {
	a := g.a
	targets := g.f.brTargets[ins.a : uint64(ins.a)+ins.b]
	table := a.NewLabel()
	g.loadRAX(amd64.W32, g.slot(h-1))
	a.MovImm(amd64.RCX, ins.b-1)
	a.ALURR(amd64.CMP, amd64.W32, amd64.RAX, amd64.RCX)
	a.CMov(amd64.CondA, amd64.W32, amd64.RAX, amd64.RCX)
	a.LeaRIP(amd64.RCX, table)
	a.LoadSX(amd64.W32, amd64.W64, amd64.RAX, amd64.MI(amd64.RCX, amd64.RAX, 4, 0))
	a.ALURR(amd64.ADD, amd64.W64, amd64.RAX, amd64.RCX)
	a.JmpReg(amd64.RAX)
	a.Bind(table)
	base := a.Len()
	type key struct{ pc, drop, keep uint32 }
	stubs := map[key]amd64.Label{}
	for _, t := range targets {
		if t.drop == 0 {
			a.TableEntry(base, g.label(int(t.pc)))
			continue
		}
		k := key(t)
		l, ok := stubs[k]
		if !ok {
			l = a.NewLabel()
			stubs[k] = l
			g.stubs = append(g.stubs, func() {
				a.Bind(l)
				g.moveKeep(h-1, int32(k.drop), int32(k.keep))
				a.Jmp(g.label(int(k.pc)))
			})
		}
		a.TableEntry(base, l)
	}
}

// float translates the floating-point instructions, and reports false for
// any other. Values travel through RAX into X0 and X1; every arithmetic
// result that is a NaN is replaced by the canonical NaN, as the
// interpreter does (canon32, canon64).
func (g *funcGen) float(op opcode, top func(int32) amd64.Mem) bool {
	a := g.a
	switch op {
	case opcodeF32Add, opcodeF32Sub, opcodeF32Mul, opcodeF32Div,
		opcodeF64Add, opcodeF64Sub, opcodeF64Mul, opcodeF64Div:
		w := width(op >= opcodeF64Abs)
		var fop amd64.FOp
		switch op {
		case opcodeF32Add, opcodeF64Add:
			fop = amd64.FAdd
		case opcodeF32Sub, opcodeF64Sub:
			fop = amd64.FSub
		case opcodeF32Mul, opcodeF64Mul:
			fop = amd64.FMul
		default:
			fop = amd64.FDiv
		}
		g.loadF(w, amd64.X0, top(1))
		g.loadF(w, amd64.X1, top(0))
		a.FArith(fop, w, amd64.X0, amd64.X1)
		g.storeCanon(w, top(1), amd64.X0)
	case opcodeF32Min, opcodeF32Max, opcodeF64Min, opcodeF64Max:
		g.minMax(op, top(1), top(0))
	case opcodeF32Sqrt, opcodeF64Sqrt:
		w := width(op == opcodeF64Sqrt)
		g.loadF(w, amd64.X0, top(0))
		a.FArith(amd64.FSqrt, w, amd64.X0, amd64.X0)
		g.storeCanon(w, top(0), amd64.X0)
	case opcodeF32Ceil, opcodeF32Floor, opcodeF32Trunc, opcodeF32Nearest,
		opcodeF64Ceil, opcodeF64Floor, opcodeF64Trunc, opcodeF64Nearest:
		w := width(op >= opcodeF64Abs)
		var mode uint8
		switch op {
		case opcodeF32Ceil, opcodeF64Ceil:
			mode = amd64.RoundUp
		case opcodeF32Floor, opcodeF64Floor:
			mode = amd64.RoundDown
		case opcodeF32Trunc, opcodeF64Trunc:
			mode = amd64.RoundTrunc
		default:
			mode = amd64.RoundNearest
		}
		g.loadF(w, amd64.X0, top(0))
		a.Round(w, mode, amd64.X0, amd64.X0)
		g.storeCanon(w, top(0), amd64.X0)

	case opcodeF32Eq, opcodeF32Ne, opcodeF32Lt, opcodeF32Gt, opcodeF32Le, opcodeF32Ge,
		opcodeF64Eq, opcodeF64Ne, opcodeF64Lt, opcodeF64Gt, opcodeF64Le, opcodeF64Ge:
		w := width(op >= opcodeF64Eq)
		g.loadF(w, amd64.X0, top(1))
		g.loadF(w, amd64.X1, top(0))
		// UCOMIS sets ZF, PF and CF on an unordered result: lt and le
		// compare the other way round so that "above" is false for NaN.
		switch op {
		case opcodeF32Eq, opcodeF64Eq:
			a.UComis(w, amd64.X0, amd64.X1)
			g.setCC2(amd64.CondE, amd64.CondNP, amd64.AND)
		case opcodeF32Ne, opcodeF64Ne:
			a.UComis(w, amd64.X0, amd64.X1)
			g.setCC2(amd64.CondNE, amd64.CondP, amd64.OR)
		case opcodeF32Lt, opcodeF64Lt:
			a.UComis(w, amd64.X1, amd64.X0)
			g.setCC(amd64.CondA)
		case opcodeF32Gt, opcodeF64Gt:
			a.UComis(w, amd64.X0, amd64.X1)
			g.setCC(amd64.CondA)
		case opcodeF32Le, opcodeF64Le:
			a.UComis(w, amd64.X1, amd64.X0)
			g.setCC(amd64.CondAE)
		default:
			a.UComis(w, amd64.X0, amd64.X1)
			g.setCC(amd64.CondAE)
		}
		g.storeRAX(top(1))

	// abs, neg and copysign work on the bits, keeping NaN payloads.
	case opcodeF32Abs:
		a.ALUMI(amd64.AND, amd64.W32, top(0), 0x7fffffff)
	case opcodeF32Neg:
		a.ALUMI(amd64.XOR, amd64.W32, top(0), math.MinInt32)
	case opcodeF32Copysign:
		g.loadRAX(amd64.W32, top(1))
		a.ALURI(amd64.AND, amd64.W32, amd64.RAX, 0x7fffffff)
		a.Load(amd64.W32, amd64.RCX, top(0))
		a.ALURI(amd64.AND, amd64.W32, amd64.RCX, math.MinInt32)
		a.ALURR(amd64.OR, amd64.W32, amd64.RAX, amd64.RCX)
		g.storeRAX(top(1))
	case opcodeF64Abs:
		g.loadRAX(amd64.W64, top(0))
		a.ShiftImm(amd64.SHL, amd64.W64, amd64.RAX, 1)
		a.ShiftImm(amd64.SHR, amd64.W64, amd64.RAX, 1)
		g.storeRAX(top(0))
	case opcodeF64Neg:
		a.MovImm(amd64.RAX, 1<<63)
		a.ALUMR(amd64.XOR, amd64.W64, top(0), amd64.RAX)
	case opcodeF64Copysign:
		g.loadRAX(amd64.W64, top(1))
		a.ShiftImm(amd64.SHL, amd64.W64, amd64.RAX, 1)
		a.ShiftImm(amd64.SHR, amd64.W64, amd64.RAX, 1)
		a.Load(amd64.W64, amd64.RCX, top(0))
		a.ShiftImm(amd64.SHR, amd64.W64, amd64.RCX, 63)
		a.ShiftImm(amd64.SHL, amd64.W64, amd64.RCX, 63)
		a.ALURR(amd64.OR, amd64.W64, amd64.RAX, amd64.RCX)
		g.storeRAX(top(1))

	// Conversions from integers: an unsigned 32-bit value is converted as
	// the (non-negative) 64-bit integer it zero-extends to. None gives a
	// NaN.
	case opcodeF32ConvertI32S, opcodeF32ConvertI32U, opcodeF32ConvertI64S,
		opcodeF64ConvertI32S, opcodeF64ConvertI32U, opcodeF64ConvertI64S:
		to := width(op >= opcodeF64ConvertI32S)
		from := amd64.W64
		switch op {
		case opcodeF32ConvertI32S, opcodeF64ConvertI32S:
			from = amd64.W32
		}
		g.loadRAX(amd64.W64, top(0))
		if op == opcodeF32ConvertI32U || op == opcodeF64ConvertI32U {
			a.MovRR(amd64.W32, amd64.RAX, amd64.RAX)
		}
		a.CvtInt(from, to, amd64.X0, amd64.RAX)
		g.storeF(to, top(0), amd64.X0)
	case opcodeI32TruncF32S, opcodeI32TruncF32U, opcodeI32TruncF64S, opcodeI32TruncF64U,
		opcodeI64TruncF32S, opcodeI64TruncF64S, opcodeI64TruncF32U, opcodeI64TruncF64U:
		return false // translated by instr, which knows the pc for the slow path
	case opcodeF32DemoteF64:
		g.loadF(amd64.W64, amd64.X0, top(0))
		a.CvtFloat(amd64.W32, amd64.X0, amd64.X0)
		g.storeCanon(amd64.W32, top(0), amd64.X0)
	case opcodeF64PromoteF32:
		g.loadF(amd64.W32, amd64.X0, top(0))
		a.CvtFloat(amd64.W64, amd64.X0, amd64.X0)
		g.storeCanon(amd64.W64, top(0), amd64.X0)
	default:
		return false
	}
	return true
}

// loadF loads the float of width w at m into x (through RAX).
func (g *funcGen) loadF(w amd64.Width, x amd64.XReg, m amd64.Mem) {
	g.a.Load(w, amd64.RAX, m)
	if w == amd64.W32 {
		g.a.MovDToX(x, amd64.RAX)
	} else {
		g.a.MovQToX(x, amd64.RAX)
	}
}

// storeF stores the float of width w in x to m, zero-extended.
func (g *funcGen) storeF(w amd64.Width, m amd64.Mem, x amd64.XReg) {
	if w == amd64.W32 {
		g.a.MovDFromX(amd64.RAX, x)
	} else {
		g.a.MovQFromX(amd64.RAX, x)
	}
	g.storeRAX(m)
}

// storeCanon is storeF with a NaN replaced by the canonical NaN.
func (g *funcGen) storeCanon(w amd64.Width, m amd64.Mem, x amd64.XReg) {
	a := g.a
	ok := a.NewLabel()
	if w == amd64.W32 {
		a.MovDFromX(amd64.RAX, x)
	} else {
		a.MovQFromX(amd64.RAX, x)
	}
	a.UComis(w, x, x)
	a.Jcc(amd64.CondNP, ok)
	if w == amd64.W32 {
		a.MovImm(amd64.RAX, canonNaN32)
	} else {
		a.MovImm(amd64.RAX, canonNaN64)
	}
	a.Bind(ok)
	g.storeRAX(m)
}

// setCC sets RAX to 1 if c holds, else 0.
func (g *funcGen) setCC(c amd64.Cond) {
	g.a.SetCC(c, amd64.RAX)
	g.a.MovZX8(amd64.RAX, amd64.RAX)
}

// setCC2 sets RAX to c1 op c2 (op AND or OR).
func (g *funcGen) setCC2(c1, c2 amd64.Cond, op amd64.ALU) {
	a := g.a
	a.SetCC(c1, amd64.RAX)
	a.SetCC(c2, amd64.RCX)
	a.MovZX8(amd64.RAX, amd64.RAX)
	a.MovZX8(amd64.RCX, amd64.RCX)
	a.ALURR(op, amd64.W32, amd64.RAX, amd64.RCX)
}

// minMax translates min and max as fmin and fmax define them: NaN (the
// canonical one) if either operand is NaN, and -0 below +0. MINSS and
// MAXSS give neither, so NaNs and equal operands (among them the zeros of
// either sign) take their own paths: for equal operands the OR of the bits
// is the minimum and the AND the maximum.
func (g *funcGen) minMax(op opcode, x, y amd64.Mem) {
	a := g.a
	w := width(op == opcodeF64Min || op == opcodeF64Max)
	isMin := op == opcodeF32Min || op == opcodeF64Min
	nan, differ, done := a.NewLabel(), a.NewLabel(), a.NewLabel()
	g.loadF(w, amd64.X0, x)
	g.loadF(w, amd64.X1, y)
	a.UComis(w, amd64.X0, amd64.X1)
	a.Jcc(amd64.CondP, nan)
	a.Jcc(amd64.CondNE, differ)
	g.loadRAX(amd64.W64, x)
	if isMin {
		a.ALURM(amd64.OR, amd64.W64, amd64.RAX, y)
	} else {
		a.ALURM(amd64.AND, amd64.W64, amd64.RAX, y)
	}
	g.storeRAX(x)
	a.Jmp(done)
	a.Bind(differ)
	if isMin {
		a.FArith(amd64.FMin, w, amd64.X0, amd64.X1)
	} else {
		a.FArith(amd64.FMax, w, amd64.X0, amd64.X1)
	}
	g.storeF(w, x, amd64.X0)
	a.Jmp(done)
	a.Bind(nan)
	if w == amd64.W32 {
		a.StoreImm(amd64.W64, x, canonNaN32)
	} else {
		a.MovImm(amd64.RAX, canonNaN64)
		g.storeRAX(x)
	}
	a.Bind(done)
}

// truncSat translates the saturating conversions as truncSat does them:
// NaN gives 0, a value at or beyond a bound of the result's range that
// bound, any other is truncated by CVTTSD2SI (a single-precision operand is
// widened first, exactly; an unsigned 64-bit result of 2^63 or more is
// converted from the value less 2^63, as f2u64 does).
func (g *funcGen) truncSat(sub uint32, m amd64.Mem) {
	a := g.a
	src := amd64.W64
	if sub&2 == 0 {
		src = amd64.W32
	}
	signed, is64 := sub&1 == 0, sub >= opcodeMiscI64TruncSatF32S
	g.loadF(src, amd64.X0, m)
	if src == amd64.W32 {
		a.CvtFloat(amd64.W64, amd64.X0, amd64.X0)
	}
	var lo, hi float64
	var loVal, hiVal uint64
	switch {
	case !is64 && signed:
		lo, hi, loVal, hiVal = -2147483648.0, 2147483647.0, 1<<31, math.MaxInt32
	case !is64:
		lo, hi, loVal, hiVal = 0, 4294967295.0, 0, math.MaxUint32
	case signed:
		lo, hi, loVal, hiVal = -9223372036854775808.0, 9223372036854775807.0, 1<<63, math.MaxInt64
	default:
		lo, hi, loVal, hiVal = 0, 18446744073709551615.0, 0, math.MaxUint64
	}
	done, nan := a.NewLabel(), a.NewLabel()
	a.UComis(amd64.W64, amd64.X0, amd64.X0)
	a.Jcc(amd64.CondP, nan)
	// The result is loaded before each comparison: MovImm of 0 is an XOR,
	// which would clobber the flags.
	a.MovImm(amd64.RCX, math.Float64bits(lo))
	a.MovQToX(amd64.X1, amd64.RCX)
	a.MovImm(amd64.RAX, loVal)
	a.UComis(amd64.W64, amd64.X0, amd64.X1)
	a.Jcc(amd64.CondBE, done)
	a.MovImm(amd64.RCX, math.Float64bits(hi))
	a.MovQToX(amd64.X1, amd64.RCX)
	a.MovImm(amd64.RAX, hiVal)
	a.UComis(amd64.W64, amd64.X0, amd64.X1)
	a.Jcc(amd64.CondAE, done)
	switch {
	case !is64 && signed:
		a.CvttToInt(amd64.W32, amd64.RAX, amd64.X0)
	case !is64:
		a.CvttToInt(amd64.W64, amd64.RAX, amd64.X0)
		a.MovRR(amd64.W32, amd64.RAX, amd64.RAX)
	case signed:
		a.CvttToInt(amd64.W64, amd64.RAX, amd64.X0)
	default:
		truncU64(a)
	}
	a.Jmp(done)
	a.Bind(nan)
	a.MovImm(amd64.RAX, 0)
	a.Bind(done)
	g.storeRAX(m)
}

// convertU64 translates the conversions of an unsigned 64-bit integer to
// a float of width to, correctly rounded as Go's conversion and u64ToF32
// are: a value below 2^63 is converted as a signed one; a larger one is
// halved, keeping the lost bit as a sticky bit, converted and doubled.
func (g *funcGen) convertU64(to amd64.Width, m amd64.Mem) {
	a := g.a
	big, done := a.NewLabel(), a.NewLabel()
	g.loadRAX(amd64.W64, m)
	a.TestRR(amd64.W64, amd64.RAX, amd64.RAX)
	a.Jcc(amd64.CondS, big)
	a.CvtInt(amd64.W64, to, amd64.X0, amd64.RAX)
	a.Jmp(done)
	a.Bind(big)
	a.MovRR(amd64.W64, amd64.RCX, amd64.RAX)
	a.ShiftImm(amd64.SHR, amd64.W64, amd64.RCX, 1)
	a.ALURI(amd64.AND, amd64.W64, amd64.RAX, 1)
	a.ALURR(amd64.OR, amd64.W64, amd64.RCX, amd64.RAX)
	a.CvtInt(amd64.W64, to, amd64.X0, amd64.RCX)
	a.FArith(amd64.FAdd, to, amd64.X0, amd64.X0)
	a.Bind(done)
	g.storeF(to, m, amd64.X0)
}

// truncate translates the trapping float-to-integer conversions as
// truncate does: a NaN or a value out of the result's range takes the slow
// path, where the interpreter traps; any other is truncated by CVTTSD2SI
// (a single-precision operand is widened first, exactly; an unsigned
// 64-bit result of 2^63 or more is converted as f2u64 does).
func (g *funcGen) truncate(pc int, op opcode, m amd64.Mem) {
	a := g.a
	src := amd64.W64
	switch op {
	case opcodeI32TruncF32S, opcodeI32TruncF32U, opcodeI64TruncF32S, opcodeI64TruncF32U:
		src = amd64.W32
	}
	g.loadF(src, amd64.X0, m)
	if src == amd64.W32 {
		a.CvtFloat(amd64.W64, amd64.X0, amd64.X0)
	}
	// Bounds, as truncate has them: lo < f (lo <= f for i64) and f < hi.
	var lo, hi float64
	loIncl := false
	switch op {
	case opcodeI32TruncF32S, opcodeI32TruncF64S:
		lo, hi = -2147483649.0, 2147483648.0
	case opcodeI32TruncF32U, opcodeI32TruncF64U:
		lo, hi = -1.0, 4294967296.0
	case opcodeI64TruncF32U, opcodeI64TruncF64U:
		lo, hi = -1.0, 18446744073709551616.0
	default:
		lo, hi, loIncl = -9223372036854775808.0, 9223372036854775808.0, true
	}
	slow := g.slow(pc)
	a.MovImm(amd64.RAX, math.Float64bits(lo))
	a.MovQToX(amd64.X1, amd64.RAX)
	// UCOMISD sets CF (and ZF, PF) for NaN, so both jumps catch it.
	a.UComis(amd64.W64, amd64.X0, amd64.X1)
	if loIncl {
		a.Jcc(amd64.CondB, slow)
	} else {
		a.Jcc(amd64.CondBE, slow)
	}
	a.MovImm(amd64.RAX, math.Float64bits(hi))
	a.MovQToX(amd64.X1, amd64.RAX)
	a.UComis(amd64.W64, amd64.X0, amd64.X1)
	a.Jcc(amd64.CondAE, slow)
	switch op {
	case opcodeI32TruncF32S, opcodeI32TruncF64S:
		a.CvttToInt(amd64.W32, amd64.RAX, amd64.X0)
	case opcodeI32TruncF32U, opcodeI32TruncF64U:
		a.CvttToInt(amd64.W64, amd64.RAX, amd64.X0)
		a.MovRR(amd64.W32, amd64.RAX, amd64.RAX)
	case opcodeI64TruncF32U, opcodeI64TruncF64U:
		truncU64(a)
	default:
		a.CvttToInt(amd64.W64, amd64.RAX, amd64.X0)
	}
	g.storeRAX(m)
}

// truncU64 converts the float64 in X0, in [0, 2^64), to the uint64 in
// RAX, as f2u64 does: CVTTSD2SI converts up to 2^63, so from 2^63 on it
// converts the value less 2^63 and sets the top bit. It clobbers X1 and
// RCX.
func truncU64(a *amd64.Asm) {
	big, done := a.NewLabel(), a.NewLabel()
	a.MovImm(amd64.RCX, math.Float64bits(1<<63))
	a.MovQToX(amd64.X1, amd64.RCX)
	a.UComis(amd64.W64, amd64.X0, amd64.X1)
	a.Jcc(amd64.CondAE, big)
	a.CvttToInt(amd64.W64, amd64.RAX, amd64.X0)
	a.Jmp(done)
	a.Bind(big)
	a.FArith(amd64.FSub, amd64.W64, amd64.X0, amd64.X1)
	a.CvttToInt(amd64.W64, amd64.RAX, amd64.X0)
	a.MovImm(amd64.RCX, 1<<63)
	a.ALURR(amd64.OR, amd64.W64, amd64.RAX, amd64.RCX)
	a.Bind(done)
}
