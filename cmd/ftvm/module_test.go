package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadModuleRefusesWhatIsNoModule: a device, a directory, a text file,
// a file too short and one too large are refused with a message that says
// why, before they are read whole; a module at the limit is read.
func TestReadModuleRefusesWhatIsNoModule(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	atLimit := append([]byte("\x00asm"), make([]byte, 60)...)
	for _, c := range []struct {
		path, want string
	}{
		{"/dev/zero", "not a WebAssembly module"},
		{dir, "a directory"},
		{write("text", []byte("#!/bin/sh\necho hi\n")), "not a WebAssembly module"},
		{write("short", []byte("\x00a")), "too short"},
		{write("large", append(atLimit, 0)), "larger than 64 bytes"},
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		_, err := readModuleAtMost(c.path, 64)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.path, err, c.want)
		}
	}
	if b, err := readModuleAtMost(write("ok", atLimit), 64); err != nil || len(b) != 64 {
		t.Errorf("a module of 64 bytes, the limit: %d bytes, %v", len(b), err)
	}
}
