// Package native holds machine code that the engine generated and calls it
// from Go: executable memory outside the Go heap, released when no longer
// referenced, and a trampoline that enters the code with one argument.
//
// The contract for the code it runs (see docs/RATIONALE.md, "Why is native
// code safe inside a Go process?"): it is called with the argument in RDI
// and returns with RET; it may clobber RAX, RBX, RCX, RDX, RSI, RDI, R8 to
// R13 and X0 to X14, and nothing else (RSP, RBP, R14 and R15 belong to Go);
// it pushes nothing on the stack; it calls nothing; it leaves the
// direction flag clear (as Go expects it) whenever it may return; it never
// writes a Go pointer anywhere; and every memory access it makes is bounds-checked by
// its own code, because a fault in it would kill the process.
//
// The package is available on linux/amd64 only; Available reports it.
package native
