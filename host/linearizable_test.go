package host_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"ftvm/client"
	"ftvm/internal/guesttest"
	"ftvm/session"
	"ftvm/storage"
)

// The linearizability tests follow Jepsen's method: concurrent clients run
// get, put and compare-and-set against the ft-kv guest while a nemesis
// injects faults, every operation is recorded with the time of its call and
// of its reply, and porcupine checks that the history could have come from
// one register per key, each operation taking effect at one instant between
// its call and its reply. Today's clients are plain connections: a failover
// breaks them, so an operation whose connection broke after its request was
// sent has an unknown outcome; it is recorded as never returning (it may
// have taken effect at any time after its call, or not at all).

// kvInput is one request: Op is get, put or cas; Key its key; Value the
// value a put writes, or the value a cas expects, and New the value a cas
// writes.
type kvInput struct {
	Op, Key, Value, New string
}

// kvOutput is one reply: the value a get read, whether a cas succeeded,
// or Unknown when no reply came.
type kvOutput struct {
	Value   string
	OK      bool
	Unknown bool
}

// kvModel is a register per key, partitioned by key (each key's history is
// linearizable alone if and only if the whole is: P-compositionality). A
// key never written reads as the empty string, as ft-kv answers it.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts [][]porcupine.Operation
		for _, k := range keys {
			parts = append(parts, byKey[k])
		}
		return parts
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(string), input.(kvInput), output.(kvOutput)
		switch in.Op {
		case "get":
			return out.Unknown || out.Value == s, s
		case "put":
			return true, in.Value
		case "cas":
			// A cas's outcome follows from the state it meets: one with
			// an unknown outcome, taking effect now, does what the state
			// makes it do.
			if s == in.Value {
				return out.Unknown || out.OK, in.New
			}
			return out.Unknown || !out.OK, s
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		res := fmt.Sprintf("%q", out.Value)
		switch {
		case out.Unknown:
			res = "unknown"
		case in.Op == "put":
			res = "ok"
		case in.Op == "cas" && out.OK:
			res = "ok"
		case in.Op == "cas":
			res = "fail"
		}
		switch in.Op {
		case "put":
			return fmt.Sprintf("put(%s, %s) -> %s", in.Key, in.Value, res)
		case "cas":
			return fmt.Sprintf("cas(%s, %s, %s) -> %s", in.Key, in.Value, in.New, res)
		}
		return fmt.Sprintf("get(%s) -> %s", in.Key, res)
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state.(string)) },
}

// kvHistory records the operations of every client.
type kvHistory struct {
	start time.Time

	mu      sync.Mutex
	ops     []porcupine.Operation
	pending []int // indices in ops of the operations with unknown outcomes
	clients int
	unknown int // gets with no reply, left out (they change nothing)
	errs    []string
}

func newKVHistory() *kvHistory { return &kvHistory{start: time.Now()} }

// now is the time since the history's start, on the monotonic clock.
func (h *kvHistory) now() int64 { return int64(time.Since(h.start)) }

// newClient returns a fresh client id. A client whose operation has an
// unknown outcome goes on under a new id, as in Jepsen (its process
// crashed and a new one took its place), since that operation never ends.
func (h *kvHistory) newClient() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients++
	return h.clients - 1
}

func (h *kvHistory) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if op.Output.(kvOutput).Unknown {
		if op.Input.(kvInput).Op == "get" {
			h.unknown++
			return
		}
		h.pending = append(h.pending, len(h.ops))
	}
	h.ops = append(h.ops, op)
}

func (h *kvHistory) fail(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.errs = append(h.errs, fmt.Sprintf(format, args...))
}

// operations returns the history, each operation with an unknown outcome
// returning after every other one ended: nothing after the end of the
// history observes the store, so that is as good as never.
func (h *kvHistory) operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	ops := append([]porcupine.Operation(nil), h.ops...)
	end := int64(0)
	for _, op := range ops {
		end = max(end, op.Call, op.Return)
	}
	for _, i := range h.pending {
		ops[i].Return = end + 1
	}
	return ops
}

// kvClient is one client of ft-kv over a plain connection: it dials again
// after a failure.
type kvClient struct {
	addr string
	// sess, if set, makes the client's connection a session (through
	// the VM's current primary) rather than a plain one to addr.
	sess *session.Config
	h    *kvHistory
	id   int
	conn net.Conn
	r    *bufio.Reader
}

// errNotSent: the connection could not be made, so the request was not
// sent and the operation did not happen.
var errNotSent = errors.New("not sent")

