package spectest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Binary-format helpers for the small modules of the runner's tests.

func leb(v uint32) []byte {
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

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func vec(items ...[]byte) []byte { return cat(leb(uint32(len(items))), cat(items...)) }

func name(s string) []byte { return cat(leb(uint32(len(s))), []byte(s)) }

func section(id byte, content []byte) []byte {
	return cat([]byte{id}, leb(uint32(len(content))), content)
}

func wasmModule(sections ...[]byte) []byte {
	return cat([]byte("\x00asm\x01\x00\x00\x00"), cat(sections...))
}

// body encodes a function body without locals.
func body(code ...byte) []byte {
	b := cat([]byte{0}, code)
	return cat(leb(uint32(len(b))), b)
}

const (
	i32 = 0x7f
	f32 = 0x7d
)

func functype(params, results []byte) []byte {
	return cat([]byte{0x60}, vec(bytesOf(params)...), vec(bytesOf(results)...))
}

func bytesOf(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

func export(n string, kind byte, idx uint32) []byte { return cat(name(n), []byte{kind}, leb(idx)) }

// mainModule imports spectest.print_i32 and exports add, trap, loop, id
// (f32 identity), print (calls print_i32), rec (infinite recursion) and
// the immutable global g = 42.
func mainModule() []byte {
	types := section(1, vec(
		functype([]byte{i32, i32}, []byte{i32}), // 0
		functype(nil, nil),                      // 1
		functype([]byte{f32}, []byte{f32}),      // 2
		functype([]byte{i32}, nil),              // 3
	))
	imports := section(2, vec(cat(name("spectest"), name("print_i32"), []byte{0}, leb(3))))
	funcs := section(3, vec(leb(0), leb(1), leb(1), leb(2), leb(3), leb(1)))
	globals := section(6, vec([]byte{i32, 0, 0x41, 42, 0x0b}))
	exports := section(7, vec(
		export("add", 0, 1), export("trap", 0, 2), export("loop", 0, 3),
		export("id", 0, 4), export("print", 0, 5), export("rec", 0, 6), export("g", 3, 0),
	))
	code := section(10, vec(
		body(0x20, 0, 0x20, 1, 0x6a, 0x0b),    // add
		body(0x00, 0x0b),                      // trap: unreachable
		body(0x03, 0x40, 0x0c, 0, 0x0b, 0x0b), // loop: loop br 0 end
		body(0x20, 0, 0x0b),                   // id
		body(0x20, 0, 0x10, 0, 0x0b),          // print: call print_i32
		body(0x10, 6, 0x0b),                   // rec: call rec
	))
	return wasmModule(types, imports, funcs, globals, exports, code)
}

// trapStartModule has a start function that traps.
func trapStartModule() []byte {
	return wasmModule(
		section(1, vec(functype(nil, nil))),
		section(3, vec(leb(0))),
		section(8, leb(0)),
		section(10, vec(body(0x00, 0x0b))),
	)
}

// invalidModule has a function that should return an i32 but does not.
func invalidModule() []byte {
	return wasmModule(
		section(1, vec(functype(nil, []byte{i32}))),
		section(3, vec(leb(0))),
		section(10, vec(body(0x0b))),
	)
}

// unlinkableModule imports a function spectest does not have.
func unlinkableModule() []byte {
	return wasmModule(
		section(1, vec(functype(nil, nil))),
		section(2, vec(cat(name("spectest"), name("nope"), []byte{0}, leb(0)))),
	)
}

// importerModule imports add from the module registered as "main".
func importerModule() []byte {
	return wasmModule(
		section(1, vec(functype([]byte{i32, i32}, []byte{i32}))),
		section(2, vec(cat(name("main"), name("add"), []byte{0}, leb(0)))),
		section(7, vec(export("sum", 0, 0))),
	)
}

// writeScript writes the script and the modules into a new directory and
// returns the script's path.
func writeScript(t *testing.T, script string, modules map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for n, b := range modules {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "t.json")
	if err := os.WriteFile(p, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func i32v(v string) string { return `{"type": "i32", "value": "` + v + `"}` }

func invoke(field string, args ...string) string {
	return `{"type": "invoke", "field": "` + field + `", "args": [` + strings.Join(args, ", ") + `]}`
}

func TestRunFile(t *testing.T) {
	modules := map[string][]byte{
		"t.0.wasm": mainModule(),
		"t.1.wasm": trapStartModule(),
		"t.2.wasm": invalidModule(),
		"t.3.wasm": unlinkableModule(),
		"t.4.wasm": []byte("\x00asm\x02\x00\x00\x00"),
		"t.5.wasm": importerModule(),
	}
	// Commands on lines 1xx must pass, on lines 2xx must fail.
	script := `{"source_filename": "t.wast", "commands": [
 {"type": "module", "line": 101, "filename": "t.0.wasm", "name": "$Main"},
 {"type": "assert_return", "line": 102, "action": ` + invoke("add", i32v("1"), i32v("4294967295")) + `, "expected": [` + i32v("0") + `]},
 {"type": "assert_return", "line": 103, "action": ` + invoke("id", `{"type": "f32", "value": "2143289345"}`) + `, "expected": [{"type": "f32", "value": "nan:arithmetic"}]},
 {"type": "assert_return", "line": 104, "action": {"type": "get", "field": "g"}, "expected": [` + i32v("42") + `]},
 {"type": "action", "line": 105, "action": ` + invoke("print", i32v("7")) + `, "expected": []},
 {"type": "assert_trap", "line": 106, "action": ` + invoke("trap") + `, "text": "unreachable", "expected": []},
 {"type": "assert_exhaustion", "line": 107, "action": ` + invoke("rec") + `, "text": "call stack exhausted", "expected": []},
 {"type": "assert_uninstantiable", "line": 108, "filename": "t.1.wasm", "text": "unreachable", "module_type": "binary"},
 {"type": "assert_trap", "line": 109, "filename": "t.1.wasm", "text": "unreachable", "module_type": "binary"},
 {"type": "assert_invalid", "line": 110, "filename": "t.2.wasm", "text": "type mismatch", "module_type": "binary"},
 {"type": "assert_malformed", "line": 111, "filename": "t.4.wasm", "text": "unknown binary version", "module_type": "binary"},
 {"type": "assert_unlinkable", "line": 112, "filename": "t.3.wasm", "text": "unknown import", "module_type": "binary"},
 {"type": "register", "line": 113, "name": "$Main", "as": "main"},
 {"type": "module", "line": 114, "filename": "t.5.wasm"},
 {"type": "assert_return", "line": 115, "action": ` + invoke("sum", i32v("2"), i32v("3")) + `, "expected": [` + i32v("5") + `]},
 {"type": "assert_return", "line": 116, "action": {"type": "invoke", "module": "$Main", "field": "add", "args": [` + i32v("2") + `, ` + i32v("2") + `]}, "expected": [` + i32v("4") + `]},
 {"type": "assert_malformed", "line": 117, "filename": "t.6.wat", "text": "unknown operator", "module_type": "text"},
 {"type": "assert_return", "line": 118, "action": ` + invoke("v", `{"type": "v128", "value": ["0", "0", "0", "0"]}`) + `, "expected": []},
 {"type": "assert_return", "line": 201, "action": ` + invoke("sum", i32v("2"), i32v("3")) + `, "expected": [` + i32v("6") + `]},
 {"type": "assert_return", "line": 202, "action": ` + invoke("missing") + `, "expected": []},
 {"type": "assert_return", "line": 203, "action": ` + invoke("sum", i32v("1")) + `, "expected": [` + i32v("1") + `]},
 {"type": "assert_trap", "line": 204, "action": ` + invoke("sum", i32v("1"), i32v("1")) + `, "text": "unreachable", "expected": []},
 {"type": "assert_invalid", "line": 205, "filename": "t.0.wasm", "text": "type mismatch", "module_type": "binary"},
 {"type": "assert_unlinkable", "line": 206, "filename": "t.1.wasm", "text": "unknown import", "module_type": "binary"},
 {"type": "assert_uninstantiable", "line": 207, "filename": "t.3.wasm", "text": "unreachable", "module_type": "binary"},
 {"type": "module", "line": 208, "filename": "t.1.wasm"},
 {"type": "assert_return", "line": 209, "action": ` + invoke("add") + `, "expected": []},
 {"type": "assert_return", "line": 210, "action": {"type": "invoke", "module": "$Nope", "field": "add", "args": []}, "expected": []},
 {"type": "module", "line": 211, "filename": "t.99.wasm"},
 {"type": "assert_exhaustion", "line": 212, "action": {"type": "invoke", "module": "$Main", "field": "trap", "args": []}, "text": "call stack exhausted", "expected": []},
 {"type": "assert_return", "line": 213, "action": {"type": "invoke", "module": "$Main", "field": "loop", "args": []}, "expected": []},
 {"type": "bogus", "line": 214},
 {"type": "assert_return", "line": 215, "action": {"type": "invoke", "module": "$Main", "field": "id", "args": [{"type": "f32", "value": "0"}]}, "expected": [{"type": "f32", "value": "nan:canonical"}]},
 {"type": "assert_return", "line": 216, "action": {"type": "invoke", "module": "$Main", "field": "id", "args": [` + i32v("0") + `]}, "expected": [{"type": "f32", "value": "0"}]}
]}`
	path := writeScript(t, script, modules)
	res := RunFile(context.Background(), path, Options{Budget: 100_000, Verbose: true})
	if res.Commands != 34 {
		t.Errorf("Commands = %d, want 34", res.Commands)
	}
	failedLines := map[int]Failure{}
	for _, f := range res.Failures {
		failedLines[f.Line] = f
		if f.Line < 200 {
			t.Errorf("unexpected failure: %s", f)
		}
	}
	for line := 201; line <= 216; line++ {
		if _, ok := failedLines[line]; !ok {
			t.Errorf("command on line %d passed, want a failure", line)
		}
	}
	if res.Passed != 16 || res.Failed != 16 || res.Skipped != 2 {
		t.Errorf("passed %d, failed %d, skipped %d; want 16, 16, 2", res.Passed, res.Failed, res.Skipped)
	}
	if res.Skips[reasonSIMD] != 1 || res.Skips[textModuleReason("assert_malformed")] != 1 {
		t.Errorf("skips %v", res.Skips)
	}
	wantIn := map[int][]string{
		201: {"expected (i32:6)", "got (i32:5)"},
		202: {`no exported function "missing"`},
		204: {`expected trap "unreachable"`, "got results (i32:2)"},
		209: {"line 208", "failed to load"},
		211: {"t.99.wasm"},
		212: {"call stack exhausted", "unreachable"},
		213: {"budget"},
		215: {"f32:nan:canonical", "f32:0 (0x00000000)"},
	}
	for line, subs := range wantIn {
		s := failedLines[line].String()
		for _, sub := range subs {
			if !strings.Contains(s, sub) {
				t.Errorf("failure on line %d: %q does not mention %q", line, s, sub)
			}
		}
	}
	log := strings.Join(res.Log, "\n")
	if !strings.Contains(log, "spectest.print_i32(i32:7)") {
		t.Errorf("verbose log lacks the print call:\n%s", log)
	}
	if len(res.Log) != res.Commands+1 {
		t.Errorf("log has %d lines, want %d:\n%s", len(res.Log), res.Commands+1, log)
	}
	if t.Failed() {
		var b strings.Builder
		_ = res.WriteReport(&b, true)
		t.Log(b.String())
	}
}

func TestRunFileBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"commands": [`), 0o644); err != nil {
		t.Fatal(err)
	}
	res := RunFile(context.Background(), bad, Options{})
	if res.Failed != 1 || len(res.Failures) != 1 || res.Failures[0].Type != "file" {
		t.Errorf("malformed JSON: %+v", res)
	}
	res = RunFile(context.Background(), filepath.Join(dir, "missing.json"), Options{})
	if res.Failed != 1 {
		t.Errorf("missing file: %+v", res)
	}

	simd := filepath.Join(dir, "simd_x.json")
	if err := os.WriteFile(simd, []byte(`{"commands": [{"type": "module", "line": 1, "filename": "simd_x.0.wasm"}, {"type": "register", "line": 2, "as": "x"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	res = RunFile(context.Background(), simd, Options{})
	if !res.SkippedWhole() || res.Skipped != 2 || res.Skips[reasonSIMD] != 2 {
		t.Errorf("simd file: %+v", res)
	}
}

func TestRunFileCancelled(t *testing.T) {
	path := writeScript(t, `{"commands": [
 {"type": "module", "line": 1, "filename": "t.0.wasm"},
 {"type": "assert_return", "line": 2, "action": `+invoke("loop")+`, "expected": []}]}`,
		map[string][]byte{"t.0.wasm": mainModule()})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := RunFile(ctx, path, Options{})
	if res.Failed != 2 {
		t.Errorf("cancelled run: %+v", res)
	}
}

func TestRunFiles(t *testing.T) {
	var paths []string
	for i := range 5 {
		script := `{"commands": [
 {"type": "module", "line": 1, "filename": "t.0.wasm"},
 {"type": "assert_return", "line": 2, "action": ` + invoke("add", i32v("1"), i32v("1")) + `, "expected": [` + i32v(map[bool]string{true: "3", false: "2"}[i == 3]) + `]}]}`
		paths = append(paths, writeScript(t, script, map[string][]byte{"t.0.wasm": mainModule()}))
	}
	var order []string
	sum := RunFiles(context.Background(), paths, Options{}, 2, func(r *Result) { order = append(order, r.Path) })
	if len(order) != len(paths) {
		t.Fatalf("reported %d of %d files", len(order), len(paths))
	}
	for i := range paths {
		if order[i] != paths[i] {
			t.Errorf("result %d is %s, want %s", i, order[i], paths[i])
		}
	}
	if sum.Files != 5 || sum.Passed != 9 || sum.Failed != 1 || sum.FailedFiles != 1 || sum.OK() {
		t.Errorf("summary %+v", sum)
	}
}
