package netns_test

import (
	"bufio"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftvm/storage"
)

// counterCluster is the usual start of a scenario: a network with etcd of
// members members, three hosts, the counter VM on h1 (primary) and h2
// (backup), and two clients over sessions with 20 replies seen.
func counterCluster(t *testing.T, members int) (*ftCluster, *load) {
	t.Helper()
	c := newEtcdCluster(t, members)
	for _, h := range c.names {
		c.startHost(h)
	}
	c.startVM()
	l := c.startLoad(2, 10*time.Millisecond)
	l.waitReplies(t, 20, time.Minute)
	return c, l
}

// TestPrimaryKilled: the primary's host is killed (SIGKILL). Expected: its
// backup h2 claims the next generation in etcd and goes live, the
// sessions resume with it (nothing lost or repeated), and it clones the
// VM onto the spare h3: protected again.
func TestPrimaryKilled(t *testing.T) {
	t.Parallel()
	c, l := counterCluster(t, 1)
	c.signal("h1", syscall.SIGKILL)
	l.waitReplies(t, 20, time.Minute)
	o := c.protected(c.gen0, time.Minute)
	if o.Host != "h2" || o.Backup != "h3" {
		t.Errorf("protected again with %s primary and %s backup, want h2 and h3", o.Host, o.Backup)
	}
	l.waitReplies(t, 20, time.Minute)
	l.finish(c)
}

// TestPrimaryFrozen: the primary's host is frozen (SIGSTOP), and thawed
// (SIGCONT) once its backup went live. Across machines no survivor can
// fence it (the hosts run with fence=off, see startHost). Expected: the
// backup h2 hears nothing for the failure timeout, claims the next
// generation, goes live and clones onto h3; the sessions resume with it.
// The thawed h1 lets nothing out: a plain client's request that reached
// its kernel while it was frozen gets no answer (its outputs wait for
// acknowledgements from a backup that left), and its claim of the next
// generation fails in etcd: it halts and serves nothing more. It stays
// frozen past its registry lease, and comes back to a registry without it.
func TestPrimaryFrozen(t *testing.T) {
	t.Parallel()
	c, l := counterCluster(t, 1)
	addr := c.guestAddr("h1")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	v, err := request(conn, r, "inc")
	if err != nil {
		t.Fatalf("a plain client of h1: %v", err)
	}
	l.add(v)
	c.signal("h1", syscall.SIGSTOP)
	if _, err := fmt.Fprintf(conn, "inc\n"); err != nil {
		t.Fatalf("a request to the frozen h1: %v", err)
	}
	c.waitFor(time.Minute, "h2 live", func() bool {
		o := c.owner()
		return o.Generation > c.gen0 && o.Host == "h2"
	})
	l.waitReplies(t, 20, time.Minute)
	o := c.protected(c.gen0, time.Minute)
	// Frozen past its registry lease (3 s), as in a long pause: it comes
	// back to a registry without it.
	c.waitFor(time.Minute, "h1's registry entry expires", func() bool {
		hs, err := c.store.Hosts()
		return err == nil && !slices.ContainsFunc(hs, func(h storage.HostInfo) bool { return h.Name == "h1" })
	})
	c.signal("h1", syscall.SIGCONT)
	c.waitFor(time.Minute, "the thawed h1 halts", func() bool { return c.status("h1").State == "halted" })
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if line, err := r.ReadString('\n'); err == nil {
		t.Errorf("the thawed old primary answered %q to a request it read after its backup went live", line)
	}
	if v, err := plain(addr, "get", 2*time.Second); err == nil {
		t.Errorf("the halted old primary answered a new client: %d", v)
	}
	l.waitReplies(t, 20, time.Minute)
	if o2 := c.owner(); o2.Host != o.Host {
		t.Errorf("after h1 thawed, the primary is %s (generation %d), want %s", o2.Host, o2.Generation, o.Host)
	}
	l.finish(c)
}

