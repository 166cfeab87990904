package wasm

import (
	"fmt"
)

// Extern is something an instance imports or exports: a *Function, *Table,
// *Memory or *Global.
type Extern interface{ isExtern() }

// Function is a function instance: either defined by a module instance or a
// host function whose calls stop Run with StopHostCall.
type Function struct {
	// Module and Name name a host function (the import it satisfies).
	Module, Name string

	typ    FuncType
	typeID uint32 // canonical within the store
	inst   *Instance
	code   *compiledFunc // nil for a host function
	ref    uint64        // funcref value: index in the store plus one
	store  *Store
}

func (*Function) isExtern() {}

// NewHostFunc returns a host function: a call of it from WebAssembly stops
// Run with StopHostCall.
func NewHostFunc(module, name string, typ FuncType) *Function {
	return &Function{Module: module, Name: name, typ: typ}
}

// Type returns the function's signature.
func (f *Function) Type() FuncType { return f.typ }

// IsHost reports whether f is a host function.
func (f *Function) IsHost() bool { return f.code == nil }

// Index returns a module function's index in its instance's function index
// space; for host functions it returns 0.
func (f *Function) Index() uint32 {
	if f.code == nil {
		return 0
	}
	return f.code.idx
}

// Global is a global variable instance.
type Global struct {
	typ GlobalType
	val uint64
}

func (*Global) isExtern() {}

// NewGlobal returns a global holding v.
func NewGlobal(t GlobalType, v uint64) *Global { return &Global{typ: t, val: normalize(t.Type, v)} }

// Get returns the global's value.
func (g *Global) Get() uint64 { return g.val }

// Set sets the global's value.
func (g *Global) Set(v uint64) { g.val = normalize(g.typ.Type, v) }

// normalize keeps i32 and f32 values zero-extended, as the interpreter
// assumes (it elides i64.extend_i32_u and reinterpretations).
func normalize(t ValType, v uint64) uint64 {
	if t == I32 || t == F32 {
		return uint64(uint32(v))
	}
	return v
}

// Type returns the global's type.
func (g *Global) Type() GlobalType { return g.typ }

// Table is a table instance: a vector of references (funcref values are
// store indices plus one, externref values are host values plus one; zero
// is null).
type Table struct {
	typ   TableType
	elems []uint64
}

func (*Table) isExtern() {}

// NewTable returns a table of typ.Limits.Min null references.
func NewTable(typ TableType) *Table {
	return &Table{typ: typ, elems: make([]uint64, typ.Limits.Min)}
}

// Type returns the table's type with its current size as minimum.
func (t *Table) Type() TableType {
	tt := t.typ
	tt.Limits.Min = uint32(len(t.elems))
	return tt
}

// Len returns the table's size.
func (t *Table) Len() uint32 { return uint32(len(t.elems)) }

func (t *Table) grow(n uint32, init uint64) int32 {
	old := uint32(len(t.elems))
	max := uint64(maxTableSize)
	if t.typ.Limits.HasMax && uint64(t.typ.Limits.Max) < max {
		max = uint64(t.typ.Limits.Max)
	}
	if uint64(old)+uint64(n) > max {
		return -1
	}
	for range n {
		t.elems = append(t.elems, init)
	}
	return int32(old)
}

// Store holds the function instances that references may name; instances
// that share functions, tables or memories must share a store.
type Store struct {
	funcs   []*Function
	typeIDs map[string]uint32
}

// NewStore returns an empty store.
func NewStore() *Store {
	return &Store{typeIDs: map[string]uint32{}}
}

func (s *Store) typeID(ft FuncType) uint32 {
	k := ft.key()
	id, ok := s.typeIDs[k]
	if !ok {
		id = uint32(len(s.typeIDs))
		s.typeIDs[k] = id
	}
	return id
}

