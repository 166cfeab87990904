// Package spectest runs the WebAssembly core specification test suite, as
// converted by wabt's wast2json, against ftvm's engine (package wasm).
//
// A script is a NAME.json file listing commands, beside the NAME.N.wasm
// module binaries they refer to. RunFile executes one script's commands in
// order with state of its own: a store, the modules loaded so far (the
// current one and those named $NAME), the modules registered for import,
// and a fresh "spectest" host module (print functions, constant globals, a
// table and a memory, as the wast harness defines them). RunFiles runs many
// scripts concurrently and reports their results in order.
//
// Results are compared bit for bit, except that "nan:canonical" and
// "nan:arithmetic" expectations accept any NaN of their class, and a
// non-null funcref expectation accepts any non-null reference. Traps are
// checked by kind, not by message.
//
// What the engine does not support is skipped, with the reason counted:
// scripts whose name starts with "simd" and commands with v128 values
// (SIMD), and commands on text-format modules (the engine reads binaries
// only). Every invocation runs under an instruction budget so that a
// looping engine fails a command instead of hanging the run.
package spectest
