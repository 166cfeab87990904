package host_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftvm/client"
	"ftvm/session"
)

// startProxy serves sessions with vm's guest on a local port, as ftvm proxy
// does, until the test ends; it returns the port's address.
func (c *cluster) startProxy(vm string) string {
	c.t.Helper()
	cfg, err := client.Config(c.dir, vm, &client.Options{Timeout: time.Minute})
	if err != nil {
		c.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		session.Proxy(ctx, ln, cfg)
	}()
	c.t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// sessionLoad is a set of clients incrementing the counter, each over one
// connection for the whole test, that must never fail.
type sessionLoad struct {
	mu      sync.Mutex
	seen    [][]uint64 // each client's replies, in order
	errs    []error
	replies int
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startSessionLoad(t *testing.T, addr string, clients int) *sessionLoad {
	l := &sessionLoad{stop: make(chan struct{}), seen: make([][]uint64, clients)}
	for i := range clients {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				// No deadline: a failover must be invisible, however long
				// it takes (the session times out if it is not).
				_, err := fmt.Fprintf(c, "inc\n")
				var line string
				if err == nil {
					line, err = r.ReadString('\n')
				}
				var v uint64
				if err == nil {
					v, err = strconv.ParseUint(strings.TrimSpace(line), 10, 64)
				}
				l.mu.Lock()
				if err != nil {
					l.errs = append(l.errs, fmt.Errorf("client %d: %w", i, err))
					l.mu.Unlock()
					return
				}
				l.seen[i] = append(l.seen[i], v)
				l.replies++
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *sessionLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.replies
}

func (l *sessionLoad) waitReplies(t *testing.T, n int, max time.Duration) {
	t.Helper()
	want := l.count() + n
	deadline := time.Now().Add(max)
	for l.count() < want {
		l.mu.Lock()
		errs := slices.Clone(l.errs)
		l.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("a client failed: %v", errs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d replies in %v, want %d more", l.count()-want+n, max, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finish stops the clients and checks what they saw: no error, each
// client's values increasing, and all of them together exactly 1..final,
// the counter's final value (read from addr).
func (l *sessionLoad) finish(t *testing.T, addr string) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	final := get(t, addr, 30*time.Second)
	if len(l.errs) > 0 {
		t.Fatalf("clients failed: %v", l.errs)
	}
	var all []uint64
	for i, s := range l.seen {
		for j := 1; j < len(s); j++ {
			if s[j] <= s[j-1] {
				t.Errorf("client %d saw %d after %d", i, s[j], s[j-1])
			}
		}
		all = append(all, s...)
	}
	slices.Sort(all)
	for i, v := range all {
		if v != uint64(i+1) {
			t.Fatalf("the replies are not exactly 1..%d: the %dth smallest is %d (lost or repeated increments)", final, i+1, v)
		}
	}
	if uint64(len(all)) != final {
		t.Errorf("%d replies, final value %d", len(all), final)
	}
	t.Logf("%d replies over %d clients, final %d", len(all), len(l.seen), final)
}

// TestSessionsAcrossPrimaryKills: four clients increment the counter
// through a proxy, each over one connection, while the host that is
// primary is killed (SIGKILL) over and over and started again as a spare.
// No client sees an error or a reconnection, and their replies are exactly
// 1..final: every increment ran once, and every reply arrived once.
func TestSessionsAcrossPrimaryKills(t *testing.T) {
	rounds := 20
	if testing.Short() {
		rounds = 3
	}
	c, addr := newCounterCluster(t)
	get(t, addr, 30*time.Second)
	l := startSessionLoad(t, c.startProxy("counter"), 4)
	l.waitReplies(t, 20, 30*time.Second)
	gen := uint64(0)
	for i := range rounds {
		o := c.protected("counter", gen, time.Minute)
		gen = o.Generation
		t.Logf("round %d: generation %d, primary %s, backup %s, %d replies", i, o.Generation, o.Host, o.Backup, l.count())
		l.waitReplies(t, 10, 30*time.Second)
		time.Sleep(randDuration(t, 0, 200*time.Millisecond))
		c.signal(o.Host, syscall.SIGKILL)
		l.waitReplies(t, 10, time.Minute)
		c.startHost(o.Host)
	}
	l.waitReplies(t, 10, 30*time.Second)
	l.finish(t, addr)
}
