package host_test

import (
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftvm/cmd/ftvm/defaultguest"
	"ftvm/storage"
)

// TestManyVMsSurviveAHostKill: 200 protected counter VMs (the embedded C
// guest) on three hosts, placed as ftvm start places them. Each counts to
// three; then the host with the most primaries is killed. Every VM is
// served again, by its backup where it was the primary, and protected
// again (clones onto the two hosts left); each counter still holds three
// and counts on to four: nothing lost, nothing repeated.
func TestManyVMsSurviveAHostKill(t *testing.T) {
	if testing.Short() {
		t.Skip("200 VMs on three host processes")
	}
	const n = 200
	c := newCluster(t)
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h)
	}
	guest := defaultguest.Counter()
	names := startVMs(t, c, guest, n)
	waitProtected(t, c, names, 2*time.Minute)
	addrs := map[string]string{}
	primaries := map[string]int{}
	for _, vm := range names {
		spec, err := c.store.VM(vm)
		if err != nil {
			t.Fatal(err)
		}
		addrs[vm] = spec.Listeners[0]
		primaries[c.owner(vm).Host]++
	}
	// Placement spreads the primaries.
	victim := "h1"
	for h, k := range primaries {
		if k == n {
			t.Fatalf("every primary on %s: %v", h, primaries)
		}
		if k > primaries[victim] {
			victim = h
		}
	}
	t.Logf("primaries per host: %v; killing %s", primaries, victim)
	count := func(req string, want uint64) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		sem := make(chan struct{}, 16)
		for _, vm := range names {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				cc := &counterClient{lineClient{addr: addrs[vm]}}
				defer cc.close()
				deadline := time.Now().Add(30 * time.Second)
				for {
					v, err := cc.do(req, 2*time.Second)
					if err == nil && v != want {
						errs <- fmt.Errorf("%s: %q answered %d, want %d", vm, req, v, want)
						return
					}
					if err == nil {
						return
					}
					if req != "get" || time.Now().After(deadline) {
						// An increment without its reply is not retried:
						// it may have counted.
						errs <- fmt.Errorf("%s: %q: %v", vm, req, err)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	for i := uint64(1); i <= 3; i++ {
		count("inc", i)
	}
	c.signal(victim, syscall.SIGKILL)
	killed := time.Now()
	count("get", 3)
	t.Logf("all %d served again %v after the kill", n, time.Since(killed).Round(time.Millisecond))
	waitProtected(t, c, names, 3*time.Minute)
	t.Logf("all %d protected again %v after the kill", n, time.Since(killed).Round(time.Millisecond))
	for _, vm := range names {
		if o := c.owner(vm); o.Host == victim || o.Backup == victim {
			t.Errorf("%s still on the killed host: %+v", vm, o)
		}
	}
	count("inc", 4)
}

// TestStuckRunnerIsDetected: heartbeats go per pair of hosts, for all the
// VMs they share, yet a VM whose runner is stuck (failpoint stall) is left
// out of them, and its backup takes it over, while the other VM of the
// same two hosts stays as it was.
func TestStuckRunnerIsDetected(t *testing.T) {
	c := newCluster(t)
	c.startHost("h1")
	c.startHost("h2")
	guest := defaultguest.Counter()
	addrs := freeAddrs(t, 2)
	for i, vm := range []string{"a", "b"} {
		c.startVM(vm, guest, storage.VMSpec{Args: []string{defaultguest.Name}, Listeners: []string{addrs[i]}, Primary: "h1", Backup: "h2"})
	}
	c.failpoint("h1", "stall=a")
	// A request makes a's runner turn (the acks of its entries), and
	// stand still there.
	cc := &counterClient{lineClient{addr: addrs[0]}}
	_, _ = cc.do("inc", 200*time.Millisecond)
	cc.close()
	c.waitFor(10*time.Second, "a taken over by h2", func() bool {
		o := c.owner("a")
		return o.Generation == 2 && o.Host == "h2"
	})
	if v := get(t, addrs[0], 10*time.Second); v > 1 {
		t.Fatalf("a counts %d after one increment", v)
	}
	time.Sleep(2 * time.Second) // several failure timeouts
	if o := c.owner("b"); o.Generation != 1 || o.Host != "h1" {
		t.Fatalf("b failed over with a: %+v", o)
	}
	if !protected(c, "b") {
		t.Fatalf("b is not protected: %+v", c.status("b", "h1"))
	}
	c.failpoint("h1", "")
	// Let go, h1's node of a finds it lost and halts.
	c.waitFor(10*time.Second, "h1's runner of a halted", func() bool {
		for l := range strings.Lines(c.hosts["h1"].logs.String()) {
			if strings.Contains(l, "halting") && strings.Contains(l, "vm=a ") {
				return true
			}
		}
		return false
	})
}

// TestFreezeHostWithManyPrimaries: a host holding the primaries of many
// VMs is frozen (SIGSTOP). Their backups all go live; the first to fence
// the frozen host kills it, and the others, going live at the same
// moment, wait for its sockets to close rather than failing on an address
// that seems taken.
func TestFreezeHostWithManyPrimaries(t *testing.T) {
	c := newCluster(t)
	c.startHost("h1")
	c.startHost("h2")
	guest := defaultguest.Counter()
	const n = 12
	addrs := freeAddrs(t, n)
	var names []string
	for i := range n {
		vm := fmt.Sprintf("f%02d", i)
		names = append(names, vm)
		c.startVM(vm, guest, storage.VMSpec{Args: []string{defaultguest.Name}, Listeners: []string{addrs[i]}, Primary: "h1", Backup: "h2"})
	}
	for i := range n {
		if v := incOnce(t, addrs[i]); v != 1 {
			t.Fatalf("%s counts %d", names[i], v)
		}
	}
	c.signal("h1", syscall.SIGSTOP)
	for i, vm := range names {
		if v := get(t, addrs[i], 30*time.Second); v != 1 {
			t.Errorf("%s counts %d after the failover, want 1", vm, v)
		}
		if o := c.owner(vm); o.Host != "h2" {
			t.Errorf("%s: %+v, want served by h2", vm, o)
		}
		if st := c.status(vm, "h2"); st.State != "running" {
			t.Errorf("%s on h2: %s %s", vm, st.State, st.Detail)
		}
	}
}

// incOnce increments the counter at addr once and returns its reply.
func incOnce(t testing.TB, addr string) uint64 {
	t.Helper()
	cc := &counterClient{lineClient{addr: addr}}
	defer cc.close()
	v, err := cc.do("inc", 5*time.Second)
	if err != nil {
		t.Fatalf("inc at %s: %v", addr, err)
	}
	return v
}