// TestPrimaryCutFromBackup: the paths between the primary h1 and its
// backup h2 are cut (both still reach etcd, h3 and the clients). Expected:
// each takes the other for failed and claims the next generation; etcd
// lets exactly one win: it serves (and clones onto h3, the only host it
// can reach), the other halts and serves nothing. The sessions go on with
// the winner; after the heal, still only the winner serves.
func TestPrimaryCutFromBackup(t *testing.T) {
	t.Parallel()
	c, l := counterCluster(t, 1)
	h1, h2 := c.hosts["h1"].node, c.hosts["h2"].node
	c.net.Cut(h1, h2)
	o := c.protected(c.gen0, time.Minute)
	if o.Host != "h1" && o.Host != "h2" {
		t.Fatalf("generation %d's primary is %s, want h1 or h2", o.Generation, o.Host)
	}
	loser := map[string]string{"h1": "h2", "h2": "h1"}[o.Host]
	won, ok := c.claimed(c.gen0 + 1)
	if !ok || won.Host != o.Host {
		t.Errorf("generation %d: %+v (claimed: %v), want %s's claim", c.gen0+1, won, ok, o.Host)
	}
	t.Logf("%s won generation %d (%s), protected again in generation %d with %s", won.Host, c.gen0+1, won.Reason, o.Generation, o.Backup)
	c.waitFor(time.Minute, loser+" halts", func() bool { return c.status(loser).State == "halted" })
	l.waitReplies(t, 20, time.Minute)
	c.exactlyServes(o.Host, "h1", "h2")
	c.net.Heal(h1, h2)
	l.waitReplies(t, 20, time.Minute)
	c.exactlyServes(o.Host, "h1", "h2")
	l.finish(c)
}

// TestPrimaryCutFromEtcd: the primary h1's paths to etcd are cut; it
// still talks to its backup, the spare and the clients. Expected: the pair
// needs etcd only to claim a generation, so nothing fails over, busy
// (clients all along, for longer than a registry lease, 3 s, after which
// h1's entry is gone from etcd's registry) or idle (no request for three
// failure timeouts), and after the heal the service goes on as before.
// (Its runner once wrote the VM's status to the store on the loop that
// sends its heartbeats: cut from etcd, an idle primary fell silent and its
// backup took over.)
func TestPrimaryCutFromEtcd(t *testing.T) {
	t.Parallel()
	c, l := counterCluster(t, 1)
	h1, e1 := c.hosts["h1"].node, c.etcd[0].node
	c.net.Cut(h1, e1)
	for cut := time.Now(); time.Since(cut) < 4*time.Second; {
		l.waitReplies(t, 10, 10*time.Second)
	}
	l.pause()
	time.Sleep(1500 * time.Millisecond) // the default --timeout, 500 ms, three times
	l.resume()
	l.waitReplies(t, 20, time.Minute)
	if o, ok := c.claimed(c.gen0 + 1); ok {
		t.Fatalf("%s claimed generation %d (%s): a primary cut from etcd alone was taken for failed", o.Host, o.Generation, o.Reason)
	}
	c.net.Heal(h1, e1)
	l.waitReplies(t, 20, time.Minute)
	if o, ok := c.claimed(c.gen0 + 1); ok {
		t.Fatalf("%s claimed generation %d (%s) after the heal", o.Host, o.Generation, o.Reason)
	}
	l.finish(c)
}

// TestPrimaryIsolated: the primary h1's link goes down (cut from
// everything: its backup, etcd, the clients), and comes back up once its
// backup went live. Expected: h2 hears nothing for the failure timeout,
// claims the next generation, goes live and clones onto h3; the sessions
// resume with it. h1, which cannot reach etcd, cannot claim (its claim's
// outcome is unknown, so it retries), and once healed it learns it lost:
// it halts, and never serves again.
func TestPrimaryIsolated(t *testing.T) {
	t.Parallel()
	c, l := counterCluster(t, 1)
	h1 := c.hosts["h1"].node
	h1.Isolate()
	l.waitReplies(t, 20, time.Minute)
	o := c.protected(c.gen0, time.Minute)
	if o.Host != "h2" {
		t.Errorf("generation %d's primary is %s, want h2", o.Generation, o.Host)
	}
	h1.Rejoin()
	c.waitFor(time.Minute, "h1 halts", func() bool { return c.status("h1").State == "halted" })
	c.exactlyServes(o.Host, "h1", "h2")
	l.waitReplies(t, 20, time.Minute)
	c.exactlyServes(o.Host, "h1", "h2")
	l.finish(c)
}

