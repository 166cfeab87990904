package wasm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// TrapCode says why execution trapped.
type TrapCode int

// Trap codes. The zero value means no trap.
const (
	TrapUnreachable TrapCode = iota + 1
	TrapMemoryOutOfBounds
	TrapIntegerDivideByZero
	TrapIntegerOverflow
	TrapInvalidConversion
	TrapIndirectCallTypeMismatch
	TrapUndefinedElement
	TrapUninitializedElement
	TrapTableOutOfBounds
	TrapCallStackExhausted
	TrapValueStackExhausted
)

func (c TrapCode) String() string {
	switch c {
	case TrapUnreachable:
		return "unreachable"
	case TrapMemoryOutOfBounds:
		return "out of bounds memory access"
	case TrapIntegerDivideByZero:
		return "integer divide by zero"
	case TrapIntegerOverflow:
		return "integer overflow"
	case TrapInvalidConversion:
		return "invalid conversion to integer"
	case TrapIndirectCallTypeMismatch:
		return "indirect call type mismatch"
	case TrapUndefinedElement:
		return "undefined element"
	case TrapUninitializedElement:
		return "uninitialized element"
	case TrapTableOutOfBounds:
		return "out of bounds table access"
	case TrapCallStackExhausted:
		return "call stack exhausted"
	case TrapValueStackExhausted:
		return "value stack exhausted"
	}
	return fmt.Sprintf("trap(%d)", int(c))
}

// noFunc marks a trap outside any function (instantiation).
const noFunc = ^uint32(0)

// Trap is a WebAssembly trap: the invocation is abandoned.
type Trap struct {
	Code TrapCode
	// FuncIndex is the function that trapped (noFunc if none), FuncName its
	// name from the name section or a placeholder, Offset the module-binary
	// offset of the trapping instruction.
	FuncIndex uint32
	FuncName  string
	Offset    uint32
}

func (t *Trap) Error() string {
	if t.FuncIndex == noFunc {
		return "wasm trap: " + t.Code.String() + " (during instantiation)"
	}
	return fmt.Sprintf("wasm trap: %s in %s at offset 0x%x", t.Code, t.FuncName, t.Offset)
}

// StopReason says why Run returned.
type StopReason int

// Reasons for Run to return without error.
const (
	// StopDone: the invoked function returned; Stop.Results hold its results.
	StopDone StopReason = iota
	// StopHostCall: a host function was called; Stop.Func and Stop.Args
	// describe the call. Resume with its results, then Run again.
	StopHostCall
	// StopBudget: the instruction budget is used up; Run again to go on.
	StopBudget
)

// Stop describes why Run returned.
type Stop struct {
	Reason  StopReason
	Results []uint64  // StopDone
	Func    *Function // StopHostCall
	Args    []uint64  // StopHostCall; valid until the next Resume
}

// frame is a suspended activation: the function, where it resumes, and the
// base of its locals on the value stack.
type frame struct {
	fn *Function
	pc int
	bp int
}

// execState is the state of the invocation running in an instance.
type execState struct {
	stack   []uint64
	sp      int
	frames  []frame // callers of cur
	cur     frame
	active  bool      // an invocation is in progress
	pending *Function // host call awaiting Resume
	args    []uint64
	count   uint64
	nat     *nativeCtx // the compiler tier's context, allocated on first use
	// natFrames holds the frame records of native code (see nativeFrame).
	natFrames []nativeFrame
	// nativeCount is how many of count's instructions native code ran.
	nativeCount uint64
}

var (
	errNotActive = errors.New("wasm: no invocation in progress")
	errPending   = errors.New("wasm: a host call is pending: call Resume first")
)

// Invoke prepares a call of f with args; Run executes it. Any invocation in
// progress is abandoned.
func (in *Instance) Invoke(f *Function, args []uint64) error {
	if f == nil {
		return errors.New("wasm: invoke of a nil function")
	}
	if len(args) != len(f.typ.Params) {
		return fmt.Errorf("wasm: %d arguments for a function of type %v", len(args), f.typ)
	}
	if f.store != nil && f.store != in.store {
		return errors.New("wasm: function belongs to another store")
	}
	e := &in.exec
	e.frames = e.frames[:0]
	e.pending = nil
	e.active = true
	if f.code == nil {
		// A host function invoked directly: report the call at once.
		e.cur = frame{fn: f}
		e.args = append(e.args[:0], args...)
		e.sp = 0
		return nil
	}
	need := f.code.numLocals + f.code.maxHeight
	if need > in.cfg.MaxStackValues {
		e.active = false
		return &Trap{Code: TrapValueStackExhausted, FuncIndex: f.code.idx, FuncName: in.FuncName(f.code.idx)}
	}
	if len(e.stack) < need {
		e.stack = make([]uint64, max(need, 1024))
	}
	for i, a := range args {
		e.stack[i] = normalize(f.typ.Params[i], a)
	}
	clear(e.stack[len(args):f.code.numLocals])
	e.sp = f.code.numLocals
	e.cur = frame{fn: f}
	return nil
}

// Pending returns the host call awaiting Resume, if any. After Restore of a
// snapshot taken during a host call, this is how the caller learns which
// call to service.
func (in *Instance) Pending() (f *Function, args []uint64, ok bool) {
	e := &in.exec
	if e.pending == nil {
		return nil, nil, false
	}
	return e.pending, e.args, true
}

