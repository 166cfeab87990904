package netns_test

import (
	"bufio"
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

	clientv3 "go.etcd.io/etcd/client/v3"

	"ftvm/client"
	"ftvm/internal/guesttest"
	"ftvm/internal/netns"
	"ftvm/storage"
	"ftvm/storage/backend"
)

// The tests and benchmarks here run ftvm as on separate servers: each etcd
// member and each ftvm host in a network namespace of its own, with its
// own address, its own working directory and no directory shared with
// any other; the test process (the clients, the checks) in the root
// namespace, which reaches them all through the bridge.

// Ports, the same in every namespace.
const (
	etcdClientPort = 2379
	etcdPeerPort   = 2380
	hostPort       = 7400 // logging channel, control, heartbeats (UDP)
	sessionPort    = 7500
	guestPort      = 7100 // the counter guest's listener
	vmName         = "counter"
)

// ftCluster is three ftvm hosts, h1 to h3, with their store: an etcd
// cluster in namespaces (newEtcdCluster) or a directory on loopback
// (newDirCluster).
type ftCluster struct {
	t     testing.TB
	net   *netns.Network
	bins  built
	loc   string // the store: etcd://... or the directory
	store storage.Store
	etcd  []*etcdMember
	hosts map[string]*ftHost
	names []string
	args  []string // more flags for every host
	// listener is the guest's listen address, as the VM's spec says.
	listener string
	// gen0 is the generation the VM was first protected in (with a
	// local disk, its clone's, after the first).
	gen0 uint64
}

type etcdMember struct {
	node *netns.Node
	proc *netns.Proc
}

type ftHost struct {
	name string
	node *netns.Node
	dir  string // its working directory (and --data, if ftvm has it)
	proc *netns.Proc
}

// newEtcdCluster builds a network with an etcd cluster of members members
// (e1, e2, ...) and three nodes for hosts (h1, h2, h3, not started yet).
func newEtcdCluster(t testing.TB, members int, hostArgs ...string) *ftCluster {
	t.Helper()
	c := &ftCluster{t: t, net: netns.New(t), hosts: map[string]*ftHost{}, args: hostArgs}
	c.bins = binaries(t)
	var initial, endpoints []string
	for i := range members {
		nd := c.net.AddNode(fmt.Sprintf("e%d", i+1))
		c.etcd = append(c.etcd, &etcdMember{node: nd})
		initial = append(initial, fmt.Sprintf("%s=http://%s:%d", nd.Name, nd.IP, etcdPeerPort))
		endpoints = append(endpoints, fmt.Sprintf("%s:%d", nd.IP, etcdClientPort))
	}
	for _, m := range c.etcd {
		ip := m.node.IP.String()
		m.proc = m.node.Start("etcd", netns.Options{}, c.bins.etcd,
			"--name", m.node.Name, "--data-dir", t.TempDir(),
			"--listen-peer", fmt.Sprintf("http://%s:%d", ip, etcdPeerPort),
			"--listen-client", fmt.Sprintf("http://%s:%d", ip, etcdClientPort),
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-token", "ftvm-"+c.net.ID(),
			"--unsafe-no-fsync")
	}
	for _, m := range c.etcd {
		waitOutput(t, m.proc, "ready", time.Minute)
	}
	c.loc = "etcd://" + strings.Join(endpoints, ",") + "/ftvm-test"
	c.openStore()
	for i := range 3 {
		name := fmt.Sprintf("h%d", i+1)
		c.hosts[name] = &ftHost{name: name, node: c.net.AddNode(name), dir: t.TempDir()}
		c.names = append(c.names, name)
	}
	c.listener = fmt.Sprintf("0.0.0.0:%d", guestPort)
	return c
}

