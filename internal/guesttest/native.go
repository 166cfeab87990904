package guesttest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// guestSource returns the path of a file under testdata/guests.
func guestSource(t testing.TB, rel string) string {
	t.Helper()
	dir, err := GuestsDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, filepath.FromSlash(rel))
}

// BuildC compiles the C guest testdata/guests/name/main.c with clang and
// wasi-libc, or skips the test if that toolchain is missing.
func BuildC(t testing.TB, name string) []byte {
	t.Helper()
	return BuildCFile(t, guestSource(t, name+"/main.c"))
}

// BuildCFile compiles the C program src (a path) as BuildC does.
func BuildCFile(t testing.TB, src string) []byte {
	t.Helper()
	name := filepath.Base(filepath.Dir(src))
	clang, err := exec.LookPath("clang")
	if err != nil {
		t.Skip("C guest: clang is not installed (apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32)")
	}
	sysroot := ""
	for _, root := range []string{"/usr", "/usr/share/wasi-sysroot", "/opt/wasi-sdk/share/wasi-sysroot"} {
		if _, err := os.Stat(filepath.Join(root, "include", "wasm32-wasi", "stdio.h")); err == nil {
			sysroot = root
			break
		}
		if _, err := os.Stat(filepath.Join(root, "include", "stdio.h")); err == nil && root != "/usr" {
			sysroot = root
			break
		}
	}
	if sysroot == "" {
		t.Skip("C guest: no wasi-libc sysroot found (apt-get install wasi-libc)")
	}
	out := filepath.Join(t.TempDir(), name+".wasm")
	cmd := exec.Command(clang, "--target=wasm32-wasi", "--sysroot="+sysroot, "-O2", "-o", out, src)
	if b, err := cmd.CombinedOutput(); err != nil {
		if bytes.Contains(b, []byte("libclang_rt.builtins-wasm32")) || bytes.Contains(b, []byte("wasm-ld")) {
			t.Skipf("C guest: toolchain incomplete (apt-get install lld libclang-rt-14-dev-wasm32): %s", b)
		}
		t.Fatalf("C guest: %v\n%s", err, b)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// BuildRust compiles the Rust guest testdata/guests/name/main.rs with a
// rustc that has the standard library for wasm32-wasip1 or wasm32-wasi, or
// skips the test if there is none.
func BuildRust(t testing.TB, name string) []byte {
	t.Helper()
	return BuildRustFile(t, guestSource(t, name+"/main.rs"))
}

// BuildRustFile compiles the Rust program src (a path) as BuildRust does.
func BuildRustFile(t testing.TB, src string) []byte {
	t.Helper()
	name := filepath.Base(filepath.Dir(src))
	var candidates []string
	if p, err := exec.LookPath("rustc"); err == nil {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "/usr/bin/rustc")
	for _, rustc := range candidates {
		for _, target := range []string{"wasm32-wasip1", "wasm32-wasi"} {
			libdir, err := exec.Command(rustc, "--print", "target-libdir", "--target", target).Output()
			if err != nil {
				continue
			}
			if m, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(libdir)), "libstd-*")); len(m) == 0 {
				continue
			}
			out := filepath.Join(t.TempDir(), name+".wasm")
			cmd := exec.Command(rustc, "--target", target, "-O", "-o", out, src)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("Rust guest: %s: %v\n%s", rustc, err, b)
			}
			bin, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			return bin
		}
	}
	t.Skip("Rust guest: no rustc with a wasm32-wasi standard library (apt-get install rustc libstd-rust-dev-wasm32)")
	return nil
}