// TestEtcdUnreachable: every etcd member is frozen (SIGSTOP), then the
// primary's host is killed. Expected: the pair serves on without etcd
// while it is whole; after the kill the backup h2 claims the next
// generation, which etcd cannot grant, so nobody wins a claim or goes
// live while etcd is gone (no reply reaches a client, no host answers a
// plain one); once etcd thaws the claim goes through, h2 goes live, the
// sessions resume and the VM is cloned onto h3. (h2's runner once wrote
// its status to the store on the loop that watches its primary: blocked on
// the frozen etcd, it did not even take the primary for failed until etcd
// thawed.)
func TestEtcdUnreachable(t *testing.T) {
	t.Parallel()
	c, l := counterCluster(t, 3)
	for _, m := range c.etcd {
		m.proc.Signal(syscall.SIGSTOP)
	}
	l.waitReplies(t, 20, time.Minute)
	c.signal("h1", syscall.SIGKILL)
	// A reply in flight at the kill may still arrive.
	time.Sleep(100 * time.Millisecond)
	before, _ := l.count(t)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		for _, h := range []string{"h2", "h3"} {
			if v, err := plain(c.guestAddr(h), "get", 500*time.Millisecond); err == nil {
				t.Fatalf("%s answered a plain client while etcd was unreachable: %d", h, v)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n, _ := l.count(t); n != before {
		t.Errorf("%d replies reached the clients while etcd was unreachable and the primary dead", n-before)
	}
	for _, h := range []string{"h2", "h3"} {
		if log := c.hostLog(h); strings.Contains(log, `msg="won generation"`) || strings.Contains(log, "msg=live") {
			t.Errorf("%s won a claim or went live while etcd was unreachable", h)
		}
	}
	if !strings.Contains(c.hostLog("h2"), `msg="peer silent, claiming"`) {
		t.Error("h2 did not take its dead primary for failed while etcd was unreachable")
	}
	for _, m := range c.etcd {
		m.proc.Signal(syscall.SIGCONT)
	}
	l.waitReplies(t, 20, time.Minute)
	if o := c.protected(c.gen0, time.Minute); o.Host != "h2" {
		t.Errorf("generation %d's primary is %s, want h2", o.Generation, o.Host)
	}
	l.waitReplies(t, 20, time.Minute)
	l.finish(c)
}

// TestEtcdMemberKilled: etcd's leader (of three members) is killed.
// Expected: the other two elect a leader and the hosts' clients turn to
// them; the service carries on, the hosts stay registered (their leases
// kept alive past a lease's length), and a kill of the primary's host
// then fails over through the two members left.
func TestEtcdMemberKilled(t *testing.T) {
	t.Parallel()
	c, l := counterCluster(t, 3)
	leader := c.etcdLeader()
	leader.proc.Signal(syscall.SIGKILL)
	killed := time.Now()
	for time.Since(killed) < 4*time.Second {
		l.waitReplies(t, 10, time.Minute)
	}
	hs, err := c.store.Hosts()
	if err != nil || len(hs) != 3 {
		t.Fatalf("registered hosts 4s after etcd's leader died: %v, %v", hs, err)
	}
	c.signal("h1", syscall.SIGKILL)
	l.waitReplies(t, 20, time.Minute)
	if o := c.protected(c.gen0, time.Minute); o.Host != "h2" || o.Backup != "h3" {
		t.Errorf("protected again with %s primary and %s backup, want h2 and h3", o.Host, o.Backup)
	}
	l.waitReplies(t, 20, time.Minute)
	l.finish(c)
}
