package netns_test

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftvm/internal/netns"
)

// TestNetwork: the harness's own guarantees, with this test binary as the
// processes in the namespaces (an echo server, a one-shot dialer). Every
// node reaches every other and the root namespace reaches every node; a
// Cut breaks the path between two nodes only, both ways, and Heal mends
// it; Isolate breaks every path of a node, the root namespace's too, and
// Rejoin mends them; SIGSTOP and SIGCONT freeze and thaw a process; and
// after the test, nothing of the network is left (checked by a second
// network in a subtest, whose cleanup runs first).
func TestNetwork(t *testing.T) {
	t.Parallel()
	n := netns.New(t)
	a, b, c := n.AddNode("a"), n.AddNode("b"), n.AddNode("c")
	if a.IP == b.IP || !n.Subnet().Contains(a.IP) || !n.Subnet().Contains(n.BridgeIP()) {
		t.Fatalf("addresses: a %v, b %v, bridge %v, subnet %v", a.IP, b.IP, n.BridgeIP(), n.Subnet())
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	servers := map[*netns.Node]*netns.Proc{}
	for _, nd := range []*netns.Node{a, b, c} {
		servers[nd] = nd.Start("echo", netns.Options{Env: []string{"FTVM_NETNS_HELPER=echo " + nd.IP.String() + ":9000"}}, self)
	}
	for _, p := range servers {
		waitOutput(t, p, "listening", 10*time.Second)
	}
	// dial reports whether from reaches to's echo server (from nil: the
	// test process, in the root namespace).
	dial := func(from, to *netns.Node) bool {
		t.Helper()
		addr := to.IP.String() + ":9000"
		if from == nil {
			return echo(addr) == nil
		}
		p := from.Start("dial", netns.Options{Env: []string{"FTVM_NETNS_HELPER=dial " + addr}}, self)
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("dialer on %s did not end", from.Name)
		}
		out := strings.TrimSpace(p.Output())
		if out != "ok" && !strings.HasPrefix(out, "fail:") {
			t.Fatalf("dialer on %s: %q", from.Name, out)
		}
		return out == "ok"
	}
	expect := func(what string, from, to *netns.Node, want bool) {
		t.Helper()
		if got := dial(from, to); got != want {
			name := "root"
			if from != nil {
				name = from.Name
			}
			t.Errorf("%s: %s reaches %s: %v, want %v", what, name, to.Name, got, want)
		}
	}
	for _, p := range [][2]*netns.Node{{a, b}, {b, a}, {a, c}, {nil, a}, {nil, b}} {
		expect("at first", p[0], p[1], true)
	}

	n.Cut(a, b)
	expect("a cut from b", a, b, false)
	expect("a cut from b", b, a, false)
	expect("a cut from b", a, c, true)
	expect("a cut from b", c, b, true)
	expect("a cut from b", nil, a, true)
	n.Heal(a, b)
	expect("healed", a, b, true)
	expect("healed", b, a, true)

	a.Isolate()
	expect("a isolated", nil, a, false)
	expect("a isolated", b, a, false)
	expect("a isolated", a, c, false)
	expect("a isolated", b, c, true)
	a.Rejoin()
	expect("a rejoined", b, a, true)
	// The bridge relearns where a is at its first packet; give the root
	// namespace's dial a few tries.
	deadline := time.Now().Add(5 * time.Second)
	for !dial(nil, a) {
		if time.Now().After(deadline) {
			t.Fatal("the root namespace does not reach a after it rejoined")
		}
	}

	// A frozen echo server's kernel still accepts connections and their
	// bytes, but nothing comes back until it thaws.
	servers[b].Signal(syscall.SIGSTOP)
	expect("b frozen", nil, b, false)
	servers[b].Signal(syscall.SIGCONT)
	expect("b thawed", nil, b, true)
	servers[c].Signal(syscall.SIGKILL)
	if done, _ := servers[c].Exited(); !done {
		t.Error("c's server has not exited after SIGKILL")
	}

	// A second network alongside gets its own /24 and names; its cleanup
	// (at its subtest's end) leaves nothing behind, while the first
	// network still works.
	var id string
	t.Run("second", func(t *testing.T) {
		m := netns.New(t)
		id = m.ID()
		if m.Subnet() == n.Subnet() || id == n.ID() {
			t.Errorf("two networks with the subnet %v or the ID %s", m.Subnet(), id)
		}
		x := m.AddNode("x")
		x.Start("echo", netns.Options{Env: []string{"FTVM_NETNS_HELPER=echo " + x.IP.String() + ":9000"}}, self)
		if names := leftovers(t, id); len(names) != 3 {
			t.Errorf("network %s: namespaces and interfaces %q, want a namespace, a veth and a bridge", id, names)
		}
	})
	if names := leftovers(t, id); len(names) > 0 {
		t.Errorf("left behind by the second network: %q", names)
	}
	expect("after the second network", nil, a, true)
}

// leftovers lists the namespaces and interfaces whose names carry id.
func leftovers(t *testing.T, id string) []string {
	t.Helper()
	var names []string
	for _, c := range []struct {
		args  []string
		field int // the name's in each line
	}{{[]string{"netns", "list"}, 0}, {[]string{"-o", "link", "show"}, 1}} {
		out, err := exec.Command("ip", c.args...).Output()
		if err != nil {
			t.Fatalf("ip %s: %v", strings.Join(c.args, " "), err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) <= c.field {
				continue
			}
			// "7: NAME@PEER: <...>" for a veth.
			name, _, _ := strings.Cut(strings.TrimSuffix(f[c.field], ":"), "@")
			// "ftn" ID, then "b" (the bridge), "v" (a veth) or "-" (a
			// namespace): not another network's ID that starts with
			// this one.
			if rest, ok := strings.CutPrefix(name, "ftn"+id); ok && rest != "" && strings.ContainsRune("bv-", rune(rest[0])) {
				names = append(names, name)
			}
		}
	}
	return names
}

// waitOutput waits until p has written want.
func waitOutput(t testing.TB, p *netns.Proc, want string, max time.Duration) {
	t.Helper()
	deadline := time.Now().Add(max)
	for !strings.Contains(p.Output(), want) {
		if done, err := p.Exited(); done {
			t.Fatalf("%s on %s exited (%v) before it wrote %q:\n%s", p.Name, p.Node().Name, err, want, p.Output())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s did not write %q within %v:\n%s", p.Name, p.Node().Name, want, max, p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
