// Package netns builds small networks of Linux network namespaces on this
// machine for tests, so that processes which would run on separate servers
// (etcd members, ftvm hosts) each get an address and a network of their
// own, and the network between them can fail: a node's link cut, or the
// path between two nodes only.
//
// A Network is one Linux bridge in the root namespace with an address
// (.1) in a /24 of 198.18.0.0/15 (the block reserved for benchmarking
// networks, RFC 2544), and one namespace per node, joined to the bridge by
// a veth pair, with its own address in the /24 and its loopback up. The
// test process stays in the root namespace and reaches every node through
// the bridge, so test clients run in the test process itself.
//
// Names carry the test process's PID and the /24's index, so that
// networks of parallel tests, and of parallel test processes, never
// collide: each /24 is allocated under a lock file, and whatever a dead
// test process left behind (a test binary killed by -timeout runs no
// cleanup) is removed by the next allocation. A Network removes
// everything it made when its test ends: its processes (killed), the
// namespaces, the veths and the bridge.
//
// It needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2's ip; New
// skips the test, saying why, where it cannot build a network.
package netns

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// namePrefix starts the name of everything this package makes: bridges,
// veths and namespaces. After it come the owning process's PID and the
// /24's index, in base 36, so that an interface name fits Linux's 15
// bytes.
const namePrefix = "ftn"

// blocks is the number of /24s in 198.18.0.0/15.
const blocks = 512

// LogsEnv, set to anything, makes a Network print the end of each of its
// processes' output when its test ends, passed or not (a failed test gets
// it anyway).
const LogsEnv = "FTVM_NETNS_LOGS"

// lockPath serializes the allocation of /24s (and the removal of what dead
// test processes left) between the test processes of the machine.
const lockPath = "/run/ftvm-netns.lock"

// Network is a bridge with namespaces on it. It belongs to the test that
// made it: call its methods from that test's goroutine.
type Network struct {
	t      testing.TB
	id     string // "PID-INDEX", both in base 36
	block  int    // the /24's index in 198.18.0.0/15
	bridge string
	logDir string

	// root stands for the root namespace, where the test process runs:
	// its processes start without ip netns exec.
	root *Node

	nodes []*Node
	procs []*Proc
	cuts  map[[2]*Node]bool // blackholed pairs, first the node cut
}

// Node is a network namespace on the network, with one address.
type Node struct {
	Name string // as given to AddNode
	NS   string // the namespace's name (ip netns)
	IP   netip.Addr
	veth string // the pair's end in the root namespace, on the bridge
	net  *Network
}

// Proc is a process running in a node's namespace.
type Proc struct {
	Name string
	node *Node
	cmd  *exec.Cmd
	out  *syncBuffer
	log  string // its log file: the same output
	done chan struct{}
	err  error // Wait's result, once done is closed
}

// probe is the build-once check whether this machine lets the test
// process build networks: "" if it does, else why not.
var probe = sync.OnceValue(func() string {
	_, ipErr := exec.LookPath("ip")
	if why := unavailable(runtime.GOOS, ipErr, os.Geteuid()); why != "" {
		return why
	}
	if err := tryNamespace(); err != nil {
		return fmt.Sprintf("cannot build a network namespace with a bridge and a veth here: %v", err)
	}
	return ""
})

// Unavailable says why this machine cannot build networks for this test
// process ("" if it can). It tries once per process.
func Unavailable() string { return probe() }

// unavailable is the part of the check that needs no system call: the
// platform, iproute2, root.
func unavailable(goos string, ipErr error, euid int) string {
	switch {
	case goos != "linux":
		return "network namespaces are Linux's; this is " + goos
	case ipErr != nil:
		return fmt.Sprintf("no ip command (iproute2): %v", ipErr)
	case euid != 0:
		return fmt.Sprintf("building network namespaces, bridges and veths takes root; running as uid %d", euid)
	}
	return ""
}