// do performs one operation and records it. It returns errNotSent when the
// request was not sent, another error when its outcome is unknown.
func (kc *kvClient) do(in kvInput, timeout time.Duration) (kvOutput, error) {
	if kc.conn == nil {
		var c net.Conn
		var err error
		if kc.sess != nil {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			c, err = session.Dial(ctx, *kc.sess)
			cancel()
		} else {
			c, err = net.DialTimeout("tcp", kc.addr, timeout)
		}
		if err != nil {
			return kvOutput{}, fmt.Errorf("%w: %w", errNotSent, err)
		}
		kc.conn, kc.r = c, bufio.NewReader(c)
	}
	req := strings.TrimSpace(strings.Join([]string{in.Op, in.Key, in.Value, in.New}, " "))
	call := kc.h.now()
	out, err := kc.exchange(req, in, timeout)
	op := porcupine.Operation{ClientId: kc.id, Input: in, Call: call, Output: out, Return: kc.h.now()}
	if err != nil {
		// Sent, perhaps in part, perhaps run: the outcome is unknown.
		op.Output = kvOutput{Unknown: true}
		if kc.sess != nil {
			// A session hides failovers: failing is a failure.
			kc.h.fail("%s over a session: %v", req, err)
		}
		kc.conn.Close()
		kc.conn = nil
		kc.id = kc.h.newClient()
	}
	kc.h.add(op)
	return op.Output.(kvOutput), err
}

func (kc *kvClient) exchange(req string, in kvInput, timeout time.Duration) (kvOutput, error) {
	if err := kc.conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return kvOutput{}, fmt.Errorf("deadline: %w", err)
	}
	if _, err := fmt.Fprintf(kc.conn, "%s\n", req); err != nil {
		return kvOutput{}, fmt.Errorf("send %q: %w", req, err)
	}
	line, err := kc.r.ReadString('\n')
	if err != nil {
		return kvOutput{}, fmt.Errorf("reply to %q: %w", req, err)
	}
	line = strings.TrimSuffix(line, "\n")
	switch {
	case in.Op == "get":
		return kvOutput{Value: line}, nil
	case line == "ok":
		return kvOutput{OK: true}, nil
	case in.Op == "cas" && line == "fail":
		return kvOutput{}, nil
	}
	// A reply that makes no sense is a failure of the test, not of the
	// store; the operation counts as unknown.
	kc.h.fail("%s: reply %q", req, line)
	return kvOutput{}, fmt.Errorf("reply to %q: %q", req, line)
}

func (kc *kvClient) close() {
	if kc.conn != nil {
		kc.conn.Close()
	}
}

// runKVClient runs random operations over keys until stop is closed. Every
// value a client writes is unique, so that a lost write shows.
func runKVClient(addr string, sess *session.Config, h *kvHistory, keys []string, stop <-chan struct{}) {
	kc := &kvClient{addr: addr, sess: sess, h: h, id: h.newClient()}
	timeout := 2 * time.Second
	if sess != nil {
		// No deadline short of the session's own: a failover must not
		// show.
		timeout = 2 * sess.Timeout
	}
	defer kc.close()
	seen := map[string]string{} // the last value this client read or wrote per key
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		k := keys[rand.IntN(len(keys))]
		val := fmt.Sprintf("%d.%d", kc.id, n)
		in := kvInput{Op: "get", Key: k}
		switch p := rand.IntN(10); {
		case p < 3:
			in = kvInput{Op: "put", Key: k, Value: val}
		case p < 6 && seen[k] != "":
			in = kvInput{Op: "cas", Key: k, Value: seen[k], New: val}
		}
		out, err := kc.do(in, timeout)
		switch {
		case err != nil:
			delete(seen, k)
			time.Sleep(20 * time.Millisecond)
		case in.Op == "get":
			seen[k] = out.Value
		case in.Op == "put" || out.OK:
			seen[k] = val
		}
	}
}

// kvCluster starts hosts h1, h2 and h3 (with hostArgs) and the ft-kv guest
// with its primary on h1 and its backup on h2; it returns the cluster and
// the guest's address.
func kvCluster(t *testing.T, hostArgs ...string) (*cluster, string) {
	c := newCluster(t, hostArgs...)
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h)
	}
	addr := guesttest.FreeAddr(t)
	c.startVM("kv", kvGuest(t), storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2", Args: []string{"ft-kv"}})
	return c, addr
}

var kvOnce sync.Once
var kvWasm []byte

func kvGuest(t testing.TB) []byte {
	kvOnce.Do(func() { kvWasm = guesttest.Build(t, "ft-kv") })
	return kvWasm
}

// revive starts the host again as a spare if it died (a fenced frozen
// primary is killed by its successor), as a repaired server rejoins.
func (c *cluster) revive(name string) {
	c.t.Helper()
	select {
	case <-c.hosts[name].done:
		c.startHost(name)
	default:
	}
}

