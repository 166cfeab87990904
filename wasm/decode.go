package wasm

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// DecodeError reports why Decode rejected a module binary, and where.
type DecodeError struct {
	// Offset is the position in the binary of the offending item.
	Offset int
	// Context names the section and entry being decoded, if any, e.g.
	// "import section, entry 3".
	Context string
	// Err is the cause. The LEB128 readers' sentinels (ErrUnexpectedEnd,
	// ErrIntTooLong, ErrIntTooLarge) can be matched with errors.Is.
	Err error
}

func (e *DecodeError) Error() string {
	if e.Context == "" {
		return fmt.Sprintf("wasm: offset 0x%x: %v", e.Offset, e.Err)
	}
	return fmt.Sprintf("wasm: %s, offset 0x%x: %v", e.Context, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Section ids.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
)

var sectionNames = [...]string{
	"custom", "type", "import", "function", "table", "memory", "global",
	"export", "start", "element", "code", "data", "data count",
}

// sectionRank gives the position of each non-custom section in the order
// the binary format requires; the data count section sits before code.
var sectionRank = [...]int{
	secType: 1, secImport: 2, secFunction: 3, secTable: 4, secMemory: 5,
	secGlobal: 6, secExport: 7, secStart: 8, secElement: 9, secDataCount: 10,
	secCode: 11, secData: 12,
}

const (
	// maxLocals bounds the locals a function body may declare, as other
	// engines do; it keeps hostile counts from causing huge allocations.
	maxLocals = 50000
	// maxMemoryPages is the largest memory of WebAssembly 2.0 (4 GiB).
	maxMemoryPages = 65536
	// localsPerByte, with minLocalsBudget, bounds the locals of all
	// functions together by the module size: otherwise each 6-byte body
	// could make the decoder allocate 50,000 locals.
	localsPerByte   = 16
	minLocalsBudget = 1 << 20
)

// Decode parses a module in the WebAssembly 2.0 binary format (without
// SIMD) and validates everything outside function bodies, which are kept
// as raw bytes in Module.Codes for Compile to validate.
//
// The returned module refers to bin (function bodies, data segments,
// custom sections): the caller must not modify bin afterwards.
func Decode(bin []byte) (*Module, error) {
	if uint64(len(bin)) > math.MaxUint32 {
		return nil, &DecodeError{Err: errors.New("module larger than 4 GiB")}
	}
	d := &decoder{
		bin:          bin,
		end:          len(bin),
		m:            &Module{},
		localsBudget: minLocalsBudget + localsPerByte*uint64(len(bin)),
	}
	if err := d.module(); err != nil {
		return nil, err
	}
	return d.m, nil
}

// decoder reads a module binary. Reads stop at end, the end of the section
// (or function body) being decoded.
type decoder struct {
	bin []byte
	pos int
	end int
	m   *Module

	tables          []TableType  // imported, then defined
	importedGlobals []GlobalType // global.get in constant expressions may only use these
	exportNames     map[string]struct{}
	localsBudget    uint64
	groups          []localGroup // scratch for code entries
	sawCode         bool
	sawData         bool
}

type localGroup struct {
	n uint32
	t ValType
}

func (d *decoder) fail(pos int, err error) error {
	return &DecodeError{Offset: pos, Err: err}
}

func (d *decoder) failf(pos int, format string, args ...any) error {
	return &DecodeError{Offset: pos, Err: fmt.Errorf(format, args...)}
}

// withContext prepends context to a *DecodeError's Context; errors from
// the decoder are always *DecodeError.
func withContext(err error, format string, args ...any) error {
	var de *DecodeError
	if errors.As(err, &de) {
		c := fmt.Sprintf(format, args...)
		if de.Context != "" {
			c += ", " + de.Context
		}
		de.Context = c
	}
	return err
}

func (d *decoder) module() error {
	magic := []byte{0x00, 'a', 's', 'm'}
	version := []byte{0x01, 0x00, 0x00, 0x00}
	if err := d.expect(magic, "magic header not detected"); err != nil {
		return err
	}
	if err := d.expect(version, "unknown binary version"); err != nil {
		return err
	}
	lastRank := 0
	for d.pos < len(d.bin) {
		start := d.pos
		id := d.bin[d.pos]
		d.pos++
		if int(id) >= len(sectionNames) {
			return d.failf(start, "malformed section id %d", id)
		}
		if id != secCustom {
			if r := sectionRank[id]; r > lastRank {
				lastRank = r
			} else {
				return d.failf(start, "unexpected content after last section: %s section out of order or duplicated", sectionNames[id])
			}
		}
		sizePos := d.pos
		size, err := d.u32()
		if err != nil {
			return withContext(err, "%s section", sectionNames[id])
		}
		if uint64(size) > uint64(len(d.bin)-d.pos) {
			return withContext(d.failf(sizePos, "%w: length out of bounds: section of %d bytes with %d left",
				ErrUnexpectedEnd, size, len(d.bin)-d.pos), "%s section", sectionNames[id])
		}
		d.end = d.pos + int(size)
		if err := d.section(id); err != nil {
			return withContext(err, "%s section", sectionNames[id])
		}
		if d.pos != d.end {
			return withContext(d.failf(d.pos, "section size mismatch: %d bytes unused", d.end-d.pos), "%s section", sectionNames[id])
		}
		d.end = len(d.bin)
	}
	m := d.m
	if !d.sawCode && len(m.Funcs) != 0 {
		return d.failf(d.pos, "function and code section have inconsistent lengths: %d functions, no code section", len(m.Funcs))
	}
	if !d.sawData && m.DataCount != nil && *m.DataCount != 0 {
		return d.failf(d.pos, "data count and data section have inconsistent lengths: data count %d, no data section", *m.DataCount)
	}
	return nil
}

// expect consumes want, or fails with msg.
func (d *decoder) expect(want []byte, msg string) error {
	for i, w := range want {
		p := d.pos + i
		if p >= len(d.bin) {
			return d.fail(p, fmt.Errorf("%w: %s", ErrUnexpectedEnd, msg))
		}
		if d.bin[p] != w {
			return d.failf(d.pos, "%s", msg)
		}
	}
	d.pos += len(want)
	return nil
}

func (d *decoder) section(id byte) error {
	switch id {
	case secCustom:
		return d.customSection()
	case secType:
		return d.typeSection()
	case secImport:
		return d.importSection()
	case secFunction:
		return d.functionSection()
	case secTable:
		return d.tableSection()
	case secMemory:
		return d.memorySection()
	case secGlobal:
		return d.globalSection()
	case secExport:
		return d.exportSection()
	case secStart:
		return d.startSection()
	case secElement:
		return d.elementSection()
	case secCode:
		return d.codeSection()
	case secData:
		return d.dataSection()
	case secDataCount:
		n, err := d.u32()
		if err != nil {
			return err
		}
		d.m.DataCount = &n
		return nil
	}
	return d.failf(d.pos, "malformed section id %d", id) // not reached: checked by the caller
}

// --- primitive readers, bounded by d.end ---

func (d *decoder) byte_() (byte, error) {
	if d.pos >= d.end {
		return 0, d.fail(d.pos, ErrUnexpectedEnd)
	}
	b := d.bin[d.pos]
	d.pos++
	return b, nil
}

func (d *decoder) u32() (uint32, error) {
	v, n, err := readU32(d.bin[:d.end], d.pos)
	if err != nil {
		return 0, d.fail(d.pos, err)
	}
	d.pos += n
	return v, nil
}

// count reads the length of a vector whose elements take at least one byte
// each, and checks it against the bytes left before anyone allocates.
func (d *decoder) count() (int, error) {
	pos := d.pos
	n, err := d.u32()
	if err != nil {
		return 0, err
	}
	if left := d.end - d.pos; uint64(n) > uint64(left) {
		return 0, d.fail(pos, fmt.Errorf("%w: vector of %d elements with %d bytes left", ErrUnexpectedEnd, n, left))
	}
	return int(n), nil
}

// bytes reads a length-prefixed byte vector, aliasing the input.
func (d *decoder) bytes() ([]byte, error) {
	pos := d.pos
	n, err := d.u32()
	if err != nil {
		return nil, err
	}
	if left := d.end - d.pos; uint64(n) > uint64(left) {
		return nil, d.fail(pos, fmt.Errorf("%w: length out of bounds: %d bytes with %d left", ErrUnexpectedEnd, n, left))
	}
	b := d.bin[d.pos : d.pos+int(n) : d.pos+int(n)]
	d.pos += int(n)
	return b, nil
}

func (d *decoder) name() (string, error) {
	pos := d.pos
	b, err := d.bytes()
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", d.failf(pos, "malformed UTF-8 encoding")
	}
	return string(b), nil
}

