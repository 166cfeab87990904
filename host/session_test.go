package host_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftvm/client"
	"ftvm/host"
	"ftvm/internal/guesttest"
	"ftvm/session"
	"ftvm/storage"
)

// startProxy serves sessions with vm's guest on a local port, as ftvm proxy
// does, until the test ends; it returns the port's address.
func (c *cluster) startProxy(vm string) string {
	c.t.Helper()
	cfg, store, err := client.Config(c.loc, vm, &client.Options{Timeout: time.Minute})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { store.Close() })
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
// the counter's final value (read from addr), which it returns.
func (l *sessionLoad) finish(t *testing.T, addr string) uint64 {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	final := get(t, addr, 30*time.Second)
	if len(l.errs) > 0 {
		t.Fatalf("clients failed: %v", l.errs)
	}
	n := guesttest.CheckExactlyOnce(t, l.seen, final)
	t.Logf("%d replies over %d clients, final %d", n, len(l.seen), final)
	return final
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

// TestSessionEchoStreamAcrossFailover: 100 MiB sent through a session to an
// echo guest while its primary is killed midway come back byte-identical,
// then end with the guest's close.
func TestSessionEchoStreamAcrossFailover(t *testing.T) {
	size := 100 << 20
	if testing.Short() {
		size = 16 << 20
	}
	c := newCluster(t)
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h)
	}
	addr := guesttest.FreeAddr(t)
	c.startVM("echo", guesttest.Build(t, "wasi-echo"), storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2", Args: []string{"wasi-echo", "100"}})
	o := c.protected("echo", 0, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := client.Dial(ctx, c.dir, "echo", &client.Options{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream := func(off, n int) []byte {
		b := make([]byte, n)
		for i := range b {
			x := uint64(off + i)
			b[i] = byte(x*2654435761>>13) ^ byte(x>>8)
		}
		return b
	}
	sendErr := make(chan error, 1)
	go func() {
		const chunk = 64 << 10
		for off := 0; off < size; off += chunk {
			if _, err := conn.Write(stream(off, min(chunk, size-off))); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- conn.(*session.ClientConn).CloseWrite()
	}()
	buf := make([]byte, 256<<10)
	got, killed := 0, false
	for got < size {
		if !killed && got >= size/3 {
			t.Logf("%d MiB echoed: killing the primary %s", got>>20, o.Host)
			c.signal(o.Host, syscall.SIGKILL)
			killed = true
		}
		conn.SetReadDeadline(time.Now().Add(time.Minute))
		n, err := conn.Read(buf)
		if n > 0 {
			if want := stream(got, n); !bytes.Equal(buf[:n], want) {
				i := 0
				for buf[i] == want[i] {
					i++
				}
				t.Fatalf("byte %d differs: got %#x, want %#x", got+i, buf[i], want[i])
			}
			got += n
		}
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got, size, err)
		}
	}
	if err := <-sendErr; err != nil {
		t.Fatalf("send: %v", err)
	}
	if n, err := conn.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("after the stream: %d bytes, %v; want the guest's close (EOF)", n, err)
	}
	if now := c.owner("echo"); now.Generation == o.Generation {
		t.Fatalf("no failover happened (generation %d)", now.Generation)
	}
	t.Logf("%d MiB echoed byte-identical across the failover", size>>20)
}

// TestSessionResumeRefusals: a session's resumes that are not its client's
// are refused with a reason, and change nothing: garbage, an unknown
// session, a forged proof, a recorded resume replayed, and offsets out of
// range. The session goes on as if nothing happened.
func TestSessionResumeRefusals(t *testing.T) {
	c, addr := newCounterCluster(t)
	get(t, addr, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := client.Dial(ctx, c.dir, "counter", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	inc := func() uint64 {
		t.Helper()
		fmt.Fprintf(conn, "inc\n")
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	first := inc()
	id := conn.(*session.ClientConn).ID()
	secret := host.SessionSecret(c.key, "counter", id)
	hosts, err := c.store.Hosts()
	if err != nil {
		t.Fatal(err)
	}
	var saddr string
	for _, h := range hosts {
		if h.Name == c.owner("counter").Host {
			saddr = h.Sessions
		}
	}
	// try sends first (a Resume, or raw bytes) on a fresh connection and
	// returns the server's answer: a Refuse's reason, or what else came.
	try := func(first func(nonce session.Nonce) []byte) string {
		t.Helper()
		nc, err := net.Dial("tcp", saddr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		d := session.NewDecoder(nc)
		hello, err := d.Decode()
		if err != nil || hello.Type != session.FrameHello {
			t.Fatalf("hello: %v %v", hello.Type, err)
		}
		if _, err := nc.Write(first(hello.Nonce)); err != nil {
			t.Fatal(err)
		}
		f, err := d.Decode()
		if err != nil {
			return "error: " + err.Error()
		}
		if f.Type != session.FrameRefuse {
			return "answer: " + f.Type.String()
		}
		return f.Reason
	}
	resume := func(id session.ID, received, sent uint64, proof func(session.Nonce) [32]byte) func(session.Nonce) []byte {
		return func(nonce session.Nonce) []byte {
			b, err := session.AppendFrame(nil, &session.Frame{Type: session.FrameResume, ID: id, Received: received, Sent: sent, Proof: proof(nonce), Target: "counter"})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	good := func(received, sent uint64) func(session.Nonce) [32]byte {
		return func(n session.Nonce) [32]byte { return session.Proof(secret, n, id, received, sent) }
	}
	recorded := session.Proof(secret, session.Nonce{1}, id, 0, 4)
	for _, tc := range []struct {
		name, want string
		first      func(session.Nonce) []byte
	}{
		{"garbage", "unknown frame type", func(session.Nonce) []byte { return []byte("GET / HTTP/1.1\r\n\r\n") }},
		{"unknown session", session.ReasonUnknownSession, resume(session.NewID(), 0, 0, good(0, 0))},
		{"forged proof", "bad proof", resume(id, 0, 4, func(session.Nonce) [32]byte { return [32]byte{1, 2, 3} })},
		{"replayed resume", "bad proof", resume(id, 0, 4, func(session.Nonce) [32]byte { return recorded })},
		{"output beyond what the guest wrote", "out of range", resume(id, 1<<20, 4, good(1<<20, 4))},
		{"input behind what the host has", "out of range", resume(id, 0, 0, good(0, 0))},
	} {
		if got := try(tc.first); !strings.Contains(got, tc.want) {
			t.Errorf("%s: answered %q, want a refusal with %q", tc.name, got, tc.want)
		}
	}
	if next := inc(); next != first+1 {
		t.Fatalf("after the refusals the session answered %d, want %d", next, first+1)
	}
}

// TestHTTPThroughProxyAcrossFailovers: a Go net/http client posts requests,
// each with an id of its own, through a proxy to a net/http guest while its
// primary is killed over and over: every request is answered once, and the
// guest counted each once.
func TestHTTPThroughProxyAcrossFailovers(t *testing.T) {
	rounds := 5
	if testing.Short() {
		rounds = 2
	}
	c := newCluster(t)
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h)
	}
	addr := guesttest.FreeAddr(t)
	c.startVM("web", guesttest.Build(t, "ft-http"), storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2", Args: []string{"ft-http"}})
	proxy := c.startProxy("web")
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", proxy)
		},
		MaxIdleConnsPerHost: 4,
	}}
	defer hc.CloseIdleConnections()
	var mu sync.Mutex
	counts := map[int]string{} // the guest's count → the request it counted
	var errs []error
	var replies int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("%d-%d", g, i)
				body, err := post(hc, "http://web/count/"+id)
				var n int
				if err == nil {
					var rid string
					if _, err = fmt.Sscanf(body, "%d %s", &n, &rid); err == nil && rid != id {
						err = fmt.Errorf("request %s answered %q", id, body)
					}
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("request %s: %w", id, err))
				} else if prev, dup := counts[n]; dup {
					errs = append(errs, fmt.Errorf("count %d answered to %s and %s", n, prev, id))
				} else {
					counts[n] = id
					replies++
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	waitReplies := func(n int) {
		t.Helper()
		mu.Lock()
		want := replies + n
		mu.Unlock()
		c.waitFor(time.Minute, fmt.Sprintf("%d more replies", n), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return replies >= want || len(errs) > 0
		})
	}
	gen := uint64(0)
	for i := range rounds {
		o := c.protected("web", gen, time.Minute)
		gen = o.Generation
		waitReplies(20)
		c.signal(o.Host, syscall.SIGKILL)
		waitReplies(20)
		t.Logf("round %d: killed %s (generation %d)", i, o.Host, o.Generation)
		c.startHost(o.Host)
	}
	close(stop)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("requests failed: %v", errs)
	}
	body, err := post(hc, "http://web/count/final")
	if err != nil {
		t.Fatal(err)
	}
	var final int
	fmt.Sscanf(body, "%d", &final)
	if final != replies+1 {
		t.Fatalf("the guest counted %d requests, the clients got %d replies (and the last one)", final, replies+1)
	}
	for n := 1; n <= replies; n++ {
		if _, ok := counts[n]; !ok {
			t.Fatalf("no reply carried count %d", n)
		}
	}
	t.Logf("%d requests across %d kills, each answered and counted once", replies, rounds)
}

func post(hc *http.Client, url string) (string, error) {
	resp, err := hc.Post(url, "text/plain", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return string(b), nil
}

// TestProxyProcessKilled runs ftvm proxy as its own process. A client that
// closes its connection ends its session at once; a proxy killed (SIGKILL)
// leaves its sessions to the hosts' session timeout: they then end, the
// guest sees their connections close, as after a client crash, and the
// primary serves none.
func TestProxyProcessKilled(t *testing.T) {
	c := newCluster(t, "--session-timeout", "2s")
	for _, h := range []string{"h1", "h2"} {
		c.startHost(h)
	}
	addr := guesttest.FreeAddr(t)
	c.startVM("counter", counterGuest(t), storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2", Args: []string{"ft-counter"}})
	get(t, addr, 30*time.Second)
	listen := guesttest.FreeAddr(t)
	logs := &guesttest.SyncBuffer{}
	proxy := exec.Command(c.bin, "proxy", "--shared", c.dir, "--name", "counter", "--listen", listen)
	proxy.Stdout, proxy.Stderr = logs, logs
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	defer proxy.Process.Kill()
	c.waitFor(10*time.Second, "the proxy up", func() bool { return strings.Contains(logs.String(), "proxy up") })
	sessions := func() int { return c.status("counter", "h1").Sessions }
	dial := func() *counterClient {
		cc := &counterClient{lineClient{addr: listen}}
		if _, err := cc.do("inc", 10*time.Second); err != nil {
			t.Fatalf("through the proxy: %v (proxy log: %s)", err, logs.String())
		}
		return cc
	}
	a, b := dial(), dial()
	defer b.close()
	c.waitFor(10*time.Second, "two sessions", func() bool { return sessions() == 2 })
	a.close()
	c.waitFor(10*time.Second, "one session after a client closed its own", func() bool { return sessions() == 1 })
	if strings.Contains(c.hosts["h1"].logs.String(), "session expired") {
		t.Fatal("a closed session expired rather than ending")
	}
	proxy.Process.Kill()
	proxy.Wait()
	c.waitFor(20*time.Second, "no session once the killed proxy's expired", func() bool { return sessions() == 0 })
	if !strings.Contains(c.hosts["h1"].logs.String(), "session expired") {
		t.Fatalf("the killed proxy's session did not expire:\n%s", c.hosts["h1"].logs.String())
	}
	// The guest serves on.
	if v := get(t, addr, 10*time.Second); v != 2 {
		t.Fatalf("counter %d, want 2", v)
	}
}
