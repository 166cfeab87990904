package netns_test

import (
	"bufio"
	"slices"
	"syscall"
	"testing"
	"time"
)

// BenchmarkNamespaceFailover measures failovers as clients see them, from
// the fault to the first reply after it, on the namespace cluster with
// etcd (one member; each host on a network of its own, no fence across
// them) and, in the same run, on one machine with the store in a
// directory (hosts on loopback, which fence their old primary):
//
//   - kill: SIGKILL of the primary's host, whose connections its kernel
//     ends;
//   - freeze: SIGSTOP of it, a silent failure that ends no connection;
//   - isolate (etcd): its link down, the other silent failure.
//
// Each iteration is one failover of a protected VM: the fault, then two
// clients at once, each timing its first reply: "session" over a session
// (client.Dial) opened before, whose request waits through the failover
// (it resumes once its connection fails, or after the session's idle
// timeout when nothing ends it), and "plain" on fresh connections to the
// guest listener of the host that the store names primary, retried every
// 5 ms (250 ms each). "claim" is the fault to the survivor's claim in the
// store (the owner record's time: one machine, one clock). Then the
// failed host is thawed, rejoined or started again, and the next
// iteration waits until the VM is protected again. Metrics are p50 and
// p99 over the iterations.
//
//	go test ./internal/netns/ -run '^$' -bench BenchmarkNamespaceFailover -benchtime 5x
func BenchmarkNamespaceFailover(b *testing.B) {
	for _, f := range []fault{faultKill, faultFreeze, faultIsolate} {
		b.Run("etcd/"+f.String(), func(b *testing.B) { benchFailover(b, newEtcdCluster(b, 1), f) })
	}
	for _, f := range []fault{faultKill, faultFreeze} {
		b.Run("dir/"+f.String(), func(b *testing.B) { benchFailover(b, newDirCluster(b), f) })
	}
}

type fault int

const (
	faultKill fault = iota
	faultFreeze
	faultIsolate
)

func (f fault) String() string { return [...]string{"kill", "freeze", "isolate"}[f] }

func benchFailover(b *testing.B, c *ftCluster, f fault) {
	for _, h := range c.names {
		c.startHost(h)
	}
	c.startVM()
	sess := c.dial(time.Minute)
	defer sess.Close()
	r := bufio.NewReader(sess)
	var session, plainT, claim []time.Duration
	gen := uint64(0)
	for b.Loop() {
		b.StopTimer()
		o := c.protected(gen, time.Minute)
		// The session is attached to the primary, and has nothing in
		// flight.
		if _, err := request(sess, r, "inc"); err != nil {
			b.Fatalf("session: %v", err)
		}
		b.StartTimer()
		start := time.Now()
		switch f {
		case faultKill:
			c.signal(o.Host, syscall.SIGKILL)
		case faultFreeze:
			c.signal(o.Host, syscall.SIGSTOP)
		case faultIsolate:
			c.hosts[o.Host].node.Isolate()
		}
		sessDone := make(chan error, 1)
		go func() {
			_, err := request(sess, r, "inc")
			sessDone <- err
		}()
		plainT = append(plainT, c.plainFailover(o.Generation, start))
		if err := <-sessDone; err != nil {
			b.Fatalf("session: %v", err)
		}
		session = append(session, time.Since(start))
		b.StopTimer()
		claimed, ok, err := c.store.Owner(vmName, o.Generation+1)
		if err != nil || !ok {
			b.Fatalf("a reply, but no generation %d: %v", o.Generation+1, err)
		}
		claim = append(claim, claimed.Time.Sub(start))
		gen = o.Generation
		// The failed host back: a killed one (or a frozen one that its
		// survivor on the same machine fenced) started again as a spare;
		// a frozen or cut off one, alive, halts its VM once it learns it
		// lost, and stays as a spare.
		h := c.hosts[o.Host]
		if f == faultFreeze && !c.etcdOn() {
			// On one machine the survivor fences its stopped old
			// primary: it kills it (asynchronously to the reply).
			select {
			case <-h.proc.Done():
			case <-time.After(10 * time.Second):
			}
		}
		switch done, _ := h.proc.Exited(); {
		case done:
			c.startHost(o.Host)
		case f == faultFreeze:
			c.signal(o.Host, syscall.SIGCONT)
		case f == faultIsolate:
			h.node.Rejoin()
		}
		b.StartTimer()
	}
	b.StopTimer()
	report(b, session, "session")
	report(b, plainT, "plain")
	report(b, claim, "claim")
}

// plainFailover times, from start, the first reply to a plain client of
// the guest listener of the host the store names primary after
// generation gen.
func (c *ftCluster) plainFailover(gen uint64, start time.Time) time.Duration {
	c.t.Helper()
	deadline := start.Add(time.Minute)
	for time.Now().Before(deadline) {
		o, ok, err := c.store.Latest(vmName)
		if err == nil && ok && o.Generation > gen {
			if _, err := plain(c.guestAddr(o.Host), "inc", 250*time.Millisecond); err == nil {
				return time.Since(start)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatalf("no plain reply within a minute of the fault")
	return 0
}

// report reports the p50 and p99 of ds in ms as NAME-p50-ms and
// NAME-p99-ms.
func report(b *testing.B, ds []time.Duration, name string) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(ds[(len(ds)-1)/2]), name+"-p50-ms")
	b.ReportMetric(ms(ds[(len(ds)*99+99)/100-1]), name+"-p99-ms")
}
