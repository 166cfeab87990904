package spectest

import (
	"math"
	"strings"

	"ftvm/wasm"
)

// hostModuleName is the module name under which scripts import the test
// harness's host module.
const hostModuleName = "spectest"

// hostModule is the "spectest" module of the wast test harness: print
// functions that do nothing (but are logged in verbose runs), constant
// globals of each number type, a table and a memory. Each script gets its
// own, since scripts may change the table and the memory.
type hostModule struct {
	exports map[string]wasm.Extern
	funcs   map[*wasm.Function]bool
}

func newHostModule() *hostModule {
	h := &hostModule{exports: map[string]wasm.Extern{}, funcs: map[*wasm.Function]bool{}}
	prints := []struct {
		name   string
		params []wasm.ValType
	}{
		{"print", nil},
		{"print_i32", []wasm.ValType{wasm.I32}},
		{"print_i64", []wasm.ValType{wasm.I64}},
		{"print_f32", []wasm.ValType{wasm.F32}},
		{"print_f64", []wasm.ValType{wasm.F64}},
		{"print_i32_f32", []wasm.ValType{wasm.I32, wasm.F32}},
		{"print_f64_f64", []wasm.ValType{wasm.F64, wasm.F64}},
	}
	for _, p := range prints {
		f := wasm.NewHostFunc(hostModuleName, p.name, wasm.FuncType{Params: p.params})
		h.exports[p.name] = f
		h.funcs[f] = true
	}
	h.exports["global_i32"] = wasm.NewGlobal(wasm.GlobalType{Type: wasm.I32}, 666)
	h.exports["global_i64"] = wasm.NewGlobal(wasm.GlobalType{Type: wasm.I64}, 666)
	h.exports["global_f32"] = wasm.NewGlobal(wasm.GlobalType{Type: wasm.F32}, uint64(math.Float32bits(666.6)))
	h.exports["global_f64"] = wasm.NewGlobal(wasm.GlobalType{Type: wasm.F64}, math.Float64bits(666.6))
	h.exports["table"] = wasm.NewTable(wasm.TableType{
		Elem:   wasm.FuncRef,
		Limits: wasm.Limits{Min: 10, Max: 20, HasMax: true},
	})
	h.exports["memory"] = wasm.NewMemory(1, 2)
	return h
}

// lookup returns the named export, or nil.
func (h *hostModule) lookup(name string) wasm.Extern {
	return h.exports[name]
}

// owns reports whether f is one of the module's functions.
func (h *hostModule) owns(f *wasm.Function) bool { return h.funcs[f] }

// describeCall formats a call of a host function for the verbose log.
func describeCall(f *wasm.Function, args []uint64) string {
	typ := f.Type()
	types := make([]string, len(typ.Params))
	for i, t := range typ.Params {
		types[i] = t.String()
	}
	var b strings.Builder
	b.WriteString(f.Module + "." + f.Name)
	b.WriteString(formatValues(types, args))
	return b.String()
}