// tryNamespace makes and removes a namespace, a bridge and a veth pair
// between them: what New does, where a container or a missing kernel
// module may refuse it.
func tryNamespace() error {
	pid := strconv.FormatInt(int64(os.Getpid()), 36)
	ns, br, veth := namePrefix+pid+"-probe", namePrefix+pid+"-pb", namePrefix+pid+"-pv"
	defer func() {
		_ = ipCmd("link", "del", veth)
		_ = ipCmd("link", "del", br)
		_ = ipCmd("netns", "del", ns)
	}()
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", br, "type", "bridge"},
		{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"link", "set", veth, "master", br},
	} {
		if err := ipCmd(args...); err != nil {
			return err
		}
	}
	return nil
}

// New builds an empty network (the bridge) for test t and removes it, with
// all its nodes and processes, when t ends. It skips t if this machine
// cannot build one (see Unavailable).
func New(t testing.TB) *Network {
	t.Helper()
	if why := Unavailable(); why != "" {
		t.Skip("netns: " + why)
	}
	// The log directory first: t's temporary directories are removed by
	// a cleanup that must run after the one below has killed the
	// processes writing there.
	n := &Network{t: t, logDir: t.TempDir(), cuts: map[[2]*Node]bool{}}
	t.Cleanup(n.destroy)
	if err := n.allocate(); err != nil {
		t.Fatalf("netns: %v", err)
	}
	n.root = &Node{Name: "root", IP: n.BridgeIP(), net: n}
	return n
}

// Loopback is a network without namespaces, for comparisons with a
// cluster on one machine: its only node is Root (at 127.0.0.1), and it
// manages that node's processes as New's network does. It needs no
// privilege.
func Loopback(t testing.TB) *Network {
	t.Helper()
	n := &Network{t: t, logDir: t.TempDir(), id: "loopback", cuts: map[[2]*Node]bool{}}
	t.Cleanup(n.destroy)
	n.root = &Node{Name: "root", IP: netip.AddrFrom4([4]byte{127, 0, 0, 1}), net: n}
	return n
}

// Root is the root namespace, where the test process runs, as a node: at
// the bridge's address (127.0.0.1 on a Loopback network). It cannot be
// isolated or cut.
func (n *Network) Root() *Node { return n.root }

// ID is what this network's names carry: the PID and the /24's index.
func (n *Network) ID() string { return n.id }

// Subnet is the network's /24.
func (n *Network) Subnet() netip.Prefix {
	return netip.PrefixFrom(n.addr(0), 24)
}

// BridgeIP is the root namespace's address on the network: where nodes
// reach the test process.
func (n *Network) BridgeIP() netip.Addr { return n.addr(1) }

// addr returns host number i of the network's /24.
func (n *Network) addr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, byte(18 + n.block/256), byte(n.block % 256), byte(i)})
}

// allocate picks a /24 that no interface of the root namespace has and no
// route covers, and makes the bridge with its .1, under the machine-wide
// lock, so that another test process cannot pick the same.
func (n *Network) allocate() error {
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	removeStale()
	used, err := usedBlocks()
	if err != nil {
		return err
	}
	n.block = slices.Index(used, false)
	if n.block < 0 {
		return errors.New("every /24 of 198.18.0.0/15 is in use in the root namespace")
	}
	n.id = strconv.FormatInt(int64(os.Getpid()), 36) + "-" + strconv.FormatInt(int64(n.block), 36)
	n.bridge = namePrefix + n.id + "b"
	if err := ipCmd("link", "add", n.bridge, "type", "bridge"); err != nil {
		n.bridge = "" // not ours to remove: it may be another's
		return fmt.Errorf("bridge for %v: %w", n.Subnet(), err)
	}
	if err := ipCmd("addr", "add", n.BridgeIP().String()+"/24", "dev", n.bridge); err != nil {
		return fmt.Errorf("bridge %s: %w", n.bridge, err)
	}
	if err := ipCmd("link", "set", n.bridge, "up"); err != nil {
		return fmt.Errorf("bridge %s: %w", n.bridge, err)
	}
	return nil
}