// newDirCluster is the same three hosts on loopback, in the root
// namespace, with the store in a directory: ftvm on one machine, for
// comparison.
func newDirCluster(t testing.TB, hostArgs ...string) *ftCluster {
	t.Helper()
	c := &ftCluster{t: t, net: netns.Loopback(t), hosts: map[string]*ftHost{}, args: hostArgs}
	c.bins = binaries(t)
	c.loc = t.TempDir()
	c.openStore()
	for i := range 3 {
		name := fmt.Sprintf("h%d", i+1)
		c.hosts[name] = &ftHost{name: name, node: c.net.Root(), dir: t.TempDir()}
		c.names = append(c.names, name)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.listener = ln.Addr().String()
	ln.Close()
	return c
}

func (c *ftCluster) openStore() {
	c.t.Helper()
	s, closer, err := backend.Open(c.loc, backend.Options{}, true)
	if err != nil {
		c.t.Fatalf("open the store %s: %v", c.loc, err)
	}
	c.t.Cleanup(func() { closer.Close() })
	c.store = s
}

// etcdOn reports whether the store is etcd (in namespaces).
func (c *ftCluster) etcdOn() bool { return len(c.etcd) > 0 }

// startHost starts host name (again) and waits until it has registered.
func (c *ftCluster) startHost(name string) {
	c.t.Helper()
	h := c.hosts[name]
	args := []string{"host", "--store", c.loc, "--name", name, "--log-level", "debug"}
	if c.etcdOn() {
		ip := h.node.IP.String()
		args = append(args, "--addr", fmt.Sprintf("%s:%d", ip, hostPort), "--sessions", fmt.Sprintf("%s:%d", ip, sessionPort))
	}
	args = append(args, "--data", h.dir)
	if _, bench := c.t.(*testing.B); !bench {
		// As the host package's tests: every clone checks the memory it
		// restored (benchmarks measure without the hashing).
		args = append(args, "--verify-clones")
	}
	args = append(args, c.args...)
	var env []string
	if c.etcdOn() {
		// The namespaces share one kernel and PID space, which separate
		// servers do not: a survivor would fence its old primary as on
		// one machine (shut its sockets, kill it if stopped), which no
		// survivor can do to another server. fence=off makes it go live
		// as across machines.
		env = append(env, "FTVM_FAILPOINTS=fence=off")
	}
	h.proc = h.node.Start(name, netns.Options{Dir: h.dir, Env: env}, append([]string{c.bins.ftvm}, args...)...)
	c.waitFor(30*time.Second, "host "+name+" registered", func() bool {
		if done, err := h.proc.Exited(); done {
			c.t.Fatalf("host %s exited: %v\n%s", name, err, h.proc.Output())
		}
		hs, err := c.store.Hosts()
		if err != nil {
			return false
		}
		for _, x := range hs {
			if x.Name == name && x.PID == h.proc.Pid() {
				return true
			}
		}
		return false
	})
}

// startVM starts the counter VM with ftvm start, its primary on h1 and
// backup on h2, and waits until it is protected.
func (c *ftCluster) startVM() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := []string{"start", "--store", c.loc, "--name", vmName,
		"--listen", c.listener, "--primary", "h1", "--backup", "h2", "--wait", "30s"}
	guest := []string{c.bins.guest}
	if c.etcdOn() {
		// No shared file system: the counter keeps its count on a local
		// disk, a copy on each replica's host.
		args = append(args, "--disk", "local")
		guest = append(guest, "-file", "/disk/counter")
	}
	out, err := exec.CommandContext(ctx, c.bins.ftvm, append(args, guest...)...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("ftvm start: %v\n%s", err, out)
	}
	c.gen0 = c.protected(0, time.Minute).Generation
}

// guestAddr is where host name's guest listener is, when it serves it.
func (c *ftCluster) guestAddr(name string) string {
	if !c.etcdOn() {
		return c.listener
	}
	return fmt.Sprintf("%s:%d", c.hosts[name].node.IP, guestPort)
}

// owner is the VM's latest owner record.
func (c *ftCluster) owner() storage.Owner {
	c.t.Helper()
	o, ok, err := c.store.Latest(vmName)
	if err != nil || !ok {
		c.t.Fatalf("owner of %s: %v %v", vmName, ok, err)
	}
	return o
}

// status is host's status of the VM ("" state if it has none).
func (c *ftCluster) status(host string) storage.VMStatus {
	sts, _ := c.store.Statuses(vmName)
	for _, st := range sts {
		if st.Host == host {
			return st
		}
	}
	return storage.VMStatus{}
}

