package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ftvm/internal/guesttest"
)

// TestStartEach: ftvm start --each starts every VM of its file (quoted
// arguments, comments and blank lines as a shell script has them), each
// served and protected, and refuses in the same batch a name twice and a
// listener twice while starting the rest.
func TestStartEach(t *testing.T) {
	shared := t.TempDir()
	hostInProcess(t, shared, "a")
	hostInProcess(t, shared, "b")
	waitHosts(t, shared, "a", "b")
	g := guestFile(t, "ft-counter")
	var lines []string
	var addrs []string
	for i := range 20 {
		addr := guesttest.FreeAddr(t)
		addrs = append(addrs, addr)
		lines = append(lines, fmt.Sprintf("--name 'vm-%d' --listen %s --env \"GREETING=hello world\" %s", i, addr, g))
	}
	lines = append(lines, "", "# two that clash with the VMs above",
		fmt.Sprintf("--name 'vm-3' --listen %s %s", guesttest.FreeAddr(t), g),
		fmt.Sprintf("--name other --listen %s %s", addrs[7], g))
	file := filepath.Join(t.TempDir(), "vms")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := ftvm(t, "", "start", "--shared", shared, "--each", file, "--wait", "2m")
	if code != 1 {
		t.Fatalf("start --each: status %d, want 1 (two refused)\n%s%s", code, out, errs)
	}
	for _, want := range []string{"vm vm-3: not started: vm-3: named twice in this batch", "vm other: not started: listener " + addrs[7] + " is vm vm-7's"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if !strings.Contains(out, "started 20 of 22 vms") || strings.Count(out, "running, backup connected") != 20 {
		t.Fatalf("want 20 started and up:\n%s", out)
	}
	for i, addr := range addrs {
		if got := counterRequest(t, addr, "inc"); got != "1" {
			t.Errorf("vm %d: inc answered %q", i, got)
		}
	}
	_, st, _ := ftvm(t, "", "status", "--shared", shared)
	if !strings.Contains(st, "20 VMs: 20 running, 20 protected") {
		t.Errorf("status:\n%s", st)
	}
}

// TestStartEachBadLines: a file with a bad line starts nothing, and says
// which lines are bad and why; flags for one VM given on the command line
// with --each are refused.
func TestStartEachBadLines(t *testing.T) {
	shared := t.TempDir()
	g := guestFile(t, "ft-counter")
	bad := filepath.Join(t.TempDir(), "bad.wasm")
	if err := os.WriteFile(bad, []byte("\x00asm\x01\x00\x00\x00\x05"), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "vms")
	body := strings.Join([]string{
		"--name ok --listen 127.0.0.1:7001 " + g,
		"--listen 127.0.0.1:7002 " + g,
		"--name nofile /nonexistent.wasm",
		"--name quote 'unterminated " + g,
		"--name badmod " + bad,
		"--name noguest",
		"--name badflag --nosuch " + g,
	}, "\n")
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := ftvm(t, "", "start", "--shared", shared, "--each", file)
	if code != 2 || out != "" {
		t.Fatalf("status %d, stdout %q; want 2 and nothing started", code, out)
	}
	for _, want := range []string{"nothing started", ":2: no --name", ":3: vm nofile:", ":4: ", ":5: vm badmod: bad.wasm:", ":6: vm noguest: no GUEST.wasm", ":7: flag provided but not defined: -nosuch"} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	if _, err := os.Stat(filepath.Join(shared, "vms", "ok")); err == nil {
		t.Error("a VM of a file with bad lines was started")
	}
	if code, _, errs := ftvm(t, "", "start", "--shared", shared, "--each", file, "--listen", "127.0.0.1:7003"); code != 2 || !strings.Contains(errs, "belong on each VM's line of the file: --listen") {
		t.Errorf("--each with --listen: status %d, %s", code, errs)
	}
	if code, _, errs := ftvm(t, "", "start", "--shared", shared, "--each", file, g); code != 2 || !strings.Contains(errs, "on its line of the file") {
		t.Errorf("--each with a guest: status %d, %s", code, errs)
	}
	if code, _, errs := ftvm(t, "", "start", "--shared", shared, "--each", "/nonexistent"); code != 2 || !strings.Contains(errs, "no such file") {
		t.Errorf("--each of a missing file: status %d, %s", code, errs)
	}
	if code, out, errs := ftvm(t, "--name x "+g+"\n", "start", "--shared", shared, "--each", "-", "--wait", "0"); code != 1 || !strings.Contains(errs, "need two live hosts") {
		t.Errorf("--each - without hosts: status %d, %s%s", code, out, errs)
	}
}