func (s *Store) register(f *Function) error {
	if f.store == s {
		return nil
	}
	if f.store != nil {
		return fmt.Errorf("function %s.%s belongs to another store", f.Module, f.Name)
	}
	f.store = s
	f.typeID = s.typeID(f.typ)
	s.funcs = append(s.funcs, f)
	f.ref = uint64(len(s.funcs))
	return nil
}

// funcByRef returns the function a non-null funcref names.
func (s *Store) funcByRef(ref uint64) *Function {
	if ref == 0 || ref > uint64(len(s.funcs)) {
		return nil
	}
	return s.funcs[ref-1]
}

// LinkError reports an import that cannot be satisfied.
type LinkError struct {
	Module, Name string
	Msg          string
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("link %s.%s: %s", e.Module, e.Name, e.Msg)
}

// Resolver supplies the extern for each import of a module being
// instantiated.
type Resolver func(imp Import) (Extern, error)

// Instance is a module instance together with the execution state of the
// call running in it.
type Instance struct {
	store   *Store
	cm      *CompiledModule
	cfg     Config
	funcs   []*Function
	tables  []*Table
	mem     *Memory
	globals []*Global
	typeIDs []uint32   // canonical ids of the module's types
	datas   [][]byte   // nil once dropped
	elems   [][]uint64 // nil once dropped
	exports map[string]Extern
	start   *Function

	exec execState
}

// Instantiate links cm's imports through resolve, allocates the instance and
// applies its active element and data segments. It does not run the start
// function: see StartFunc. A missing or mismatched import gives a
// *LinkError; a segment out of bounds gives a *Trap.
func (s *Store) Instantiate(cm *CompiledModule, resolve Resolver) (*Instance, error) {
	in, err := s.allocate(cm, resolve)
	if err != nil {
		return nil, err
	}
	if err := in.initSegments(); err != nil {
		return nil, err
	}
	return in, nil
}

// allocate creates the instance without applying segments (Restore needs
// that: the segments' effects are part of the snapshot).
func (s *Store) allocate(cm *CompiledModule, resolve Resolver) (*Instance, error) {
	m := cm.Module
	in := &Instance{store: s, cm: cm, cfg: cm.cfg, exports: map[string]Extern{}}
	in.typeIDs = make([]uint32, len(m.Types))
	for i, t := range m.Types {
		in.typeIDs[i] = s.typeID(t)
	}
	for _, imp := range m.Imports {
		var ext Extern
		var err error
		if resolve != nil {
			ext, err = resolve(imp)
		}
		if err != nil {
			return nil, &LinkError{Module: imp.Module, Name: imp.Name, Msg: err.Error()}
		}
		if ext == nil {
			return nil, &LinkError{Module: imp.Module, Name: imp.Name, Msg: "unknown import"}
		}
		if err := in.link(imp, ext); err != nil {
			return nil, err
		}
	}
	for i, ti := range m.Funcs {
		f := &Function{typ: m.Types[ti], inst: in, code: cm.funcs[i]}
		if err := s.register(f); err != nil {
			return nil, err
		}
		in.funcs = append(in.funcs, f)
	}
	for _, tt := range m.Tables {
		if tt.Limits.Min > maxTableSize {
			return nil, &LinkError{Msg: fmt.Sprintf("table of %d elements exceeds the limit of %d", tt.Limits.Min, maxTableSize)}
		}
		in.tables = append(in.tables, NewTable(tt))
	}
	for _, lim := range m.Memories {
		max := uint32(65536)
		if lim.HasMax {
			max = lim.Max
		}
		if max > in.cfg.MaxMemoryPages {
			max = in.cfg.MaxMemoryPages
		}
		if lim.Min > max {
			return nil, &LinkError{Msg: fmt.Sprintf("memory of %d pages exceeds the limit of %d", lim.Min, max)}
		}
		in.mem = newMemory(lim.Min, max)
		in.mem.declMax, in.mem.hasMax = lim.Max, lim.HasMax
	}
	for _, g := range m.Globals {
		v, err := in.evalConst(g.Init)
		if err != nil {
			return nil, err
		}
		in.globals = append(in.globals, NewGlobal(g.Type, v))
	}
	for _, ex := range m.Exports {
		var e Extern
		switch ex.Kind {
		case ExternFunc:
			e = in.funcs[ex.Index]
		case ExternTable:
			e = in.tables[ex.Index]
		case ExternMemory:
			e = in.mem
		case ExternGlobal:
			e = in.globals[ex.Index]
		}
		in.exports[ex.Name] = e
	}
	in.datas = make([][]byte, len(m.Datas))
	for i, d := range m.Datas {
		in.datas[i] = d.Init
	}
	in.elems = make([][]uint64, len(m.Elems))
	for i, e := range m.Elems {
		refs := make([]uint64, len(e.Init))
		for j, x := range e.Init {
			v, err := in.evalConst(x)
			if err != nil {
				return nil, err
			}
			refs[j] = v
		}
		in.elems[i] = refs
	}
	if m.Start != nil {
		in.start = in.funcs[*m.Start]
	}
	return in, nil
}

