package host_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftvm/host"
	"ftvm/internal/etcdtest"
	"ftvm/internal/guesttest"
	"ftvm/storage"
	"ftvm/storage/backend"
)

// The tests in this package's failover_test.go run real host processes
// (the ftvm binary, built once) on loopback, with shared storage in a
// temporary directory, and real TCP clients.

var (
	buildOnce sync.Once
	ftvmBin   string
	buildErr  error
)

// ftvmBinary builds cmd/ftvm once per test process.
func ftvmBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ftvm-bin-")
		if err != nil {
			buildErr = err
			return
		}
		ftvmBin = filepath.Join(dir, "ftvm")
		out, err := exec.Command("go", "build", "-o", ftvmBin, "ftvm/cmd/ftvm").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return ftvmBin
}

// cluster is a set of host processes sharing one storage directory.
type cluster struct {
	t     testing.TB
	bin   string
	dir   string
	store storage.Store
	// loc is where the hosts find the store: dir, or an etcd:// URL.
	loc   string
	key   []byte
	hosts map[string]*hostProc
	args  []string // extra flags for every host
	// hostArgs are extra flags for one host, after args.
	hostArgs map[string][]string
}

type hostProc struct {
	name string
	cmd  *exec.Cmd
	logs *guesttest.SyncBuffer // stdout and stderr
	out  *guesttest.SyncBuffer // stdout alone: the output of the guests it runs
	done chan struct{}
}

func newCluster(t testing.TB, hostArgs ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: ftvmBinary(t), dir: t.TempDir(), hosts: map[string]*hostProc{}, args: hostArgs}
	c.loc = c.dir
	var err error
	if c.store, err = storage.Open(c.dir); err != nil {
		t.Fatal(err)
	}
	c.setUp()
	return c
}

// newEtcdCluster is newCluster with the store in an etcd server that runs
// in the test process: the hosts share no directory.
func newEtcdCluster(t testing.TB, hostArgs ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: ftvmBinary(t), dir: t.TempDir(), hosts: map[string]*hostProc{}, args: hostArgs}
	c.loc = "etcd://" + etcdtest.Start(t)
	s, closer, err := backend.Open(c.loc, backend.Options{}, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closer.Close() })
	c.store = s
	c.setUp()
	return c
}

// setUp reads the cluster key and arranges the hosts' end.
func (c *cluster) setUp() {
	t := c.t
	var err error
	if c.key, err = c.store.ClusterKey(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, h := range c.hosts {
			_ = h.cmd.Process.Signal(syscall.SIGCONT)
			_ = h.cmd.Process.Kill()
			<-h.done
		}
		for name, h := range c.hosts {
			if l := grepLines(h.logs.String(), "differs from the primary's"); l != "" {
				t.Errorf("host %s restored a clone whose memory differs from its primary's:\n%s", name, l)
			}
		}
		if t.Failed() {
			for name, h := range c.hosts {
				t.Logf("---- host %s log:\n%s", name, h.logs.String())
			}
		}
	})
}

// startHost starts a host process and waits until it has registered.
func (c *cluster) startHost(name string, env ...string) *hostProc {
	c.t.Helper()
	return c.startHostWith(name, nil, env...)
}

// startHostWith is startHost with the host's stdout (its guests' output)
// going to stdout, if not nil, rather than to the host's out buffer.
func (c *cluster) startHostWith(name string, stdout io.Writer, env ...string) *hostProc {
	c.t.Helper()
	// The guests' output as they write it, unless c.args say otherwise:
	// the tests read it line by line.
	args := []string{"host", "--shared", c.loc, "--name", name, "--log-level", "debug", "--label-output=false"}
	if _, bench := c.t.(*testing.B); !bench {
		// Every clone of the tests checks the memory it restored (the
		// benchmarks measure pauses without the hashing).
		args = append(args, "--verify-clones")
	}
	if backend.IsEtcd(c.loc) {
		// No shared directory: each host its own data directory, for
		// local disks.
		args = append(args, "--data", filepath.Join(c.dir, "data", name))
	}
	// The tier $FTVM_WASM_ENGINE names; a test's own --engine, later,
	// overrides it.
	args = append(args, guesttest.EngineArgs()...)
	args = append(args, c.args...)
	args = append(args, c.hostArgs[name]...)
	cmd := exec.Command(c.bin, args...)
	logs, out := &guesttest.SyncBuffer{}, &guesttest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = io.MultiWriter(logs, out), logs
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	h := &hostProc{name: name, cmd: cmd, logs: logs, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(h.done) }()
	c.hosts[name] = h
	c.waitFor(10*time.Second, "host "+name+" registered", func() bool {
		hs, err := c.store.Hosts()
		if err != nil {
			return false
		}
		for _, x := range hs {
			if x.Name == name && x.PID == cmd.Process.Pid {
				return true
			}
		}
		return false
	})
	return h
}

func (c *cluster) signal(name string, sig syscall.Signal) {
	c.t.Helper()
	if err := c.hosts[name].cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("signal %v to %s: %v", sig, name, err)
	}
	switch sig {
	case syscall.SIGKILL:
		<-c.hosts[name].done
	case syscall.SIGSTOP:
		// A stop is asynchronous: wait until every thread has stopped.
		pid := c.hosts[name].cmd.Process.Pid
		c.waitFor(5*time.Second, name+" stopped", func() bool { return allStopped(pid) })
	}
}

// allStopped reports whether every thread of process pid is stopped.
func allStopped(pid int) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			return false
		}
		// The state follows the command name in parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
			return false
		}
	}
	return true
}

