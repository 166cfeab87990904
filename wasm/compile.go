package wasm

import (
	"crypto/sha256"
	"fmt"
)

// Config bounds what a guest may use. Zero fields take the defaults.
type Config struct {
	// MaxMemoryPages caps linear memory, in 64 KiB pages, below the
	// module's own maximum. Default 16384 (1 GiB).
	MaxMemoryPages uint32
	// MaxCallDepth caps nested calls; deeper recursion traps with
	// TrapCallStackExhausted. Default 20000.
	MaxCallDepth int
	// MaxStackValues caps the value stack (locals and operands of all
	// frames), in 8-byte slots; beyond it a call traps with
	// TrapValueStackExhausted. Default 4 Mi slots (32 MiB).
	MaxStackValues int
	// Engine selects the interpreter (the zero value) or the compiler
	// tier; see Engine.
	Engine Engine
}

// Default limits.
const (
	DefaultMaxMemoryPages = 16384
	DefaultMaxCallDepth   = 20000
	DefaultMaxStackValues = 4 << 20
	// maxTableSize bounds tables, which have no limit of their own in the
	// spec, to keep a hostile module from allocating without bound.
	maxTableSize = 10_000_000
)

func (c Config) withDefaults() Config {
	if c.MaxMemoryPages == 0 {
		c.MaxMemoryPages = DefaultMaxMemoryPages
	}
	if c.MaxCallDepth <= 0 {
		c.MaxCallDepth = DefaultMaxCallDepth
	}
	if c.MaxStackValues <= 0 {
		c.MaxStackValues = DefaultMaxStackValues
	}
	return c
}

// CompiledModule is a decoded, validated module with every function body
// translated to internal code. It is immutable and may be instantiated many
// times.
type CompiledModule struct {
	Module *Module
	// Hash is the SHA-256 of the module binary; snapshots and logs name
	// their module by it.
	Hash  [32]byte
	cfg   Config
	funcs []*compiledFunc // defined functions, in order
	// native: the functions have native code (see jit.go).
	native bool
	// nativeCallees is what native calls need of each function, by
	// function index (see nativeCallee).
	nativeCallees []nativeCallee
}

// compiledFunc is the internal code of one function body.
type compiledFunc struct {
	idx       uint32 // in the function index space
	typ       FuncType
	numParams int
	numLocals int // parameters included
	maxHeight int // most operand-stack slots used at once
	code      []instr
	offsets   []uint32 // module-binary offset of the instruction behind each code entry
	brTargets []brTarget
	native    *nativeFunc // nil: interpreted
}

// Compile decodes, validates and compiles a module.
func Compile(bin []byte, cfg Config) (*CompiledModule, error) {
	m, err := Decode(bin)
	if err != nil {
		return nil, err
	}
	cm := &CompiledModule{Module: m, Hash: sha256.Sum256(bin), cfg: cfg.withDefaults()}
	cm.funcs = make([]*compiledFunc, len(m.Codes))
	var c compiler
	for i := range m.Codes {
		idx := m.NumImportedFuncs + uint32(i)
		f, err := c.compile(m, idx, &m.Codes[i])
		if err != nil {
			return nil, fmt.Errorf("function %d%s: %w", idx, nameSuffix(m, idx), err)
		}
		cm.funcs[i] = f
	}
	if cm.cfg.Engine == EngineCompiler && CompilerAvailable() {
		if err := compileNative(cm); err != nil {
			return nil, fmt.Errorf("wasm: compiler tier: %w", err)
		}
	}
	return cm, nil
}

func nameSuffix(m *Module, idx uint32) string {
	if n, ok := m.FuncNames[idx]; ok {
		return " (" + n + ")"
	}
	return ""
}

// unknown is the type of a value popped from the polymorphic stack of
// unreachable code: it matches every type.
const unknown ValType = 0

type ctrlKind byte

const (
	ctrlFunc ctrlKind = iota
	ctrlBlock
	ctrlLoop
	ctrlIf
	ctrlElse
)

type ctrl struct {
	kind        ctrlKind
	params      []ValType
	results     []ValType
	height      int  // operand height below the block's parameters
	unreachable bool // the rest of the block is dead (after br, return, ...)
	dead        bool // the whole block is dead code: emit nothing
	startPC     int  // loop: branch target
	elseFixup   int  // if: the brUnless to patch at else or end; -1 if none
	fixups      []int
	tableFixups []int
}

func (c *ctrl) labelTypes() []ValType {
	if c.kind == ctrlLoop {
		return c.params
	}
	return c.results
}

// compiler validates one function body and emits its internal code in the
// same pass. Its buffers are reused from function to function.
type compiler struct {
	m         *Module
	f         *compiledFunc
	body      []byte
	base      uint32 // module offset of body[0]
	pos       int
	instrPos  int // position of the instruction being compiled
	locals    []ValType
	vals      []ValType
	ctrls     []ctrl
	maxHeight int
	// barrier is the first code position that may be fused with the
	// instruction before it: positions that branches jump to are not.
	barrier int
}

type validationError struct {
	offset uint32
	msg    string
}

func (e *validationError) Error() string {
	return fmt.Sprintf("at offset 0x%x: %s", e.offset, e.msg)
}

