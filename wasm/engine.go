package wasm

// DefaultEngine returns the engine guests run on unless told otherwise:
// the compiler where it runs native code (linux/amd64), the interpreter
// elsewhere, where the compiler would only fall back to it. The two give
// the same instruction counts at every exit, so logs and snapshots do not
// depend on the choice; the compiler is just faster.
func DefaultEngine() Engine {
	if CompilerAvailable() {
		return EngineCompiler
	}
	return EngineInterpreter
}
