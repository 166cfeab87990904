package native

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Available reports whether this platform can run generated code.
const Available = true

// Code is a block of executable machine code. Its memory is unmapped once
// the Code is unreachable, so whoever holds an address inside it must hold
// the Code too.
type Code struct {
	mem []byte
}

// New copies code into fresh memory and makes it executable (and no longer
// writable).
func New(code []byte) (*Code, error) {
	if len(code) == 0 {
		return nil, fmt.Errorf("native: no code")
	}
	size := (len(code) + unix.Getpagesize() - 1) &^ (unix.Getpagesize() - 1)
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return nil, fmt.Errorf("native: mmap of %d bytes: %w", size, err)
	}
	copy(mem, code)
	// Fill the rest of the page with int3, so a stray jump stops at once.
	for i := len(code); i < size; i++ {
		mem[i] = 0xcc
	}
	if err := unix.Mprotect(mem, unix.PROT_READ|unix.PROT_EXEC); err != nil {
		_ = unix.Munmap(mem)
		return nil, fmt.Errorf("native: mprotect of %d bytes: %w", size, err)
	}
	c := &Code{mem: mem}
	runtime.AddCleanup(c, func(m []byte) { _ = unix.Munmap(m) }, mem)
	return c, nil
}

// Addr returns the address of the byte at off.
func (c *Code) Addr(off int) uintptr {
	return uintptr(unsafe.Pointer(&c.mem[off]))
}

// Len returns the length of the code's memory (whole pages).
func (c *Code) Len() int { return len(c.mem) }

// Call runs the code at entry, which must lie inside c, with arg in RDI.
// The memory arg points to must stay referenced by the caller during the
// call (it is, as an argument of Call).
func (c *Code) Call(entry uintptr, arg unsafe.Pointer) {
	call(entry, arg)
	runtime.KeepAlive(c)
}

// call is the trampoline (native_amd64.s).
//
//go:noescape
func call(entry uintptr, arg unsafe.Pointer)
