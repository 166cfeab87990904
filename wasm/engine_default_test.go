package wasm

import "testing"

func TestDefaultEngine(t *testing.T) {
	want := EngineInterpreter
	if CompilerAvailable() {
		want = EngineCompiler
	}
	if got := DefaultEngine(); got != want {
		t.Fatalf("DefaultEngine() = %v, want %v (CompilerAvailable %v)", got, want, CompilerAvailable())
	}
	e, err := ParseEngine(DefaultEngine().String())
	if err != nil || e != DefaultEngine() {
		t.Fatalf("ParseEngine(%q) = %v, %v: the default must parse back", DefaultEngine(), e, err)
	}
}
