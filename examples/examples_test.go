// Package examples_test builds each example guest under examples/, runs it
// under ftvm as a real fault-tolerant pair (ftvm run with two host
// processes), talks to it, kills the primary's host with SIGKILL and checks
// that the backup took over with the guest's state intact. The examples are
// what docs/GUESTS.md shows; this keeps them working.
package examples_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftvm/internal/guesttest"
)

// waitFor bounds every wait of these tests. It is generous: the machine
// may be loaded, and nothing here asserts on how long things take.
const waitFor = 60 * time.Second

func TestGoHTTP(t *testing.T) {
	guest := buildGo(t, "go-http")
	pair := startPair(t, guest, true)
	client := &http.Client{
		Timeout: waitFor,
		// A fresh connection per request: connections to the primary
		// end with it.
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	base := "http://" + pair.addr

	expect(t, client, "PUT", base+"/kv/greeting", "hello, ftvm", "ok")
	expect(t, client, "POST", base+"/incr/visits", "", "1")
	expect(t, client, "POST", base+"/incr/visits", "", "2")
	expect(t, client, "GET", base+"/kv/greeting", "", "hello, ftvm")

	pair.killPrimary()
	// The first request after the failover may find no one listening yet
	// (the backup goes live a fraction of a second later): retry it.
	deadline := time.Now().Add(waitFor)
	for {
		got, err := request(client, "GET", base+"/kv/greeting", "")
		if err == nil {
			if got != "hello, ftvm" {
				t.Fatalf("after failover: GET /kv/greeting = %q, want %q", got, "hello, ftvm")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after failover: no answer within %v: %v", waitFor, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	pair.checkBackupLive()
	// Every increment answered before the failover was kept, exactly once.
	expect(t, client, "POST", base+"/incr/visits", "", "3")
	expect(t, client, "GET", base+"/kv/", "", "greeting=hello, ftvm\nvisits=3")
	// The backup's host wrote the last change to the VM's disk.
	disk := filepath.Join(pair.shared, "vms", "go-http", "disk", "kv.json")
	if b, err := os.ReadFile(disk); err != nil || string(b) != `{"greeting":"hello, ftvm","visits":"3"}` {
		t.Errorf("the VM's disk: %s holds %q (%v)", disk, b, err)
	}
	if out := pair.stdout.String(); !strings.Contains(out, "go-http: set greeting (11 bytes)") {
		t.Errorf("the guest's stdout lacks its line for the PUT:\n%s", out)
	}
}

func TestCEcho(t *testing.T) {
	testEcho(t, buildC(t, "c-echo"))
}

func TestRustEcho(t *testing.T) {
	testEcho(t, buildRust(t, "rust-echo"))
}

// testEcho runs an echo server guest, checks that it echoes a line, kills
// the primary and checks that the backup echoes on a new connection.
func testEcho(t *testing.T, guest string) {
	pair := startPair(t, guest, false)
	conn := dial(t, pair.addr)
	defer conn.Close()
	r := bufio.NewReader(conn)
	echo(t, conn, r, "hello, ftvm")
	echo(t, conn, r, "a second line")

	pair.killPrimary()
	// The connection the primary served ends with it: ftvm does not
	// carry client connections across a failover.
	_ = conn.SetDeadline(time.Now().Add(waitFor))
	_, _ = conn.Write([]byte("lost\n"))
	if line, err := r.ReadString('\n'); err == nil {
		t.Fatalf("the old connection still answered after the failover: %q", line)
	}

	deadline := time.Now().Add(waitFor)
	for {
		c, err := net.DialTimeout("tcp", pair.addr, time.Second)
		if err == nil {
			// The backup may accept, or the connection may end if it
			// reached the dead primary's queue: retry until an echo.
			_ = c.SetDeadline(time.Now().Add(waitFor))
			_, err = c.Write([]byte("after the failover\n"))
			var line string
			if err == nil {
				line, err = bufio.NewReader(c).ReadString('\n')
			}
			c.Close()
			if err == nil {
				if line != "after the failover\n" {
					t.Fatalf("after failover: echo %q, want %q", line, "after the failover\n")
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("after failover: no echo within %v: %v", waitFor, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	pair.checkBackupLive()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitFor)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(waitFor))
	return c
}

func echo(t *testing.T, w io.Writer, r *bufio.Reader, line string) {
	t.Helper()
	if _, err := io.WriteString(w, line+"\n"); err != nil {
		t.Fatal(err)
	}
	got, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("echo of %q: %v", line, err)
	}
	if got != line+"\n" {
		t.Fatalf("echo of %q: got %q", line, got)
	}
}

func request(c *http.Client, method, url, body string) (string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, b)
	}
	return strings.TrimRight(string(b), "\n"), nil
}

func expect(t *testing.T, c *http.Client, method, url, body, want string) {
	t.Helper()
	got, err := request(c, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("%s %s: got %q, want %q", method, url, got, want)
	}
}

// pair is an ftvm run of a guest with two hosts, h1 the primary and h2 the
// backup.
type pair struct {
	t       *testing.T
	addr    string // the guest's listener
	shared  string // the shared storage directory
	cmd     *exec.Cmd
	stdout  *guesttest.SyncBuffer // the guest's output
	stderr  *guesttest.SyncBuffer // ftvm run's events
	done    chan struct{}
	primary int // h1's pid
	backup  int // h2's pid
}

var (
	pidLine  = regexp.MustCompile(`(?m)^ftvm run: host (h[12]) is pid (\d+)$`)
	liveLine = regexp.MustCompile(`(?m)^h2 +\| .*msg=live `)
)

// startPair starts ftvm run on guest and waits until the pair is up. It
// stops everything when the test ends.
func startPair(t *testing.T, guest string, disk bool) *pair {
	t.Helper()
	p := &pair{t: t, addr: guesttest.FreeAddr(t), stdout: &guesttest.SyncBuffer{}, stderr: &guesttest.SyncBuffer{}, done: make(chan struct{})}
	dir := t.TempDir()
	p.shared = filepath.Join(dir, "ftvm-data")
	args := []string{"run", "--shared", p.shared, "--hosts", "2", "--no-restart", "--listen", p.addr}
	if disk {
		args = append(args, "--disk")
	}
	p.cmd = exec.Command(ftvmBinary(t), append(args, guest)...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.stop)

	deadline := time.After(waitFor)
	for {
		pids := map[string]int{}
		for _, m := range pidLine.FindAllStringSubmatch(p.stderr.String(), -1) {
			pids[m[1]], _ = strconv.Atoi(m[2])
		}
		if pids["h1"] > 0 && pids["h2"] > 0 {
			// ftvm run places the primary on h1 and the backup on h2.
			p.primary, p.backup = pids["h1"], pids["h2"]
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("ftvm run ended before the pair was up: %v", p.cmd.ProcessState)
		case <-deadline:
			t.Fatalf("the pair was not up within %v", waitFor)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// killPrimary kills the primary's host process, as a crash would.
func (p *pair) killPrimary() {
	p.t.Helper()
	if err := syscall.Kill(p.primary, syscall.SIGKILL); err != nil {
		p.t.Fatalf("kill the primary's host (pid %d): %v", p.primary, err)
	}
}

// checkBackupLive checks that the backup's host says it went live: the
// answers after the kill came from the guest's replica there.
func (p *pair) checkBackupLive() {
	p.t.Helper()
	deadline := time.Now().Add(waitFor)
	for !liveLine.MatchString(p.stderr.String()) {
		if time.Now().After(deadline) {
			p.t.Fatalf("h2 never logged that it went live")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops ftvm run with Ctrl-C's signal, which stops the VM and its
// hosts, and kills them if they do not end.
func (p *pair) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(waitFor / 2):
		_ = p.cmd.Process.Kill()
		<-p.done
		// Its hosts die with it (they are started with a parent-death
		// signal); kill them anyway, in case they did not.
		for _, pid := range []int{p.primary, p.backup} {
			if pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if p.t.Failed() {
		p.t.Logf("ftvm run's events:\n%s", p.stderr)
		p.t.Logf("the guest's output:\n%s", p.stdout)
	}
}

var (
	ftvmOnce sync.Once
	ftvmDir  string // holds the ftvm binary; removed by TestMain
	ftvmPath string
	ftvmErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if ftvmDir != "" {
		os.RemoveAll(ftvmDir)
	}
	os.Exit(code)
}

// ftvmBinary builds cmd/ftvm once per test process.
func ftvmBinary(t *testing.T) string {
	t.Helper()
	ftvmOnce.Do(func() {
		var err error
		if ftvmDir, err = os.MkdirTemp("", "ftvm-examples-"); err != nil {
			ftvmErr = err
			return
		}
		ftvmPath = filepath.Join(ftvmDir, "ftvm")
		if out, err := exec.Command("go", "build", "-o", ftvmPath, "ftvm/cmd/ftvm").CombinedOutput(); err != nil {
			ftvmErr = fmt.Errorf("go build ftvm/cmd/ftvm: %v\n%s", err, out)
		}
	})
	if ftvmErr != nil {
		t.Fatal(ftvmErr)
	}
	return ftvmPath
}

// buildGo builds the Go example in examples/name, its own module, for
// wasip1, as its README says.
func buildGo(t *testing.T, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+".wasm")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = name
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "GOWORK=off", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, b)
	}
	return out
}

// buildC builds examples/name/main.c with clang and wasi-libc, or skips
// the test if that toolchain is missing.
func buildC(t *testing.T, name string) string {
	t.Helper()
	return writeGuest(t, name, guesttest.BuildCFile(t, filepath.Join(name, "main.c")))
}

// buildRust builds examples/name/main.rs with a rustc that has the standard
// library for wasm32-wasip1 (its name since Rust 1.78) or wasm32-wasi, or
// skips the test if there is none.
func buildRust(t *testing.T, name string) string {
	t.Helper()
	return writeGuest(t, name, guesttest.BuildRustFile(t, filepath.Join(name, "main.rs")))
}

// writeGuest writes a built guest to a file for ftvm run.
func writeGuest(t *testing.T, name string, bin []byte) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+".wasm")
	if err := os.WriteFile(out, bin, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