// Resume supplies the results of the pending host call.
func (in *Instance) Resume(results []uint64) error {
	e := &in.exec
	if e.pending == nil {
		return errors.New("wasm: no host call is pending")
	}
	f := e.pending
	if len(results) != len(f.typ.Results) {
		return fmt.Errorf("wasm: host function %s.%s returned %d results, its type %v wants %d",
			f.Module, f.Name, len(results), f.typ, len(f.typ.Results))
	}
	e.pending = nil
	if e.cur.fn.code == nil {
		// The invocation was of the host function itself.
		e.active = false
		e.args = append(e.args[:0], results...)
		return nil
	}
	for i, r := range results {
		e.stack[e.sp+i] = normalize(f.typ.Results[i], r)
	}
	e.sp += len(results)
	return nil
}

// Run executes the invocation for at most budget instructions.
func (in *Instance) Run(budget uint64) (Stop, error) {
	e := &in.exec
	if e.pending != nil {
		return Stop{}, errPending
	}
	if e.cur.fn != nil && e.cur.fn.code == nil {
		if !e.active {
			// Direct host invocation finished by Resume.
			e.cur.fn = nil
			return Stop{Reason: StopDone, Results: e.args}, nil
		}
		e.pending = e.cur.fn
		return Stop{Reason: StopHostCall, Func: e.cur.fn, Args: e.args}, nil
	}
	if !e.active {
		return Stop{}, errNotActive
	}
	if in.cm.native {
		return in.runCompiled(budget)
	}
	return in.run(budget)
}

func canon32(f float32) uint64 {
	if f != f {
		return canonNaN32
	}
	return uint64(math.Float32bits(f))
}

func canon64(f float64) uint64 {
	if f != f {
		return canonNaN64
	}
	return math.Float64bits(f)
}

// Canonical NaNs: every arithmetic operation that produces a NaN produces
// these, so results are identical on every machine.
const (
	canonNaN32 = 0x7fc00000
	canonNaN64 = 0x7ff8000000000000
)

func f32(v uint64) float32 { return math.Float32frombits(uint32(v)) }
func f64(v uint64) float64 { return math.Float64frombits(v) }

