//go:build linux

package wasi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ftvm/wasi"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// mustRun runs a guest with wasi.System and fails the test on a run error.
func mustRun(t *testing.T, bin []byte, cfg wasi.Config) runResult {
	t.Helper()
	res, err := runSystem(testContext(t), bin, cfg, nil)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, res.stdout, res.stderr)
	}
	return res
}

// compare runs a guest with wasi.System and with wazero's WASI and requires
// the same output and status. mkCfg makes a fresh configuration for each
// run (a fresh directory, a fresh stdin).
func compare(t *testing.T, bin []byte, mkCfg func() wasi.Config) runResult {
	t.Helper()
	got := mustRun(t, bin, mkCfg())
	want, err := runReference(testContext(t), bin, mkCfg())
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, want.stdout, want.stderr)
	}
	if got.stdout != want.stdout || got.code != want.code {
		t.Errorf("wasi.System and wazero's WASI differ\nSystem (status %d):\n%s\nwazero (status %d):\n%s\nSystem stderr:\n%s",
			got.code, got.stdout, want.code, want.stdout, got.stderr)
	}
	return got
}

func TestGoGuestEnv(t *testing.T) {
	bin := buildGo(t, "wasi-basics")
	res := compare(t, bin, func() wasi.Config {
		return wasi.Config{
			Args: []string{"wasi-basics", "env", "two words", "ünïcode"},
			Env:  []string{"HOME=/home/guest", "EMPTY=", "GREETING=hello, world"},
		}
	})
	if res.code != 0 || !strings.Contains(res.stdout, `env "GREETING=hello, world"`) {
		t.Errorf("status %d, stdout:\n%s", res.code, res.stdout)
	}
}

func TestGoGuestStdin(t *testing.T) {
	bin := buildGo(t, "wasi-basics")
	input := strings.Repeat("the quick brown fox\n", 20000) // more than the host buffers at once
	res := compare(t, bin, func() wasi.Config {
		return wasi.Config{Args: []string{"wasi-basics", "stdin"}, Stdin: strings.NewReader(input)}
	})
	want := fmt.Sprintf("stdin %d bytes\n%s", len(input), strings.ToUpper(input))
	if res.stdout != want {
		t.Errorf("stdout is %d bytes, want %d", len(res.stdout), len(want))
	}
}

func TestGoGuestExit(t *testing.T) {
	bin := buildGo(t, "wasi-basics")
	res := compare(t, bin, func() wasi.Config { return wasi.Config{Args: []string{"wasi-basics", "exit", "7"}} })
	if res.code != 7 || res.stdout != "exiting\n" {
		t.Errorf("status %d, stdout %q", res.code, res.stdout)
	}
}

