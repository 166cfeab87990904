package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ftvm/internal/guesttest"
)

// Modules that end at once: a trap, and proc_exit(3).
var (
	// (module (func $_start unreachable) (export "_start" (func 0)))
	trapModule = []byte{0, 'a', 's', 'm', 1, 0, 0, 0,
		1, 4, 1, 0x60, 0, 0,
		3, 2, 1, 0,
		7, 10, 1, 6, '_', 's', 't', 'a', 'r', 't', 0, 0,
		10, 5, 1, 3, 0, 0x00, 0x0b,
	}
	// (module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
	//   (func $_start i32.const 3 call 0) (export "_start" (func 1)))
	exit3Module = append(append(append([]byte{0, 'a', 's', 'm', 1, 0, 0, 0,
		1, 8, 2, 0x60, 1, 0x7f, 0, 0x60, 0, 0,
		2, 36, 1, 22}, "wasi_snapshot_preview1"...), 9), append([]byte("proc_exit"), 0, 0,
		3, 2, 1, 1,
		7, 10, 1, 6, '_', 's', 't', 'a', 'r', 't', 0, 1,
		10, 8, 1, 6, 0, 0x41, 3, 0x10, 0, 0x0b)...)
)

// earlyEnds are the guests that end at once, with the status and detail
// ftvm reports for each.
var earlyEnds = []struct {
	name   string
	module []byte
	code   int
	detail string
}{
	{"exit3", exit3Module, 3, "exit status 3"},
	{"trap", trapModule, 134, "trapped: unreachable in "},
}

func moduleFile(t *testing.T, name string, bin []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".wasm")
	if err := os.WriteFile(p, bin, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// ftvmBinary builds the command once for the tests that run it as a
// process.
func ftvmBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ftvm-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "ftvm")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = err
			t.Logf("go build:\n%s", out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// TestRunGuestThatEnds: ftvm run of a guest that ends at once says so at
// once, with the detail, and exits with the guest's status (134 for a
// trap, as exec).
func TestRunGuestThatEnds(t *testing.T) {
	bin := ftvmBinary(t)
	for _, c := range earlyEnds {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, "run", "--hosts", "2", "--no-restart", moduleFile(t, c.name, c.module))
			cmd.Dir = t.TempDir()
			var out guesttest.SyncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("ftvm run did not end with its guest:\n%s", out.String())
			}
			if code := cmd.ProcessState.ExitCode(); code != c.code {
				t.Errorf("exit status %d, want %d", code, c.code)
			}
			if want := "ftvm run: vm " + c.name + ": the guest ended on h1: " + c.detail; !strings.Contains(out.String(), want) {
				t.Errorf("output lacks %q:\n%s", want, out.String())
			}
			if strings.Contains(out.String(), "did not come up") {
				t.Errorf("ftvm run waited for a pair that could not come up:\n%s", out.String())
			}
			t.Logf("ended in %v", time.Since(start).Round(time.Millisecond))
			// The VM is left as it ended, not stopped: status says how.
			_, st, _ := ftvm(t, "", "status", "--shared", filepath.Join(cmd.Dir, "ftvm-data"))
			if want := c.name + ": exited: " + c.detail; !strings.Contains(st, want) {
				t.Errorf("status lacks %q:\n%s", want, st)
			}
		})
	}
}

// TestStartGuestThatEnds: ftvm start of a guest that ends at once says so
// at once, and exits with the guest's status.
func TestStartGuestThatEnds(t *testing.T) {
	shared := t.TempDir()
	hostInProcess(t, shared, "a")
	hostInProcess(t, shared, "b")
	waitHosts(t, shared, "a", "b")
	for _, c := range earlyEnds {
		code, _, errs := ftvm(t, "", "start", "--shared", shared, "--name", c.name, "--wait", "5m", moduleFile(t, c.name, c.module))
		if want := "the guest ended on a: " + c.detail; code != c.code || !strings.Contains(errs, want) {
			t.Errorf("start of %s: status %d, %q; want %d and %q", c.name, code, errs, c.code, want)
		}
		_, st, _ := ftvm(t, "", "status", "--shared", shared, "--json")
		if !strings.Contains(st, `"exit_code": `) {
			t.Errorf("status --json lacks the exit code:\n%s", st)
		}
	}
	// Started again under its name with another module: said so.
	code, out, errs := ftvm(t, "", "start", "--shared", shared, "--name", "exit3", "--wait", "5m", moduleFile(t, "trap", trapModule))
	if code != 134 || !strings.Contains(out, "vm exit3: started again with a new module") {
		t.Errorf("start of exit3 with the trap module: status %d, %q %q", code, out, errs)
	}
}
