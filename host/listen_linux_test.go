package host_test

import (
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftvm/host"
	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// takenAddr returns a free address that a program other than the hosts
// (this test process) listens on with SO_REUSEPORT, as a pair's hosts do:
// the kernel would let a VM bind it too and split the connections.
func takenAddr(t *testing.T) string {
	t.Helper()
	ln, err := host.ReusePortListen(guesttest.FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// waitFailed waits until vm's status on hostName is failed, and returns
// the reason.
func (c *cluster) waitFailed(vm, hostName string) string {
	c.t.Helper()
	var st storage.VMStatus
	c.waitFor(30*time.Second, vm+" failed on "+hostName, func() bool {
		st = c.status(vm, hostName)
		return st.State == "failed"
	})
	return st.Detail
}

// TestListenAddressTakenAtStart: a VM whose listen address someone else
// already listens on does not start, and says who.
func TestListenAddressTakenAtStart(t *testing.T) {
	c := newCluster(t)
	c.startHost("h1")
	c.startHost("h2")
	addr := takenAddr(t)
	if _, _, err := host.StartVM(c.store, storage.VMSpec{Name: "counter", Listeners: []string{addr}, Primary: "h1", Backup: "h2", Args: []string{"ft-counter"}}, counterGuest(t), time.Now()); err != nil {
		t.Fatal(err)
	}
	why := c.waitFailed("counter", "h1")
	if !strings.Contains(why, addr+" is taken") || !strings.Contains(why, "host.test") {
		t.Fatalf("failed with %q; want the address and the process that holds it", why)
	}
}

// TestListenAddressTakenAtGoLive: a program that joined the VM's address
// while its primary served it is found when the backup goes live, which
// refuses to share the address rather than split the clients; it waits
// for the address, saying who holds it, and goes live once the program
// has left, with the VM's state intact.
func TestListenAddressTakenAtGoLive(t *testing.T) {
	c := newCluster(t)
	addr := counterPair(t, c, false)
	get(t, addr, 10*time.Second)
	cc := &counterClient{lineClient{addr: addr}}
	if got, err := cc.do("inc", 10*time.Second); err != nil || got != 1 {
		t.Fatalf("inc = %d, %v; want 1", got, err)
	}
	cc.close()
	ln, err := host.ReusePortListen(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c.signal("h1", syscall.SIGKILL)
	c.waitFor(30*time.Second, "h2 waiting for the address", func() bool {
		return strings.Contains(grepLines(c.hosts["h2"].logs.String(), "go-live waits"), addr+" is taken")
	})
	if st := c.status("counter", "h2"); st.State == "running" && st.Role == "alone" {
		t.Fatalf("h2 went live sharing the address with a stranger: %+v", st)
	}
	ln.Close()
	if got := get(t, addr, 30*time.Second); got != 1 {
		t.Fatalf("get = %d after the go-live, want 1", got)
	}
}

// TestHostNameTaken: a second host with a running host's name, frozen or
// not, is refused: it would take over the registry entry, and with it the
// heartbeats and the fencing meant for the first.
func TestHostNameTaken(t *testing.T) {
	c := newCluster(t)
	c.startHost("h1")
	second := func() string {
		out, err := exec.Command(c.bin, "host", "--shared", c.dir, "--name", "h1").CombinedOutput()
		if err == nil {
			t.Fatalf("a second h1 ran:\n%s", out)
		}
		return string(out)
	}
	if out := second(); !strings.Contains(out, "host h1: already running") {
		t.Fatalf("a second h1: %s; want it refused", out)
	}
	c.signal("h1", syscall.SIGSTOP)
	if out := second(); !strings.Contains(out, "host h1: already running") {
		t.Fatalf("a second h1 beside a frozen one: %s; want it refused", out)
	}
	c.signal("h1", syscall.SIGKILL)
	<-c.hosts["h1"].done
	c.startHost("h1") // a dead host's name is free
}

// TestStartFailureStaysFailed: a VM whose primary cannot bind its
// listener (another program holds the port) fails to start, and stays
// failed: its backup, which never heard from the primary, does not take
// over after the start timeout, even once the port is free, so nothing
// runs the VM that ftvm start said failed.
func TestStartFailureStaysFailed(t *testing.T) {
	c := newCluster(t)
	for _, h := range []string{"h1", "h2"} {
		c.startHost(h)
	}
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := held.Addr().String()
	_, owner, err := host.StartVM(c.store, storage.VMSpec{Name: "counter", Listeners: []string{addr}, Primary: "h1", Backup: "h2", Args: []string{"ft-counter"}}, counterGuest(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c.waitFor(20*time.Second, "the start failed", func() bool { return c.status("counter", "h1").State == "failed" })
	if d := c.status("counter", "h1").Detail; !strings.Contains(d, "address already in use") || !strings.Contains(d, "held by") {
		t.Errorf("failed start's detail %q: want the bind error naming the holder", d)
	}
	held.Close()
	c.waitFor(20*time.Second, "the backup ended", func() bool { return c.status("counter", "h2").State == "failed" })
	// Longer than the start timeout (5 s) after which a backup that never
	// heard its primary would take over.
	time.Sleep(6 * time.Second)
	if o := c.owner("counter"); o.Generation != owner.Generation {
		t.Fatalf("the backup took over a vm whose start failed: %+v", o)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("something serves %s, the failed vm's address", addr)
	}
}
