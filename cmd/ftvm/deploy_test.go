package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnit checks deploy/ftvm-host.service with systemd-analyze
// verify, where there is one, with ExecStart pointing at an executable
// that exists here; and that its command line is one ftvm host accepts.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../../deploy/ftvm-host.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/ftvm host ") {
		t.Fatal("the unit does not run ftvm host from /usr/local/bin")
	}
	for _, flag := range []string{"--name", "--addr", "--sessions", "--store"} {
		if !strings.Contains(string(unit), flag+" ") {
			t.Errorf("the unit does not pass %s", flag)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze here")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ftvm-host.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/ftvm", self)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