func (d *decoder) valType() (ValType, error) {
	pos := d.pos
	b, err := d.byte_()
	if err != nil {
		return 0, err
	}
	switch t := ValType(b); t {
	case I32, I64, F32, F64, FuncRef, ExternRef:
		return t, nil
	case V128:
		return 0, d.failf(pos, "value type v128: SIMD is not supported")
	}
	return 0, d.failf(pos, "malformed value type 0x%02x", b)
}

func (d *decoder) refType() (ValType, error) {
	pos := d.pos
	b, err := d.byte_()
	if err != nil {
		return 0, err
	}
	if t := ValType(b); t == FuncRef || t == ExternRef {
		return t, nil
	}
	return 0, d.failf(pos, "malformed reference type 0x%02x", b)
}

func (d *decoder) valTypes() ([]ValType, error) {
	n, err := d.count()
	if err != nil || n == 0 {
		return nil, err
	}
	ts := make([]ValType, n)
	for i := range ts {
		if ts[i], err = d.valType(); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

// limits reads limits; memory limits are in pages and bounded by 4 GiB.
func (d *decoder) limits(memory bool) (Limits, error) {
	pos := d.pos
	flag, err := d.byte_()
	if err != nil {
		return Limits{}, err
	}
	if flag > 1 {
		return Limits{}, d.failf(pos, "integer too large: malformed limits flags 0x%02x", flag)
	}
	var l Limits
	if l.Min, err = d.u32(); err != nil {
		return Limits{}, err
	}
	if flag == 1 {
		if l.Max, err = d.u32(); err != nil {
			return Limits{}, err
		}
		l.HasMax = true
	}
	if memory && (l.Min > maxMemoryPages || l.HasMax && l.Max > maxMemoryPages) {
		return Limits{}, d.failf(pos, "memory size must be at most 65536 pages (4GiB)")
	}
	if l.HasMax && l.Min > l.Max {
		return Limits{}, d.failf(pos, "size minimum must not be greater than maximum")
	}
	return l, nil
}

func (d *decoder) tableType() (TableType, error) {
	t, err := d.refType()
	if err != nil {
		return TableType{}, err
	}
	l, err := d.limits(false)
	if err != nil {
		return TableType{}, err
	}
	return TableType{Elem: t, Limits: l}, nil
}

func (d *decoder) globalType() (GlobalType, error) {
	t, err := d.valType()
	if err != nil {
		return GlobalType{}, err
	}
	pos := d.pos
	mut, err := d.byte_()
	if err != nil {
		return GlobalType{}, err
	}
	if mut > 1 {
		return GlobalType{}, d.failf(pos, "malformed mutability 0x%02x", mut)
	}
	return GlobalType{Type: t, Mutable: mut == 1}, nil
}

// --- index spaces; sections come in order, so these are final when used ---

func (d *decoder) numFuncs() uint32 { return d.m.NumImportedFuncs + uint32(len(d.m.Funcs)) }

func (d *decoder) numMemories() uint32 {
	return d.m.NumImportedMemories + uint32(len(d.m.Memories))
}

func (d *decoder) numGlobals() uint32 { return d.m.NumImportedGlobals + uint32(len(d.m.Globals)) }

func (d *decoder) declare(funcIdx uint32) {
	if d.m.DeclaredFuncRefs == nil {
		d.m.DeclaredFuncRefs = make(map[uint32]bool)
	}
	d.m.DeclaredFuncRefs[funcIdx] = true
}

func (d *decoder) funcIndex() (uint32, error) {
	pos := d.pos
	x, err := d.u32()
	if err != nil {
		return 0, err
	}
	if x >= d.numFuncs() {
		return 0, d.failf(pos, "unknown function %d", x)
	}
	return x, nil
}

// constExpr reads a constant expression of type want: one instruction then
// end. global.get may only read an imported immutable global, as in
// WebAssembly 2.0.
func (d *decoder) constExpr(want ValType) (ConstExpr, error) {
	pos := d.pos
	op, err := d.byte_()
	if err != nil {
		return ConstExpr{}, err
	}
	e := ConstExpr{Op: op}
	var t ValType
	switch op {
	case OpI32Const:
		v, n, err := readS32(d.bin[:d.end], d.pos)
		if err != nil {
			return ConstExpr{}, d.fail(d.pos, err)
		}
		d.pos += n
		e.Value, t = uint64(uint32(v)), I32
	case OpI64Const:
		v, n, err := readS64(d.bin[:d.end], d.pos)
		if err != nil {
			return ConstExpr{}, d.fail(d.pos, err)
		}
		d.pos += n
		e.Value, t = uint64(v), I64
	case OpF32Const:
		v, n, err := readF32(d.bin[:d.end], d.pos)
		if err != nil {
			return ConstExpr{}, d.fail(d.pos, err)
		}
		d.pos += n
		e.Value, t = uint64(v), F32
	case OpF64Const:
		v, n, err := readF64(d.bin[:d.end], d.pos)
		if err != nil {
			return ConstExpr{}, d.fail(d.pos, err)
		}
		d.pos += n
		e.Value, t = v, F64
	case OpRefNull:
		if t, err = d.refType(); err != nil {
			return ConstExpr{}, err
		}
		e.Index = uint32(t)
	case OpRefFunc:
		if e.Index, err = d.funcIndex(); err != nil {
			return ConstExpr{}, err
		}
		t = FuncRef
		d.declare(e.Index)
	case OpGlobalGet:
		ipos := d.pos
		if e.Index, err = d.u32(); err != nil {
			return ConstExpr{}, err
		}
		if e.Index >= uint32(len(d.importedGlobals)) {
			return ConstExpr{}, d.failf(ipos, "unknown global %d: constant expressions may only read imported globals", e.Index)
		}
		g := d.importedGlobals[e.Index]
		if g.Mutable {
			return ConstExpr{}, d.failf(ipos, "constant expression required: global %d is mutable", e.Index)
		}
		t = g.Type
	case opcodeEnd:
		return ConstExpr{}, d.failf(pos, "type mismatch: empty constant expression, want %v", want)
	default:
		return ConstExpr{}, d.failf(pos, "constant expression required: opcode 0x%02x", op)
	}
	endPos := d.pos
	b, err := d.byte_()
	if err != nil {
		return ConstExpr{}, err
	}
	if b != opcodeEnd {
		return ConstExpr{}, d.failf(endPos, "constant expression required: expected end, found opcode 0x%02x", b)
	}
	if t != want {
		return ConstExpr{}, d.failf(pos, "type mismatch: constant expression of type %v, want %v", t, want)
	}
	return e, nil
}

// --- sections ---

func (d *decoder) customSection() error {
	name, err := d.name()
	if err != nil {
		return err
	}
	data := d.bin[d.pos:d.end:d.end]
	d.pos = d.end
	d.m.Customs = append(d.m.Customs, CustomSection{Name: name, Data: data})
	if name == "name" && d.m.FuncNames == nil {
		d.m.FuncNames = parseFuncNames(data)
	}
	return nil
}

func (d *decoder) typeSection() error {
	n, err := d.count()
	if err != nil {
		return err
	}
	d.m.Types = make([]FuncType, n)
	for i := range d.m.Types {
		if err := d.funcType(&d.m.Types[i]); err != nil {
			return withContext(err, "entry %d", i)
		}
	}
	return nil
}

func (d *decoder) funcType(ft *FuncType) error {
	pos := d.pos
	form, err := d.byte_()
	if err != nil {
		return err
	}
	if form != 0x60 {
		return d.failf(pos, "integer representation too long: malformed function type form 0x%02x", form)
	}
	if ft.Params, err = d.valTypes(); err != nil {
		return err
	}
	ft.Results, err = d.valTypes()
	return err
}

func (d *decoder) importSection() error {
	n, err := d.count()
	if err != nil {
		return err
	}
	d.m.Imports = make([]Import, n)
	for i := range d.m.Imports {
		if err := d.importEntry(&d.m.Imports[i]); err != nil {
			return withContext(err, "entry %d", i)
		}
	}
	return nil
}

func (d *decoder) importEntry(im *Import) error {
	var err error
	if im.Module, err = d.name(); err != nil {
		return err
	}
	if im.Name, err = d.name(); err != nil {
		return err
	}
	pos := d.pos
	kind, err := d.byte_()
	if err != nil {
		return err
	}
	im.Kind = ExternKind(kind)
	m := d.m
	switch im.Kind {
	case ExternFunc:
		ipos := d.pos
		if im.TypeIndex, err = d.u32(); err != nil {
			return err
		}
		if im.TypeIndex >= uint32(len(m.Types)) {
			return d.failf(ipos, "unknown type %d", im.TypeIndex)
		}
		m.NumImportedFuncs++
		m.importFuncTypes = append(m.importFuncTypes, im.TypeIndex)
	case ExternTable:
		if im.Table, err = d.tableType(); err != nil {
			return err
		}
		d.tables = append(d.tables, im.Table)
		m.NumImportedTables++
	case ExternMemory:
		if im.Memory, err = d.limits(true); err != nil {
			return err
		}
		if m.NumImportedMemories++; m.NumImportedMemories > 1 {
			return d.failf(pos, "multiple memories")
		}
	case ExternGlobal:
		if im.Global, err = d.globalType(); err != nil {
			return err
		}
		d.importedGlobals = append(d.importedGlobals, im.Global)
		m.NumImportedGlobals++
	default:
		return d.failf(pos, "malformed import kind %d", kind)
	}
	return nil
}

func (d *decoder) functionSection() error {
	n, err := d.count()
	if err != nil {
		return err
	}
	d.m.Funcs = make([]uint32, n)
	for i := range d.m.Funcs {
		pos := d.pos
		x, err := d.u32()
		if err != nil {
			return withContext(err, "entry %d", i)
		}
		if x >= uint32(len(d.m.Types)) {
			return withContext(d.failf(pos, "unknown type %d", x), "entry %d", i)
		}
		d.m.Funcs[i] = x
	}
	return nil
}

func (d *decoder) tableSection() error {
	n, err := d.count()
	if err != nil {
		return err
	}
	d.m.Tables = make([]TableType, n)
	for i := range d.m.Tables {
		if d.m.Tables[i], err = d.tableType(); err != nil {
			return withContext(err, "entry %d", i)
		}
	}
	d.tables = append(d.tables, d.m.Tables...)
	return nil
}

func (d *decoder) memorySection() error {
	pos := d.pos
	n, err := d.count()
	if err != nil {
		return err
	}
	if uint64(n)+uint64(d.m.NumImportedMemories) > 1 {
		return d.failf(pos, "multiple memories")
	}
	d.m.Memories = make([]Limits, n)
	for i := range d.m.Memories {
		if d.m.Memories[i], err = d.limits(true); err != nil {
			return withContext(err, "entry %d", i)
		}
	}
	return nil
}

func (d *decoder) globalSection() error {
	n, err := d.count()
	if err != nil {
		return err
	}
	d.m.Globals = make([]GlobalDecl, n)
	for i := range d.m.Globals {
		g := &d.m.Globals[i]
		if g.Type, err = d.globalType(); err != nil {
			return withContext(err, "entry %d", i)
		}
		if g.Init, err = d.constExpr(g.Type.Type); err != nil {
			return withContext(err, "entry %d", i)
		}
	}
	return nil
}

func (d *decoder) exportSection() error {
	n, err := d.count()
	if err != nil {
		return err
	}
	d.m.Exports = make([]Export, n)
	d.exportNames = make(map[string]struct{}, n)
	for i := range d.m.Exports {
		if err := d.exportEntry(&d.m.Exports[i]); err != nil {
			return withContext(err, "entry %d", i)
		}
	}
	return nil
}

func (d *decoder) exportEntry(ex *Export) error {
	pos := d.pos
	var err error
	if ex.Name, err = d.name(); err != nil {
		return err
	}
	if _, dup := d.exportNames[ex.Name]; dup {
		return d.failf(pos, "duplicate export name %q", ex.Name)
	}
	d.exportNames[ex.Name] = struct{}{}
	kpos := d.pos
	kind, err := d.byte_()
	if err != nil {
		return err
	}
	ipos := d.pos
	if ex.Index, err = d.u32(); err != nil {
		return err
	}
	ex.Kind = ExternKind(kind)
	var limit uint32
	var what string
	switch ex.Kind {
	case ExternFunc:
		limit, what = d.numFuncs(), "function"
	case ExternTable:
		limit, what = uint32(len(d.tables)), "table"
	case ExternMemory:
		limit, what = d.numMemories(), "memory"
	case ExternGlobal:
		limit, what = d.numGlobals(), "global"
	default:
		return d.failf(kpos, "malformed export kind %d", kind)
	}
	if ex.Index >= limit {
		return d.failf(ipos, "unknown %s %d", what, ex.Index)
	}
	if ex.Kind == ExternFunc {
		d.declare(ex.Index)
	}
	return nil
}

func (d *decoder) startSection() error {
	pos := d.pos
	x, err := d.funcIndex()
	if err != nil {
		return err
	}
	ft, ok := d.m.FuncType(x)
	if !ok {
		return d.failf(pos, "unknown function %d", x) // not reached: indices are checked
	}
	if len(ft.Params) != 0 || len(ft.Results) != 0 {
		return d.failf(pos, "start function %d has type %v, want [] -> []", x, ft)
	}
	d.m.Start = &x
	return nil
}

func (d *decoder) elementSection() error {
	n, err := d.count()
	if err != nil {
		return err
	}
	d.m.Elems = make([]Elem, n)
	for i := range d.m.Elems {
		if err := d.elemSegment(&d.m.Elems[i]); err != nil {
			return withContext(err, "segment %d", i)
		}
	}
	return nil
}

// elemSegment reads one of the eight encodings of an element segment. In
// the flags, bit 0 means passive or declarative, bit 1 an explicit table
// index (active) or declarative (otherwise), and bit 2 items given as
// expressions rather than function indices.
func (d *decoder) elemSegment(e *Elem) error {
	pos := d.pos
	flags, err := d.u32()
	if err != nil {
		return err
	}
	if flags > 7 {
		return d.failf(pos, "malformed elements segment kind %d", flags)
	}
	exprs := flags&4 != 0
	e.Type = FuncRef
	switch {
	case flags&1 == 0:
		e.Mode = ElemActive
	case flags&2 == 0:
		e.Mode = ElemPassive
	default:
		e.Mode = ElemDeclarative
	}
	tpos := d.pos
	if e.Mode == ElemActive {
		if flags&2 != 0 {
			if e.Table, err = d.u32(); err != nil {
				return err
			}
		}
		if e.Offset, err = d.constExpr(I32); err != nil {
			return err
		}
	}
	// Every encoding but 0 and 4 names the element type.
	if flags&3 != 0 {
		if exprs {
			if e.Type, err = d.refType(); err != nil {
				return err
			}
		} else {
			kpos := d.pos
			kind, err := d.byte_()
			if err != nil {
				return err
			}
			if kind != 0x00 {
				return d.failf(kpos, "malformed element kind 0x%02x", kind)
			}
		}
	}
	if e.Mode == ElemActive {
		if e.Table >= uint32(len(d.tables)) {
			return d.failf(tpos, "unknown table %d", e.Table)
		}
		if tt := d.tables[e.Table].Elem; tt != e.Type {
			return d.failf(tpos, "type mismatch: segment of %v for table %d of %v", e.Type, e.Table, tt)
		}
	}
	n, err := d.count()
	if err != nil {
		return err
	}
	e.Init = make([]ConstExpr, n)
	for i := range e.Init {
		if exprs {
			if e.Init[i], err = d.constExpr(e.Type); err != nil {
				return withContext(err, "item %d", i)
			}
			continue
		}
		x, err := d.funcIndex()
		if err != nil {
			return withContext(err, "item %d", i)
		}
		d.declare(x)
		e.Init[i] = ConstExpr{Op: OpRefFunc, Index: x}
	}
	return nil
}

func (d *decoder) codeSection() error {
	d.sawCode = true
	pos := d.pos
	n, err := d.count()
	if err != nil {
		return err
	}
	if n != len(d.m.Funcs) {
		return d.failf(pos, "function and code section have inconsistent lengths: %d functions, %d bodies", len(d.m.Funcs), n)
	}
	d.m.Codes = make([]Code, n)
	for i := range d.m.Codes {
		if err := d.codeEntry(&d.m.Codes[i]); err != nil {
			return withContext(err, "function %d", d.m.NumImportedFuncs+uint32(i))
		}
	}
	return nil
}

func (d *decoder) codeEntry(c *Code) error {
	pos := d.pos
	size, err := d.u32()
	if err != nil {
		return err
	}
	if uint64(size) > uint64(d.end-d.pos) {
		return d.fail(pos, fmt.Errorf("%w: body of %d bytes with %d left", ErrUnexpectedEnd, size, d.end-d.pos))
	}
	sectionEnd := d.end
	d.end = d.pos + int(size)
	if err := d.locals(c); err != nil {
		return err
	}
	if d.pos == d.end {
		return d.fail(d.pos, fmt.Errorf("%w: empty function body", ErrUnexpectedEnd))
	}
	if d.bin[d.end-1] != opcodeEnd {
		return d.failf(d.end-1, "END opcode expected at the end of the function body")
	}
	c.Body = d.bin[d.pos:d.end:d.end]
	c.Offset = uint32(d.pos)
	d.pos, d.end = d.end, sectionEnd
	return nil
}

// locals reads the local declarations of a body and expands them.
func (d *decoder) locals(c *Code) error {
	pos := d.pos
	n, err := d.count()
	if err != nil {
		return err
	}
	d.groups = d.groups[:0]
	var total uint64
	for i := 0; i < n; i++ {
		gpos := d.pos
		k, err := d.u32()
		if err != nil {
			return err
		}
		t, err := d.valType()
		if err != nil {
			return err
		}
		if total += uint64(k); total > maxLocals {
			return d.failf(gpos, "too many locals: more than %d", maxLocals)
		}
		if k != 0 {
			d.groups = append(d.groups, localGroup{k, t})
		}
	}
	if total == 0 {
		return nil
	}
	if total > d.localsBudget {
		return d.failf(pos, "too many locals in the module for its size")
	}
	d.localsBudget -= total
	c.Locals = make([]ValType, 0, total)
	for _, g := range d.groups {
		for j := uint32(0); j < g.n; j++ {
			c.Locals = append(c.Locals, g.t)
		}
	}
	return nil
}

func (d *decoder) dataSection() error {
	d.sawData = true
	pos := d.pos
	n, err := d.count()
	if err != nil {
		return err
	}
	if dc := d.m.DataCount; dc != nil && uint64(*dc) != uint64(n) {
		return d.failf(pos, "data count and data section have inconsistent lengths: data count %d, %d segments", *dc, n)
	}
	d.m.Datas = make([]Data, n)
	for i := range d.m.Datas {
		if err := d.dataSegment(&d.m.Datas[i]); err != nil {
			return withContext(err, "segment %d", i)
		}
	}
	return nil
}

func (d *decoder) dataSegment(s *Data) error {
	pos := d.pos
	flags, err := d.u32()
	if err != nil {
		return err
	}
	switch flags {
	case 0, 2:
		s.Active = true
		mpos := d.pos
		if flags == 2 {
			if s.Memory, err = d.u32(); err != nil {
				return err
			}
		}
		if s.Memory >= d.numMemories() {
			return d.failf(mpos, "unknown memory %d", s.Memory)
		}
		if s.Offset, err = d.constExpr(I32); err != nil {
			return err
		}
	case 1:
	default:
		return d.failf(pos, "malformed data segment kind %d", flags)
	}
	s.Init, err = d.bytes()
	return err
}

// parseFuncNames reads the function names subsection of a "name" custom
// section. The names serve diagnostics only, so a malformed section is
// ignored rather than rejected, as the spec asks of custom sections.
func parseFuncNames(b []byte) map[uint32]string {
	pos := 0
	for pos < len(b) {
		id := b[pos]
		size, n, err := readU32(b, pos+1)
		if err != nil {
			return nil
		}
		pos += 1 + n
		if uint64(size) > uint64(len(b)-pos) {
			return nil
		}
		sub := b[pos : pos+int(size)]
		pos += int(size)
		if id == 1 {
			return parseNameMap(sub)
		}
	}
	return nil
}

func parseNameMap(b []byte) map[uint32]string {
	count, pos, err := readU32(b, 0)
	// Each entry takes at least two bytes.
	if err != nil || uint64(count) > uint64(len(b)-pos)/2 {
		return nil
	}
	names := make(map[uint32]string, count)
	for i := uint32(0); i < count; i++ {
		idx, n, err := readU32(b, pos)
		if err != nil {
			return nil
		}
		pos += n
		l, n, err := readU32(b, pos)
		if err != nil {
			return nil
		}
		pos += n
		if uint64(l) > uint64(len(b)-pos) {
			return nil
		}
		s := b[pos : pos+int(l)]
		pos += int(l)
		if !utf8.Valid(s) {
			return nil
		}
		names[idx] = string(s)
	}
	if pos != len(b) {
		return nil
	}
	return names
}