func TestGoGuestClock(t *testing.T) {
	bin := buildGo(t, "wasi-basics")
	res := mustRun(t, bin, wasi.Config{Args: []string{"wasi-basics", "clock"}})
	if res.code != 0 || res.stdout != "clock ok\n" {
		t.Errorf("status %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

func TestGoGuestRandom(t *testing.T) {
	bin := buildGo(t, "wasi-basics")
	res := mustRun(t, bin, wasi.Config{Args: []string{"wasi-basics", "random"}})
	if res.code != 0 || res.stdout != "random ok\n" {
		t.Errorf("status %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

func TestGoGuestFiles(t *testing.T) {
	bin := buildGo(t, "wasi-fs")
	var dirs []string
	res := compare(t, bin, func() wasi.Config {
		dir := t.TempDir()
		dirs = append(dirs, dir)
		return wasi.Config{Args: []string{"wasi-fs", "fs", "/data"}, Preopens: []wasi.Preopen{{GuestPath: "/data", HostDir: dir}}}
	})
	t.Logf("transcript:\n%s", res.stdout)
	if res.code != 0 || strings.Contains(res.stdout, "FAIL") {
		t.Errorf("status %d, stdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	// The guest cleans up after itself.
	for _, dir := range dirs {
		if list, _ := os.ReadDir(dir); len(list) != 0 {
			t.Errorf("%s left %d entries", dir, len(list))
		}
	}
}

func TestGoGuestEscape(t *testing.T) {
	bin := buildGo(t, "wasi-fs")
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	must(os.Mkdir(data, 0o755))
	must(os.WriteFile(filepath.Join(dir, "secret"), []byte("secret"), 0o644))
	must(os.Mkdir(filepath.Join(data, "sub"), 0o755))
	must(os.WriteFile(filepath.Join(data, "sub", "target.txt"), []byte("inside"), 0o644))
	must(os.Symlink("/etc", filepath.Join(data, "outabs")))
	must(os.Symlink("../..", filepath.Join(data, "outrel")))
	must(os.Symlink("sub/target.txt", filepath.Join(data, "inside")))
	res := mustRun(t, bin, wasi.Config{Args: []string{"wasi-fs", "escape", "/data"},
		Preopens: []wasi.Preopen{{GuestPath: "/data", HostDir: data}}})
	const notCapable = "errno 76"
	want := []string{
		"absolute link, intermediate: " + notCapable,
		"absolute link, last: " + notCapable,
		"absolute link, lstat: no error",
		"relative link: " + notCapable,
		"relative link, intermediate: " + notCapable,
		"link inside: no error",
		`content: "inside"`,
		"symlink absolute target: " + notCapable,
		"symlink relative target: no error",
		"through new relative link: " + notCapable,
		// Go resolves the path lexically to /etc/passwd, which no
		// preopen holds, and reports EBADF without calling the host.
		"dot-dot: errno 8",
		"create through link: " + notCapable,
		"mkdir through link: " + notCapable,
		"rename through link: " + notCapable,
	}
	if got := strings.Split(strings.TrimSpace(res.stdout), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("transcript:\n%s\nwant:\n%s\nstderr:\n%s", res.stdout, strings.Join(want, "\n"), res.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "stolen")); err == nil {
		t.Error("a file was renamed out of the preopen")
	}
}

// listenerConfig returns a wasi.Config with one listener on a loopback port.
func listenerConfig(t *testing.T, args ...string) (wasi.Config, net.Addr) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return wasi.Config{Args: args, Listeners: []wasi.Listener{{Name: "echo", Listener: ln}}}, ln.Addr()
}

// runAsync runs a guest with wasi.System in the background.
func runAsync(t *testing.T, bin []byte, cfg wasi.Config) <-chan runResult {
	t.Helper()
	done := make(chan runResult, 1)
	ctx := testContext(t)
	go func() {
		res, err := runSystem(ctx, bin, cfg, nil)
		if err != nil {
			res.stderr += "\nrun error: " + err.Error()
			res.code = 1000
		}
		done <- res
	}()
	return done
}

func waitRun(t *testing.T, done <-chan runResult) runResult {
	t.Helper()
	select {
	case res := <-done:
		return res
	case <-time.After(5 * time.Minute):
		t.Fatal("guest did not finish")
	}
	return runResult{}
}

func TestGoGuestEchoServer(t *testing.T) {
	bin := buildGo(t, "wasi-echo")
	cfg, addr := listenerConfig(t, "wasi-echo", "3")
	done := runAsync(t, bin, cfg)

	// Three clients at once, each sending several messages.
	type result struct {
		i   int
		err error
	}
	results := make(chan result, 3)
	for i := range 3 {
		go func() {
			c, err := net.DialTimeout("tcp", addr.String(), 10*time.Second)
			if err != nil {
				results <- result{i, err}
				return
			}
			defer c.Close()
			// Generous: the guest may still be compiling (slowly, under
			// the race detector).
			c.SetDeadline(time.Now().Add(3 * time.Minute))
			r := bufio.NewReader(c)
			for j := range 5 {
				msg := fmt.Sprintf("client %d message %d %s\n", i, j, strings.Repeat("x", 1000*j))
				if _, err := io.WriteString(c, msg); err != nil {
					results <- result{i, err}
					return
				}
				line, err := r.ReadString('\n')
				if err != nil || line != msg {
					results <- result{i, fmt.Errorf("echo %q, %v; want %q", line, err, msg)}
					return
				}
			}
			results <- result{i, nil}
		}()
	}
	for range 3 {
		if r := <-results; r.err != nil {
			t.Errorf("client %d: %v", r.i, r.err)
		}
	}
	res := waitRun(t, done)
	if res.code != 0 || !strings.Contains(res.stdout, "served 3 connections") {
		t.Errorf("status %d, stdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
}

// exchange connects to addr, sends line, and returns all it reads until
// the server closes.
func exchange(t *testing.T, addr net.Addr, line string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	if _, err := io.WriteString(c, line); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c) // the guest shuts down its writing side
	if err != nil {
		t.Fatal(err)
	}
	return string(got)
}

func TestCGuest(t *testing.T) {
	bin := buildC(t, "wasi-c")
	res := compare(t, bin, func() wasi.Config {
		return wasi.Config{Args: []string{"wasi-c", "/data"}, Env: []string{"GREETING=hi from the host"},
			Preopens: []wasi.Preopen{{GuestPath: "/data", HostDir: t.TempDir()}}}
	})
	for _, want := range []string{"GREETING=hi from the host", "read: from C 42", "read: appended", "size 19", "list: c.txt csub", "open ../ fails: ok"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, res.stdout)
		}
	}

	cfg, addr := listenerConfig(t, "wasi-c", "/data")
	cfg.Preopens = []wasi.Preopen{{GuestPath: "/data", HostDir: t.TempDir()}}
	done := runAsync(t, bin, cfg)
	if got := exchange(t, addr, "hello from a client\n"); got != "HELLO FROM A CLIENT\n" {
		t.Errorf("reply %q", got)
	}
	res = waitRun(t, done)
	if res.code != 0 || !strings.Contains(res.stdout, "served 20 bytes") || strings.Contains(res.stdout, "FAIL") {
		t.Errorf("status %d, stdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
}

func TestRustGuest(t *testing.T) {
	bin := buildRust(t, "wasi-rust")
	res := compare(t, bin, func() wasi.Config {
		return wasi.Config{Args: []string{"wasi-rust", "/data"}, Env: []string{"GREETING=hi from the host"},
			Preopens: []wasi.Preopen{{GuestPath: "/data", HostDir: t.TempDir()}}}
	})
	for _, want := range []string{"GREETING=hi from the host", "read: from Rust\nappended", "size 19", "list: rsub", "escape refused"} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, res.stdout)
		}
	}

	cfg, addr := listenerConfig(t, "wasi-rust", "/data")
	cfg.Preopens = []wasi.Preopen{{GuestPath: "/data", HostDir: t.TempDir()}}
	done := runAsync(t, bin, cfg)
	if got := exchange(t, addr, "stressed\n"); got != "rust: desserts\n" {
		t.Errorf("reply %q", got)
	}
	res = waitRun(t, done)
	if res.code != 0 || !strings.Contains(res.stdout, "served 9 bytes") {
		t.Errorf("status %d, stdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
}

// TestCGuestDirectoryOps compares, with wazero, what System answers to
// calls that make no sense on a directory and to renames of directories.
func TestCGuestDirectoryOps(t *testing.T) {
	bin := buildC(t, "wasi-dirops")
	res := compare(t, bin, func() wasi.Config {
		return wasi.Config{Args: []string{"wasi-dirops"}, Preopens: []wasi.Preopen{{GuestPath: "/data", HostDir: t.TempDir()}}}
	})
	t.Logf("transcript:\n%s", res.stdout)
}

// TestCGuestRights runs the preview-1 rights model from a guest: wazero
// does not implement it, so the transcript is checked as it is.
func TestCGuestRights(t *testing.T) {
	bin := buildC(t, "wasi-dirops")
	dir := t.TempDir()
	res := mustRun(t, bin, wasi.Config{Args: []string{"wasi-dirops", "rights"},
		Preopens: []wasi.Preopen{{GuestPath: "/data", HostDir: dir}}})
	const notCapable = 76
	want := fmt.Sprintf(`put f: 0
raise directory to seek: %[1]d
drop path_filestat_set_size: 0
open O_TRUNC: %[1]d
open: 0
read: 0
drop fd_read: 0
read without fd_read: %[1]d
raise fd_read again: %[1]d
seek: 0
file rights: %#[2]x
drop path_unlink_file: 0
unlink without the right: %[1]d
`, notCapable, wasi.RightFdSeek|wasi.RightFdTell)
	if res.stdout != want {
		t.Errorf("transcript:\n%s\nwant:\n%s\nstderr:\n%s", res.stdout, want, res.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "f")); err != nil || string(b) != "data" {
		t.Errorf("f = %q, %v; the refused O_TRUNC must leave it whole", b, err)
	}
}