func (c *compiler) errf(format string, args ...any) error {
	return &validationError{offset: c.base + uint32(c.instrPos), msg: fmt.Sprintf(format, args...)}
}

func (c *compiler) compile(m *Module, idx uint32, code *Code) (*compiledFunc, error) {
	typ, ok := m.FuncType(idx)
	if !ok {
		return nil, fmt.Errorf("unknown type")
	}
	*c = compiler{m: m, body: code.Body, base: code.Offset, locals: c.locals[:0], vals: c.vals[:0], ctrls: c.ctrls[:0]}
	c.locals = append(append(c.locals, typ.Params...), code.Locals...)
	c.f = &compiledFunc{idx: idx, typ: typ, numParams: len(typ.Params), numLocals: len(c.locals)}
	c.f.code = make([]instr, 0, len(code.Body))
	c.f.offsets = make([]uint32, 0, len(code.Body))
	c.ctrls = append(c.ctrls, ctrl{kind: ctrlFunc, results: typ.Results, elseFixup: -1})
	if err := c.body_(); err != nil {
		return nil, err
	}
	c.f.maxHeight = c.maxHeight
	return c.f, nil
}

// --- reading immediates ---

func (c *compiler) byte_() (byte, error) {
	if c.pos >= len(c.body) {
		return 0, c.errf("unexpected end of function body")
	}
	b := c.body[c.pos]
	c.pos++
	return b, nil
}

func (c *compiler) u32() (uint32, error) {
	v, n, err := readU32(c.body, c.pos)
	if err != nil {
		return 0, c.errf("%v", err)
	}
	c.pos += n
	return v, nil
}

func (c *compiler) s32() (int32, error) {
	v, n, err := readS32(c.body, c.pos)
	if err != nil {
		return 0, c.errf("%v", err)
	}
	c.pos += n
	return v, nil
}

func (c *compiler) s64() (int64, error) {
	v, n, err := readS64(c.body, c.pos)
	if err != nil {
		return 0, c.errf("%v", err)
	}
	c.pos += n
	return v, nil
}

func (c *compiler) fixed(n int) (uint64, error) {
	if c.pos+n > len(c.body) {
		return 0, c.errf("unexpected end of function body")
	}
	var v uint64
	for i := n - 1; i >= 0; i-- {
		v = v<<8 | uint64(c.body[c.pos+i])
	}
	c.pos += n
	return v, nil
}

// emptyBlockType encodes the block type of a block without parameters or
// results.
const emptyBlockType = 0x40

// blockType reads a block type: empty, one value type, or a type index.
func (c *compiler) blockType() (params, results []ValType, err error) {
	if c.pos >= len(c.body) {
		return nil, nil, c.errf("unexpected end of function body")
	}
	b := c.body[c.pos]
	if b == emptyBlockType {
		c.pos++
		return nil, nil, nil
	}
	if t := ValType(b); isValType(t) {
		c.pos++
		return nil, []ValType{t}, nil
	}
	v, n, e := readS33(c.body, c.pos)
	if e != nil {
		return nil, nil, c.errf("%v", e)
	}
	c.pos += n
	if v < 0 {
		return nil, nil, c.errf("malformed block type")
	}
	if v >= int64(len(c.m.Types)) {
		return nil, nil, c.errf("unknown type %d", v)
	}
	ft := c.m.Types[v]
	return ft.Params, ft.Results, nil
}

func isValType(t ValType) bool {
	switch t {
	case I32, I64, F32, F64, FuncRef, ExternRef:
		return true
	}
	return false
}

func (c *compiler) refType() (ValType, error) {
	b, err := c.byte_()
	if err != nil {
		return 0, err
	}
	if t := ValType(b); t == FuncRef || t == ExternRef {
		return t, nil
	}
	return 0, c.errf("malformed reference type")
}

// --- operand stack ---

func (c *compiler) top() *ctrl { return &c.ctrls[len(c.ctrls)-1] }

func (c *compiler) push(t ValType) {
	c.vals = append(c.vals, t)
	if len(c.vals) > c.maxHeight {
		c.maxHeight = len(c.vals)
	}
}

func (c *compiler) pushAll(ts []ValType) {
	for _, t := range ts {
		c.push(t)
	}
}

func (c *compiler) pop() (ValType, error) {
	t := c.top()
	if len(c.vals) == t.height {
		if t.unreachable {
			return unknown, nil
		}
		return 0, c.errf("type mismatch: operand stack is empty")
	}
	v := c.vals[len(c.vals)-1]
	c.vals = c.vals[:len(c.vals)-1]
	return v, nil
}

func (c *compiler) popWant(want ValType) (ValType, error) {
	got, err := c.pop()
	if err != nil {
		return 0, err
	}
	if got != want && got != unknown && want != unknown {
		return 0, c.errf("type mismatch: expected %v, found %v", want, got)
	}
	return got, nil
}

func (c *compiler) popAll(ts []ValType) error {
	for i := len(ts) - 1; i >= 0; i-- {
		if _, err := c.popWant(ts[i]); err != nil {
			return err
		}
	}
	return nil
}

// --- emission ---

func (c *compiler) emitting() bool {
	t := c.top()
	return !t.unreachable && !t.dead
}

