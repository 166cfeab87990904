// Package wasm is ftvm's WebAssembly engine: it decodes, validates and
// executes WebAssembly 2.0 modules (without SIMD) in a way shaped for a
// hypervisor rather than for an embedding application.
//
// Three properties set it apart from general-purpose runtimes, and are why
// ftvm has its own engine (see docs/RATIONALE.md):
//
//   - A call of a host function never runs host code inside the engine.
//     Execution stops and Run returns a StopHostCall with the function and its
//     arguments (a VM exit); the caller services it and calls Resume with the
//     results. Run also returns when an instruction budget is used up, when
//     the invoked function returns, and on a trap.
//   - The engine keeps an exact instruction counter, part of the state and
//     identical across runs, processes and machines for the same module and
//     inputs. Positions of nondeterministic events are instruction counts.
//   - The complete state of a running instance (memory, globals, tables,
//     value stack, call frames, instruction count, a pending host call) is
//     encoded by Snapshot and resumed by Restore in another process.
//     Linear memory records which 4 KiB pages were written since the last
//     reset, for the live clone's iterative pre-copy.
//
// Floating-point results that are NaN are made canonical, so state is
// bit-identical on every machine.
//
// The pipeline is Decode (binary format and module-level validation), then
// Compile (validation of function bodies and translation to a flat internal
// code with resolved branch targets), then Store.Instantiate, then
// Instance.Invoke and Instance.Run.
//
// Run interprets the internal code, or, with Config.Engine set to
// EngineCompiler on linux/amd64, runs native code translated from it, with
// the same counts, results, traps, snapshots and dirty pages: the
// interpreter remains the reference and executes whatever the translation
// leaves to it.
//
// Typical use by a hypervisor:
//
//	cm, err := wasm.Compile(bin, wasm.Config{})
//	store := wasm.NewStore()
//	inst, err := store.Instantiate(cm, resolveImports)
//	err = inst.Invoke(inst.ExportedFunc("_start"), nil)
//	for {
//		stop, err := inst.Run(budget)
//		if err != nil { ... a *Trap ... }
//		switch stop.Reason {
//		case wasm.StopHostCall:
//			results := service(stop.Func.ImportModule, stop.Func.ImportName, stop.Args)
//			inst.Resume(results)
//		case wasm.StopBudget:
//			// time slice over: check timers, flow control, then go on
//		case wasm.StopDone:
//			return stop.Results
//		}
//	}
package wasm
