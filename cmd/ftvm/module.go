package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxModuleBytes bounds the guest modules ftvm reads: far above any real
// program (a Go binary with the standard library is 2 to 30 MiB), and below
// what would exhaust the machine's memory when someone names a device or
// an endless pipe.
const maxModuleBytes = 256 << 20

// wasmMagic opens every WebAssembly binary module.
var wasmMagic = []byte("\x00asm")

// readModule reads the guest module at path: a WebAssembly binary of at
// most maxModuleBytes. Anything else is refused before it is read whole.
func readModule(path string) ([]byte, error) { return readModuleAtMost(path, maxModuleBytes) }

func readModuleAtMost(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s: a directory, not a WebAssembly module", path)
	}
	head := make([]byte, len(wasmMagic))
	if _, err := io.ReadFull(f, head); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%s: not a WebAssembly module (too short)", path)
		}
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if !bytes.Equal(head, wasmMagic) {
		return nil, fmt.Errorf("%s: not a WebAssembly module (it starts with %q, not %q)", path, head, wasmMagic)
	}
	rest, err := io.ReadAll(io.LimitReader(f, limit-int64(len(head))+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(head)+len(rest)) > limit {
		return nil, fmt.Errorf("%s: larger than %s, more than a guest module may be", path, sizeOf(limit))
	}
	return append(head, rest...), nil
}

func sizeOf(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
