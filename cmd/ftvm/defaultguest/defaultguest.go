// Package defaultguest holds the guest ftvm run starts when given none: a
// small WebAssembly (WASI preview1) TCP counter server, built from C with
// wasi-libc and embedded in the ftvm binary.
//
// The guest serves the first listener the host hands it (FTVM_LISTEN_FDS),
// many clients at once. Every line a client sends is one request: "get"
// (surrounding white space ignored) answers the current value, anything
// else increments the counter and answers the new value; each reply is one
// decimal number and "\n". It prints "ft-counter listening, value N" at
// start. With -file PATH it starts from the value stored in PATH (0 if the
// file is new or empty; other contents are an error) and, before answering
// each increment, overwrites PATH with the new value as one fixed-width
// line ("%020d\n"); a failed write ends it with status 1. This is the
// protocol of the Go guest testdata/guests/ft-counter. More than 256
// clients at once are refused: their connections are closed at once.
//
// The source is testdata/guests/ft-counter-c/counter.c. After changing it,
// rebuild counter.wasm with
//
//	bash scripts/build-default-guest
//
// (clang, wasm-ld and wasi-libc; on Debian: apt-get install clang lld
// wasi-libc libclang-rt-14-dev-wasm32) and commit both.
package defaultguest

import (
	_ "embed"
	"slices"
)

//go:embed counter.wasm
var counter []byte

// Name is the guest's program name, its conventional argv[0].
const Name = "ft-counter"

// Counter returns the WebAssembly binary of the counter server. Each call
// returns a fresh copy, which the caller may keep or modify.
func Counter() []byte {
	return slices.Clone(counter)
}