// protected waits until a generation after after has a primary and a
// backup, both connected in it, and returns its owner record.
func (c *ftCluster) protected(after uint64, max time.Duration) storage.Owner {
	c.t.Helper()
	var o storage.Owner
	c.waitFor(max, "the VM protected in a generation after "+strconv.FormatUint(after, 10), func() bool {
		var ok bool
		var err error
		if o, ok, err = c.store.Latest(vmName); err != nil || !ok || o.Generation <= after || o.Backup == "" {
			return false
		}
		p, b := c.status(o.Host), c.status(o.Backup)
		return p.Generation == o.Generation && p.Role == "primary" && p.Connected &&
			b.Generation == o.Generation && b.Role == "backup" && b.Connected
	})
	return o
}

// exactlyServes checks that, of hosts, only want answers a plain client
// at its guest listener.
func (c *ftCluster) exactlyServes(want string, hosts ...string) {
	c.t.Helper()
	for _, h := range hosts {
		v, err := plain(c.guestAddr(h), "get", 2*time.Second)
		if h == want && err != nil {
			c.t.Errorf("the primary %s does not answer a plain client: %v", h, err)
		}
		if h != want && err == nil {
			c.t.Errorf("%s, not the primary, answered a plain client: %d", h, v)
		}
	}
}

// claimed returns the owner record of generation gen, if it was claimed.
func (c *ftCluster) claimed(gen uint64) (storage.Owner, bool) {
	c.t.Helper()
	o, ok, err := c.store.Owner(vmName, gen)
	if err != nil {
		c.t.Fatalf("owner of generation %d: %v", gen, err)
	}
	return o, ok
}

