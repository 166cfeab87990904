package guesttest

import (
	"fmt"
	"os"
	"testing"

	"ftvm/wasm"
)

// EnvEngineVar names the engine tests run guests on: "interp" or
// "compiler", as the wasm package's own tests read it. Unset, tests use
// wasm.DefaultEngine(), as ftvm does; scripts/test runs the engine-level
// suites again with it set to interp, so both tiers are tested.
const EnvEngineVar = "FTVM_WASM_ENGINE"

// EnvEngine returns the engine $FTVM_WASM_ENGINE names, or
// wasm.DefaultEngine() when it is unset. A value that names no engine
// panics: a typo must not quietly test the default instead.
func EnvEngine() wasm.Engine {
	s := os.Getenv(EnvEngineVar)
	if s == "" {
		return wasm.DefaultEngine()
	}
	e, err := wasm.ParseEngine(s)
	if err != nil {
		panic(fmt.Sprintf("guesttest: %s: %v", EnvEngineVar, err))
	}
	return e
}

// Config returns the wasm configuration tests compile guests with: the
// default limits on EnvEngine.
func Config() wasm.Config { return wasm.Config{Engine: EnvEngine()} }

// EngineArgs returns the ftvm flags that select EnvEngine, for tests that
// run the command line (ftvm exec, record, replay, run, host).
func EngineArgs() []string { return []string{"--engine", EnvEngine().String()} }

// TierPairs returns the two engine tiers in both orders, for the tests of
// a log, a snapshot or a pair that crosses from one tier to the other. It
// skips t where the compiler runs no native code: both would be the
// interpreter.
func TierPairs(t testing.TB) [][2]wasm.Engine {
	t.Helper()
	if !wasm.CompilerAvailable() {
		t.Skip("the compiler tier runs native code on linux/amd64 only: both tiers would be the interpreter")
	}
	return [][2]wasm.Engine{{wasm.EngineCompiler, wasm.EngineInterpreter}, {wasm.EngineInterpreter, wasm.EngineCompiler}}
}
