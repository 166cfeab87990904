//go:build !(linux && amd64)

package native

import (
	"errors"
	"unsafe"
)

// Available reports whether this platform can run generated code.
const Available = false

// Code is unavailable on this platform.
type Code struct{}

// New reports that generated code cannot run on this platform.
func New([]byte) (*Code, error) { return nil, errors.New("native: not available on this platform") }

// Addr is never called on this platform.
func (*Code) Addr(int) uintptr { return 0 }

// Len is never called on this platform.
func (*Code) Len() int { return 0 }

// Call is never called on this platform.
func (*Code) Call(uintptr, unsafe.Pointer) {}