// lock takes the machine-wide allocation lock.
func lock() (unlock func(), err error) {
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("allocation lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("allocation lock %s: %w", lockPath, err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// usedBlocks reports, for each /24 of 198.18.0.0/15, whether the root
// namespace has an address in it or a route that overlaps it.
func usedBlocks() ([]bool, error) {
	used := make([]bool, blocks)
	var prefixes []netip.Prefix
	for _, args := range [][]string{{"-4", "-o", "addr", "show"}, {"-4", "route", "show", "table", "all"}} {
		out, err := exec.Command("ip", args...).Output()
		if err != nil {
			return nil, fmt.Errorf("ip %s: %w", strings.Join(args, " "), err)
		}
		for _, f := range strings.Fields(string(out)) {
			if p, err := netip.ParsePrefix(f); err == nil {
				prefixes = append(prefixes, p)
			} else if a, err := netip.ParseAddr(f); err == nil && a.Is4() {
				prefixes = append(prefixes, netip.PrefixFrom(a, 32))
			}
		}
	}
	for i := range used {
		b := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, byte(18 + i/256), byte(i % 256), 0}), 24)
		for _, p := range prefixes {
			// The default route (0.0.0.0/0) overlaps everything but
			// takes nothing.
			if p.Bits() > 0 && p.Overlaps(b) {
				used[i] = true
			}
		}
	}
	return used, nil
}

// staleName matches this package's names, capturing the owner's PID.
var staleName = regexp.MustCompile(`^` + namePrefix + `([0-9a-z]+)-[0-9a-z-]+$`)

// removeStale removes the namespaces and interfaces whose test process is
// gone: no process of this PID namespace has the PID in their names (test
// processes that share a network namespace share the PID namespace too,
// as go test's do). It is best effort: what it cannot remove stays
// visible in ip's listings (and its /24 is skipped).
func removeStale() {
	var links, nss []string
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			// "7: NAME@PEER: <...": a veth's name carries its peer.
			if f := strings.Fields(line); len(f) > 1 {
				name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
				links = append(links, name)
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 {
				nss = append(nss, f[0])
			}
		}
	}
	dead := func(name string) bool {
		m := staleName.FindStringSubmatch(name)
		if m == nil {
			return false
		}
		pid, err := strconv.ParseInt(m[1], 36, 64)
		if err != nil || pid <= 0 || pid > 1<<22 {
			return false
		}
		return unix.Kill(int(pid), 0) == unix.ESRCH
	}
	// A veth's deletion takes its end in the namespace with it, a
	// bridge's releases its ports: any order does.
	for _, l := range links {
		if dead(l) {
			_ = ipCmd("link", "del", l)
		}
	}
	for _, ns := range nss {
		if dead(ns) {
			_ = ipCmd("netns", "del", ns)
		}
	}
}

// nodeName is what a node's name may be: it becomes part of the
// namespace's name.
var nodeName = regexp.MustCompile(`^[a-z0-9]{1,20}$`)

// AddNode makes a namespace on the network, with the next address
// (.11, .12, ...), its loopback up.
func (n *Network) AddNode(name string) *Node {
	n.t.Helper()
	if n.bridge == "" {
		n.t.Fatalf("netns: node %s: a Loopback network has no node but its Root", name)
	}
	if !nodeName.MatchString(name) {
		n.t.Fatalf("netns: node name %q: want 1 to 20 lowercase letters and digits", name)
	}
	for _, o := range n.nodes {
		if o.Name == name {
			n.t.Fatalf("netns: node %s twice", name)
		}
	}
	i := len(n.nodes) + 1
	if i > 200 {
		n.t.Fatalf("netns: more than 200 nodes")
	}
	nd := &Node{
		Name: name,
		NS:   namePrefix + n.id + "-" + name,
		IP:   n.addr(10 + i),
		veth: namePrefix + n.id + "v" + strconv.FormatInt(int64(i), 36),
		net:  n,
	}
	// Recorded first, so that the cleanup removes what a failure here
	// leaves.
	n.nodes = append(n.nodes, nd)
	for _, args := range [][]string{
		{"netns", "add", nd.NS},
		// The peer is made in the namespace directly, where eth0 is free.
		{"link", "add", nd.veth, "type", "veth", "peer", "name", "eth0", "netns", nd.NS},
		{"link", "set", nd.veth, "master", n.bridge, "up"},
		{"-n", nd.NS, "addr", "add", nd.IP.String() + "/24", "dev", "eth0"},
		{"-n", nd.NS, "link", "set", "eth0", "up"},
		{"-n", nd.NS, "link", "set", "lo", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			n.t.Fatalf("netns: node %s: %v", name, err)
		}
	}
	return nd
}