func (c *compiler) emit(op opcode, a uint32, b uint64) int {
	if !c.emitting() {
		return -1
	}
	in := instr{op: op, a: a, b: b}
	// Fusing may enable another fusion with the instruction before; the
	// fused instruction keeps the offset of the last one, the only one of
	// each pair that can trap.
	for {
		fused, ok := c.fuse(in)
		if !ok {
			break
		}
		c.f.code = c.f.code[:len(c.f.code)-1]
		c.f.offsets = c.f.offsets[:len(c.f.offsets)-1]
		in = fused
	}
	c.f.code = append(c.f.code, in)
	c.f.offsets = append(c.f.offsets, c.base+uint32(c.instrPos))
	return len(c.f.code) - 1
}

func (c *compiler) pc() int { return len(c.f.code) }

// target marks the current position as a branch target, which the
// peephole must not fuse across.
func (c *compiler) target() { c.barrier = c.pc() }

// fuse returns the superinstruction that the previous instruction and
// next make together, if they make one and no branch lands between them.
func (c *compiler) fuse(next instr) (instr, bool) {
	last := len(c.f.code) - 1
	if last < c.barrier || last < 0 {
		return instr{}, false
	}
	p := c.f.code[last]
	op, a, b := next.op, next.a, next.b
	switch {
	case p.op == opcodeI32WrapI64 && op >= opcodeI32Load && op <= opcodeI64Load32U:
		// i32.wrap_i64 before a load: the load uses only the low 32 bits
		// of its address anyway.
		return next, true
	case p.op == opLocalGet && op == opLocalGet:
		return instr{op: opLocalGet2, a: p.a, b: uint64(a)}, true
	case p.op == opLocalGet && op == opConst:
		return instr{op: opLocalGetConst, a: p.a, b: b}, true
	case p.op == opLocalSet && op == opLocalGet:
		return instr{op: opLocalSetGet, a: p.a, b: uint64(a)}, true
	case p.op == opConst && op == opcodeI32Add:
		return instr{op: opI32AddConst, b: p.b}, true
	case p.op == opConst && op == opcodeI64Add:
		return instr{op: opI64AddConst, b: p.b}, true
	case p.op == opLocalGetConst && op == opcodeI32Add:
		return instr{op: opLocalI32AddConst, a: p.a, b: p.b}, true
	case p.op == opLocalGetConst && op == opcodeI64Add:
		return instr{op: opLocalI64AddConst, a: p.a, b: p.b}, true
	case p.op == opLocalGet && op == opcodeI32Load:
		return instr{op: opLocalI32Load, a: p.a, b: b}, true
	case p.op == opLocalGet && op == opcodeI64Load:
		return instr{op: opLocalI64Load, a: p.a, b: b}, true
	case p.op == opcodeI32Eqz && op == opBrUnless: // i32.eqz; if
		return instr{op: opBrIf, a: a}, true
	case p.op == opcodeI32Eqz && op == opBrIf: // i32.eqz; br_if
		return instr{op: opBrUnless, a: a}, true
	}
	return instr{}, false
}

func (c *compiler) pushCtrl(kind ctrlKind, params, results []ValType) {
	dead := !c.emitting()
	if kind == ctrlLoop {
		c.target()
	}
	c.ctrls = append(c.ctrls, ctrl{
		kind: kind, params: params, results: results,
		height: len(c.vals), dead: dead, startPC: c.pc(), elseFixup: -1,
	})
	c.pushAll(params)
}

func (c *compiler) setUnreachable() {
	t := c.top()
	c.vals = c.vals[:t.height]
	t.unreachable = true
}

// branch computes the stack adjustment of a branch to label depth l with the
// current operand height.
func (c *compiler) branchAdjust(l uint32) (target *ctrl, drop, keep int) {
	target = &c.ctrls[len(c.ctrls)-1-int(l)]
	keep = len(target.labelTypes())
	drop = len(c.vals) - keep - target.height
	return target, drop, keep
}

// emitBranch emits an unconditional (cond false) or conditional branch to
// label l, for the current operand height.
func (c *compiler) emitBranch(l uint32, cond bool) {
	if !c.emitting() {
		return
	}
	target, drop, keep := c.branchAdjust(l)
	if target.kind == ctrlFunc && !cond {
		c.emit(opReturn, 0, 0)
		return
	}
	var at int
	switch {
	case drop == 0 && !cond:
		at = c.emit(opBr, 0, 0)
	case drop == 0:
		at = c.emit(opBrIf, 0, 0)
	case !cond:
		at = c.emit(opBrDrop, 0, uint64(keep)<<32|uint64(drop))
	default:
		at = c.emit(opBrIfDrop, 0, uint64(keep)<<32|uint64(drop))
	}
	if target.kind == ctrlLoop {
		c.f.code[at].a = uint32(target.startPC)
	} else {
		target.fixups = append(target.fixups, at)
	}
}

func (c *compiler) labelCheck(l uint32) error {
	if int(l) >= len(c.ctrls) {
		return c.errf("unknown label %d", l)
	}
	return nil
}

// --- the body ---

func (c *compiler) body_() error {
	for {
		if c.pos >= len(c.body) {
			return c.errf("unexpected end of function body: missing end")
		}
		c.instrPos = c.pos
		op := c.body[c.pos]
		c.pos++
		done, err := c.instr(op)
		if err != nil {
			return err
		}
		if done {
			if c.pos != len(c.body) {
				c.instrPos = c.pos
				return c.errf("operators remaining after end of function")
			}
			return nil
		}
	}
}