// run is the interpreter loop. Hot state lives in locals and is written back
// to in.exec whenever the loop returns.
func (in *Instance) run(budget uint64) (Stop, error) {
	e := &in.exec
	fn := e.cur.fn
	cf := fn.code
	code := cf.code
	pc := e.cur.pc
	bp := e.cur.bp
	sp := e.sp
	s := e.stack
	inst := fn.inst
	memo := inst.mem
	var mem []byte
	if memo != nil {
		mem = memo.data
	}
	globals := inst.globals
	remaining := budget
	var trap TrapCode
	var callee *Function

	for {
		if remaining == 0 {
			e.cur = frame{fn, pc, bp}
			e.sp = sp
			e.count += budget
			return Stop{Reason: StopBudget}, nil
		}
		remaining--
		ins := &code[pc]
		pc++
		switch ins.op {
		case opUnreachable:
			trap = TrapUnreachable
			goto trapped
		case opBr:
			pc = int(ins.a)
		case opBrDrop:
			keep, drop := int(ins.b>>32), int(uint32(ins.b))
			copy(s[sp-drop-keep:], s[sp-keep:sp])
			sp -= drop
			pc = int(ins.a)
		case opBrIf:
			sp--
			if uint32(s[sp]) != 0 {
				pc = int(ins.a)
			}
		case opBrIfDrop:
			sp--
			if uint32(s[sp]) != 0 {
				keep, drop := int(ins.b>>32), int(uint32(ins.b))
				copy(s[sp-drop-keep:], s[sp-keep:sp])
				sp -= drop
				pc = int(ins.a)
			}
		case opBrUnless:
			sp--
			if uint32(s[sp]) == 0 {
				pc = int(ins.a)
			}
		case opBrTable:
			sp--
			i := uint64(uint32(s[sp]))
			if i >= ins.b {
				i = ins.b - 1
			}
			t := cf.brTargets[uint64(ins.a)+i]
			if t.drop != 0 {
				keep, drop := int(t.keep), int(t.drop)
				copy(s[sp-drop-keep:], s[sp-keep:sp])
				sp -= drop
			}
			pc = int(t.pc)
		case opReturn:
			n := len(cf.typ.Results)
			copy(s[bp:bp+n], s[sp-n:sp])
			sp = bp + n
			if len(e.frames) == 0 {
				e.count += budget - remaining
				e.active = false
				e.cur = frame{}
				e.sp = 0
				res := make([]uint64, n)
				copy(res, s[:n])
				return Stop{Reason: StopDone, Results: res}, nil
			}
			f := e.frames[len(e.frames)-1]
			e.frames = e.frames[:len(e.frames)-1]
			fn, pc, bp = f.fn, f.pc, f.bp
			cf = fn.code
			code = cf.code
			if fn.inst != inst {
				inst = fn.inst
				globals = inst.globals
				memo = inst.mem
			}
			if memo != nil {
				mem = memo.data
			}
		case opCall:
			callee = inst.funcs[ins.a]
			goto call
		case opCallIndirect:
			tab := inst.tables[ins.b]
			sp--
			i := uint32(s[sp])
			if i >= uint32(len(tab.elems)) {
				trap = TrapUndefinedElement
				goto trapped
			}
			ref := tab.elems[i]
			if ref == 0 {
				trap = TrapUninitializedElement
				goto trapped
			}
			callee = in.store.funcByRef(ref)
			if callee == nil || callee.typeID != inst.typeIDs[ins.a] {
				trap = TrapIndirectCallTypeMismatch
				goto trapped
			}
			goto call
		case opDrop:
			sp--
		case opSelect:
			sp -= 2
			if uint32(s[sp+1]) == 0 {
				s[sp-1] = s[sp]
			}
		case opLocalGet:
			s[sp] = s[bp+int(ins.a)]
			sp++
		case opLocalSet:
			sp--
			s[bp+int(ins.a)] = s[sp]
		case opLocalTee:
			s[bp+int(ins.a)] = s[sp-1]
		case opGlobalGet:
			s[sp] = globals[ins.a].val
			sp++
		case opGlobalSet:
			sp--
			globals[ins.a].val = s[sp]
		case opTableGet:
			t := inst.tables[ins.a]
			i := uint32(s[sp-1])
			if i >= uint32(len(t.elems)) {
				trap = TrapTableOutOfBounds
				goto trapped
			}
			s[sp-1] = t.elems[i]
		case opTableSet:
			t := inst.tables[ins.a]
			sp -= 2
			i := uint32(s[sp])
			if i >= uint32(len(t.elems)) {
				trap = TrapTableOutOfBounds
				goto trapped
			}
			t.elems[i] = s[sp+1]

		// Loads: the effective address is computed in 64 bits, so it
		// cannot wrap.
		case opcodeI32Load:
			ea := uint64(uint32(s[sp-1])) + ins.b
			if ea+4 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp-1] = uint64(binary.LittleEndian.Uint32(mem[ea:]))
		case opcodeI64Load:
			ea := uint64(uint32(s[sp-1])) + ins.b
			if ea+8 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp-1] = binary.LittleEndian.Uint64(mem[ea:])
		case opcodeF32Load:
			ea := uint64(uint32(s[sp-1])) + ins.b
			if ea+4 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp-1] = uint64(binary.LittleEndian.Uint32(mem[ea:]))
		case opcodeF64Load:
			ea := uint64(uint32(s[sp-1])) + ins.b
			if ea+8 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp-1] = binary.LittleEndian.Uint64(mem[ea:])
		case opcodeI32Load8S:
			ea := uint64(uint32(s[sp-1])) + ins.b
			if ea >= uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp-1] = uint64(uint32(int32(int8(mem[ea]))))
		case opcodeI32Load8U:
			ea := uint64(uint32(s[sp-1])) + ins.b
			if ea >= uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp-1] = uint64(mem[ea])
		case opcodeI32Load16S:
			ea := uint64(uint32(s[sp-1])) + ins.b
			if ea+2 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp-1] = uint64(uint32(int32(int16(binary.LittleEndian.Uint16(mem[ea:])))))
		case opcodeI32Load16U:
			ea := uint64(uint32(s[sp-1])) + ins.b
			if ea+2 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp-1] = uint64(binary.LittleEndian.Uint16(mem[ea:]))
		case opcodeI64Load8S:
			ea := uint64(uint32(s[sp-1])) + ins.b
			if ea >= uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp-1] = uint64(int64(int8(mem[ea])))
		case opcodeI64Load8U:
			ea := uint64(uint32(s[sp-1])) + ins.b
			if ea >= uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp-1] = uint64(mem[ea])
		case opcodeI64Load16S:
			ea := uint64(uint32(s[sp-1])) + ins.b
			if ea+2 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp-1] = uint64(int64(int16(binary.LittleEndian.Uint16(mem[ea:]))))
		case opcodeI64Load16U:
			ea := uint64(uint32(s[sp-1])) + ins.b
			if ea+2 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp-1] = uint64(binary.LittleEndian.Uint16(mem[ea:]))
		case opcodeI64Load32S:
			ea := uint64(uint32(s[sp-1])) + ins.b
			if ea+4 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp-1] = uint64(int64(int32(binary.LittleEndian.Uint32(mem[ea:]))))
		case opcodeI64Load32U:
			ea := uint64(uint32(s[sp-1])) + ins.b
			if ea+4 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp-1] = uint64(binary.LittleEndian.Uint32(mem[ea:]))

		// Stores mark the pages they touch dirty.
		case opcodeI32Store, opcodeF32Store:
			sp -= 2
			ea := uint64(uint32(s[sp])) + ins.b
			if ea+4 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			binary.LittleEndian.PutUint32(mem[ea:], uint32(s[sp+1]))
			memo.markStore(ea, 4)
		case opcodeI64Store, opcodeF64Store:
			sp -= 2
			ea := uint64(uint32(s[sp])) + ins.b
			if ea+8 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			binary.LittleEndian.PutUint64(mem[ea:], s[sp+1])
			memo.markStore(ea, 8)
		case opcodeI32Store8, opcodeI64Store8:
			sp -= 2
			ea := uint64(uint32(s[sp])) + ins.b
			if ea >= uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			mem[ea] = byte(s[sp+1])
			memo.markStore(ea, 1)
		case opcodeI32Store16, opcodeI64Store16:
			sp -= 2
			ea := uint64(uint32(s[sp])) + ins.b
			if ea+2 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			binary.LittleEndian.PutUint16(mem[ea:], uint16(s[sp+1]))
			memo.markStore(ea, 2)
		case opcodeI64Store32:
			sp -= 2
			ea := uint64(uint32(s[sp])) + ins.b
			if ea+4 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			binary.LittleEndian.PutUint32(mem[ea:], uint32(s[sp+1]))
			memo.markStore(ea, 4)

		case opMemorySize:
			s[sp] = uint64(len(mem) / PageSize)
			sp++
		case opMemoryGrow:
			s[sp-1] = uint64(uint32(memo.grow(uint32(s[sp-1]))))
			mem = memo.data
		case opConst:
			s[sp] = ins.b
			sp++

		// Superinstructions.
		case opLocalGet2:
			s[sp] = s[bp+int(ins.a)]
			s[sp+1] = s[bp+int(ins.b)]
			sp += 2
		case opLocalGetConst:
			s[sp] = s[bp+int(ins.a)]
			s[sp+1] = ins.b
			sp += 2
		case opLocalSetGet:
			s[bp+int(ins.a)] = s[sp-1]
			s[sp-1] = s[bp+int(ins.b)]
		case opI32AddConst:
			s[sp-1] = uint64(uint32(s[sp-1]) + uint32(ins.b))
		case opI64AddConst:
			s[sp-1] += ins.b
		case opLocalI32AddConst:
			s[sp] = uint64(uint32(s[bp+int(ins.a)]) + uint32(ins.b))
			sp++
		case opLocalI64AddConst:
			s[sp] = s[bp+int(ins.a)] + ins.b
			sp++
		case opLocalI32Load:
			ea := uint64(uint32(s[bp+int(ins.a)])) + ins.b
			if ea+4 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp] = uint64(binary.LittleEndian.Uint32(mem[ea:]))
			sp++
		case opLocalI64Load:
			ea := uint64(uint32(s[bp+int(ins.a)])) + ins.b
			if ea+8 > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			s[sp] = binary.LittleEndian.Uint64(mem[ea:])
			sp++

		// i32 comparisons
		case opcodeI32Eqz:
			s[sp-1] = b2u(uint32(s[sp-1]) == 0)
		case opcodeI32Eq:
			sp--
			s[sp-1] = b2u(uint32(s[sp-1]) == uint32(s[sp]))
		case opcodeI32Ne:
			sp--
			s[sp-1] = b2u(uint32(s[sp-1]) != uint32(s[sp]))
		case opcodeI32LtS:
			sp--
			s[sp-1] = b2u(int32(s[sp-1]) < int32(s[sp]))
		case opcodeI32LtU:
			sp--
			s[sp-1] = b2u(uint32(s[sp-1]) < uint32(s[sp]))
		case opcodeI32GtS:
			sp--
			s[sp-1] = b2u(int32(s[sp-1]) > int32(s[sp]))
		case opcodeI32GtU:
			sp--
			s[sp-1] = b2u(uint32(s[sp-1]) > uint32(s[sp]))
		case opcodeI32LeS:
			sp--
			s[sp-1] = b2u(int32(s[sp-1]) <= int32(s[sp]))
		case opcodeI32LeU:
			sp--
			s[sp-1] = b2u(uint32(s[sp-1]) <= uint32(s[sp]))
		case opcodeI32GeS:
			sp--
			s[sp-1] = b2u(int32(s[sp-1]) >= int32(s[sp]))
		case opcodeI32GeU:
			sp--
			s[sp-1] = b2u(uint32(s[sp-1]) >= uint32(s[sp]))

		// i64 comparisons
		case opcodeI64Eqz:
			s[sp-1] = b2u(s[sp-1] == 0)
		case opcodeI64Eq:
			sp--
			s[sp-1] = b2u(s[sp-1] == s[sp])
		case opcodeI64Ne:
			sp--
			s[sp-1] = b2u(s[sp-1] != s[sp])
		case opcodeI64LtS:
			sp--
			s[sp-1] = b2u(int64(s[sp-1]) < int64(s[sp]))
		case opcodeI64LtU:
			sp--
			s[sp-1] = b2u(s[sp-1] < s[sp])
		case opcodeI64GtS:
			sp--
			s[sp-1] = b2u(int64(s[sp-1]) > int64(s[sp]))
		case opcodeI64GtU:
			sp--
			s[sp-1] = b2u(s[sp-1] > s[sp])
		case opcodeI64LeS:
			sp--
			s[sp-1] = b2u(int64(s[sp-1]) <= int64(s[sp]))
		case opcodeI64LeU:
			sp--
			s[sp-1] = b2u(s[sp-1] <= s[sp])
		case opcodeI64GeS:
			sp--
			s[sp-1] = b2u(int64(s[sp-1]) >= int64(s[sp]))
		case opcodeI64GeU:
			sp--
			s[sp-1] = b2u(s[sp-1] >= s[sp])

		// f32 comparisons
		case opcodeF32Eq:
			sp--
			s[sp-1] = b2u(f32(s[sp-1]) == f32(s[sp]))
		case opcodeF32Ne:
			sp--
			s[sp-1] = b2u(f32(s[sp-1]) != f32(s[sp]))
		case opcodeF32Lt:
			sp--
			s[sp-1] = b2u(f32(s[sp-1]) < f32(s[sp]))
		case opcodeF32Gt:
			sp--
			s[sp-1] = b2u(f32(s[sp-1]) > f32(s[sp]))
		case opcodeF32Le:
			sp--
			s[sp-1] = b2u(f32(s[sp-1]) <= f32(s[sp]))
		case opcodeF32Ge:
			sp--
			s[sp-1] = b2u(f32(s[sp-1]) >= f32(s[sp]))

		// f64 comparisons
		case opcodeF64Eq:
			sp--
			s[sp-1] = b2u(f64(s[sp-1]) == f64(s[sp]))
		case opcodeF64Ne:
			sp--
			s[sp-1] = b2u(f64(s[sp-1]) != f64(s[sp]))
		case opcodeF64Lt:
			sp--
			s[sp-1] = b2u(f64(s[sp-1]) < f64(s[sp]))
		case opcodeF64Gt:
			sp--
			s[sp-1] = b2u(f64(s[sp-1]) > f64(s[sp]))
		case opcodeF64Le:
			sp--
			s[sp-1] = b2u(f64(s[sp-1]) <= f64(s[sp]))
		case opcodeF64Ge:
			sp--
			s[sp-1] = b2u(f64(s[sp-1]) >= f64(s[sp]))

		// i32 arithmetic
		case opcodeI32Clz:
			s[sp-1] = uint64(bits.LeadingZeros32(uint32(s[sp-1])))
		case opcodeI32Ctz:
			s[sp-1] = uint64(bits.TrailingZeros32(uint32(s[sp-1])))
		case opcodeI32Popcnt:
			s[sp-1] = uint64(bits.OnesCount32(uint32(s[sp-1])))
		case opcodeI32Add:
			sp--
			s[sp-1] = uint64(uint32(s[sp-1]) + uint32(s[sp]))
		case opcodeI32Sub:
			sp--
			s[sp-1] = uint64(uint32(s[sp-1]) - uint32(s[sp]))
		case opcodeI32Mul:
			sp--
			s[sp-1] = uint64(uint32(s[sp-1]) * uint32(s[sp]))
		case opcodeI32DivS:
			sp--
			a, b := int32(s[sp-1]), int32(s[sp])
			if b == 0 {
				trap = TrapIntegerDivideByZero
				goto trapped
			}
			if a == math.MinInt32 && b == -1 {
				trap = TrapIntegerOverflow
				goto trapped
			}
			s[sp-1] = uint64(uint32(a / b))
		case opcodeI32DivU:
			sp--
			a, b := uint32(s[sp-1]), uint32(s[sp])
			if b == 0 {
				trap = TrapIntegerDivideByZero
				goto trapped
			}
			s[sp-1] = uint64(a / b)
		case opcodeI32RemS:
			sp--
			a, b := int32(s[sp-1]), int32(s[sp])
			if b == 0 {
				trap = TrapIntegerDivideByZero
				goto trapped
			}
			if b == -1 {
				s[sp-1] = 0
			} else {
				s[sp-1] = uint64(uint32(a % b))
			}
		case opcodeI32RemU:
			sp--
			a, b := uint32(s[sp-1]), uint32(s[sp])
			if b == 0 {
				trap = TrapIntegerDivideByZero
				goto trapped
			}
			s[sp-1] = uint64(a % b)
		case opcodeI32And:
			sp--
			s[sp-1] = uint64(uint32(s[sp-1]) & uint32(s[sp]))
		case opcodeI32Or:
			sp--
			s[sp-1] = uint64(uint32(s[sp-1]) | uint32(s[sp]))
		case opcodeI32Xor:
			sp--
			s[sp-1] = uint64(uint32(s[sp-1]) ^ uint32(s[sp]))
		case opcodeI32Shl:
			sp--
			s[sp-1] = uint64(uint32(s[sp-1]) << (uint32(s[sp]) & 31))
		case opcodeI32ShrS:
			sp--
			s[sp-1] = uint64(uint32(int32(s[sp-1]) >> (uint32(s[sp]) & 31)))
		case opcodeI32ShrU:
			sp--
			s[sp-1] = uint64(uint32(s[sp-1]) >> (uint32(s[sp]) & 31))
		case opcodeI32Rotl:
			sp--
			s[sp-1] = uint64(bits.RotateLeft32(uint32(s[sp-1]), int(uint32(s[sp])&31)))
		case opcodeI32Rotr:
			sp--
			s[sp-1] = uint64(bits.RotateLeft32(uint32(s[sp-1]), -int(uint32(s[sp])&31)))

		// i64 arithmetic
		case opcodeI64Clz:
			s[sp-1] = uint64(bits.LeadingZeros64(s[sp-1]))
		case opcodeI64Ctz:
			s[sp-1] = uint64(bits.TrailingZeros64(s[sp-1]))
		case opcodeI64Popcnt:
			s[sp-1] = uint64(bits.OnesCount64(s[sp-1]))
		case opcodeI64Add:
			sp--
			s[sp-1] += s[sp]
		case opcodeI64Sub:
			sp--
			s[sp-1] -= s[sp]
		case opcodeI64Mul:
			sp--
			s[sp-1] *= s[sp]
		case opcodeI64DivS:
			sp--
			a, b := int64(s[sp-1]), int64(s[sp])
			if b == 0 {
				trap = TrapIntegerDivideByZero
				goto trapped
			}
			if a == math.MinInt64 && b == -1 {
				trap = TrapIntegerOverflow
				goto trapped
			}
			s[sp-1] = uint64(a / b)
		case opcodeI64DivU:
			sp--
			if s[sp] == 0 {
				trap = TrapIntegerDivideByZero
				goto trapped
			}
			s[sp-1] /= s[sp]
		case opcodeI64RemS:
			sp--
			a, b := int64(s[sp-1]), int64(s[sp])
			if b == 0 {
				trap = TrapIntegerDivideByZero
				goto trapped
			}
			if b == -1 {
				s[sp-1] = 0
			} else {
				s[sp-1] = uint64(a % b)
			}
		case opcodeI64RemU:
			sp--
			if s[sp] == 0 {
				trap = TrapIntegerDivideByZero
				goto trapped
			}
			s[sp-1] %= s[sp]
		case opcodeI64And:
			sp--
			s[sp-1] &= s[sp]
		case opcodeI64Or:
			sp--
			s[sp-1] |= s[sp]
		case opcodeI64Xor:
			sp--
			s[sp-1] ^= s[sp]
		case opcodeI64Shl:
			sp--
			s[sp-1] <<= s[sp] & 63
		case opcodeI64ShrS:
			sp--
			s[sp-1] = uint64(int64(s[sp-1]) >> (s[sp] & 63))
		case opcodeI64ShrU:
			sp--
			s[sp-1] >>= s[sp] & 63
		case opcodeI64Rotl:
			sp--
			s[sp-1] = bits.RotateLeft64(s[sp-1], int(s[sp]&63))
		case opcodeI64Rotr:
			sp--
			s[sp-1] = bits.RotateLeft64(s[sp-1], -int(s[sp]&63))

		// f32 arithmetic. abs, neg and copysign work on bits and keep NaN
		// payloads, as the spec requires.
		case opcodeF32Abs:
			s[sp-1] = uint64(uint32(s[sp-1]) &^ (1 << 31))
		case opcodeF32Neg:
			s[sp-1] = uint64(uint32(s[sp-1]) ^ (1 << 31))
		case opcodeF32Ceil:
			s[sp-1] = canon32(float32(math.Ceil(float64(f32(s[sp-1])))))
		case opcodeF32Floor:
			s[sp-1] = canon32(float32(math.Floor(float64(f32(s[sp-1])))))
		case opcodeF32Trunc:
			s[sp-1] = canon32(float32(math.Trunc(float64(f32(s[sp-1])))))
		case opcodeF32Nearest:
			s[sp-1] = canon32(float32(math.RoundToEven(float64(f32(s[sp-1])))))
		case opcodeF32Sqrt:
			s[sp-1] = canon32(float32(math.Sqrt(float64(f32(s[sp-1])))))
		case opcodeF32Add:
			sp--
			s[sp-1] = canon32(f32(s[sp-1]) + f32(s[sp]))
		case opcodeF32Sub:
			sp--
			s[sp-1] = canon32(f32(s[sp-1]) - f32(s[sp]))
		case opcodeF32Mul:
			sp--
			s[sp-1] = canon32(f32(s[sp-1]) * f32(s[sp]))
		case opcodeF32Div:
			sp--
			s[sp-1] = canon32(f32(s[sp-1]) / f32(s[sp]))
		case opcodeF32Min:
			sp--
			s[sp-1] = canon32(float32(fmin(float64(f32(s[sp-1])), float64(f32(s[sp])))))
		case opcodeF32Max:
			sp--
			s[sp-1] = canon32(float32(fmax(float64(f32(s[sp-1])), float64(f32(s[sp])))))
		case opcodeF32Copysign:
			sp--
			s[sp-1] = uint64(uint32(s[sp-1])&^(1<<31) | uint32(s[sp])&(1<<31))

		// f64 arithmetic
		case opcodeF64Abs:
			s[sp-1] &^= 1 << 63
		case opcodeF64Neg:
			s[sp-1] ^= 1 << 63
		case opcodeF64Ceil:
			s[sp-1] = canon64(math.Ceil(f64(s[sp-1])))
		case opcodeF64Floor:
			s[sp-1] = canon64(math.Floor(f64(s[sp-1])))
		case opcodeF64Trunc:
			s[sp-1] = canon64(math.Trunc(f64(s[sp-1])))
		case opcodeF64Nearest:
			s[sp-1] = canon64(math.RoundToEven(f64(s[sp-1])))
		case opcodeF64Sqrt:
			s[sp-1] = canon64(math.Sqrt(f64(s[sp-1])))
		case opcodeF64Add:
			sp--
			s[sp-1] = canon64(f64(s[sp-1]) + f64(s[sp]))
		case opcodeF64Sub:
			sp--
			s[sp-1] = canon64(f64(s[sp-1]) - f64(s[sp]))
		case opcodeF64Mul:
			sp--
			s[sp-1] = canon64(f64(s[sp-1]) * f64(s[sp]))
		case opcodeF64Div:
			sp--
			s[sp-1] = canon64(f64(s[sp-1]) / f64(s[sp]))
		case opcodeF64Min:
			sp--
			s[sp-1] = canon64(fmin(f64(s[sp-1]), f64(s[sp])))
		case opcodeF64Max:
			sp--
			s[sp-1] = canon64(fmax(f64(s[sp-1]), f64(s[sp])))
		case opcodeF64Copysign:
			sp--
			s[sp-1] = s[sp-1]&^(1<<63) | s[sp]&(1<<63)

		// conversions
		case opcodeI32WrapI64:
			s[sp-1] = uint64(uint32(s[sp-1]))
		case opcodeI32TruncF32S, opcodeI32TruncF32U, opcodeI32TruncF64S, opcodeI32TruncF64U,
			opcodeI64TruncF32S, opcodeI64TruncF32U, opcodeI64TruncF64S, opcodeI64TruncF64U:
			v, t := truncate(byte(ins.op), s[sp-1])
			if t != 0 {
				trap = t
				goto trapped
			}
			s[sp-1] = v
		case opcodeI64ExtendI32S:
			s[sp-1] = uint64(int64(int32(s[sp-1])))
		case opcodeF32ConvertI32S:
			s[sp-1] = uint64(math.Float32bits(float32(int32(s[sp-1]))))
		case opcodeF32ConvertI32U:
			s[sp-1] = uint64(math.Float32bits(float32(uint32(s[sp-1]))))
		case opcodeF32ConvertI64S:
			s[sp-1] = uint64(math.Float32bits(float32(int64(s[sp-1]))))
		case opcodeF32ConvertI64U:
			s[sp-1] = uint64(math.Float32bits(u64ToF32(s[sp-1])))
		case opcodeF32DemoteF64:
			s[sp-1] = canon32(float32(f64(s[sp-1])))
		case opcodeF64ConvertI32S:
			s[sp-1] = math.Float64bits(float64(int32(s[sp-1])))
		case opcodeF64ConvertI32U:
			s[sp-1] = math.Float64bits(float64(uint32(s[sp-1])))
		case opcodeF64ConvertI64S:
			s[sp-1] = math.Float64bits(float64(int64(s[sp-1])))
		case opcodeF64ConvertI64U:
			s[sp-1] = math.Float64bits(float64(s[sp-1]))
		case opcodeF64PromoteF32:
			s[sp-1] = canon64(float64(f32(s[sp-1])))
		case opcodeI32Extend8S:
			s[sp-1] = uint64(uint32(int32(int8(s[sp-1]))))
		case opcodeI32Extend16S:
			s[sp-1] = uint64(uint32(int32(int16(s[sp-1]))))
		case opcodeI64Extend8S:
			s[sp-1] = uint64(int64(int8(s[sp-1])))
		case opcodeI64Extend16S:
			s[sp-1] = uint64(int64(int16(s[sp-1])))
		case opcodeI64Extend32S:
			s[sp-1] = uint64(int64(int32(s[sp-1])))

		case opRefIsNull:
			s[sp-1] = b2u(s[sp-1] == 0)
		case opRefFunc:
			s[sp] = inst.funcs[ins.a].ref
			sp++
		case opTruncSat:
			s[sp-1] = truncSat(ins.a, s[sp-1])

		case opMemoryInit:
			sp -= 3
			if t := inst.memoryInit(ins.a, uint32(s[sp]), uint32(s[sp+1]), uint32(s[sp+2])); t != 0 {
				trap = t
				goto trapped
			}
		case opDataDrop:
			inst.datas[ins.a] = nil
		case opMemoryCopy:
			sp -= 3
			d, src, n := uint64(uint32(s[sp])), uint64(uint32(s[sp+1])), uint64(uint32(s[sp+2]))
			if d+n > uint64(len(mem)) || src+n > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			copy(mem[d:d+n], mem[src:src+n])
			memo.MarkDirty(uint32(d), uint32(n))
		case opMemoryFill:
			sp -= 3
			d, v, n := uint64(uint32(s[sp])), byte(s[sp+1]), uint64(uint32(s[sp+2]))
			if d+n > uint64(len(mem)) {
				trap = TrapMemoryOutOfBounds
				goto trapped
			}
			fill(mem[d:d+n], v)
			memo.MarkDirty(uint32(d), uint32(n))
		case opTableInit:
			sp -= 3
			if t := inst.tableInit(uint32(ins.b), ins.a, uint32(s[sp]), uint32(s[sp+1]), uint32(s[sp+2])); t != 0 {
				trap = t
				goto trapped
			}
		case opElemDrop:
			inst.elems[ins.a] = nil
		case opTableCopy:
			sp -= 3
			dt, st := inst.tables[ins.a], inst.tables[ins.b]
			d, src, n := uint64(uint32(s[sp])), uint64(uint32(s[sp+1])), uint64(uint32(s[sp+2]))
			if d+n > uint64(len(dt.elems)) || src+n > uint64(len(st.elems)) {
				trap = TrapTableOutOfBounds
				goto trapped
			}
			copy(dt.elems[d:d+n], st.elems[src:src+n])
		case opTableGrow:
			sp--
			t := inst.tables[ins.a]
			s[sp-1] = uint64(uint32(t.grow(uint32(s[sp]), s[sp-1])))
		case opTableSize:
			s[sp] = uint64(len(inst.tables[ins.a].elems))
			sp++
		case opTableFill:
			sp -= 3
			t := inst.tables[ins.a]
			i, v, n := uint64(uint32(s[sp])), s[sp+1], uint64(uint32(s[sp+2]))
			if i+n > uint64(len(t.elems)) {
				trap = TrapTableOutOfBounds
				goto trapped
			}
			for j := i; j < i+n; j++ {
				t.elems[j] = v
			}
		default:
			e.active = false
			return Stop{}, fmt.Errorf("wasm: internal error: opcode %#x reached the interpreter", ins.op)
		}
		continue

	call:
		if callee.code == nil {
			// A VM exit: hand the call to the caller of Run.
			n := len(callee.typ.Params)
			e.args = append(e.args[:0], s[sp-n:sp]...)
			sp -= n
			e.cur = frame{fn, pc, bp}
			e.sp = sp
			e.count += budget - remaining
			e.pending = callee
			return Stop{Reason: StopHostCall, Func: callee, Args: e.args}, nil
		}
		{
			if len(e.frames) >= in.cfg.MaxCallDepth {
				trap = TrapCallStackExhausted
				goto trapped
			}
			ccf := callee.code
			nbp := sp - ccf.numParams
			if need := nbp + ccf.numLocals + ccf.maxHeight; need > len(s) {
				if need > in.cfg.MaxStackValues {
					trap = TrapValueStackExhausted
					goto trapped
				}
				ns := make([]uint64, min(max(2*len(s), need), in.cfg.MaxStackValues))
				copy(ns, s[:sp])
				s = ns
				e.stack = s
			}
			e.frames = append(e.frames, frame{fn, pc, bp})
			clear(s[sp : nbp+ccf.numLocals])
			sp = nbp + ccf.numLocals
			bp = nbp
			fn, cf, code, pc = callee, ccf, ccf.code, 0
			if fn.inst != inst {
				inst = fn.inst
				globals = inst.globals
				memo = inst.mem
				if memo != nil {
					mem = memo.data
				}
			}
		}
	}

