package wasm

import (
	"encoding/binary"
	"testing"
)

// modBuilder assembles small modules for tests, so engine tests do not
// depend on external tools.
type modBuilder struct {
	types   [][]byte
	imports [][]byte
	funcs   []uint32
	mems    []byte
	globals [][]byte
	exports [][]byte
	codes   [][]byte
	nimp    uint32
	tables  []byte // the table section's content, if any
	elems   []byte // the element section's content, if any
}

func uleb(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func vec(items [][]byte) []byte {
	out := uleb(uint64(len(items)))
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

func name(s string) []byte { return append(uleb(uint64(len(s))), s...) }

func (b *modBuilder) typ(params, results []ValType) uint32 {
	t := []byte{0x60}
	t = append(t, uleb(uint64(len(params)))...)
	for _, p := range params {
		t = append(t, byte(p))
	}
	t = append(t, uleb(uint64(len(results)))...)
	for _, r := range results {
		t = append(t, byte(r))
	}
	b.types = append(b.types, t)
	return uint32(len(b.types) - 1)
}

func (b *modBuilder) importFunc(mod, nm string, ti uint32) uint32 {
	e := append(append(name(mod), name(nm)...), 0x00)
	e = append(e, uleb(uint64(ti))...)
	b.imports = append(b.imports, e)
	b.nimp++
	return b.nimp - 1
}

func (b *modBuilder) memory(min uint32) { b.mems = append([]byte{0x00}, uleb(uint64(min))...) }

// fn adds a function with the given locals and body (without the final
// end) and exports it under exportName if not empty.
func (b *modBuilder) fn(ti uint32, exportName string, locals []ValType, body ...byte) uint32 {
	idx := b.nimp + uint32(len(b.funcs))
	b.funcs = append(b.funcs, ti)
	var code []byte
	code = append(code, uleb(uint64(len(locals)))...)
	for _, l := range locals {
		code = append(code, 1, byte(l))
	}
	code = append(code, body...)
	code = append(code, 0x0b)
	b.codes = append(b.codes, append(uleb(uint64(len(code))), code...))
	if exportName != "" {
		e := append(name(exportName), 0x00)
		b.exports = append(b.exports, append(e, uleb(uint64(idx))...))
	}
	return idx
}

func section(id byte, content []byte) []byte {
	return append(append([]byte{id}, uleb(uint64(len(content)))...), content...)
}

func (b *modBuilder) bytes() []byte {
	out := []byte{0, 'a', 's', 'm', 1, 0, 0, 0}
	out = append(out, section(1, vec(b.types))...)
	if len(b.imports) > 0 {
		out = append(out, section(2, vec(b.imports))...)
	}
	var fs [][]byte
	for _, f := range b.funcs {
		fs = append(fs, uleb(uint64(f)))
	}
	out = append(out, section(3, vec(fs))...)
	if b.tables != nil {
		out = append(out, section(4, b.tables)...)
	}
	if b.mems != nil {
		out = append(out, section(5, append([]byte{1}, b.mems...))...)
	}
	if len(b.globals) > 0 {
		out = append(out, section(6, vec(b.globals))...)
	}
	if len(b.exports) > 0 {
		out = append(out, section(7, vec(b.exports))...)
	}
	if b.elems != nil {
		out = append(out, section(9, b.elems)...)
	}
	out = append(out, section(10, vec(b.codes))...)
	return out
}

func u32le(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }

func mustCompile(t testing.TB, bin []byte) *CompiledModule {
	t.Helper()
	cm, err := Compile(bin, Config{Engine: testEngine})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return cm
}