func (in *Instance) link(imp Import, ext Extern) error {
	fail := func(format string, args ...any) error {
		return &LinkError{Module: imp.Module, Name: imp.Name, Msg: fmt.Sprintf(format, args...)}
	}
	m := in.cm.Module
	switch imp.Kind {
	case ExternFunc:
		f, ok := ext.(*Function)
		if !ok {
			return fail("incompatible import type: expected a function")
		}
		want := m.Types[imp.TypeIndex]
		if !f.typ.Equal(want) {
			return fail("incompatible import type: function %v, expected %v", f.typ, want)
		}
		if err := in.store.register(f); err != nil {
			return fail("%v", err)
		}
		in.funcs = append(in.funcs, f)
	case ExternTable:
		t, ok := ext.(*Table)
		if !ok {
			return fail("incompatible import type: expected a table")
		}
		if t.typ.Elem != imp.Table.Elem {
			return fail("incompatible import type: table of %v, expected %v", t.typ.Elem, imp.Table.Elem)
		}
		if !limitsMatch(uint32(len(t.elems)), t.typ.Limits, imp.Table.Limits) {
			return fail("incompatible import type: table limits")
		}
		in.tables = append(in.tables, t)
	case ExternMemory:
		mem, ok := ext.(*Memory)
		if !ok || mem == nil {
			return fail("incompatible import type: expected a memory")
		}
		lim := Limits{Min: mem.Pages(), Max: mem.declMax, HasMax: mem.hasMax}
		if !limitsMatch(mem.Pages(), lim, imp.Memory) {
			return fail("incompatible import type: memory limits")
		}
		in.mem = mem
	case ExternGlobal:
		g, ok := ext.(*Global)
		if !ok {
			return fail("incompatible import type: expected a global")
		}
		if g.typ != imp.Global {
			return fail("incompatible import type: global %v (mutable %v), expected %v (mutable %v)",
				g.typ.Type, g.typ.Mutable, imp.Global.Type, imp.Global.Mutable)
		}
		in.globals = append(in.globals, g)
	}
	return nil
}

// limitsMatch is the import subtyping rule for limits.
func limitsMatch(size uint32, have, want Limits) bool {
	if size < want.Min {
		return false
	}
	if want.HasMax {
		if !have.HasMax || have.Max > want.Max {
			return false
		}
	}
	return true
}

func (in *Instance) evalConst(e ConstExpr) (uint64, error) {
	switch e.Op {
	case OpI32Const, OpI64Const, OpF32Const, OpF64Const:
		return e.Value, nil
	case OpRefNull:
		return 0, nil
	case OpRefFunc:
		if e.Index >= uint32(len(in.funcs)) {
			return 0, fmt.Errorf("unknown function %d", e.Index)
		}
		return in.funcs[e.Index].ref, nil
	case OpGlobalGet:
		if e.Index >= uint32(len(in.globals)) {
			return 0, fmt.Errorf("unknown global %d", e.Index)
		}
		return in.globals[e.Index].val, nil
	}
	return 0, fmt.Errorf("constant expression required")
}