// startVM starts a VM of the guest on primary and backup and waits until
// the logging channel is up.
func (c *cluster) startVM(name string, guest []byte, spec storage.VMSpec) {
	c.t.Helper()
	spec.Name = name
	if len(spec.Args) == 0 {
		spec.Args = []string{name}
	}
	got, owner, err := host.StartVM(c.store, spec, guest, time.Now())
	if err != nil {
		c.t.Fatal(err)
	}
	c.waitFor(20*time.Second, "vm "+name+" paired", func() bool {
		sts, _ := c.store.Statuses(name)
		for _, st := range sts {
			if st.Host == got.Primary && st.Generation == owner.Generation && st.Connected {
				return true
			}
		}
		return false
	})
}

func (c *cluster) failpoint(hostName, spec string) {
	c.t.Helper()
	var addr string
	hs, _ := c.store.Hosts()
	for _, h := range hs {
		if h.Name == hostName {
			addr = h.Addr
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := host.Control(ctx, addr, c.key, "failpoints", spec); err != nil {
		c.t.Fatalf("failpoint %s on %s: %v", spec, hostName, err)
	}
}

// owner returns the latest owner record of vm.
func (c *cluster) owner(vm string) storage.Owner {
	c.t.Helper()
	o, ok, err := c.store.Latest(vm)
	if err != nil || !ok {
		c.t.Fatalf("owner of %s: %v %v", vm, ok, err)
	}
	return o
}

func (c *cluster) status(vm, hostName string) storage.VMStatus {
	sts, _ := c.store.Statuses(vm)
	for _, st := range sts {
		if st.Host == hostName {
			return st
		}
	}
	return storage.VMStatus{}
}

func (c *cluster) waitFor(max time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(max)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lineClient talks to a guest that answers each request line with one
// reply line.
type lineClient struct {
	addr string
	c    net.Conn
	r    *bufio.Reader
}

// do sends req and returns the reply without its line end. A failed
// request closes the connection; the next one dials again.
func (lc *lineClient) do(req string, timeout time.Duration) (string, error) {
	if lc.c == nil {
		c, err := net.DialTimeout("tcp", lc.addr, timeout)
		if err != nil {
			return "", err
		}
		lc.c, lc.r = c, bufio.NewReader(c)
	}
	lc.c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(lc.c, "%s\n", req); err != nil {
		lc.close()
		return "", err
	}
	line, err := lc.r.ReadString('\n')
	if err != nil {
		lc.close()
		return "", err
	}
	return strings.TrimSpace(line), nil
}

func (lc *lineClient) close() {
	if lc.c != nil {
		lc.c.Close()
		lc.c = nil
	}
}

// counterClient talks to the ft-counter guest: one line per request, one
// number per reply.
type counterClient struct{ lineClient }

func (cc *counterClient) do(req string, timeout time.Duration) (uint64, error) {
	line, err := cc.lineClient.do(req, timeout)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(line, 10, 64)
	if err != nil {
		cc.close()
		return 0, fmt.Errorf("bad reply %q", line)
	}
	return v, nil
}

// get asks for the counter's value, retrying until it answers.
func get(t testing.TB, addr string, max time.Duration) uint64 {
	t.Helper()
	deadline := time.Now().Add(max)
	cc := &counterClient{lineClient{addr: addr}}
	defer cc.close()
	for {
		v, err := cc.do("get", 2*time.Second)
		if err == nil {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("get from %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// load is a set of clients incrementing the counter until stopped.
type load struct {
	mu   sync.Mutex
	seen []uint64 // every reply any client saw
	errs int      // requests that got no reply
	stop chan struct{}
	wg   sync.WaitGroup
}

func startLoad(addr string, clients int) *load {
	l := &load{stop: make(chan struct{})}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			cc := &counterClient{lineClient{addr: addr}}
			defer cc.close()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				v, err := cc.do("inc", 3*time.Second)
				l.mu.Lock()
				if err != nil {
					l.errs++
				} else {
					l.seen = append(l.seen, v)
				}
				l.mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	return l
}

// waitReplies waits until n more replies than now have been seen.
func (l *load) waitReplies(t testing.TB, n int, max time.Duration) {
	t.Helper()
	target := l.count() + n
	deadline := time.Now().Add(max)
	for l.count() < target {
		if time.Now().After(deadline) {
			t.Fatalf("%d replies, want %d within %v", l.count(), target, max)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (l *load) finish() ([]uint64, int) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]uint64(nil), l.seen...), l.errs
}

// snapshot returns the replies seen and the requests that got none so far.
func (l *load) snapshot() (int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen), l.errs
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}

// checkCounter checks the invariants of a counter run: no value returned
// twice, and the final value accounts for every reply seen.
// It reports the first few of each kind of violation, and how many there
// were: a lost memory repeats every value, thousands of lines of them.
func checkCounter(t testing.TB, seen []uint64, final uint64) {
	t.Helper()
	const show = 5
	dup := map[uint64]bool{}
	var twice, beyond []uint64
	nTwice, nBeyond := 0, 0
	for _, v := range seen {
		if dup[v] {
			if nTwice++; len(twice) < show {
				twice = append(twice, v)
			}
		}
		dup[v] = true
		if v > final {
			if nBeyond++; len(beyond) < show {
				beyond = append(beyond, v)
			}
		}
	}
	if nTwice > 0 {
		t.Errorf("%d values returned twice, such as %v", nTwice, twice)
	}
	if nBeyond > 0 {
		t.Errorf("%d replies beyond the final value %d, such as %v: acknowledged increments were lost", nBeyond, final, beyond)
	}
	if uint64(len(seen)) > final {
		t.Errorf("%d replies seen, final value %d", len(seen), final)
	}
}

var counterOnce sync.Once
var counterWasm []byte

func counterGuest(t testing.TB) []byte {
	counterOnce.Do(func() { counterWasm = guesttest.Build(t, "ft-counter") })
	return counterWasm
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