// instr validates and compiles one instruction; done reports the function's
// final end.
func (c *compiler) instr(op byte) (done bool, err error) {
	m := c.m
	switch op {
	case opcodeUnreachable:
		c.emit(opUnreachable, 0, 0)
		c.setUnreachable()
	case opcodeNop:
	case opcodeBlock, opcodeLoop:
		params, results, err := c.blockType()
		if err != nil {
			return false, err
		}
		if err := c.popAll(params); err != nil {
			return false, err
		}
		kind := ctrlBlock
		if op == opcodeLoop {
			kind = ctrlLoop
		}
		c.pushCtrl(kind, params, results)
	case opcodeIf:
		params, results, err := c.blockType()
		if err != nil {
			return false, err
		}
		if _, err := c.popWant(I32); err != nil {
			return false, err
		}
		if err := c.popAll(params); err != nil {
			return false, err
		}
		at := c.emit(opBrUnless, 0, 0)
		c.pushCtrl(ctrlIf, params, results)
		c.top().elseFixup = at
	case opcodeElse:
		t := c.top()
		if t.kind != ctrlIf {
			return false, c.errf("else without matching if")
		}
		if err := c.endCheck(); err != nil {
			return false, err
		}
		if at := c.emit(opBr, 0, 0); at >= 0 {
			t.fixups = append(t.fixups, at)
		}
		if t.elseFixup >= 0 {
			c.f.code[t.elseFixup].a = uint32(c.pc())
			t.elseFixup = -1
		}
		c.target()
		t.kind = ctrlElse
		t.unreachable = false
		c.vals = c.vals[:t.height]
		c.pushAll(t.params)
	case opcodeEnd:
		t := c.top()
		if err := c.endCheck(); err != nil {
			return false, err
		}
		if t.kind == ctrlIf && !sameTypes(t.params, t.results) {
			return false, c.errf("type mismatch: if without else must leave its parameters unchanged")
		}
		if t.kind == ctrlFunc {
			t.unreachable = false
			c.emit(opReturn, 0, 0)
			c.patch(t, c.pc()-1)
			return true, nil
		}
		end := c.pc()
		c.target()
		if t.elseFixup >= 0 {
			c.f.code[t.elseFixup].a = uint32(end)
		}
		c.patch(t, end)
		results := t.results
		c.vals = c.vals[:t.height]
		c.ctrls = c.ctrls[:len(c.ctrls)-1]
		c.pushAll(results)
	case opcodeBr:
		l, err := c.u32()
		if err != nil {
			return false, err
		}
		if err := c.labelCheck(l); err != nil {
			return false, err
		}
		lt := c.ctrls[len(c.ctrls)-1-int(l)].labelTypes()
		if err := c.popAll(lt); err != nil {
			return false, err
		}
		c.pushAll(lt)
		c.emitBranch(l, false)
		c.setUnreachable()
	case opcodeBrIf:
		l, err := c.u32()
		if err != nil {
			return false, err
		}
		if err := c.labelCheck(l); err != nil {
			return false, err
		}
		if _, err := c.popWant(I32); err != nil {
			return false, err
		}
		lt := c.ctrls[len(c.ctrls)-1-int(l)].labelTypes()
		if err := c.popAll(lt); err != nil {
			return false, err
		}
		c.pushAll(lt)
		c.emitBranch(l, true)
	case opcodeBrTable:
		return false, c.brTable()
	case opcodeReturn:
		if err := c.popAll(c.ctrls[0].results); err != nil {
			return false, err
		}
		c.emit(opReturn, 0, 0)
		c.setUnreachable()
	case opcodeCall:
		f, err := c.u32()
		if err != nil {
			return false, err
		}
		ft, ok := m.FuncType(f)
		if !ok {
			return false, c.errf("unknown function %d", f)
		}
		if err := c.popAll(ft.Params); err != nil {
			return false, err
		}
		c.emit(opCall, f, 0)
		c.pushAll(ft.Results)
	case opcodeCallIndirect:
		ti, err := c.u32()
		if err != nil {
			return false, err
		}
		tab, err := c.u32()
		if err != nil {
			return false, err
		}
		tt, ok := c.table(tab)
		if !ok {
			return false, c.errf("unknown table %d", tab)
		}
		if tt.Elem != FuncRef {
			return false, c.errf("type mismatch: call_indirect on a table of %v", tt.Elem)
		}
		if ti >= uint32(len(m.Types)) {
			return false, c.errf("unknown type %d", ti)
		}
		if _, err := c.popWant(I32); err != nil {
			return false, err
		}
		ft := m.Types[ti]
		if err := c.popAll(ft.Params); err != nil {
			return false, err
		}
		c.emit(opCallIndirect, ti, uint64(tab))
		c.pushAll(ft.Results)
	case opcodeDrop:
		if _, err := c.pop(); err != nil {
			return false, err
		}
		c.emit(opDrop, 0, 0)
	case opcodeSelect, opcodeSelectT:
		var want ValType = unknown
		if op == opcodeSelectT {
			n, err := c.u32()
			if err != nil {
				return false, err
			}
			if n != 1 {
				return false, c.errf("invalid result arity for select")
			}
			b, err := c.byte_()
			if err != nil {
				return false, err
			}
			want = ValType(b)
			if !isValType(want) {
				return false, c.errf("malformed value type")
			}
		}
		if _, err := c.popWant(I32); err != nil {
			return false, err
		}
		t1, err := c.popWant(want)
		if err != nil {
			return false, err
		}
		t2, err := c.popWant(want)
		if err != nil {
			return false, err
		}
		if op == opcodeSelect {
			if t1.IsRef() || t2.IsRef() {
				return false, c.errf("type mismatch: select without a type on reference operands")
			}
			if t1 != t2 && t1 != unknown && t2 != unknown {
				return false, c.errf("type mismatch: select operands %v and %v", t1, t2)
			}
			if t1 == unknown {
				t1 = t2
			}
			want = t1
		}
		c.emit(opSelect, 0, 0)
		c.push(want)
	case opcodeLocalGet, opcodeLocalSet, opcodeLocalTee:
		i, err := c.u32()
		if err != nil {
			return false, err
		}
		if i >= uint32(len(c.locals)) {
			return false, c.errf("unknown local %d", i)
		}
		t := c.locals[i]
		if op == opcodeLocalGet {
			c.push(t)
		} else {
			if _, err := c.popWant(t); err != nil {
				return false, err
			}
			if op == opcodeLocalTee {
				c.push(t)
			}
		}
		c.emit(opcode(op), i, 0)
	case opcodeGlobalGet, opcodeGlobalSet:
		i, err := c.u32()
		if err != nil {
			return false, err
		}
		gt, ok := c.global(i)
		if !ok {
			return false, c.errf("unknown global %d", i)
		}
		if op == opcodeGlobalGet {
			c.push(gt.Type)
		} else {
			if !gt.Mutable {
				return false, c.errf("global is immutable")
			}
			if _, err := c.popWant(gt.Type); err != nil {
				return false, err
			}
		}
		c.emit(opcode(op), i, 0)
	case opcodeTableGet, opcodeTableSet:
		i, err := c.u32()
		if err != nil {
			return false, err
		}
		tt, ok := c.table(i)
		if !ok {
			return false, c.errf("unknown table %d", i)
		}
		if op == opcodeTableGet {
			if _, err := c.popWant(I32); err != nil {
				return false, err
			}
			c.push(tt.Elem)
		} else {
			if _, err := c.popWant(tt.Elem); err != nil {
				return false, err
			}
			if _, err := c.popWant(I32); err != nil {
				return false, err
			}
		}
		c.emit(opcode(op), i, 0)
	case opcodeI32Load, opcodeI64Load, opcodeF32Load, opcodeF64Load,
		opcodeI32Load8S, opcodeI32Load8U, opcodeI32Load16S, opcodeI32Load16U,
		opcodeI64Load8S, opcodeI64Load8U, opcodeI64Load16S, opcodeI64Load16U,
		opcodeI64Load32S, opcodeI64Load32U:
		t, size := loadType(op)
		off, err := c.memarg(size)
		if err != nil {
			return false, err
		}
		if _, err := c.popWant(I32); err != nil {
			return false, err
		}
		c.push(t)
		c.emit(opcode(op), 0, uint64(off))
	case opcodeI32Store, opcodeI64Store, opcodeF32Store, opcodeF64Store,
		opcodeI32Store8, opcodeI32Store16,
		opcodeI64Store8, opcodeI64Store16, opcodeI64Store32:
		t, size := storeType(op)
		off, err := c.memarg(size)
		if err != nil {
			return false, err
		}
		if _, err := c.popWant(t); err != nil {
			return false, err
		}
		if _, err := c.popWant(I32); err != nil {
			return false, err
		}
		c.emit(opcode(op), 0, uint64(off))
	case opcodeMemorySize, opcodeMemoryGrow:
		b, err := c.byte_()
		if err != nil {
			return false, err
		}
		if b != 0 {
			return false, c.errf("zero byte expected")
		}
		if !c.hasMemory() {
			return false, c.errf("unknown memory 0")
		}
		if op == opcodeMemoryGrow {
			if _, err := c.popWant(I32); err != nil {
				return false, err
			}
		}
		c.push(I32)
		c.emit(opcode(op), 0, 0)
	case opcodeI32Const:
		v, err := c.s32()
		if err != nil {
			return false, err
		}
		c.push(I32)
		c.emit(opConst, 0, uint64(uint32(v)))
	case opcodeI64Const:
		v, err := c.s64()
		if err != nil {
			return false, err
		}
		c.push(I64)
		c.emit(opConst, 0, uint64(v))
	case opcodeF32Const:
		v, err := c.fixed(4)
		if err != nil {
			return false, err
		}
		c.push(F32)
		c.emit(opConst, 0, v)
	case opcodeF64Const:
		v, err := c.fixed(8)
		if err != nil {
			return false, err
		}
		c.push(F64)
		c.emit(opConst, 0, v)
	case opcodeRefNull:
		t, err := c.refType()
		if err != nil {
			return false, err
		}
		c.push(t)
		c.emit(opConst, 0, 0)
	case opcodeRefIsNull:
		t, err := c.pop()
		if err != nil {
			return false, err
		}
		if t != unknown && !t.IsRef() {
			return false, c.errf("type mismatch: ref.is_null on %v", t)
		}
		c.push(I32)
		c.emit(opRefIsNull, 0, 0)
	case opcodeRefFunc:
		f, err := c.u32()
		if err != nil {
			return false, err
		}
		if _, ok := m.FuncType(f); !ok {
			return false, c.errf("unknown function %d", f)
		}
		if !m.DeclaredFuncRefs[f] {
			return false, c.errf("undeclared function reference %d", f)
		}
		c.push(FuncRef)
		c.emit(opRefFunc, f, 0)
	case opcodeMiscPrefix:
		return false, c.prefixed()
	case opcodeVecPrefix:
		return false, c.errf("illegal opcode 0xfd: a SIMD instruction (SIMD is not supported: build the guest without it, e.g. without clang's -msimd128)")
	default:
		if op >= opcodeI32Eqz && op <= opcodeI64Extend32S {
			a, b, r, n := numericSig(op)
			if n == 0 {
				return false, c.errf("illegal opcode 0x%02x", op)
			}
			if n == 2 {
				if _, err := c.popWant(b); err != nil {
					return false, err
				}
			}
			if _, err := c.popWant(a); err != nil {
				return false, err
			}
			c.push(r)
			switch op {
			case opcodeI64ExtendI32U,
				opcodeI32ReinterpretF32, opcodeI64ReinterpretF64,
				opcodeF32ReinterpretI32, opcodeF64ReinterpretI64:
				// These change no bits: i32 and f32 values are kept
				// zero-extended.
			default:
				c.emit(opcode(op), 0, 0)
			}
			return false, nil
		}
		return false, c.errf("illegal opcode 0x%02x", op)
	}
	return false, nil
}

