package wasm

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// --- module assembly helpers for decoder tests (prefixed dt to keep them
// apart from other test files' helpers) ---

func dtU(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func dtS(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func dtCat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func dtName(s string) []byte { return append(dtU(uint64(len(s))), s...) }

func dtVec(items ...[]byte) []byte { return append(dtU(uint64(len(items))), dtCat(items...)...) }

func dtSec(id byte, parts ...[]byte) []byte {
	c := dtCat(parts...)
	return dtCat([]byte{id}, dtU(uint64(len(c))), c)
}

func dtModule(sections ...[]byte) []byte {
	return dtCat([]byte{0, 'a', 's', 'm', 1, 0, 0, 0}, dtCat(sections...))
}

// dtFunc is a function type; dtBody a code entry with the given local
// groups (count, type pairs) and instructions, end added.
func dtFunc(params, results []ValType) []byte {
	b := []byte{0x60}
	b = append(b, dtU(uint64(len(params)))...)
	for _, p := range params {
		b = append(b, byte(p))
	}
	b = append(b, dtU(uint64(len(results)))...)
	for _, r := range results {
		b = append(b, byte(r))
	}
	return b
}

func dtBody(groups [][]byte, instrs ...byte) []byte {
	c := dtCat(dtVec(groups...), instrs, []byte{0x0b})
	return append(dtU(uint64(len(c))), c...)
}

func dtLocals(n uint64, t ValType) []byte { return append(dtU(n), byte(t)) }

var (
	dtVoid     = dtSec(secType, dtVec(dtFunc(nil, nil)))
	dtOneFunc  = dtSec(secFunction, dtVec([]byte{0}))
	dtOneBody  = dtSec(secCode, dtVec(dtBody(nil)))
	dtI32Zero  = []byte{OpI32Const, 0x00, 0x0b}
	dtMemory01 = dtSec(secMemory, dtVec([]byte{0x00, 0x01}))
)

// --- LEB128 ---

func TestReadLEB128(t *testing.T) {
	ff := func(n int, last byte) []byte {
		b := make([]byte, n, n+1)
		for i := range b {
			b[i] = 0xff
		}
		return append(b, last)
	}
	zz := func(n int, last byte) []byte {
		b := make([]byte, n, n+1)
		for i := range b {
			b[i] = 0x80
		}
		return append(b, last)
	}
	type result struct {
		v   int64 // unsigned results as their bits
		n   int
		err error
	}
	cases := []struct {
		name string
		read func([]byte, int) (int64, int, error)
		in   []byte
		want result
	}{
		{"u32 0", u32r, []byte{0}, result{0, 1, nil}},
		{"u32 127", u32r, []byte{0x7f}, result{127, 1, nil}},
		{"u32 128", u32r, []byte{0x80, 0x01}, result{128, 2, nil}},
		{"u32 redundant", u32r, zz(4, 0x00), result{0, 5, nil}},
		{"u32 max", u32r, ff(4, 0x0f), result{math.MaxUint32, 5, nil}},
		{"u32 too large", u32r, ff(4, 0x1f), result{0, 0, ErrIntTooLarge}},
		{"u32 too large 0x70", u32r, zz(4, 0x70), result{0, 0, ErrIntTooLarge}},
		{"u32 too long", u32r, zz(5, 0x00), result{0, 0, ErrIntTooLong}},
		{"u32 empty", u32r, nil, result{0, 0, ErrUnexpectedEnd}},
		{"u32 truncated", u32r, []byte{0x80, 0x80}, result{0, 0, ErrUnexpectedEnd}},
		{"s32 -1", s32r, []byte{0x7f}, result{-1, 1, nil}},
		{"s32 -64", s32r, []byte{0x40}, result{-64, 1, nil}},
		{"s32 63", s32r, []byte{0x3f}, result{63, 1, nil}},
		{"s32 64", s32r, []byte{0xc0, 0x00}, result{64, 2, nil}},
		{"s32 -128", s32r, []byte{0x80, 0x7f}, result{-128, 2, nil}},
		{"s32 max", s32r, ff(4, 0x07), result{math.MaxInt32, 5, nil}},
		{"s32 min", s32r, zz(4, 0x78), result{math.MinInt32, 5, nil}},
		{"s32 -1 long", s32r, ff(4, 0x7f), result{-1, 5, nil}},
		{"s32 sign not extended", s32r, zz(4, 0x08), result{0, 0, ErrIntTooLarge}},
		{"s32 bad extension", s32r, ff(4, 0x4f), result{0, 0, ErrIntTooLarge}},
		{"s32 positive overflow", s32r, ff(4, 0x17), result{0, 0, ErrIntTooLarge}},
		{"s32 too long", s32r, zz(5, 0x00), result{0, 0, ErrIntTooLong}},
		{"s32 truncated", s32r, []byte{0xff}, result{0, 0, ErrUnexpectedEnd}},
		{"s33 2^32-1", readS33, ff(4, 0x0f), result{math.MaxUint32, 5, nil}},
		{"s33 min", readS33, zz(4, 0x70), result{-1 << 32, 5, nil}},
		{"s33 too large", readS33, zz(4, 0x10), result{0, 0, ErrIntTooLarge}},
		{"s33 too long", readS33, zz(5, 0x00), result{0, 0, ErrIntTooLong}},
		{"s64 max", readS64, ff(9, 0x00), result{math.MaxInt64, 10, nil}},
		{"s64 min", readS64, zz(9, 0x7f), result{math.MinInt64, 10, nil}},
		{"s64 -1 long", readS64, ff(9, 0x7f), result{-1, 10, nil}},
		{"s64 -2", readS64, []byte{0x7e}, result{-2, 1, nil}},
		{"s64 too large", readS64, zz(9, 0x01), result{0, 0, ErrIntTooLarge}},
		{"s64 bad extension", readS64, ff(9, 0x70), result{0, 0, ErrIntTooLarge}},
		{"s64 too long", readS64, zz(10, 0x00), result{0, 0, ErrIntTooLong}},
		{"u64 max", u64r, ff(9, 0x01), result{-1, 10, nil}},
		{"u64 too large", u64r, ff(9, 0x02), result{0, 0, ErrIntTooLarge}},
		{"u64 too long", u64r, zz(10, 0x00), result{0, 0, ErrIntTooLong}},
		{"u64 truncated", u64r, zz(3, 0x80), result{0, 0, ErrUnexpectedEnd}},
	}
	for _, c := range cases {
		v, n, err := c.read(c.in, 0)
		if got := (result{v, n, err}); got != c.want {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
		// The same bytes further into a buffer, with a tail after them.
		buf := append(append([]byte{0xaa, 0xbb}, c.in...), 0x01)
		v, n, err = c.read(buf, 2)
		if c.want.err == ErrUnexpectedEnd {
			continue // the tail completes it
		}
		if got := (result{v, n, err}); got != c.want {
			t.Errorf("%s at offset 2: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

func u32r(b []byte, pos int) (int64, int, error) {
	v, n, err := readU32(b, pos)
	return int64(v), n, err
}

func s32r(b []byte, pos int) (int64, int, error) {
	v, n, err := readS32(b, pos)
	return int64(v), n, err
}

func u64r(b []byte, pos int) (int64, int, error) {
	v, n, err := readU64(b, pos)
	return int64(v), n, err
}

func TestReadersOutOfRange(t *testing.T) {
	b := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	for _, pos := range []int{-1, 8, 9, math.MinInt} {
		if _, _, err := readU32(b, pos); err != ErrUnexpectedEnd {
			t.Errorf("readU32 at %d: %v", pos, err)
		}
		if _, _, err := readS32(b, pos); err != ErrUnexpectedEnd {
			t.Errorf("readS32 at %d: %v", pos, err)
		}
		if _, _, err := readS64(b, pos); err != ErrUnexpectedEnd {
			t.Errorf("readS64 at %d: %v", pos, err)
		}
		if _, _, err := readF32(b, pos); err != ErrUnexpectedEnd {
			t.Errorf("readF32 at %d: %v", pos, err)
		}
	}
	if v, n, err := readF32(b, 4); v != 0x08070605 || n != 4 || err != nil {
		t.Errorf("readF32: %#x %d %v", v, n, err)
	}
	if _, _, err := readF32(b, 5); err != ErrUnexpectedEnd {
		t.Errorf("readF32 short: %v", err)
	}
	if v, n, err := readF64(b, 0); v != 0x0807060504030201 || n != 8 || err != nil {
		t.Errorf("readF64: %#x %d %v", v, n, err)
	}
	if _, _, err := readF64(b, 1); err != ErrUnexpectedEnd {
		t.Errorf("readF64 short: %v", err)
	}
}

func TestReadersDoNotAllocate(t *testing.T) {
	b := []byte{0xff, 0xff, 0xff, 0xff, 0x0f, 0x80}
	allocs := testing.AllocsPerRun(100, func() {
		_, _, _ = readU32(b, 0)
		_, _, _ = readS32(b, 0)
		_, _, _ = readS64(b, 0)
		_, _, _ = readU32(b, 5) // error path
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
}

// --- handcrafted modules ---

func TestDecodeEmptyModule(t *testing.T) {
	m, err := Decode(dtModule())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, &Module{}) {
		t.Errorf("got %+v", m)
	}
}

// dtFullModule uses every section and every encoding of element and data
// segments.
func dtFullModule() []byte {
	i32 := []ValType{I32}
	return dtModule(
		dtSec(secCustom, dtName("x"), []byte("abc")),
		dtSec(secType, dtVec(dtFunc(nil, nil), dtFunc(i32, i32))),
		dtSec(secImport, dtVec(
			dtCat(dtName("env"), dtName("f"), []byte{0x00, 0x01}),
			dtCat(dtName("env"), dtName("t"), []byte{0x01, 0x70, 0x00, 0x01}),
			dtCat(dtName("env"), dtName("m"), []byte{0x02, 0x01, 0x01, 0x02}),
			dtCat(dtName("env"), dtName("g"), []byte{0x03, 0x7f, 0x00}),
		)),
		dtSec(secFunction, dtVec([]byte{0}, []byte{1})),
		dtSec(secTable, dtVec([]byte{0x6f, 0x01, 0x00, 0x0a})),
		dtSec(secGlobal, dtVec(
			[]byte{0x7f, 0x01, OpGlobalGet, 0x00, 0x0b},
			[]byte{0x70, 0x00, OpRefFunc, 0x02, 0x0b},
			[]byte{0x6f, 0x00, OpRefNull, 0x6f, 0x0b},
			[]byte{0x7e, 0x00, OpI64Const, 0x7f, 0x0b},
			[]byte{0x7d, 0x00, OpF32Const, 0x00, 0x00, 0xc0, 0x3f, 0x0b},
			[]byte{0x7c, 0x00, OpF64Const, 1, 2, 3, 4, 5, 6, 7, 8, 0x0b},
		)),
		dtSec(secExport, dtVec(
			dtCat(dtName("main"), []byte{0x00, 0x01}),
			dtCat(dtName("mem"), []byte{0x02, 0x00}),
			dtCat(dtName("tab"), []byte{0x01, 0x01}),
			dtCat(dtName("g"), []byte{0x03, 0x01}),
		)),
		dtSec(secStart, []byte{0x01}),
		dtSec(secElement, dtVec(
			dtCat([]byte{0}, dtI32Zero, dtVec([]byte{1})),
			dtCat([]byte{1, 0x00}, dtVec([]byte{2})),
			dtCat([]byte{2, 0x00}, dtI32Zero, []byte{0x00}, dtVec([]byte{0})),
			dtCat([]byte{3, 0x00}, dtVec([]byte{2})),
			dtCat([]byte{4}, dtI32Zero, dtVec([]byte{OpRefFunc, 1, 0x0b}, []byte{OpRefNull, 0x70, 0x0b})),
			dtCat([]byte{5, 0x6f}, dtVec([]byte{OpRefNull, 0x6f, 0x0b})),
			dtCat([]byte{6, 0x01, OpGlobalGet, 0x00, 0x0b, 0x6f}, dtVec([]byte{OpRefNull, 0x6f, 0x0b})),
			dtCat([]byte{7, 0x70}, dtVec([]byte{OpRefFunc, 2, 0x0b})),
		)),
		dtSec(secDataCount, []byte{3}),
		dtSec(secCode, dtVec(
			dtBody([][]byte{dtLocals(2, I32), dtLocals(0, I64), dtLocals(1, F64)}),
			dtBody(nil, 0x20, 0x00),
		)),
		dtSec(secData, dtVec(
			dtCat([]byte{0, OpI32Const, 16, 0x0b}, dtName("hi")),
			dtCat([]byte{1}, dtName("passive")),
			dtCat([]byte{2, 0}, dtI32Zero, dtName("")),
		)),
		dtSec(secCustom, dtName("name"),
			dtSec(0, dtName("modname")), // module name subsection, skipped
			dtSec(1, dtVec(dtCat([]byte{1}, dtName("main")), dtCat([]byte{2}, dtName("inc"))))),
	)
}

func TestDecodeFullModule(t *testing.T) {
	i32 := []ValType{I32}
	bin := dtFullModule()
	m, err := Decode(bin)
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", what, got, want)
		}
	}
	check("types", m.Types, []FuncType{{}, {Params: i32, Results: i32}})
	check("imports", m.Imports, []Import{
		{Module: "env", Name: "f", Kind: ExternFunc, TypeIndex: 1},
		{Module: "env", Name: "t", Kind: ExternTable, Table: TableType{Elem: FuncRef, Limits: Limits{Min: 1}}},
		{Module: "env", Name: "m", Kind: ExternMemory, Memory: Limits{Min: 1, Max: 2, HasMax: true}},
		{Module: "env", Name: "g", Kind: ExternGlobal, Global: GlobalType{Type: I32}},
	})
	check("imported counts", []uint32{m.NumImportedFuncs, m.NumImportedTables, m.NumImportedMemories, m.NumImportedGlobals}, []uint32{1, 1, 1, 1})
	check("funcs", m.Funcs, []uint32{0, 1})
	check("tables", m.Tables, []TableType{{Elem: ExternRef, Limits: Limits{Min: 0, Max: 10, HasMax: true}}})
	check("memories", len(m.Memories), 0)
	check("globals", m.Globals, []GlobalDecl{
		{GlobalType{I32, true}, ConstExpr{Op: OpGlobalGet, Index: 0}},
		{GlobalType{FuncRef, false}, ConstExpr{Op: OpRefFunc, Index: 2}},
		{GlobalType{ExternRef, false}, ConstExpr{Op: OpRefNull, Index: uint32(ExternRef)}},
		{GlobalType{I64, false}, ConstExpr{Op: OpI64Const, Value: math.MaxUint64}},
		{GlobalType{F32, false}, ConstExpr{Op: OpF32Const, Value: uint64(math.Float32bits(1.5))}},
		{GlobalType{F64, false}, ConstExpr{Op: OpF64Const, Value: 0x0807060504030201}},
	})
	check("exports", m.Exports, []Export{
		{"main", ExternFunc, 1}, {"mem", ExternMemory, 0}, {"tab", ExternTable, 1}, {"g", ExternGlobal, 1},
	})
	if m.Start == nil || *m.Start != 1 {
		t.Errorf("start: %v", m.Start)
	}
	i32z := ConstExpr{Op: OpI32Const}
	rf := func(x uint32) ConstExpr { return ConstExpr{Op: OpRefFunc, Index: x} }
	rn := func(t ValType) ConstExpr { return ConstExpr{Op: OpRefNull, Index: uint32(t)} }
	check("elems", m.Elems, []Elem{
		{Mode: ElemActive, Type: FuncRef, Offset: i32z, Init: []ConstExpr{rf(1)}},
		{Mode: ElemPassive, Type: FuncRef, Init: []ConstExpr{rf(2)}},
		{Mode: ElemActive, Type: FuncRef, Offset: i32z, Init: []ConstExpr{rf(0)}},
		{Mode: ElemDeclarative, Type: FuncRef, Init: []ConstExpr{rf(2)}},
		{Mode: ElemActive, Type: FuncRef, Offset: i32z, Init: []ConstExpr{rf(1), rn(FuncRef)}},
		{Mode: ElemPassive, Type: ExternRef, Init: []ConstExpr{rn(ExternRef)}},
		{Mode: ElemActive, Type: ExternRef, Table: 1, Offset: ConstExpr{Op: OpGlobalGet}, Init: []ConstExpr{rn(ExternRef)}},
		{Mode: ElemDeclarative, Type: FuncRef, Init: []ConstExpr{rf(2)}},
	})
	if m.DataCount == nil || *m.DataCount != 3 {
		t.Errorf("data count: %v", m.DataCount)
	}
	check("datas", m.Datas, []Data{
		{Active: true, Offset: ConstExpr{Op: OpI32Const, Value: 16}, Init: []byte("hi")},
		{Init: []byte("passive")},
		{Active: true, Offset: i32z, Init: []byte{}},
	})
	check("locals", [][]ValType{m.Codes[0].Locals, m.Codes[1].Locals}, [][]ValType{{I32, I32, F64}, nil})
	check("bodies", [][]byte{m.Codes[0].Body, m.Codes[1].Body}, [][]byte{{0x0b}, {0x20, 0x00, 0x0b}})
	for i, c := range m.Codes {
		off := int(c.Offset)
		if off+len(c.Body) > len(bin) || !reflect.DeepEqual(bin[off:off+len(c.Body)], c.Body) {
			t.Errorf("code %d: offset %d does not locate the body", i, off)
		}
	}
	check("declared refs", m.DeclaredFuncRefs, map[uint32]bool{0: true, 1: true, 2: true})
	check("func names", m.FuncNames, map[uint32]string{1: "main", 2: "inc"})
	if len(m.Customs) != 2 || m.Customs[0].Name != "x" || string(m.Customs[0].Data) != "abc" || m.Customs[1].Name != "name" {
		t.Errorf("customs: %+v", m.Customs)
	}
}

func TestDecodeConstValues(t *testing.T) {
	for _, c := range []struct {
		t    ValType
		expr []byte
		want uint64
	}{
		{I32, dtCat([]byte{OpI32Const}, dtS(-1)), 0xffffffff}, // zero-extended
		{I32, dtCat([]byte{OpI32Const}, dtS(math.MinInt32)), 0x80000000},
		{I32, dtCat([]byte{OpI32Const}, dtS(math.MaxInt32)), math.MaxInt32},
		{I64, dtCat([]byte{OpI64Const}, dtS(math.MinInt64)), 1 << 63},
		{I64, dtCat([]byte{OpI64Const}, dtS(-2)), math.MaxUint64 - 1},
		{I64, dtCat([]byte{OpI64Const}, dtS(1<<40)), 1 << 40},
		{F32, []byte{OpF32Const, 0x01, 0x00, 0xc0, 0x7f}, 0x7fc00001}, // NaN payload kept
	} {
		bin := dtModule(dtSec(secGlobal, dtVec(dtCat([]byte{byte(c.t), 0}, c.expr, []byte{0x0b}))))
		m, err := Decode(bin)
		if err != nil {
			t.Errorf("% x: %v", c.expr, err)
			continue
		}
		if got := m.Globals[0].Init; got.Op != c.expr[0] || got.Value != c.want {
			t.Errorf("% x: got %+v, want value %#x", c.expr, got, c.want)
		}
	}
}

func TestDecodeDeclaredFuncRefs(t *testing.T) {
	// Only element segments, exports and global initialisers declare
	// references; the start function and function bodies do not.
	types := dtSec(secType, dtVec(dtFunc(nil, nil)))
	funcs := dtSec(secFunction, dtVec([]byte{0}, []byte{0}, []byte{0}, []byte{0}))
	codes := dtSec(secCode, dtVec(dtBody(nil, OpRefFunc, 3, 0x1a), dtBody(nil), dtBody(nil), dtBody(nil)))
	m, err := Decode(dtModule(types, funcs, dtSec(secStart, []byte{0}), codes))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.DeclaredFuncRefs) != 0 {
		t.Errorf("declared: %v", m.DeclaredFuncRefs)
	}
	m, err = Decode(dtModule(types, funcs,
		dtSec(secGlobal, dtVec([]byte{0x70, 0x00, OpRefFunc, 1, 0x0b})),
		dtSec(secExport, dtVec(dtCat(dtName("f"), []byte{0, 2}))),
		dtSec(secElement, dtVec(dtCat([]byte{3, 0}, dtVec([]byte{3})))),
		codes))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[uint32]bool{1: true, 2: true, 3: true}; !reflect.DeepEqual(m.DeclaredFuncRefs, want) {
		t.Errorf("declared: %v, want %v", m.DeclaredFuncRefs, want)
	}
}

func TestDecodeTolerantNameSection(t *testing.T) {
	for _, data := range [][]byte{
		{1},                    // truncated subsection
		dtSec(1, []byte{5, 0}), // count exceeds the entries
		dtSec(1, dtVec(dtCat([]byte{0}, dtName("\xff")))),         // bad UTF-8
		dtSec(1, dtVec(dtCat([]byte{0}, dtName("a"))), []byte{0}), // trailing byte
		dtSec(1, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}),            // huge count
	} {
		bin := dtModule(dtSec(secCustom, dtName("name"), data))
		m, err := Decode(bin)
		if err != nil {
			t.Errorf("name section % x: %v", data, err)
			continue
		}
		if m.FuncNames != nil {
			t.Errorf("name section % x: names %v", data, m.FuncNames)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	hdr := dtModule()
	imp := func(desc ...byte) []byte {
		return dtSec(secImport, dtVec(dtCat(dtName("m"), dtName("n"), desc)))
	}
	global := func(gt ValType, mut byte, init ...byte) []byte {
		return dtSec(secGlobal, dtVec(dtCat([]byte{byte(gt), mut}, init)))
	}
	export := func(names ...string) []byte {
		var items [][]byte
		for _, n := range names {
			items = append(items, dtCat(dtName(n), []byte{0x00, 0x00}))
		}
		return dtSec(secExport, dtVec(items...))
	}
	funcTable := dtSec(secTable, dtVec([]byte{0x70, 0x00, 0x01}))
	elem := func(seg ...byte) []byte {
		return dtModule(dtVoid, dtOneFunc, funcTable, dtSec(secElement, dtVec(seg)), dtOneBody)
	}
	data := func(seg ...byte) []byte {
		return dtModule(dtMemory01, dtSec(secData, dtVec(seg)))
	}
	importedConstGlobal := imp(0x03, 0x7f, 0x00)
	importedMutGlobal := imp(0x03, 0x7f, 0x01)
	big := dtU(math.MaxUint32)
	manyLocals := make([][]byte, 30)
	for i := range manyLocals {
		manyLocals[i] = dtBody([][]byte{dtLocals(maxLocals, I32)})
	}
	manyFuncs := make([][]byte, len(manyLocals))
	for i := range manyFuncs {
		manyFuncs[i] = []byte{0}
	}

	cases := []struct {
		name string
		bin  []byte
		want string
	}{
		{"empty", nil, "unexpected end"},
		{"short magic", []byte{0, 'a', 's'}, "unexpected end"},
		{"bad magic", []byte{0, 'a', 's', 'n', 1, 0, 0, 0}, "magic header not detected"},
		{"bad version", []byte{0, 'a', 's', 'm', 2, 0, 0, 0}, "unknown binary version"},
		{"short version", []byte{0, 'a', 's', 'm', 1, 0}, "unexpected end"},
		{"section id", dtModule(dtSec(13)), "malformed section id"},
		{"section size too long", append(hdr, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00), "integer representation too long"},
		{"section past end", append(hdr, 1, 5, 0), "length out of bounds"},
		{"section size mismatch", dtModule(dtSec(secType, dtVec(dtFunc(nil, nil)), []byte{0})), "section size mismatch"},
		{"read past section", dtModule(dtSec(secType, []byte{1}), dtSec(secCustom, dtName("x"))), "unexpected end"},
		{"duplicate section", dtModule(dtVoid, dtVoid), "out of order"},
		{"out of order", dtModule(dtSec(secFunction, []byte{0}), dtVoid), "out of order"},
		{"data count after code", dtModule(dtSec(secCode, []byte{0}), dtSec(secDataCount, []byte{0})), "out of order"},
		{"junk after last section", append(dtModule(dtSec(secData, []byte{0})), 0x01), "after last section"},
		{"custom name missing", dtModule(dtSec(secCustom)), "unexpected end"},
		{"custom name UTF-8", dtModule(dtSec(secCustom, dtName("\xc0\x80"))), "malformed UTF-8 encoding"},
		{"huge vector", dtModule(dtSec(secType, big)), "unexpected end"},
		{"type count too large", dtModule(dtSec(secType, []byte{0xff, 0xff, 0xff, 0xff, 0x7f})), "integer too large"},
		{"functype form", dtModule(dtSec(secType, dtVec([]byte{0x61, 0, 0}))), "malformed function type"},
		{"v128", dtModule(dtSec(secType, dtVec(dtFunc([]ValType{V128}, nil)))), "SIMD is not supported"},
		{"value type", dtModule(dtSec(secType, dtVec(dtFunc(nil, []ValType{0x40})))), "malformed value type"},
		{"import name UTF-8", dtModule(dtSec(secImport, dtVec(dtCat(dtName("m"), dtName("\xed\xa0\x80"), []byte{3, 0x7f, 0})))), "malformed UTF-8 encoding"},
		{"import kind", dtModule(imp(0x04, 0x00)), "malformed import kind"},
		{"import unknown type", dtModule(dtVoid, imp(0x00, 0x01)), "unknown type"},
		{"import table type", dtModule(imp(0x01, 0x7f, 0x00, 0x00)), "malformed reference type"},
		{"import limits flag", dtModule(imp(0x02, 0x02, 0x00, 0x00)), "malformed limits flags"},
		{"import mutability", dtModule(imp(0x03, 0x7f, 0x02)), "malformed mutability"},
		{"import v128 global", dtModule(imp(0x03, 0x7b, 0x00)), "SIMD is not supported"},
		{"function unknown type", dtModule(dtVoid, dtSec(secFunction, dtVec([]byte{1})), dtOneBody), "unknown type"},
		{"function without code", dtModule(dtVoid, dtOneFunc), "function and code section have inconsistent lengths"},
		{"code without function", dtModule(dtVoid, dtOneBody), "function and code section have inconsistent lengths"},
		{"code count", dtModule(dtVoid, dtSec(secFunction, dtVec([]byte{0}, []byte{0})), dtOneBody), "function and code section have inconsistent lengths"},
		{"two memories", dtModule(dtSec(secMemory, dtVec([]byte{0, 0}, []byte{0, 0}))), "multiple memories"},
		{"imported and defined memory", dtModule(imp(0x02, 0x00, 0x00), dtMemory01), "multiple memories"},
		{"two imported memories", dtModule(dtSec(secImport, dtVec(
			dtCat(dtName("m"), dtName("a"), []byte{2, 0, 0}),
			dtCat(dtName("m"), dtName("b"), []byte{2, 0, 0})))), "multiple memories"},
		{"memory min", dtModule(dtSec(secMemory, dtVec(dtCat([]byte{0}, dtU(65537))))), "memory size must be at most 65536 pages (4GiB)"},
		{"memory max", dtModule(dtSec(secMemory, dtVec(dtCat([]byte{1, 0}, dtU(65537))))), "memory size must be at most 65536 pages (4GiB)"},
		{"memory min > max", dtModule(dtSec(secMemory, dtVec([]byte{1, 2, 1}))), "size minimum must not be greater than maximum"},
		{"table min > max", dtModule(dtSec(secTable, dtVec([]byte{0x70, 1, 2, 1}))), "size minimum must not be greater than maximum"},
		{"table limits truncated", dtModule(dtSec(secTable, dtVec([]byte{0x70, 1, 2}))), "unexpected end"},
		{"global type mismatch", dtModule(global(I32, 0, OpI64Const, 0, 0x0b)), "type mismatch"},
		{"global empty init", dtModule(global(I32, 0, 0x0b)), "type mismatch"},
		{"global non-constant", dtModule(global(I32, 0, 0x01, 0x0b)), "constant expression required"},
		{"global two instructions", dtModule(global(I32, 0, OpI32Const, 0, OpI32Const, 0, 0x0b)), "constant expression required"},
		{"global add", dtModule(global(I32, 0, OpI32Const, 0, OpI32Const, 0, 0x6a, 0x0b)), "constant expression required"},
		{"global missing end", dtModule(global(I32, 0, OpI32Const, 0)), "unexpected end"},
		{"global.get unknown", dtModule(global(I32, 0, OpGlobalGet, 0, 0x0b)), "unknown global"},
		{"global.get defined global", dtModule(dtSec(secGlobal, dtVec(
			[]byte{0x7f, 0, OpI32Const, 0, 0x0b},
			[]byte{0x7f, 0, OpGlobalGet, 0, 0x0b}))), "unknown global"},
		{"global.get past imports", dtModule(importedConstGlobal, global(I32, 0, OpGlobalGet, 1, 0x0b)), "unknown global"},
		{"global.get mutable", dtModule(importedMutGlobal, global(I32, 0, OpGlobalGet, 0, 0x0b)), "constant expression required"},
		{"global.get type", dtModule(importedConstGlobal, global(I64, 0, OpGlobalGet, 0, 0x0b)), "type mismatch"},
		{"global ref.func unknown", dtModule(global(FuncRef, 0, OpRefFunc, 0, 0x0b)), "unknown function"},
		{"global ref.null type", dtModule(global(FuncRef, 0, OpRefNull, 0x6f, 0x0b)), "type mismatch"},
		{"global ref.null bad", dtModule(global(FuncRef, 0, OpRefNull, 0x7f, 0x0b)), "malformed reference type"},
		{"global i32.const too long", dtModule(global(I32, 0, OpI32Const, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x0b)), "integer representation too long"},
		{"global f64 truncated", dtModule(global(F64, 0, OpF64Const, 0, 0, 0, 0)), "unexpected end"},
		{"duplicate export", dtModule(dtVoid, dtOneFunc, export("a", "b", "a"), dtOneBody), "duplicate export name"},
		{"export unknown function", dtModule(export("a")), "unknown function"},
		{"export unknown table", dtModule(dtSec(secExport, dtVec(dtCat(dtName("t"), []byte{1, 0})))), "unknown table"},
		{"export unknown memory", dtModule(dtSec(secExport, dtVec(dtCat(dtName("m"), []byte{2, 0})))), "unknown memory"},
		{"export unknown global", dtModule(importedConstGlobal, dtSec(secExport, dtVec(dtCat(dtName("g"), []byte{3, 1})))), "unknown global"},
		{"export kind", dtModule(dtSec(secExport, dtVec(dtCat(dtName("x"), []byte{4, 0})))), "malformed export kind"},
		{"export name UTF-8", dtModule(dtSec(secExport, dtVec(dtCat(dtName("\xf8\x88\x80\x80\x80"), []byte{2, 0})))), "malformed UTF-8 encoding"},
		{"start unknown", dtModule(dtVoid, dtOneFunc, dtSec(secStart, []byte{1}), dtOneBody), "unknown function"},
		{"start type", dtModule(dtSec(secType, dtVec(dtFunc(nil, []ValType{I32}))), dtOneFunc, dtSec(secStart, []byte{0}), dtOneBody), "start function"},
		{"elem flags", elem(8), "malformed elements segment kind"},
		{"elem kind", elem(1, 0x01, 0), "malformed element kind"},
		{"elem unknown table", elem(2, 1, OpI32Const, 0, 0x0b, 0x00, 0), "unknown table"},
		{"elem no table", dtModule(dtSec(secElement, dtVec(dtCat([]byte{0}, dtI32Zero, []byte{0})))), "unknown table"},
		{"elem offset type", elem(0, OpI64Const, 0, 0x0b, 0), "type mismatch"},
		{"elem table type", elem(6, 0, OpI32Const, 0, 0x0b, 0x6f, 0), "type mismatch"},
		{"elem item type", elem(5, 0x70, 1, OpRefNull, 0x6f, 0x0b), "type mismatch"},
		{"elem item i32", elem(5, 0x70, 1, OpI32Const, 0, 0x0b), "type mismatch"},
		{"elem unknown function", elem(1, 0x00, 1, 5), "unknown function"},
		{"elem item unknown function", elem(7, 0x70, 1, OpRefFunc, 5, 0x0b), "unknown function"},
		{"elem item non-constant", elem(7, 0x70, 1, 0x01, 0x0b), "constant expression required"},
		{"elem reftype v128", elem(5, 0x7b, 0), "malformed reference type"},
		{"data count mismatch", dtModule(dtMemory01, dtSec(secDataCount, []byte{2}), dtSec(secData, dtVec([]byte{1, 0}))), "data count and data section have inconsistent lengths"},
		{"data count without data", dtModule(dtSec(secDataCount, []byte{1})), "data count and data section have inconsistent lengths"},
		{"data without memory", dtModule(dtSec(secData, dtVec(dtCat([]byte{0}, dtI32Zero, []byte{0})))), "unknown memory"},
		{"data memory 1", data(2, 1, OpI32Const, 0, 0x0b, 0), "unknown memory"},
		{"data flags", data(3, 0), "malformed data segment kind"},
		{"data offset type", data(0, OpI64Const, 0, 0x0b, 0), "type mismatch"},
		{"data length", data(1, 5, 'a'), "length out of bounds"},
		{"locals over limit", dtModule(dtVoid, dtOneFunc, dtSec(secCode, dtVec(dtBody([][]byte{dtLocals(maxLocals+1, I32)})))), "too many locals"},
		{"locals overflow", dtModule(dtVoid, dtOneFunc, dtSec(secCode, dtVec(dtBody([][]byte{
			dtLocals(math.MaxUint32, I32), dtLocals(math.MaxUint32, I32)})))), "too many locals"},
		{"locals module budget", dtModule(dtVoid, dtSec(secFunction, dtVec(manyFuncs...)), dtSec(secCode, dtVec(manyLocals...))), "too many locals"},
		{"local type v128", dtModule(dtVoid, dtOneFunc, dtSec(secCode, dtVec(dtBody([][]byte{dtLocals(1, V128)})))), "SIMD is not supported"},
		{"body without end", dtModule(dtVoid, dtOneFunc, dtSec(secCode, dtVec([]byte{2, 0, 0x01}))), "END opcode expected"},
		{"empty body", dtModule(dtVoid, dtOneFunc, dtSec(secCode, dtVec([]byte{1, 0}))), "unexpected end"},
		{"body size", dtModule(dtVoid, dtOneFunc, dtSec(secCode, dtVec([]byte{9, 0, 0x0b}))), "unexpected end"},
		{"locals past body", dtModule(dtVoid, dtOneFunc, dtSec(secCode, dtVec([]byte{2, 1, 1}), []byte{0x7f, 0x0b})), "unexpected end"},
	}
	for _, c := range cases {
		m, err := Decode(c.bin)
		if err == nil {
			t.Errorf("%s: decoded %+v, want error %q", c.name, m, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q, want %q", c.name, err, c.want)
		}
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Errorf("%s: error %T is not a *DecodeError", c.name, err)
		} else if de.Offset < 0 || de.Offset > len(c.bin) {
			t.Errorf("%s: offset %d outside the %d-byte module", c.name, de.Offset, len(c.bin))
		}
	}
}

func TestDecodeErrorDetails(t *testing.T) {
	bin := dtModule(dtVoid, dtSec(secImport, dtVec(
		dtCat(dtName("m"), dtName("a"), []byte{0, 0}),
		dtCat(dtName("m"), dtName("b"), []byte{0, 0x80}))))
	_, err := Decode(bin)
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v", err)
	}
	if !errors.Is(err, ErrUnexpectedEnd) {
		t.Errorf("error %v is not ErrUnexpectedEnd", err)
	}
	if de.Offset != len(bin)-1 || de.Context != "import section, entry 1" {
		t.Errorf("offset %d context %q, want %d and the entry", de.Offset, de.Context, len(bin)-1)
	}
	if want := "wasm: import section, entry 1, offset 0x"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q, want prefix %q", err, want)
	}
}

func TestDecodeValidEdgeCases(t *testing.T) {
	for _, c := range []struct {
		name string
		bin  []byte
	}{
		{"memory of 65536 pages", dtModule(dtSec(secMemory, dtVec(dtCat([]byte{1}, dtU(65536), dtU(65536)))))},
		{"table of max elements", dtModule(dtSec(secTable, dtVec(dtCat([]byte{0x6f, 1}, dtU(math.MaxUint32), dtU(math.MaxUint32)))))},
		{"many tables", dtModule(dtSec(secTable, dtVec([]byte{0x70, 0, 0}, []byte{0x6f, 0, 0}, []byte{0x70, 0, 0})))},
		{"redundant LEB128 counts", dtModule(dtSec(secType, []byte{0x81, 0x80, 0x80, 0x80, 0x00}, dtFunc(nil, nil)))},
		{"50000 locals", dtModule(dtVoid, dtOneFunc, dtSec(secCode, dtVec(dtBody([][]byte{
			dtLocals(maxLocals-1, I32), dtLocals(1, ExternRef)}))))},
		{"custom sections everywhere", dtModule(dtSec(secCustom, dtName("a")), dtVoid, dtSec(secCustom, dtName("")),
			dtOneFunc, dtSec(secCustom, dtName("b"), []byte{1, 2}), dtOneBody, dtSec(secCustom, dtName("\u00e9")))},
		{"empty sections", dtModule(dtSec(secType, []byte{0}), dtSec(secImport, []byte{0}), dtSec(secFunction, []byte{0}),
			dtSec(secTable, []byte{0}), dtSec(secMemory, []byte{0}), dtSec(secGlobal, []byte{0}), dtSec(secExport, []byte{0}),
			dtSec(secElement, []byte{0}), dtSec(secDataCount, []byte{0}), dtSec(secCode, []byte{0}), dtSec(secData, []byte{0}))},
		{"data count zero without data", dtModule(dtSec(secDataCount, []byte{0}))},
		{"passive data without memory", dtModule(dtSec(secData, dtVec(dtCat([]byte{1}, dtName("x")))))},
		{"declarative elem without table", dtModule(dtVoid, dtOneFunc, dtSec(secElement, dtVec(dtCat([]byte{3, 0}, dtVec([]byte{0})))), dtOneBody)},
		{"extern table via global.get", dtModule(dtSec(secImport, dtVec(dtCat(dtName("m"), dtName("g"), []byte{3, 0x6f, 0}))),
			dtSec(secTable, dtVec([]byte{0x6f, 0, 0})), dtSec(secElement, dtVec(dtCat([]byte{6, 0}, dtI32Zero, []byte{0x6f}, dtVec([]byte{OpGlobalGet, 0, 0x0b})))))},
		{"export every kind", dtModule(dtVoid, dtOneFunc, dtSec(secTable, dtVec([]byte{0x70, 0, 0})), dtMemory01,
			dtSec(secGlobal, dtVec([]byte{0x7f, 1, OpI32Const, 0x7f, 0x0b})),
			dtSec(secExport, dtVec(dtCat(dtName("f"), []byte{0, 0}), dtCat(dtName("t"), []byte{1, 0}),
				dtCat(dtName("m"), []byte{2, 0}), dtCat(dtName("g"), []byte{3, 0}), dtCat(dtName(""), []byte{0, 0}))), dtOneBody)},
	} {
		if _, err := Decode(c.bin); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// --- the official spec test suite ---

// specDir returns the directory of the converted spec suite, or "".
func specDir() string {
	dir := os.Getenv("FTVM_WASM_SPEC")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "wasm-spec", "json")
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return ""
	}
	return dir
}

type specCommand struct {
	Type       string `json:"type"`
	Line       int    `json:"line"`
	Filename   string `json:"filename"`
	Text       string `json:"text"`
	ModuleType string `json:"module_type"`
}

// moduleLevelInvalid are assert_invalid messages that only module-level
// validation produces, so Decode itself must reject those modules.
var moduleLevelInvalid = map[string]bool{
	"duplicate export name":                          true,
	"multiple memories":                              true,
	"memory size must be at most 65536 pages (4GiB)": true,
	"size minimum must not be greater than maximum":  true,
	"start function":                                 true,
	"constant expression required":                   true,
}

func TestDecodeSpec(t *testing.T) {
	root := specDir()
	if root == "" {
		t.Skip("spec suite not found; set FTVM_WASM_SPEC")
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), "simd") {
			continue
		}
		dir := filepath.Join(root, e.Name())
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()+".json"))
		if err != nil {
			continue
		}
		files++
		t.Run(e.Name(), func(t *testing.T) {
			var script struct {
				Commands []specCommand `json:"commands"`
			}
			if err := json.Unmarshal(raw, &script); err != nil {
				t.Fatal(err)
			}
			for _, c := range script.Commands {
				if !strings.HasSuffix(c.Filename, ".wasm") {
					continue // no module, or a text module
				}
				bin, err := os.ReadFile(filepath.Join(dir, c.Filename))
				if err != nil {
					t.Errorf("line %d: %v", c.Line, err)
					continue
				}
				checkSpecCommand(t, c, bin)
			}
		})
	}
	if files == 0 {
		t.Skipf("no spec scripts in %s", root)
	}
}

func checkSpecCommand(t *testing.T, c specCommand, bin []byte) {
	t.Helper()
	m, err := Decode(bin)
	switch c.Type {
	case "module", "assert_unlinkable", "assert_uninstantiable":
		// Valid modules; the latter two fail only when instantiated.
		if err != nil {
			t.Errorf("%s line %d (%s): %v", c.Filename, c.Line, c.Type, err)
		}
	case "assert_malformed":
		if err != nil {
			return
		}
		// Decode accepts only malformations inside function bodies, which
		// Compile must then reject.
		if len(m.Codes) == 0 {
			t.Errorf("%s line %d: malformed (%q) but decoded", c.Filename, c.Line, c.Text)
		} else if _, cerr := Compile(bin, Config{}); cerr == nil {
			t.Errorf("%s line %d: malformed (%q) but decoded and compiled", c.Filename, c.Line, c.Text)
		}
	case "assert_invalid":
		if err == nil && moduleLevelInvalid[c.Text] {
			t.Errorf("%s line %d: invalid (%q) but decoded", c.Filename, c.Line, c.Text)
		}
	}
}
