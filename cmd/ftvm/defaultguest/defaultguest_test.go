package defaultguest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"ftvm/replog"
	"ftvm/vmm"
	"ftvm/wasi"
	"ftvm/wasm"

	"ftvm/internal/guesttest"
)

// ioTimeout bounds every client read and write, so that a broken guest
// fails the test instead of hanging it.
const ioTimeout = time.Minute

func compile(t *testing.T) *wasm.CompiledModule {
	t.Helper()
	cm, err := wasm.Compile(Counter(), wasm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// memLog is a vmm.Sink and a vmm.Source over entries kept in memory.
type memLog struct {
	entries []replog.Entry
	next    int
}

func (l *memLog) Append(e replog.Entry) error {
	e.Data = bytes.Clone(e.Data)
	l.entries = append(l.entries, e)
	return nil
}

func (l *memLog) Peek(_ context.Context, pos uint64) (replog.Entry, bool, error) {
	if l.next < len(l.entries) {
		return l.entries[l.next], l.entries[l.next].Pos <= pos, nil
	}
	return replog.Entry{}, false, nil
}

func (l *memLog) Consume() { l.next++ }

// guest is the counter running live in a VM.
type guest struct {
	addr           string
	stdout, stderr *guesttest.SyncBuffer
	vm             *vmm.VM
	cancel         context.CancelFunc
	done           chan error
}

// start runs the counter with the arguments after argv[0], a fresh
// listener, and the given preopens; rec, if set, records the run.
func start(t *testing.T, cm *wasm.CompiledModule, args []string, preopens []wasi.Preopen, rec vmm.Sink) *guest {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &guest{addr: ln.Addr().String(), stdout: &guesttest.SyncBuffer{}, stderr: &guesttest.SyncBuffer{}, done: make(chan error, 1)}
	cfg := wasi.Config{
		Args:      append([]string{Name}, args...),
		Preopens:  preopens,
		Listeners: []wasi.Listener{{Listener: ln}},
		Stdout:    g.stdout,
		Stderr:    g.stderr,
	}
	g.vm, err = vmm.New(cm, vmm.Config{WASI: cfg, Record: rec})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() {
		exit, err := g.vm.Run(ctx)
		if err == nil {
			err = fmt.Errorf("the guest ended: exit %d, trap %v", exit.Code, exit.Trap)
		}
		g.done <- err
	}()
	t.Cleanup(func() { g.stop(t) })
	return g
}

// stop cancels the guest, which must still be serving, and waits for it.
func (g *guest) stop(t *testing.T) {
	t.Helper()
	if g.cancel == nil {
		return
	}
	g.cancel()
	g.cancel = nil
	err := <-g.done
	g.vm.Close()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("the guest stopped with %v, want it serving until cancelled; stderr:\n%s", err, g.stderr.String())
	}
}

// client is one TCP connection to the counter. Its methods return errors
// rather than failing the test, so that goroutines can use them.
type client struct {
	conn net.Conn
	r    *bufio.Reader
}

func (g *guest) dial(t *testing.T) *client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", g.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{conn: conn, r: bufio.NewReader(conn)}
}

func (c *client) send(s string) error {
	c.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := io.WriteString(c.conn, s)
	return err
}

// reply reads one answer.
func (c *client) reply() (uint64, error) {
	c.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	line, err := c.r.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("reading a reply: %q, %w", line, err)
	}
	v, err := strconv.ParseUint(strings.TrimSuffix(line, "\n"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("reply %q is not a number", line)
	}
	return v, nil
}

// ask sends one request and reads its answer.
func (c *client) ask(req string) (uint64, error) {
	if err := c.send(req + "\n"); err != nil {
		return 0, err
	}
	return c.reply()
}

// mustAsk is ask for the test's goroutine.
func mustAsk(t *testing.T, c *client, req string) uint64 {
	t.Helper()
	v, err := c.ask(req)
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	return v
}

func TestCounterIsFreshCopy(t *testing.T) {
	a := Counter()
	if len(a) < 8 || !bytes.Equal(a[:4], []byte("\x00asm")) {
		t.Fatalf("Counter() is not a WebAssembly module: % x", a[:min(len(a), 8)])
	}
	a[0] = 0xff
	if Counter()[0] != 0 {
		t.Fatal("modifying the result of Counter() changed the embedded module")
	}
}