// endCheck validates the operand stack at the end of a block (or at else).
func (c *compiler) endCheck() error {
	t := c.top()
	if err := c.popAll(t.results); err != nil {
		return err
	}
	if len(c.vals) != t.height {
		return c.errf("type mismatch: %d values remain at the end of a block", len(c.vals)-t.height)
	}
	c.pushAll(t.results)
	return nil
}

func (c *compiler) patch(t *ctrl, end int) {
	for _, at := range t.fixups {
		c.f.code[at].a = uint32(end)
	}
	for _, at := range t.tableFixups {
		c.f.brTargets[at].pc = uint32(end)
	}
}

func sameTypes(a, b []ValType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (c *compiler) brTable() error {
	n, err := c.u32()
	if err != nil {
		return err
	}
	if uint64(n) > uint64(len(c.body)-c.pos) {
		return c.errf("br_table: %d labels but the body ends sooner", n)
	}
	labels := make([]uint32, n+1)
	for i := range labels {
		if labels[i], err = c.u32(); err != nil {
			return err
		}
		if err := c.labelCheck(labels[i]); err != nil {
			return err
		}
	}
	if _, err := c.popWant(I32); err != nil {
		return err
	}
	def := c.ctrls[len(c.ctrls)-1-int(labels[n])].labelTypes()
	arity := len(def)
	for _, l := range labels {
		lt := c.ctrls[len(c.ctrls)-1-int(l)].labelTypes()
		if len(lt) != arity {
			return c.errf("type mismatch: br_table targets of different arity")
		}
		// Each target must accept the operands; on a polymorphic stack the
		// operands take the types of each target in turn.
		popped := make([]ValType, 0, arity)
		for i := len(lt) - 1; i >= 0; i-- {
			v, err := c.popWant(lt[i])
			if err != nil {
				return err
			}
			popped = append(popped, v)
		}
		for i := len(popped) - 1; i >= 0; i-- {
			c.push(popped[i])
		}
	}
	if c.emitting() {
		first := len(c.f.brTargets)
		for _, l := range labels {
			target, drop, keep := c.branchAdjust(l)
			bt := brTarget{drop: uint32(drop), keep: uint32(keep)}
			if target.kind == ctrlLoop {
				bt.pc = uint32(target.startPC)
			} else {
				target.tableFixups = append(target.tableFixups, len(c.f.brTargets))
			}
			c.f.brTargets = append(c.f.brTargets, bt)
		}
		c.emit(opBrTable, uint32(first), uint64(len(labels)))
	}
	c.setUnreachable()
	return nil
}

func (c *compiler) prefixed() error {
	sub, err := c.u32()
	if err != nil {
		return err
	}
	m := c.m
	switch {
	case sub <= opcodeMiscI64TruncSatF64U:
		// The eight saturating truncations are numbered by their types:
		// bit 1 set for an f64 operand, the last four for an i64 result.
		in, out := F32, I32
		if sub&2 != 0 {
			in = F64
		}
		if sub >= opcodeMiscI64TruncSatF32S {
			out = I64
		}
		if _, err := c.popWant(in); err != nil {
			return err
		}
		c.push(out)
		c.emit(opTruncSat, sub, 0)
	case sub == opcodeMiscMemoryInit:
		d, err := c.u32()
		if err != nil {
			return err
		}
		b, err := c.byte_()
		if err != nil {
			return err
		}
		if b != 0 {
			return c.errf("zero byte expected")
		}
		if !c.hasMemory() {
			return c.errf("unknown memory 0")
		}
		if err := c.dataIndex(d); err != nil {
			return err
		}
		if err := c.popAll([]ValType{I32, I32, I32}); err != nil {
			return err
		}
		c.emit(opMemoryInit, d, 0)
	case sub == opcodeMiscDataDrop:
		d, err := c.u32()
		if err != nil {
			return err
		}
		if err := c.dataIndex(d); err != nil {
			return err
		}
		c.emit(opDataDrop, d, 0)
	case sub == opcodeMiscMemoryCopy || sub == opcodeMiscMemoryFill:
		nz := 2
		if sub == opcodeMiscMemoryFill {
			nz = 1
		}
		for range nz {
			b, err := c.byte_()
			if err != nil {
				return err
			}
			if b != 0 {
				return c.errf("zero byte expected")
			}
		}
		if !c.hasMemory() {
			return c.errf("unknown memory 0")
		}
		if err := c.popAll([]ValType{I32, I32, I32}); err != nil {
			return err
		}
		if sub == opcodeMiscMemoryCopy {
			c.emit(opMemoryCopy, 0, 0)
		} else {
			c.emit(opMemoryFill, 0, 0)
		}
	case sub == opcodeMiscTableInit:
		e, err := c.u32()
		if err != nil {
			return err
		}
		t, err := c.u32()
		if err != nil {
			return err
		}
		tt, ok := c.table(t)
		if !ok {
			return c.errf("unknown table %d", t)
		}
		if e >= uint32(len(m.Elems)) {
			return c.errf("unknown elem segment %d", e)
		}
		if m.Elems[e].Type != tt.Elem {
			return c.errf("type mismatch: table.init of %v into a table of %v", m.Elems[e].Type, tt.Elem)
		}
		if err := c.popAll([]ValType{I32, I32, I32}); err != nil {
			return err
		}
		c.emit(opTableInit, e, uint64(t))
	case sub == opcodeMiscElemDrop:
		e, err := c.u32()
		if err != nil {
			return err
		}
		if e >= uint32(len(m.Elems)) {
			return c.errf("unknown elem segment %d", e)
		}
		c.emit(opElemDrop, e, 0)
	case sub == opcodeMiscTableCopy:
		dst, err := c.u32()
		if err != nil {
			return err
		}
		src, err := c.u32()
		if err != nil {
			return err
		}
		dt, ok := c.table(dst)
		if !ok {
			return c.errf("unknown table %d", dst)
		}
		st, ok := c.table(src)
		if !ok {
			return c.errf("unknown table %d", src)
		}
		if dt.Elem != st.Elem {
			return c.errf("type mismatch: table.copy from %v to %v", st.Elem, dt.Elem)
		}
		if err := c.popAll([]ValType{I32, I32, I32}); err != nil {
			return err
		}
		c.emit(opTableCopy, dst, uint64(src))
	case sub == opcodeMiscTableGrow || sub == opcodeMiscTableSize || sub == opcodeMiscTableFill:
		t, err := c.u32()
		if err != nil {
			return err
		}
		tt, ok := c.table(t)
		if !ok {
			return c.errf("unknown table %d", t)
		}
		switch sub {
		case opcodeMiscTableGrow:
			if err := c.popAll([]ValType{tt.Elem, I32}); err != nil {
				return err
			}
			c.push(I32)
			c.emit(opTableGrow, t, 0)
		case opcodeMiscTableSize:
			c.push(I32)
			c.emit(opTableSize, t, 0)
		case opcodeMiscTableFill:
			if err := c.popAll([]ValType{I32, tt.Elem, I32}); err != nil {
				return err
			}
			c.emit(opTableFill, t, 0)
		}
	default:
		return c.errf("illegal opcode 0xfc %d", sub)
	}
	return nil
}

func (c *compiler) dataIndex(d uint32) error {
	if c.m.DataCount == nil {
		return c.errf("data count section required")
	}
	if d >= *c.m.DataCount {
		return c.errf("unknown data segment %d", d)
	}
	return nil
}

func (c *compiler) memarg(size uint32) (uint32, error) {
	align, err := c.u32()
	if err != nil {
		return 0, err
	}
	off, err := c.u32()
	if err != nil {
		return 0, err
	}
	if !c.hasMemory() {
		return 0, c.errf("unknown memory 0")
	}
	if align >= 32 || 1<<align > size {
		return 0, c.errf("alignment must not be larger than natural")
	}
	return off, nil
}

func (c *compiler) hasMemory() bool {
	return c.m.NumImportedMemories+uint32(len(c.m.Memories)) > 0
}

func (c *compiler) table(i uint32) (TableType, bool) {
	return tableType(c.m, i)
}

func tableType(m *Module, i uint32) (TableType, bool) {
	if i < m.NumImportedTables {
		n := uint32(0)
		for _, im := range m.Imports {
			if im.Kind == ExternTable {
				if n == i {
					return im.Table, true
				}
				n++
			}
		}
	}
	j := i - m.NumImportedTables
	if j < uint32(len(m.Tables)) {
		return m.Tables[j], true
	}
	return TableType{}, false
}

func (c *compiler) global(i uint32) (GlobalType, bool) {
	return globalType(c.m, i)
}

func globalType(m *Module, i uint32) (GlobalType, bool) {
	if i < m.NumImportedGlobals {
		n := uint32(0)
		for _, im := range m.Imports {
			if im.Kind == ExternGlobal {
				if n == i {
					return im.Global, true
				}
				n++
			}
		}
	}
	j := i - m.NumImportedGlobals
	if j < uint32(len(m.Globals)) {
		return m.Globals[j].Type, true
	}
	return GlobalType{}, false
}

func loadType(op byte) (ValType, uint32) {
	switch op {
	case opcodeI32Load:
		return I32, 4
	case opcodeI64Load:
		return I64, 8
	case opcodeF32Load:
		return F32, 4
	case opcodeF64Load:
		return F64, 8
	case opcodeI32Load8S, opcodeI32Load8U:
		return I32, 1
	case opcodeI32Load16S, opcodeI32Load16U:
		return I32, 2
	case opcodeI64Load8S, opcodeI64Load8U:
		return I64, 1
	case opcodeI64Load16S, opcodeI64Load16U:
		return I64, 2
	default: // opcodeI64Load32S, opcodeI64Load32U
		return I64, 4
	}
}

func storeType(op byte) (ValType, uint32) {
	switch op {
	case opcodeI32Store:
		return I32, 4
	case opcodeI64Store:
		return I64, 8
	case opcodeF32Store:
		return F32, 4
	case opcodeF64Store:
		return F64, 8
	case opcodeI32Store8:
		return I32, 1
	case opcodeI32Store16:
		return I32, 2
	case opcodeI64Store8:
		return I64, 1
	case opcodeI64Store16:
		return I64, 2
	default: // opcodeI64Store32
		return I64, 4
	}
}

// numericSig returns the operand types a (and b when n == 2) and the result
// type of a numeric instruction; n is 0 for an opcode that is not one.
func numericSig(op byte) (a, b, r ValType, n int) {
	switch {
	case op == opcodeI32Eqz:
		return I32, 0, I32, 1
	case op <= opcodeI32GeU:
		return I32, I32, I32, 2
	case op == opcodeI64Eqz:
		return I64, 0, I32, 1
	case op <= opcodeI64GeU:
		return I64, I64, I32, 2
	case op <= opcodeF32Ge:
		return F32, F32, I32, 2
	case op <= opcodeF64Ge:
		return F64, F64, I32, 2
	case op <= opcodeI32Popcnt:
		return I32, 0, I32, 1
	case op <= opcodeI32Rotr:
		return I32, I32, I32, 2
	case op <= opcodeI64Popcnt:
		return I64, 0, I64, 1
	case op <= opcodeI64Rotr:
		return I64, I64, I64, 2
	case op <= opcodeF32Sqrt:
		return F32, 0, F32, 1
	case op <= opcodeF32Copysign:
		return F32, F32, F32, 2
	case op <= opcodeF64Sqrt:
		return F64, 0, F64, 1
	case op <= opcodeF64Copysign:
		return F64, F64, F64, 2
	}
	switch op {
	case opcodeI32WrapI64:
		return I64, 0, I32, 1
	case opcodeI32TruncF32S, opcodeI32TruncF32U:
		return F32, 0, I32, 1
	case opcodeI32TruncF64S, opcodeI32TruncF64U:
		return F64, 0, I32, 1
	case opcodeI64ExtendI32S, opcodeI64ExtendI32U:
		return I32, 0, I64, 1
	case opcodeI64TruncF32S, opcodeI64TruncF32U:
		return F32, 0, I64, 1
	case opcodeI64TruncF64S, opcodeI64TruncF64U:
		return F64, 0, I64, 1
	case opcodeF32ConvertI32S, opcodeF32ConvertI32U:
		return I32, 0, F32, 1
	case opcodeF32ConvertI64S, opcodeF32ConvertI64U:
		return I64, 0, F32, 1
	case opcodeF32DemoteF64:
		return F64, 0, F32, 1
	case opcodeF64ConvertI32S, opcodeF64ConvertI32U:
		return I32, 0, F64, 1
	case opcodeF64ConvertI64S, opcodeF64ConvertI64U:
		return I64, 0, F64, 1
	case opcodeF64PromoteF32:
		return F32, 0, F64, 1
	case opcodeI32ReinterpretF32:
		return F32, 0, I32, 1
	case opcodeI64ReinterpretF64:
		return F64, 0, I64, 1
	case opcodeF32ReinterpretI32:
		return I32, 0, F32, 1
	case opcodeF64ReinterpretI64:
		return I64, 0, F64, 1
	case opcodeI32Extend8S, opcodeI32Extend16S:
		return I32, 0, I32, 1
	case opcodeI64Extend8S, opcodeI64Extend16S, opcodeI64Extend32S:
		return I64, 0, I64, 1
	}
	return 0, 0, 0, 0
}

// MemoryLimit returns the most 64 KiB pages the memory an instance of cm
// defines may grow to (its declared maximum, capped by the engine's
// Config), and false if cm defines no memory.
func (cm *CompiledModule) MemoryLimit() (pages uint32, ok bool) {
	if len(cm.Module.Memories) == 0 {
		return 0, false
	}
	lim := cm.Module.Memories[0]
	max := uint32(65536)
	if lim.HasMax {
		max = lim.Max
	}
	return min(max, cm.cfg.MaxMemoryPages), true
}