// waitFor polls cond until it holds, failing the test after max.
func (c *ftCluster) waitFor(max time.Duration, what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(max)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s", max, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dial opens a session with the guest from the test process.
func (c *ftCluster) dial(timeout time.Duration) net.Conn {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := client.Dial(ctx, c.loc, vmName, &client.Options{Timeout: timeout})
	if err != nil {
		c.t.Fatalf("a session with %s: %v", vmName, err)
	}
	return conn
}

// get reads the counter through a new session.
func (c *ftCluster) get() uint64 {
	c.t.Helper()
	conn := c.dial(time.Minute)
	defer conn.Close()
	v, err := request(conn, bufio.NewReader(conn), "get")
	if err != nil {
		c.t.Fatalf("get: %v", err)
	}
	return v
}

// request sends one request line and reads the number that answers it.
func request(w io.Writer, r *bufio.Reader, req string) (uint64, error) {
	if _, err := fmt.Fprintf(w, "%s\n", req); err != nil {
		return 0, err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("reply %q: %w", line, err)
	}
	return v, nil
}

// plain asks the guest at addr directly, on a connection of its own (no
// session): the value and nil if it answered within timeout.
func plain(addr, req string, timeout time.Duration) (uint64, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	return request(conn, bufio.NewReader(conn), req)
}

// load is clients incrementing the counter, each over one session for the
// whole test, a request every pace (the machine is shared: the scenarios
// need values, not throughput). No request may fail: a failover is a
// stall.
type load struct {
	mu      sync.Mutex
	seen    [][]uint64 // each client's replies, in order
	errs    []error
	replies int
	last    time.Time // when the last reply came
	stop    chan struct{}
	wg      sync.WaitGroup
	// gate is held (read) by each client for each request, and by pause
	// (write) to let the guest go idle.
	gate sync.RWMutex
}

func (c *ftCluster) startLoad(clients int, pace time.Duration) *load {
	c.t.Helper()
	l := &load{stop: make(chan struct{}), seen: make([][]uint64, clients)}
	conns := make([]net.Conn, clients)
	for i := range clients {
		conns[i] = c.dial(time.Minute)
	}
	// Closing a session waits until the host has its end (up to the
	// session's timeout); a failed test must not wait that long.
	c.t.Cleanup(func() {
		done := make(chan struct{})
		go func() {
			for _, conn := range conns {
				go conn.Close()
			}
			l.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	for i, conn := range conns {
		l.wg.Go(func() {
			r := bufio.NewReader(conn)
			for {
				select {
				case <-l.stop:
					return
				case <-time.After(pace):
				}
				l.gate.RLock()
				v, err := request(conn, r, "inc")
				l.gate.RUnlock()
				l.mu.Lock()
				if err != nil {
					l.errs = append(l.errs, fmt.Errorf("client %d: %w", i, err))
					l.mu.Unlock()
					return
				}
				l.seen[i] = append(l.seen[i], v)
				l.replies++
				l.last = time.Now()
				l.mu.Unlock()
			}
		})
	}
	return l
}

// count is the replies so far, and when the last came; it fails the test
// if a client failed.
func (l *load) count(t testing.TB) (int, time.Time) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 {
		t.Fatalf("a client failed: %v", l.errs)
	}
	return l.replies, l.last
}

// waitReplies waits until n more replies than now have come.
func (l *load) waitReplies(t testing.TB, n int, max time.Duration) {
	t.Helper()
	if got := l.tryReplies(t, n, max); got < n {
		t.Fatalf("%d replies in %v, want %d", got, max, n)
	}
}

// tryReplies waits until n more replies than now have come, or max has
// passed, and returns how many came.
func (l *load) tryReplies(t testing.TB, n int, max time.Duration) int {
	t.Helper()
	start, _ := l.count(t)
	deadline := time.Now().Add(max)
	for {
		got, _ := l.count(t)
		if got >= start+n || time.Now().After(deadline) {
			return got - start
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pause stops the clients' requests (after those in flight are
// answered) until resume.
func (l *load) pause()  { l.gate.Lock() }
func (l *load) resume() { l.gate.Unlock() }

// add records values that a plain client saw.
func (l *load) add(vs ...uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, vs)
}

// finish stops the clients (each after its request in flight is
// answered), and checks what they saw against the counter's value, read
// through a new session: nothing a client saw repeated or lost, that is
// every reply together exactly 1..final, and each client's replies
// increasing.
func (l *load) finish(c *ftCluster) {
	t := c.t
	t.Helper()
	close(l.stop)
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the clients' last requests not answered within a minute")
	}
	l.count(t)
	final := c.get()
	n := guesttest.CheckExactlyOnce(t, l.seen, final)
	t.Logf("%d replies to %d clients, the counter at %d", n, len(l.seen), final)
	if c.etcdOn() {
		// The local disk: the primary's copy and its backup's (which
		// performs the writes as it replays them) hold the count too.
		o := c.owner()
		for _, h := range []string{o.Host, o.Backup} {
			if h == "" {
				continue
			}
			file := filepath.Join(c.hosts[h].dir, "vms", vmName, "disk", "counter")
			var got string
			defer func() {
				if t.Failed() {
					out, _ := exec.Command("find", c.hosts[h].dir).CombinedOutput()
					t.Logf("%s holds %q; %s:\n%s", file, got, c.hosts[h].dir, out)
				}
			}()
			c.waitFor(20*time.Second, h+"'s copy of the disk holding the count", func() bool {
				b, _ := os.ReadFile(file)
				got = strings.TrimSpace(string(b))
				v, err := strconv.ParseUint(got, 10, 64)
				return err == nil && v == final
			})
		}
	}
}

// hostLog is host name's output so far.
func (c *ftCluster) hostLog(name string) string { return c.hosts[name].proc.Output() }

// signal sends sig to host name's process (see netns.Proc.Signal).
func (c *ftCluster) signal(name string, sig syscall.Signal) {
	c.t.Helper()
	c.hosts[name].proc.Signal(sig)
}

// etcdLeader returns the etcd member that leads now.
func (c *ftCluster) etcdLeader() *etcdMember {
	c.t.Helper()
	var eps []string
	for _, m := range c.etcd {
		eps = append(eps, fmt.Sprintf("%s:%d", m.node.IP, etcdClientPort))
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		c.t.Fatalf("etcd client: %v", err)
	}
	defer cli.Close()
	for _, m := range c.etcd {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, fmt.Sprintf("%s:%d", m.node.IP, etcdClientPort))
		cancel()
		if err != nil {
			c.t.Fatalf("etcd status of %s: %v", m.node.Name, err)
		}
		if st.Leader == st.Header.MemberId {
			return m
		}
	}
	c.t.Fatal("no etcd member leads")
	return nil
}
