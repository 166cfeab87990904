package wasm

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// FuzzDecode checks that Decode never panics or hangs on any input, that
// it reports errors as *DecodeError within the input, and that what it
// accepts satisfies the module-level rules.
func FuzzDecode(f *testing.F) {
	for _, seed := range decodeSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, bin []byte) {
		m, err := Decode(bin)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %T is not a *DecodeError: %v", err, err)
			}
			if de.Offset < 0 || de.Offset > len(bin) {
				t.Fatalf("error offset %d outside the %d-byte input: %v", de.Offset, len(bin), err)
			}
			return
		}
		checkDecoded(t, m, bin)
	})
}

func checkDecoded(t *testing.T, m *Module, bin []byte) {
	numFuncs := uint64(m.NumImportedFuncs) + uint64(len(m.Funcs))
	if len(m.Codes) != len(m.Funcs) {
		t.Fatalf("%d functions, %d bodies", len(m.Funcs), len(m.Codes))
	}
	for i, ti := range m.Funcs {
		if ti >= uint32(len(m.Types)) {
			t.Fatalf("function %d has unknown type %d", i, ti)
		}
	}
	for i, c := range m.Codes {
		off := int(c.Offset)
		if len(c.Body) == 0 || c.Body[len(c.Body)-1] != 0x0b || off+len(c.Body) > len(bin) ||
			string(bin[off:off+len(c.Body)]) != string(c.Body) {
			t.Fatalf("code %d: body % x at offset %d", i, c.Body, off)
		}
		if len(c.Locals) > maxLocals {
			t.Fatalf("code %d: %d locals", i, len(c.Locals))
		}
	}
	if n := int(m.NumImportedMemories) + len(m.Memories); n > 1 {
		t.Fatalf("%d memories", n)
	}
	names := make(map[string]bool)
	for _, e := range m.Exports {
		if names[e.Name] {
			t.Fatalf("duplicate export %q", e.Name)
		}
		names[e.Name] = true
	}
	for x := range m.DeclaredFuncRefs {
		if uint64(x) >= numFuncs {
			t.Fatalf("declared reference to unknown function %d", x)
		}
	}
	if m.DataCount != nil && int(*m.DataCount) != len(m.Datas) {
		t.Fatalf("data count %d, %d segments", *m.DataCount, len(m.Datas))
	}
	if m.Start != nil {
		if ft, ok := m.FuncType(*m.Start); !ok || len(ft.Params)+len(ft.Results) != 0 {
			t.Fatalf("start function %d of type %v", *m.Start, ft)
		}
	}
}

// decodeSeeds returns handcrafted modules and, when the spec suite is
// present, a few of its binaries from the scripts about the binary format
// and module-level validation.
func decodeSeeds() [][]byte {
	seeds := [][]byte{
		dtModule(),
		dtFullModule(),
		dtModule(dtVoid, dtOneFunc, dtMemory01, dtOneBody),
		dtModule(dtVoid, dtOneFunc, dtSec(secCode, dtVec(dtBody([][]byte{dtLocals(3, I32), dtLocals(2, F64)}, 0x20, 0x00, 0x1a)))),
		dtModule(dtSec(secCustom, dtName("name"), dtSec(1, dtVec(dtCat([]byte{0}, dtName("f")))))),
		{0, 'a', 's', 'm', 1, 0, 0, 0, 1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00},
	}
	root := specDir()
	if root == "" {
		return seeds
	}
	const perScript = 4
	for _, script := range []string{
		"binary", "binary-leb128", "custom", "data", "elem", "exports", "global", "imports",
		"linking", "memory", "names", "ref_func", "start", "table", "bulk", "utf8-import-field",
	} {
		files, _ := filepath.Glob(filepath.Join(root, script, script+".*.wasm"))
		sort.Strings(files)
		// Spread the picks over the script, from valid modules to malformed ones.
		for i := 0; i < perScript && i < len(files); i++ {
			f := files[i*len(files)/perScript]
			if b, err := os.ReadFile(f); err == nil && len(b) <= 1<<16 {
				seeds = append(seeds, b)
			}
		}
	}
	return seeds
}