// lostWrite is the nemesis's fault that loses acknowledged writes when the
// Output Rule is off: the primary's log stops reaching its backup
// (heartbeats go on, so nobody fails over), a probe client's put is
// answered (or, with the Output Rule, held), and the primary is killed.
// The backup goes live without the put; the probe then reads its key
// again. It returns the probe's put's reply.
func (c *cluster) lostWrite(addr string, h *kvHistory, o storage.Owner, round int, extra string) kvOutput {
	c.t.Helper()
	probe := &kvClient{addr: addr, h: h, id: h.newClient()}
	defer probe.close()
	key := fmt.Sprintf("probe%d", round)
	retry := func(in kvInput) {
		for i := 0; ; i++ {
			if _, err := probe.do(in, 2*time.Second); err == nil || i == 100 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	retry(kvInput{Op: "put", Key: key, Value: "before"})
	if extra != "" {
		// Outputs leave in the order they were produced: one produced
		// before the extra failpoints, held for an acknowledgement the
		// cut would stop, would hold every later one behind it. Let
		// those go first.
		c.failpoint(o.Host, strings.TrimSuffix(extra, ","))
		time.Sleep(100 * time.Millisecond)
	}
	c.failpoint(o.Host, extra+"cut-log="+o.Backup)
	// The put is recorded whatever comes of it: answered, or unknown when
	// the kill breaks its connection.
	got := make(chan kvOutput, 1)
	go func() {
		out, _ := probe.do(kvInput{Op: "put", Key: key, Value: "after"}, 3*time.Second)
		got <- out
	}()
	var out kvOutput
	answered := false
	select {
	case out = <-got:
		answered = true
	case <-time.After(300 * time.Millisecond):
	}
	c.signal(o.Host, syscall.SIGKILL)
	if !answered {
		out = <-got
	}
	retry(kvInput{Op: "get", Key: key})
	return out
}

type linzConfig struct {
	duration time.Duration
	clients  int
	keys     int
	// broken runs with the Output Rule off on each primary, and only the
	// lostWrite fault.
	broken bool
	// sessions: the clients' connections are sessions, which carry them
	// across failovers: every operation must be answered.
	sessions bool
}

// linearizability runs the workload and the nemesis and returns porcupine's
// verdict on the history, with the path of porcupine's visualization
// (HTML) when the history is not linearizable or the check timed out: in
// $FTVM_LINZ_OUT if set, else in a temporary directory that outlives the
// test, unless the violation was the one expected.
func linearizability(t *testing.T, cfg linzConfig) (porcupine.CheckResult, string) {
	var hostArgs []string
	if cfg.broken {
		// The primary must answer the probe while its backup lags
		// rather than hold the guest once the lag passes the bound
		// (100 ms by default): no answer, no lost write to show.
		hostArgs = []string{"--lag-bound", "1m"}
	}
	c, addr := kvCluster(t, hostArgs...)
	h := newKVHistory()
	keys := make([]string, cfg.keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	var sess *session.Config
	if cfg.sessions {
		sc, store, err := client.Config(c.dir, "kv", &client.Options{Timeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		sess = &sc
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range cfg.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runKVClient(addr, sess, h, keys, stop)
		}()
	}
	defer func() {
		// On a failed assertion too: the clients must not outlive the
		// cluster's processes by long.
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	// The nemesis, in turns: kill the primary's host (restarted a second
	// later as a spare), freeze the primary's or the backup's for a
	// second, cut the pair's link for a second, and lose the log on its
	// way to the backup then kill the primary. Each fault starts once the
	// VM is protected again (its primary cloned a new backup).
	faults := []string{"kill", "freeze-primary", "cut", "lost-write", "freeze-backup"}
	if cfg.broken {
		faults = []string{"lost-write"}
	}
	deadline := time.Now().Add(cfg.duration)
	gen, done := uint64(0), []string{}
	for i := 0; time.Now().Before(deadline); i++ {
		o := c.protected("kv", gen, 30*time.Second)
		gen = o.Generation
		time.Sleep(randDuration(t, 200*time.Millisecond, 600*time.Millisecond))
		f := faults[i%len(faults)]
		switch f {
		case "kill":
			c.signal(o.Host, syscall.SIGKILL)
			time.Sleep(time.Second)
			c.startHost(o.Host)
		case "freeze-primary", "freeze-backup":
			victim := o.Host
			if f == "freeze-backup" {
				victim = o.Backup
			}
			c.signal(victim, syscall.SIGSTOP)
			time.Sleep(time.Second)
			// The frozen host may be gone: its successor fences a
			// stopped old primary by killing it.
			_ = c.hosts[victim].cmd.Process.Signal(syscall.SIGCONT)
			time.Sleep(200 * time.Millisecond)
			c.revive(victim)
		case "cut":
			c.failpoint(o.Host, "cut="+o.Backup)
			time.Sleep(time.Second)
			c.failpoint(o.Host, "")
		case "lost-write":
			extra := ""
			if cfg.broken {
				extra = "output-rule=off,"
			}
			out := c.lostWrite(addr, h, o, i, extra)
			if cfg.broken && !out.OK {
				t.Logf("round %d: with the Output Rule off, the probe's put was not answered: %+v", i, out)
			}
			time.Sleep(time.Second)
			c.startHost(o.Host)
		}
		done = append(done, f)
	}
	c.protected("kv", gen, 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	// A last read of every key, once everything settled.
	final := &kvClient{addr: addr, h: h, id: h.newClient()}
	for _, k := range keys {
		if _, err := final.do(kvInput{Op: "get", Key: k}, 5*time.Second); err != nil {
			t.Errorf("final get %s: %v", k, err)
		}
	}
	final.close()

	for _, e := range h.errs {
		if cfg.broken {
			t.Logf("with the Output Rule off: %s", e)
		} else {
			t.Errorf("bad reply: %s", e)
		}
	}
	ops := h.operations()
	ok, unknown := 0, len(h.pending)
	for _, op := range ops {
		if !op.Output.(kvOutput).Unknown {
			ok++
		}
	}
	t.Logf("faults %v; %d operations answered, %d writes with unknown outcomes, %d gets unanswered (left out), %d client ids",
		done, ok, unknown, h.unknown, h.clients)
	if ok < 100 {
		t.Errorf("only %d operations answered: the workload hardly ran", ok)
	}

	start := time.Now()
	res, info := porcupine.CheckOperationsVerbose(kvModel, ops, 30*time.Second)
	t.Logf("porcupine: %s in %v", res, time.Since(start).Round(time.Millisecond))
	if res == porcupine.Ok {
		return res, ""
	}
	dir := os.Getenv("FTVM_LINZ_OUT")
	switch {
	case dir != "":
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("FTVM_LINZ_OUT: %v", err)
		}
	case cfg.broken:
		// An expected violation: the file goes with the test.
		dir = t.TempDir()
	default:
		// A real one: the file must outlive the test (t.TempDir
		// does not) for someone to open it.
		var err error
		if dir, err = os.MkdirTemp("", "ftvm-linz-"); err != nil {
			t.Fatalf("a directory for the visualization: %v", err)
		}
	}
	path := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".html")
	if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
		t.Fatalf("porcupine's visualization: %v", err)
	}
	return res, path
}

// TestLinearizableUnderFaults: five clients run get, put and cas over four
// keys of the ft-kv guest on three hosts for 16 s while the nemesis kills,
// freezes and cuts; the history must be linearizable.
func TestLinearizableUnderFaults(t *testing.T) {
	d := 16 * time.Second
	if testing.Short() {
		d = 8 * time.Second
	}
	res, path := linearizability(t, linzConfig{duration: d, clients: 5, keys: 4})
	if res != porcupine.Ok {
		t.Fatalf("porcupine: %s: the history is not linearizable; visualization in %s", res, path)
	}
}

// TestLinearizableThroughSessions: TestLinearizableUnderFaults with every
// client over a session, which carries it across the failovers: every
// operation is answered (none has an unknown outcome), and the history
// must be linearizable.
func TestLinearizableThroughSessions(t *testing.T) {
	d := 16 * time.Second
	if testing.Short() {
		d = 8 * time.Second
	}
	res, path := linearizability(t, linzConfig{duration: d, clients: 5, keys: 4, sessions: true})
	if res != porcupine.Ok {
		t.Fatalf("porcupine: %s: the history is not linearizable; visualization in %s", res, path)
	}
}

// TestLinearizabilityCheckCatchesOutputRuleOff shows that the check can
// fail: the same workload, with the Output Rule off on the primary
// (failpoint output-rule=off) and the primary killed while its backup
// lacks the log behind the replies it sent, loses acknowledged writes, and
// porcupine must say so.
func TestLinearizabilityCheckCatchesOutputRuleOff(t *testing.T) {
	res, path := linearizability(t, linzConfig{duration: 3 * time.Second, clients: 5, keys: 4, broken: true})
	if res != porcupine.Illegal {
		t.Fatalf("porcupine: %s, want a violation with the Output Rule off", res)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("the visualization %s: %v", path, err)
	}
	t.Logf("the violation, as expected: %s", path)
}