// Options are how Start runs a process.
type Options struct {
	// Dir is its working directory ("": the test process's).
	Dir string
	// Env is added to the test process's environment.
	Env []string
}

// Start runs argv in the node's namespace (ip netns exec), its stdout and
// stderr captured to a buffer (Output) and to a log file under the test's
// temporary directory (LogPath). The process is killed when the test ends,
// or should the test process die first (PR_SET_PDEATHSIG).
func (nd *Node) Start(name string, opts Options, argv ...string) *Proc {
	n := nd.net
	n.t.Helper()
	if len(argv) == 0 {
		n.t.Fatalf("netns: start %s on %s: no command", name, nd.Name)
	}
	seq := len(n.procs)
	logPath := filepath.Join(n.logDir, fmt.Sprintf("%02d-%s-%s.log", seq, nd.Name, name))
	f, err := os.Create(logPath)
	if err != nil {
		n.t.Fatalf("netns: start %s on %s: %v", name, nd.Name, err)
	}
	// ip netns exec execs the command in place (no fork), so the process
	// started is the command itself: its PID, its signals.
	cmd := exec.Command("ip", append([]string{"netns", "exec", nd.NS}, argv...)...)
	if nd == n.root {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	cmd.Dir = opts.Dir
	cmd.Env = append(os.Environ(), opts.Env...)
	out := &syncBuffer{}
	cmd.Stdout = io.MultiWriter(out, f)
	cmd.Stderr = cmd.Stdout
	// The test process's death must not leave the process running in a
	// namespace that no one removes. Go ends a thread only when a locked
	// goroutine exits without unlocking, which the tests do not do.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		n.t.Fatalf("netns: start %s on %s: %v", name, nd.Name, err)
	}
	p := &Proc{Name: name, node: nd, cmd: cmd, out: out, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	n.procs = append(n.procs, p)
	return p
}

// Node is where the process runs.
func (p *Proc) Node() *Node { return p.node }

// Pid is the process's ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output is what the process wrote so far, stdout and stderr.
func (p *Proc) Output() string { return p.out.String() }

// LogPath is the file that has the same as Output.
func (p *Proc) LogPath() string { return p.log }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Signal sends sig to the process and waits for its effect: after SIGKILL
// until it has exited, after SIGSTOP until every thread has stopped, after
// SIGCONT until none is stopped.
func (p *Proc) Signal(sig syscall.Signal) {
	t := p.node.net.t
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("netns: signal %v to %s on %s: %v", sig, p.Name, p.node.Name, err)
	}
	var what string
	var cond func() bool
	switch sig {
	case syscall.SIGKILL:
		what, cond = "exited", func() bool { done, _ := p.Exited(); return done }
	case syscall.SIGSTOP:
		what, cond = "stopped", func() bool { return p.stopped(true) }
	case syscall.SIGCONT:
		what, cond = "running again", func() bool { return p.stopped(false) }
	default:
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("netns: %s on %s not %s 10s after %v", p.Name, p.node.Name, what, sig)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// stopped reports whether every thread (all: true) or none (all: false) of
// the process is stopped. The state follows the command's name, in
// parentheses, in each thread's stat.
func (p *Proc) stopped(all bool) bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", p.Pid()))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			return false // a thread that ended: look again
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			return false
		}
		if st := b[i+2] == 'T' || b[i+2] == 't'; st != all {
			return false
		}
	}
	return true
}

// Isolate cuts the node from everything, the root namespace included: its
// veth's end on the bridge goes down. Nothing ends a connection; packets
// are lost, as with a pulled cable.
func (nd *Node) Isolate() {
	nd.net.t.Helper()
	nd.notRoot("isolate")
	if err := ipCmd("link", "set", nd.veth, "down"); err != nil {
		nd.net.t.Fatalf("netns: isolate %s: %v", nd.Name, err)
	}
}

// Rejoin undoes Isolate.
func (nd *Node) Rejoin() {
	nd.net.t.Helper()
	nd.notRoot("rejoin")
	if err := ipCmd("link", "set", nd.veth, "up"); err != nil {
		nd.net.t.Fatalf("netns: rejoin %s: %v", nd.Name, err)
	}
}

