package wasm

import (
	"fmt"
	"os"
)

// testEngine is the engine the package's tests compile modules with: the
// interpreter, or the engine $FTVM_WASM_ENGINE names ("interp" or
// "compiler"), so that every test of the package runs under either tier.
// Tests that compare the tiers use both whatever it says.
var testEngine = func() Engine {
	s := os.Getenv("FTVM_WASM_ENGINE")
	if s == "" {
		return EngineInterpreter
	}
	e, err := ParseEngine(s)
	if err != nil {
		panic(fmt.Sprintf("FTVM_WASM_ENGINE: %v", err))
	}
	return e
}()

// EngineForTests is testEngine for the package's external tests.
var EngineForTests = testEngine

// NativeCountForTests returns how many of the instance's instructions ran
// as native code.
func NativeCountForTests(in *Instance) uint64 { return in.exec.nativeCount }

// InterpretedFuncsForTests returns how many of cm's functions have no
// native code.
func InterpretedFuncsForTests(cm *CompiledModule) int {
	n := 0
	for _, f := range cm.funcs {
		if f.native == nil {
			n++
		}
	}
	return n
}
