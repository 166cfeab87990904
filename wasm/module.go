package wasm

import "fmt"

// ValType is a WebAssembly value type, encoded as in the binary format.
type ValType byte

// Value types. V128 is decoded only to be rejected: SIMD is not supported.
const (
	I32       ValType = 0x7f
	I64       ValType = 0x7e
	F32       ValType = 0x7d
	F64       ValType = 0x7c
	V128      ValType = 0x7b
	FuncRef   ValType = 0x70
	ExternRef ValType = 0x6f
)

func (t ValType) String() string {
	switch t {
	case I32:
		return "i32"
	case I64:
		return "i64"
	case F32:
		return "f32"
	case F64:
		return "f64"
	case V128:
		return "v128"
	case FuncRef:
		return "funcref"
	case ExternRef:
		return "externref"
	}
	return fmt.Sprintf("type(0x%02x)", byte(t))
}

// IsRef reports whether t is a reference type.
func (t ValType) IsRef() bool { return t == FuncRef || t == ExternRef }

// FuncType is a function signature.
type FuncType struct {
	Params  []ValType
	Results []ValType
}

func (ft FuncType) String() string {
	return fmt.Sprintf("%v -> %v", ft.Params, ft.Results)
}

// Equal reports whether two signatures are identical.
func (ft FuncType) Equal(o FuncType) bool {
	if len(ft.Params) != len(o.Params) || len(ft.Results) != len(o.Results) {
		return false
	}
	for i := range ft.Params {
		if ft.Params[i] != o.Params[i] {
			return false
		}
	}
	for i := range ft.Results {
		if ft.Results[i] != o.Results[i] {
			return false
		}
	}
	return true
}

// key returns a string that identifies the signature, used to canonicalise
// types across modules for call_indirect.
func (ft FuncType) key() string {
	b := make([]byte, 0, len(ft.Params)+len(ft.Results)+1)
	for _, p := range ft.Params {
		b = append(b, byte(p))
	}
	b = append(b, 0)
	for _, r := range ft.Results {
		b = append(b, byte(r))
	}
	return string(b)
}

// Limits bound the size of a memory (in 64 KiB pages) or a table (in elements).
type Limits struct {
	Min    uint32
	Max    uint32
	HasMax bool
}

// TableType describes a table.
type TableType struct {
	Elem   ValType // FuncRef or ExternRef
	Limits Limits
}

// GlobalType describes a global.
type GlobalType struct {
	Type    ValType
	Mutable bool
}

// ExternKind says what an import or export is.
type ExternKind byte

// Extern kinds, encoded as in the binary format.
const (
	ExternFunc   ExternKind = 0
	ExternTable  ExternKind = 1
	ExternMemory ExternKind = 2
	ExternGlobal ExternKind = 3
)

func (k ExternKind) String() string {
	switch k {
	case ExternFunc:
		return "func"
	case ExternTable:
		return "table"
	case ExternMemory:
		return "memory"
	case ExternGlobal:
		return "global"
	}
	return fmt.Sprintf("extern(%d)", byte(k))
}

// Import is one entry of the import section.
type Import struct {
	Module string
	Name   string
	Kind   ExternKind
	// Exactly one of the following is meaningful, according to Kind.
	TypeIndex uint32 // ExternFunc: index into Module.Types
	Table     TableType
	Memory    Limits
	Global    GlobalType
}

// Export is one entry of the export section.
type Export struct {
	Name  string
	Kind  ExternKind
	Index uint32 // in the index space of Kind (imports first)
}

// ConstExpr is a constant expression. Without the extended-const proposal a
// constant expression is exactly one instruction followed by end.
type ConstExpr struct {
	Op    byte   // one of the Op* constants below
	Value uint64 // OpI32Const..OpF64Const: the value's bits (i32 zero-extended)
	Index uint32 // OpGlobalGet, OpRefFunc: the index; OpRefNull: the ValType
}

// Opcodes that may appear in a constant expression.
const (
	OpGlobalGet byte = opcodeGlobalGet
	OpI32Const  byte = opcodeI32Const
	OpI64Const  byte = opcodeI64Const
	OpF32Const  byte = opcodeF32Const
	OpF64Const  byte = opcodeF64Const
	OpRefNull   byte = opcodeRefNull
	OpRefFunc   byte = opcodeRefFunc
)

// GlobalDecl is a global defined by the module.
type GlobalDecl struct {
	Type GlobalType
	Init ConstExpr
}

// ElemMode says when an element segment is applied.
type ElemMode byte

// Element segment modes.
const (
	ElemActive      ElemMode = 0
	ElemPassive     ElemMode = 1
	ElemDeclarative ElemMode = 2
)

// Elem is an element segment. Every item is a constant expression (a
// function index in the compact encodings becomes an OpRefFunc item).
type Elem struct {
	Mode   ElemMode
	Type   ValType // FuncRef or ExternRef
	Table  uint32  // active only
	Offset ConstExpr
	Init   []ConstExpr
}

// Data is a data segment.
type Data struct {
	Active bool
	Memory uint32 // active only; always 0 in WebAssembly 2.0
	Offset ConstExpr
	Init   []byte
}

// Code is the body of a function defined by the module.
type Code struct {
	// Locals declared by the body, excluding parameters, expanded.
	Locals []ValType
	// Body is the instruction sequence including the final end opcode.
	Body []byte
	// Offset is the position of Body[0] in the module binary, so traps can
	// name a code offset as other tools do.
	Offset uint32
}

// CustomSection is a custom section, kept for the name section.
type CustomSection struct {
	Name string
	Data []byte
}

// Module is a decoded (and, once returned by Decode, validated outside of
// function bodies) WebAssembly module. Function bodies are validated when the
// module is compiled.
type Module struct {
	Types    []FuncType
	Imports  []Import
	Funcs    []uint32 // type index of each function defined by the module
	Tables   []TableType
	Memories []Limits
	Globals  []GlobalDecl
	Exports  []Export
	Start    *uint32
	Elems    []Elem
	Datas    []Data
	// DataCount is the value of the data count section, if present.
	DataCount *uint32
	Codes     []Code
	Customs   []CustomSection

	// FuncNames maps function indices to names from the name section,
	// where present and well formed; used only for diagnostics.
	FuncNames map[uint32]string

	// NumImportedFuncs, NumImportedTables, NumImportedMemories and
	// NumImportedGlobals count imports of each kind; the index space of each
	// kind starts with its imports.
	NumImportedFuncs    uint32
	NumImportedTables   uint32
	NumImportedMemories uint32
	NumImportedGlobals  uint32

	// importFuncTypes is the type index of each imported function, in
	// order, so FuncType need not scan the imports (the compiler asks it
	// for every call).
	importFuncTypes []uint32

	// DeclaredFuncRefs is the set of function indices that may be used by
	// ref.func inside function bodies: those referenced by element
	// segments, exports and global initialisers (C.refs in the spec).
	DeclaredFuncRefs map[uint32]bool
}

// FuncType returns the signature of function idx in the function index space.
func (m *Module) FuncType(idx uint32) (FuncType, bool) {
	var ti uint32
	if idx < m.NumImportedFuncs {
		if idx >= uint32(len(m.importFuncTypes)) {
			return FuncType{}, false
		}
		ti = m.importFuncTypes[idx]
	} else {
		j := idx - m.NumImportedFuncs
		if j >= uint32(len(m.Funcs)) {
			return FuncType{}, false
		}
		ti = m.Funcs[j]
	}
	if ti >= uint32(len(m.Types)) {
		return FuncType{}, false
	}
	return m.Types[ti], true
}