// Cut cuts the paths between node a and each of peers, both ways, leaving
// every other path: a blackhole route to the peer in a's namespace and one
// to a in the peer's. Packets on a path are dropped; a new connection or a
// datagram sent on it fails at once (EINVAL), an established connection
// just hears nothing more.
func (n *Network) Cut(a *Node, peers ...*Node) {
	n.t.Helper()
	a.notRoot("cut")
	for _, p := range peers {
		p.notRoot("cut")
		if p == a || n.cuts[[2]*Node{a, p}] || n.cuts[[2]*Node{p, a}] {
			n.t.Fatalf("netns: cut %s from %s: the same node, or already cut", a.Name, p.Name)
		}
		n.cuts[[2]*Node{a, p}] = true
		for _, r := range [][2]*Node{{a, p}, {p, a}} {
			if err := ipCmd("-n", r[0].NS, "route", "add", "blackhole", r[1].IP.String()+"/32"); err != nil {
				n.t.Fatalf("netns: cut %s from %s: %v", a.Name, p.Name, err)
			}
		}
	}
}

// notRoot fails the test if nd is the root namespace, which the faults
// would cut from everything, the test process's own traffic included.
func (nd *Node) notRoot(what string) {
	nd.net.t.Helper()
	if nd == nd.net.root {
		nd.net.t.Fatalf("netns: cannot %s the root namespace", what)
	}
}

// Heal undoes the Cut of a from each of peers.
func (n *Network) Heal(a *Node, peers ...*Node) {
	n.t.Helper()
	for _, p := range peers {
		k := [2]*Node{a, p}
		if !n.cuts[k] {
			k = [2]*Node{p, a}
		}
		if !n.cuts[k] {
			n.t.Fatalf("netns: heal %s and %s: not cut", a.Name, p.Name)
		}
		delete(n.cuts, k)
		for _, r := range [][2]*Node{{a, p}, {p, a}} {
			if err := ipCmd("-n", r[0].NS, "route", "del", "blackhole", r[1].IP.String()+"/32"); err != nil {
				n.t.Fatalf("netns: heal %s and %s: %v", a.Name, p.Name, err)
			}
		}
	}
}

// destroy kills the processes and removes the namespaces, veths and
// bridge; a failed test gets the end of each process's output (see
// LogsEnv).
func (n *Network) destroy() {
	procs := n.procs
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Kill()
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			n.t.Errorf("netns: %s on %s (pid %d) did not exit 10s after SIGKILL", p.Name, p.node.Name, p.Pid())
		}
	}
	if n.t.Failed() || os.Getenv(LogsEnv) != "" {
		for _, p := range procs {
			n.t.Logf("---- %s on %s (%s, pid %d), the end of its output:\n%s", p.Name, p.node.Name, p.node.IP, p.Pid(), tail(p.Output(), 64<<10))
		}
	}
	// Deleting the root end of a veth deletes both ends at once; a
	// namespace's deletion would take its end with it too, but
	// asynchronously, after the namespace's last process is gone.
	for _, nd := range n.nodes {
		if err := ipCmd("link", "del", nd.veth); err != nil && !noSuchThing(err) {
			n.t.Errorf("netns: cleanup: %v", err)
		}
		if err := ipCmd("netns", "del", nd.NS); err != nil && !noSuchThing(err) {
			n.t.Errorf("netns: cleanup: %v", err)
		}
	}
	if n.bridge != "" {
		if err := ipCmd("link", "del", n.bridge); err != nil && !noSuchThing(err) {
			n.t.Errorf("netns: cleanup: %v", err)
		}
	}
}

// tail returns the last max bytes of s, from a line's start.
func tail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[len(s)-max:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "[...]\n" + s
}

// ipCmd runs ip with args.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// noSuchThing reports whether ip failed because what it was to delete is
// not there (any more).
func noSuchThing(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot find device") || strings.Contains(s, "No such file") || strings.Contains(s, "does not exist")
}

// syncBuffer is a bytes.Buffer that a process writes while a test reads
// it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