// TestConcurrentClients serves three clients at once, each interleaving
// increments and gets, with requests split across writes, several requests
// in one write, and white space around "get"; every increment gets a value
// of its own and the last get sees them all.
func TestConcurrentClients(t *testing.T) {
	cm := compile(t)
	g := start(t, cm, nil, nil, nil)
	const clients, rounds = 3, 20
	incs := make([][]uint64, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		c := g.dial(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			incs[i], errs[i] = interleave(c, rounds)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	if t.Failed() {
		return
	}
	seen := map[uint64]bool{}
	total := 0
	for _, vs := range incs {
		for _, v := range vs {
			if seen[v] {
				t.Errorf("value %d answered to two increments", v)
			}
			seen[v] = true
			total++
		}
	}
	for v := uint64(1); v <= uint64(total); v++ {
		if !seen[v] {
			t.Errorf("no increment answered %d", v)
		}
	}
	c := g.dial(t)
	if got := mustAsk(t, c, "get"); got != uint64(total) {
		t.Errorf("final get %d, want %d increments", got, total)
	}
	// A last request without "\n" is answered at the client's end of input,
	// and the guest then closes the connection.
	if err := c.send("inc"); err != nil {
		t.Fatal(err)
	}
	if err := c.conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.reply(); err != nil || got != uint64(total)+1 {
		t.Errorf("unterminated last request answered %d, %v; want %d", got, err, total+1)
	}
	if b, err := io.ReadAll(c.r); err != nil || len(b) != 0 {
		t.Errorf("after the last reply: %q, %v; want the end of the connection", b, err)
	}
	g.stop(t)
	if want := "ft-counter listening, value 0\n"; g.stdout.String() != want {
		t.Errorf("stdout %q, want %q", g.stdout.String(), want)
	}
	if s := g.stderr.String(); s != "" {
		t.Errorf("stderr %q", s)
	}
}

// interleave makes rounds requests of four kinds in turn, and returns the
// values its increments were answered.
func interleave(c *client, rounds int) ([]uint64, error) {
	var incs []uint64
	var last uint64
	for r := range rounds {
		var v uint64
		var err error
		switch r % 4 {
		case 0:
			v, err = c.ask("inc")
		case 1:
			// One request in two writes.
			if err = c.send("in"); err == nil {
				time.Sleep(2 * time.Millisecond)
				if err = c.send("c\n"); err == nil {
					v, err = c.reply()
				}
			}
		case 2:
			// Two requests in one write: an increment, then a get with
			// white space around it.
			if err = c.send("+1\n  get \r\n"); err == nil {
				v, err = c.reply()
			}
			if err == nil {
				var got uint64
				if got, err = c.reply(); err == nil && got < v {
					err = fmt.Errorf("get %d after its increment to %d", got, v)
				}
			}
		case 3:
			// A get in two writes.
			if err = c.send("g"); err == nil {
				time.Sleep(2 * time.Millisecond)
				if err = c.send("et\n"); err == nil {
					var got uint64
					if got, err = c.reply(); err == nil && got < last {
						err = fmt.Errorf("get %d after its increment to %d", got, last)
					}
				}
			}
			if err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, err
		}
		if v <= last {
			return nil, fmt.Errorf("increment answered %d after %d", v, last)
		}
		last = v
		incs = append(incs, v)
	}
	return incs, nil
}

// TestPipelinedRequests: a client sends many requests in one write, more
// than the guest answers in one go (the counter starts at 10^19, so that
// every reply has 20 digits), and gets every answer in order.
func TestPipelinedRequests(t *testing.T) {
	cm := compile(t)
	dir := t.TempDir()
	const base = uint64(1e19)
	if err := os.WriteFile(filepath.Join(dir, "n"), []byte(fmt.Sprintf("%d\n", base)), 0o644); err != nil {
		t.Fatal(err)
	}
	g := start(t, cm, []string{"-file", "/disk/n"}, []wasi.Preopen{{GuestPath: "/disk", HostDir: dir}}, nil)
	c := g.dial(t)
	const n = 1000
	if err := c.send(strings.Repeat("inc\n", n-1) + "get\n"); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= n; i++ {
		want := base + min(i, n-1)
		if got, err := c.reply(); err != nil || got != want {
			t.Fatalf("reply %d: %d, %v; want %d", i, got, err, want)
		}
	}
	g.stop(t)
	if want := fmt.Sprintf("ft-counter listening, value %d\n", base); g.stdout.String() != want {
		t.Errorf("stdout %q, want %q", g.stdout.String(), want)
	}
}

// TestClientLimit: the 257th client at once is refused (its connection is
// closed); once one leaves, a new one is served.
func TestClientLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 257 connections")
	}
	cm := compile(t)
	g := start(t, cm, nil, nil, nil)
	var cs []*client
	for i := range 256 {
		c := g.dial(t)
		if got := mustAsk(t, c, "get"); got != 0 {
			t.Fatalf("client %d: get %d", i, got)
		}
		cs = append(cs, c)
	}
	extra := g.dial(t)
	extra.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	if b, err := io.ReadAll(extra.r); len(b) != 0 || err != nil {
		t.Fatalf("client 257 read %q, %v; want the connection closed", b, err)
	}
	cs[0].conn.Close()
	// The guest may see a new client before it sees the old one leave;
	// retry until it has.
	deadline := time.Now().Add(ioTimeout)
	for {
		v, err := g.dial(t).ask("inc")
		if err == nil {
			if v != 1 {
				t.Fatalf("new client's increment answered %d", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no client served after one left: %v", err)
		}
	}
	if got := mustAsk(t, cs[255], "get"); got != 1 {
		t.Fatalf("get %d, want 1", got)
	}
	g.stop(t)
	if !strings.Contains(g.stderr.String(), "ft-counter: 256 clients connected already; refusing one more\n") {
		t.Errorf("stderr %q lacks the refusal", g.stderr.String())
	}
}

// TestPersistFile: with -file the counter writes every increment to the
// file, fixed width and in place, and a new run continues from it.
func TestPersistFile(t *testing.T) {
	cm := compile(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "counter")
	disk := []wasi.Preopen{{GuestPath: "/disk", HostDir: dir}}
	want := func(v uint64) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if w := fmt.Sprintf("%020d\n", v); string(b) != w {
			t.Fatalf("file holds %q, want %q", b, w)
		}
	}

	g := start(t, cm, []string{"-file", "/disk/counter"}, disk, nil)
	c := g.dial(t)
	for i := uint64(1); i <= 5; i++ {
		if got := mustAsk(t, c, "inc"); got != i {
			t.Fatalf("increment %d answered %d", i, got)
		}
		// The file is written before the answer.
		want(i)
	}
	if got := mustAsk(t, c, "get"); got != 5 {
		t.Fatalf("get %d, want 5", got)
	}
	want(5)
	g.stop(t)
	if want := "ft-counter listening, value 0\n"; g.stdout.String() != want {
		t.Errorf("stdout %q, want %q", g.stdout.String(), want)
	}

	g = start(t, cm, []string{"--file=/disk/counter"}, disk, nil)
	c = g.dial(t)
	if got := mustAsk(t, c, "get"); got != 5 {
		t.Fatalf("after a restart: get %d, want 5", got)
	}
	if got := mustAsk(t, c, "inc"); got != 6 {
		t.Fatalf("after a restart: increment answered %d, want 6", got)
	}
	want(6)
	g.stop(t)
	if want := "ft-counter listening, value 5\n"; g.stdout.String() != want {
		t.Errorf("stdout %q, want %q", g.stdout.String(), want)
	}
	if s := g.stderr.String(); s != "" {
		t.Errorf("stderr %q", s)
	}

	// A file that holds something else is an error, not a counter at 0.
	if err := os.WriteFile(path, []byte("twelve\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exit, stderr := runToExit(t, cm, []string{"-file", "/disk/counter"}, disk)
	if exit.Code != 1 || !strings.Contains(stderr, "/disk/counter does not hold a counter value") {
		t.Errorf("bad file: exit %d, stderr %q", exit.Code, stderr)
	}
}

// runToExit runs the counter until it ends by itself.
func runToExit(t *testing.T, cm *wasm.CompiledModule, args []string, preopens []wasi.Preopen) (vmm.Exit, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	vm, err := vmm.New(cm, vmm.Config{WASI: wasi.Config{
		Args: append([]string{Name}, args...), Preopens: preopens,
		Listeners: []wasi.Listener{{Listener: ln}}, Stderr: &stderr,
	}})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	defer vm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	exit, err := vm.Run(ctx)
	if err != nil {
		t.Fatalf("run: %v (stderr %q)", err, stderr.String())
	}
	return exit, stderr.String()
}

// TestBadCommandLines: usage errors end the guest with status 2 and a
// message, as Go's flag package would.
func TestBadCommandLines(t *testing.T) {
	cm := compile(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-file"}, "ft-counter: flag needs an argument: -file\nusage: ft-counter"},
		{[]string{"-verbose"}, "ft-counter: unknown flag -verbose\nusage: ft-counter"},
		{[]string{"extra"}, "ft-counter: unexpected argument extra\nusage: ft-counter"},
		{[]string{"-file="}, "ft-counter: -file needs a path\n"},
	} {
		exit, stderr := runToExit(t, cm, tc.args, nil)
		if exit.Code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want status 2 and %q", tc.args, exit.Code, stderr, tc.want)
		}
	}
}

// TestRecordReplay records a run with two clients and replays it from the
// log alone to the position where the recording stopped: the replay makes
// the same calls and prints the same.
func TestRecordReplay(t *testing.T) {
	cm := compile(t)
	disk := []wasi.Preopen{{GuestPath: "/disk", HostDir: t.TempDir()}}
	args := []string{"-file", "/disk/n"}
	log := &memLog{}
	g := start(t, cm, args, disk, log)
	a, b := g.dial(t), g.dial(t)
	for i := range 5 {
		mustAsk(t, a, "inc")
		if err := b.send("ge"); err != nil {
			t.Fatal(err)
		}
		if err := b.send("t\ninc\n"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.reply(); err != nil {
			t.Fatal(err)
		}
		if got, err := b.reply(); err != nil || got != uint64(2*i+2) {
			t.Fatalf("round %d: increment answered %d, %v", i, got, err)
		}
	}
	a.conn.Close()
	if got := mustAsk(t, b, "get"); got != 10 {
		t.Fatalf("get %d, want 10", got)
	}
	g.stop(t)
	if t.Failed() {
		return
	}
	pos, seq := g.vm.Position(), g.vm.Seq()
	if len(log.entries) < 20 {
		t.Fatalf("only %d entries recorded", len(log.entries))
	}

	var out, errb bytes.Buffer
	rcfg := wasi.Config{Args: append([]string{Name}, args...), Preopens: []wasi.Preopen{{GuestPath: "/disk"}},
		Listeners: []wasi.Listener{{}}, Stdout: &out, Stderr: &errb}
	vm, err := vmm.New(cm, vmm.Config{WASI: rcfg, Replay: &memLog{entries: log.entries}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	paused, exit, err := vm.RunUntil(context.Background(), pos)
	if err != nil || !paused {
		t.Fatalf("replay: paused %v, exit %+v, %v", paused, exit, err)
	}
	// RunUntil(pos) leaves a call due exactly at pos pending, while the
	// recording may have stopped just after such a call returned, with
	// its entry logged.
	wantSeq := seq
	for i := len(log.entries) - 1; i >= 0 && log.entries[i].Pos >= pos; i-- {
		wantSeq = log.entries[i].Seq - 1
	}
	if vm.Seq() != wantSeq || vm.Position() != pos {
		t.Errorf("replay at entry %d position %d, want %d, %d (the recording at %d)", vm.Seq(), vm.Position(), wantSeq, pos, seq)
	}
	if out.String() != g.stdout.String() || errb.String() != g.stderr.String() {
		t.Errorf("replay printed %q, %q; the recording %q, %q", out.String(), errb.String(), g.stdout.String(), g.stderr.String())
	}
}