trapped:
	e.count += budget - remaining
	e.active = false
	e.frames = e.frames[:0]
	e.sp = 0
	at := pc - 1
	return Stop{}, &Trap{Code: trap, FuncIndex: cf.idx, FuncName: fn.inst.FuncName(cf.idx), Offset: cf.offsets[at]}
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func fill(b []byte, v byte) {
	if len(b) == 0 {
		return
	}
	b[0] = v
	for i := 1; i < len(b); i *= 2 {
		copy(b[i:], b[:i])
	}
}

// fmin and fmax follow WebAssembly: NaN if either operand is NaN, and -0 is
// less than +0.
func fmin(a, b float64) float64 {
	if a != a || b != b {
		return math.NaN()
	}
	return math.Min(a, b)
}

func fmax(a, b float64) float64 {
	if a != a || b != b {
		return math.NaN()
	}
	return math.Max(a, b)
}

// u64ToF32 converts with a single rounding: converting through float64
// would round twice.
func u64ToF32(v uint64) float32 {
	if v < 1<<63 {
		return float32(int64(v))
	}
	// Halve, keeping the lost bit as a sticky bit, convert, double.
	h := v>>1 | v&1
	return float32(int64(h)) * 2
}

// truncate implements the trapping float-to-integer conversions.
func truncate(op byte, v uint64) (uint64, TrapCode) {
	var f float64
	switch op {
	case opcodeI32TruncF32S, opcodeI32TruncF32U, opcodeI64TruncF32S, opcodeI64TruncF32U:
		f = float64(f32(v))
	default:
		f = f64(v)
	}
	if f != f {
		return 0, TrapInvalidConversion
	}
	switch op {
	case opcodeI32TruncF32S, opcodeI32TruncF64S:
		if f <= -2147483649.0 || f >= 2147483648.0 {
			return 0, TrapIntegerOverflow
		}
		return uint64(uint32(int32(f))), 0
	case opcodeI32TruncF32U, opcodeI32TruncF64U:
		if f <= -1.0 || f >= 4294967296.0 {
			return 0, TrapIntegerOverflow
		}
		return uint64(uint32(f)), 0
	case opcodeI64TruncF32S, opcodeI64TruncF64S:
		if f < -9223372036854775808.0 || f >= 9223372036854775808.0 {
			return 0, TrapIntegerOverflow
		}
		return uint64(int64(f)), 0
	default: // opcodeI64TruncF32U, opcodeI64TruncF64U
		if f <= -1.0 || f >= 18446744073709551616.0 {
			return 0, TrapIntegerOverflow
		}
		return f2u64(f), 0
	}
}

