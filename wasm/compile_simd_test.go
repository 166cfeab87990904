package wasm

import (
	"strings"
	"testing"
)

// TestSIMDInstructionNamed: a module with a SIMD instruction is refused
// with an error that says SIMD, not only the opcode.
func TestSIMDInstructionNamed(t *testing.T) {
	// (module (func) ...) whose body is 0xfd 0x0c (v128.const), end.
	bin := []byte{0, 'a', 's', 'm', 1, 0, 0, 0,
		1, 4, 1, 0x60, 0, 0,
		3, 2, 1, 0,
		10, 6, 1, 4, 0, 0xfd, 0x0c, 0x0b,
	}
	_, err := Compile(bin, Config{})
	if err == nil || !strings.Contains(err.Error(), "SIMD") {
		t.Fatalf("Compile: %v; want an error naming SIMD", err)
	}
}
