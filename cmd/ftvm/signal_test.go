package main

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestSignalExitStatus: a guest that ftvm exec or ftvm record runs stops at
// SIGINT or SIGTERM, and ftvm exits as a shell reports a process that the
// signal killed: 128 plus its number.
func TestSignalExitStatus(t *testing.T) {
	bin := ftvmBinary(t)
	g := guestFile(t, "ft-spin")
	for _, c := range []struct {
		name string
		args []string
		sig  syscall.Signal
	}{
		{"exec-int", []string{"exec", g, "1000"}, syscall.SIGINT},
		{"exec-term", []string{"exec", g, "1000"}, syscall.SIGTERM},
		{"record-int", []string{"record", "--log", filepath.Join(t.TempDir(), "log"), g, "1000"}, syscall.SIGINT},
		{"record-term", []string{"record", "--log", filepath.Join(t.TempDir(), "log"), g, "1000"}, syscall.SIGTERM},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(bin, c.args...)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// The guest's first line: ftvm is up and listening for signals.
			lines := bufio.NewScanner(out)
			if !lines.Scan() {
				cmd.Process.Kill()
				t.Fatalf("no output from the guest: %v", cmd.Wait())
			}
			go func() {
				for lines.Scan() {
				}
			}()
			if err := cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				t.Fatalf("ftvm %s did not stop at %v", c.args[0], c.sig)
			}
			if got, want := cmd.ProcessState.ExitCode(), 128+int(c.sig); got != want {
				t.Errorf("exit status %d, want %d", got, want)
			}
		})
	}
}