// f2u64 converts a float64 in [0, 2^64) to uint64 exactly.
func f2u64(f float64) uint64 {
	if f < 9223372036854775808.0 {
		return uint64(int64(f))
	}
	return uint64(int64(f-9223372036854775808.0)) | 1<<63
}

// truncSat implements the saturating conversions, sub being one of
// opcodeMiscI32TruncSatF32S..opcodeMiscI64TruncSatF64U. Those eight are
// numbered by their types: bit 0 set for unsigned, bit 1 for an f64 operand,
// and the last four have an i64 result.
func truncSat(sub uint32, v uint64) uint64 {
	var f float64
	if sub&2 == 0 {
		f = float64(f32(v))
	} else {
		f = f64(v)
	}
	signed := sub&1 == 0
	if f != f {
		return 0
	}
	if sub < opcodeMiscI64TruncSatF32S {
		if signed {
			switch {
			case f <= -2147483648.0:
				return 1 << 31
			case f >= 2147483647.0:
				return uint64(uint32(math.MaxInt32))
			}
			return uint64(uint32(int32(f)))
		}
		switch {
		case f <= 0:
			return 0
		case f >= 4294967295.0:
			return math.MaxUint32
		}
		return uint64(uint32(f))
	}
	if signed {
		switch {
		case f <= -9223372036854775808.0:
			return 1 << 63
		case f >= 9223372036854775807.0:
			return math.MaxInt64
		}
		return uint64(int64(f))
	}
	switch {
	case f <= 0:
		return 0
	case f >= 18446744073709551615.0:
		return math.MaxUint64
	}
	return f2u64(f)
}
