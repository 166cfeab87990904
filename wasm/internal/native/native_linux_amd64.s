#include "textflag.h"

// func call(entry uintptr, arg unsafe.Pointer)
//
// ABI0, no frame: the generated code uses no stack beyond the return
// address that CALL pushes, which fits in the space below SP that every
// NOSPLIT function may use. It preserves RSP, RBP, R14 and R15.
TEXT ·call(SB), NOSPLIT, $0-16
	MOVQ entry+0(FP), AX
	MOVQ arg+8(FP), DI
	CALL AX
	RET
