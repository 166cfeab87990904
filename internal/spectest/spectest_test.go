package spectest

import (
	"os"
	"path/filepath"
	"testing"

	"ftvm/wasm"
)

// specDir returns where the converted spec suite is: $FTVM_WASM_SPEC, or
// the shared copy beside the repository.
func specDir() string {
	if d := os.Getenv("FTVM_WASM_SPEC"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "..", "shared", "wasm-spec", "json")
}

// TestSpecSuite runs every script of the WebAssembly spec suite through the
// engine, one subtest per script, under each of the engine's tiers (the
// compiler tier where it is available).
func TestSpecSuite(t *testing.T) {
	engines := []wasm.Engine{wasm.EngineInterpreter}
	if wasm.CompilerAvailable() {
		engines = append(engines, wasm.EngineCompiler)
	}
	for _, engine := range engines {
		t.Run(engine.String(), func(t *testing.T) { testSpecSuite(t, engine) })
	}
}

func testSpecSuite(t *testing.T, engine wasm.Engine) {
	dir := specDir()
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		abs, _ := filepath.Abs(dir)
		t.Skipf("WebAssembly spec suite not found at %s (set FTVM_WASM_SPEC to its json directory)", abs)
	}
	files, err := FindFiles([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		t.Run(ScriptName(f), func(t *testing.T) {
			t.Parallel()
			res := RunFile(t.Context(), f, Options{Config: wasm.Config{Engine: engine}})
			for _, fl := range res.Failures {
				t.Error(fl.String())
			}
			if res.SkippedWhole() {
				t.Skipf("all %d commands skipped: %v", res.Skipped, sortedReasons(res.Skips))
			}
			if res.Skipped > 0 {
				t.Logf("%d of %d commands skipped: %v", res.Skipped, res.Commands, res.Skips)
			}
		})
	}
}
