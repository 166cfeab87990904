package spectest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const sampleScript = `{"source_filename": "x.wast",
 "commands": [
  {"type": "module", "line": 1, "filename": "x.0.wasm", "name": "$M"},
  {"type": "register", "line": 2, "name": "$M", "as": "m"},
  {"type": "assert_return", "line": 3, "action": {"type": "invoke", "module": "$M", "field": "f", "args": [{"type": "i32", "value": "1"}]}, "expected": [{"type": "f32", "value": "nan:canonical"}]},
  {"type": "assert_trap", "line": 4, "action": {"type": "get", "field": "g"}, "text": "boom", "expected": [{"type": "i64"}]},
  {"type": "assert_malformed", "line": 5, "filename": "x.1.wat", "text": "unexpected token", "module_type": "text"},
  {"type": "assert_trap", "line": 6, "filename": "x.2.wasm", "text": "out of bounds", "module_type": "binary"}
 ]}`

func TestParseScript(t *testing.T) {
	s, err := ParseScript([]byte(sampleScript))
	if err != nil {
		t.Fatal(err)
	}
	if s.SourceFilename != "x.wast" || len(s.Commands) != 6 {
		t.Fatalf("got %q with %d commands", s.SourceFilename, len(s.Commands))
	}
	c := s.Commands
	if c[0].Type != "module" || c[0].Name != "$M" || c[0].Filename != "x.0.wasm" || c[0].Line != 1 {
		t.Errorf("module: %+v", c[0])
	}
	if c[1].As != "m" || c[1].Name != "$M" {
		t.Errorf("register: %+v", c[1])
	}
	a := c[2].Action
	if a == nil || a.Type != "invoke" || a.Module != "$M" || a.Field != "f" || len(a.Args) != 1 || a.Args[0].Value != "1" {
		t.Errorf("action: %+v", a)
	}
	if len(c[2].Expected) != 1 || c[2].Expected[0].Value != "nan:canonical" {
		t.Errorf("expected: %+v", c[2].Expected)
	}
	if c[3].Action.Type != "get" || c[3].Text != "boom" || c[3].Expected[0].HasValue {
		t.Errorf("assert_trap: %+v", c[3])
	}
	if c[4].ModuleType != "text" || !c[4].isModuleAssertion() || c[2].isModuleAssertion() {
		t.Errorf("assert_malformed: %+v", c[4])
	}
	if !c[5].isModuleAssertion() {
		t.Errorf("assert_trap on a module is not a module assertion")
	}
	for i := range c {
		if err := c[i].Check(); err != nil {
			t.Errorf("command %d: %v", i, err)
		}
	}
}

func TestParseScriptErrors(t *testing.T) {
	for _, in := range []string{``, `{`, `[]`, `{"commands": 3}`, `{"source_filename": "x"}`, `{"commands": [{"type": 1}]}`} {
		if _, err := ParseScript([]byte(in)); err == nil {
			t.Errorf("ParseScript(%q) succeeded", in)
		}
	}
}

func TestCommandCheck(t *testing.T) {
	bad := []Command{
		{},
		{Type: "bogus"},
		{Type: "module"},
		{Type: "register"},
		{Type: "assert_return"},
		{Type: "assert_return", Action: &Action{Type: "call", Field: "f"}},
		{Type: "assert_trap"},
		{Type: "assert_trap", Action: &Action{Type: "nope"}},
		{Type: "assert_invalid"},
	}
	for _, c := range bad {
		if err := c.Check(); err == nil {
			t.Errorf("Check(%+v) succeeded", c)
		}
	}
	v128 := Command{Type: "assert_return", Action: &Action{Type: "invoke", Field: "f"}, Expected: []Value{{Type: "v128"}}}
	if !v128.usesV128() {
		t.Errorf("v128 result not noticed")
	}
	v128 = Command{Type: "action", Action: &Action{Type: "invoke", Field: "f", Args: []Value{{Type: "v128"}}}}
	if !v128.usesV128() {
		t.Errorf("v128 argument not noticed")
	}
}