// initSegments applies active segments in order, as table.init and
// memory.init followed by a drop, and drops declarative segments.
func (in *Instance) initSegments() error {
	m := in.cm.Module
	for i, e := range m.Elems {
		switch e.Mode {
		case ElemActive:
			off, err := in.evalConst(e.Offset)
			if err != nil {
				return err
			}
			if code := in.tableInit(e.Table, uint32(i), uint32(off), 0, uint32(len(e.Init))); code != 0 {
				return &Trap{Code: code, FuncIndex: noFunc}
			}
			in.elems[i] = nil
		case ElemDeclarative:
			in.elems[i] = nil
		}
	}
	for i, d := range m.Datas {
		if !d.Active {
			continue
		}
		off, err := in.evalConst(d.Offset)
		if err != nil {
			return err
		}
		if code := in.memoryInit(uint32(i), uint32(off), 0, uint32(len(d.Init))); code != 0 {
			return &Trap{Code: code, FuncIndex: noFunc}
		}
		in.datas[i] = nil
	}
	return nil
}

func (in *Instance) tableInit(table, elem, dst, src, n uint32) TrapCode {
	t := in.tables[table]
	seg := in.elems[elem]
	if uint64(src)+uint64(n) > uint64(len(seg)) || uint64(dst)+uint64(n) > uint64(len(t.elems)) {
		return TrapTableOutOfBounds
	}
	copy(t.elems[dst:dst+n], seg[src:src+n])
	return 0
}

func (in *Instance) memoryInit(data, dst, src, n uint32) TrapCode {
	seg := in.datas[data]
	if in.mem == nil || uint64(src)+uint64(n) > uint64(len(seg)) || uint64(dst)+uint64(n) > uint64(len(in.mem.data)) {
		return TrapMemoryOutOfBounds
	}
	copy(in.mem.data[dst:dst+n], seg[src:src+n])
	in.mem.MarkDirty(dst, n)
	return 0
}

// Module returns the compiled module the instance was made from.
func (in *Instance) Module() *CompiledModule { return in.cm }

// StartFunc returns the module's start function, or nil.
func (in *Instance) StartFunc() *Function { return in.start }

// Export returns the named export, or nil.
func (in *Instance) Export(name string) Extern {
	e, ok := in.exports[name]
	if !ok {
		return nil
	}
	return e
}

// ExportedFunc returns the named exported function, or nil.
func (in *Instance) ExportedFunc(name string) *Function {
	f, _ := in.exports[name].(*Function)
	return f
}

// Memory returns the instance's memory, or nil if it has none.
func (in *Instance) Memory() *Memory { return in.mem }

// Count returns the number of instructions executed so far: the instance's
// position, identical on every run with the same inputs.
func (in *Instance) Count() uint64 { return in.exec.count }

// FuncName returns the name of function idx from the name section, or a
// placeholder.
func (in *Instance) FuncName(idx uint32) string {
	if n, ok := in.cm.Module.FuncNames[idx]; ok {
		return n
	}
	return fmt.Sprintf("func[%d]", idx)
}

// Stack appends to dst the function indices of the invocation's call
// stack, innermost first (the function executing, or calling the pending
// host function, then its callers), and returns the extended slice. It is
// empty when no invocation is in progress.
func (in *Instance) Stack(dst []uint32) []uint32 {
	e := &in.exec
	if !e.active || e.cur.fn == nil || e.cur.fn.code == nil {
		return dst
	}
	dst = append(dst, e.cur.fn.code.idx)
	for i := len(e.frames) - 1; i >= 0; i-- {
		if f := e.frames[i].fn; f != nil && f.code != nil {
			dst = append(dst, f.code.idx)
		}
	}
	return dst
}
