package host_test

import (
	"bufio"
	"fmt"
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// BenchmarkSessionFailover measures what a client sees of a failover
// through a proxy, next to a plain client: per iteration the primary's
// host is killed (SIGKILL) and started again as a spare once the VM is
// protected again; both clients increment the counter all along, and the
// stall is the longest wait between two replies around the kill. The proxy
// client keeps one connection and never sees an error; the plain one
// reconnects and retries (every 5 ms, each request with a 1 s timeout),
// and cannot tell whether its interrupted increment ran.
//
//	go test ./host -run '^$' -bench BenchmarkSessionFailover -benchtime 20x
func BenchmarkSessionFailover(b *testing.B) {
	c := newCluster(b)
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h)
	}
	addr := guesttest.FreeAddr(b)
	c.startVM("counter", counterGuest(b), storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2", Args: []string{"ft-counter"}})
	get(b, addr, 30*time.Second)
	proxy := c.startProxy("counter")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	times := map[string][]time.Time{} // each client's reply times
	var errs []error
	run := func(name string, do func() error) {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := do(); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s: %w", name, err))
					mu.Unlock()
					return
				}
				mu.Lock()
				times[name] = append(times[name], time.Now())
				mu.Unlock()
			}
		})
	}
	pc, err := net.Dial("tcp", proxy)
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	pr := bufio.NewReader(pc)
	run("proxy", func() error {
		if _, err := fmt.Fprintf(pc, "inc\n"); err != nil {
			return err
		}
		_, err := pr.ReadString('\n')
		return err
	})
	plain := &counterClient{lineClient{addr: addr}}
	defer plain.close()
	run("plain", func() error {
		for {
			if _, err := plain.do("inc", time.Second); err == nil {
				return nil
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	defer func() { close(stop); wg.Wait() }()
	replies := func(name string) int {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) > 0 {
			b.Fatalf("a client failed: %v", errs)
		}
		return len(times[name])
	}
	stalls := map[string][]time.Duration{}
	gen := uint64(0)
	b.ResetTimer()
	for range b.N {
		o := c.protected("counter", gen, time.Minute)
		gen = o.Generation
		c.waitFor(30*time.Second, "replies", func() bool { return replies("proxy") > 50 && replies("plain") > 50 })
		time.Sleep(200 * time.Millisecond)
		killed := time.Now()
		c.signal(o.Host, syscall.SIGKILL)
		n := map[string]int{"proxy": replies("proxy"), "plain": replies("plain")}
		c.waitFor(time.Minute, "replies after the kill", func() bool {
			return replies("proxy") >= n["proxy"]+20 && replies("plain") >= n["plain"]+20
		})
		mu.Lock()
		for name, ts := range times {
			stalls[name] = append(stalls[name], stallAround(ts, killed))
			times[name] = nil
		}
		mu.Unlock()
		c.startHost(o.Host)
	}
	b.StopTimer()
	for _, name := range []string{"proxy", "plain"} {
		s := stalls[name]
		slices.Sort(s)
		b.ReportMetric(float64(s[len(s)/2].Microseconds())/1000, name+"-stall-p50-ms")
		b.ReportMetric(float64(s[(len(s)*99+99)/100-1].Microseconds())/1000, name+"-stall-p99-ms")
	}
}

// stallAround returns the longest wait between replies at ts (in order)
// that overlaps t.
func stallAround(ts []time.Time, t time.Time) time.Duration {
	var most time.Duration
	for i := 1; i < len(ts); i++ {
		if !ts[i].Before(t) && ts[i-1].Before(t.Add(time.Second)) {
			most = max(most, ts[i].Sub(ts[i-1]))
		}
	}
	return most
}

// BenchmarkProxy measures what a proxy (a session per connection) costs
// a request in the steady state: the counter guest on a pair of hosts,
// reached directly and through a proxy, by 1 and 16 clients each waiting
// for its reply before its next request.
//
//	go test ./host -run '^$' -bench BenchmarkProxy -benchtime 20000x
func BenchmarkProxy(b *testing.B) {
	c := newCluster(b)
	c.startHost("h1")
	c.startHost("h2")
	addr := guesttest.FreeAddr(b)
	c.startVM("counter", counterGuest(b), storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2", Args: []string{"ft-counter"}})
	get(b, addr, 30*time.Second)
	proxy := c.startProxy("counter")
	for _, clients := range []int{1, 16} {
		for _, via := range []string{"direct", "proxy"} {
			to := addr
			if via == "proxy" {
				to = proxy
			}
			b.Run(fmt.Sprintf("%s/%d", via, clients), func(b *testing.B) { drive(b, to, clients) })
		}
	}
}