func TestFindFiles(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"b/b.json", "b/b.0.wasm", "a/a.json", "a/a.1.wat", "c/c.json", "top.json"} {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := FindFiles([]string{dir, filepath.Join(dir, "b"), filepath.Join(dir, "c", "c.json")})
	if err != nil {
		t.Fatal(err)
	}
	var rel []string
	for _, f := range files {
		r, _ := filepath.Rel(dir, f)
		rel = append(rel, filepath.ToSlash(r))
	}
	want := []string{"a/a.json", "b/b.json", "c/c.json", "top.json"}
	if !slices.Equal(rel, want) {
		t.Errorf("FindFiles = %v, want %v", rel, want)
	}
	if got := FilterFiles(files, regexp.MustCompile(`^[ab]$`)); len(got) != 2 {
		t.Errorf("filter by name: %v", got)
	}
	if got := FilterFiles(files, regexp.MustCompile(`^top\.json$`)); len(got) != 1 {
		t.Errorf("filter by file name: %v", got)
	}
	if got := FilterFiles(files, nil); len(got) != len(files) {
		t.Errorf("nil filter: %v", got)
	}
	if _, err := FindFiles([]string{filepath.Join(dir, "missing")}); err == nil {
		t.Errorf("missing path accepted")
	}
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := FindFiles([]string{empty}); err == nil || !strings.Contains(err.Error(), "no .json files") {
		t.Errorf("empty directory: %v", err)
	}
	if ScriptName("/x/i32/i32.json") != "i32" {
		t.Errorf("ScriptName = %q", ScriptName("/x/i32/i32.json"))
	}
}

func TestReport(t *testing.T) {
	pass := &Result{Name: "a.json", Commands: 3, Passed: 3}
	skipped := &Result{Name: "b.json", Commands: 4, Passed: 2}
	skipped.skip(textModuleReason("assert_malformed"))
	skipped.skip(textModuleReason("assert_malformed"))
	whole := &Result{Name: "simd_x.json", Commands: 2}
	whole.skip(reasonSIMD)
	whole.skip(reasonSIMD)
	fail := &Result{Name: "c.json", Commands: 5, Passed: 4}
	fail.fail(Failure{Line: 12, Type: "assert_return", What: "f(i32:1)", Expected: "(i32:2)", Got: "(i32:3)"})
	bad := &Result{Name: "d.json", Commands: 1}
	bad.fail(Failure{Type: "file", Got: "decode script: unexpected end of JSON input"})

	var b strings.Builder
	var sum Summary
	for _, r := range []*Result{pass, skipped, whole, fail, bad} {
		if err := r.WriteReport(&b, false); err != nil {
			t.Fatal(err)
		}
		sum.Add(r)
	}
	if err := sum.Write(&b); err != nil {
		t.Fatal(err)
	}
	want := `PASS  a.json  (3 commands)
PASS  b.json  (4 commands, 2 skipped)
SKIP  simd_x.json  (2 commands: SIMD (v128) not supported)
FAIL  c.json  (1 failed of 5 commands)
    line 12: assert_return f(i32:1): expected (i32:2), got (i32:3)
FAIL  d.json  (1 failed of 1 commands)
    file: decode script: unexpected end of JSON input
skipped 2: SIMD (v128) not supported
skipped 2: text-format module (assert_malformed with module_type text)
9 passed, 2 failed, 4 skipped
`
	if b.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", b.String(), want)
	}
	if sum.OK() || sum.Files != 5 || sum.FailedFiles != 2 {
		t.Errorf("summary %+v", sum)
	}
	b.Reset()
	var none Summary
	if err := none.Write(&b); err != nil || b.String() != "0 passed, 0 failed\n" {
		t.Errorf("empty summary %q, %v", b.String(), err)
	}
}

func FuzzParseScript(f *testing.F) {
	f.Add([]byte(sampleScript))
	f.Add([]byte(`{"commands":[{"type":"assert_return","action":{"type":"invoke","field":"f","args":[{"type":"v128","value":["1"]}]},"expected":[{"type":"f64","value":"nan:arithmetic"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseScript(data)
		if err != nil {
			return
		}
		for i := range s.Commands {
			c := &s.Commands[i]
			_ = c.Check()
			_ = c.usesV128()
			_ = describeCommand(c)
			for _, v := range c.Expected {
				if e, err := ParseExpected(v); err == nil {
					_ = e.String()
					_ = e.Match(0)
				}
			}
			if c.Action != nil {
				for _, v := range c.Action.Args {
					if bits, err := ParseArg(v); err == nil {
						_ = FormatValue(v.Type, bits)
					}
				}
			}
		}
	})
}
