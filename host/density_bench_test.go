package host_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftvm/cmd/ftvm/defaultguest"
	"ftvm/host"
	"ftvm/storage"
)

// BenchmarkDensity runs N protected counter VMs (the embedded C guest) on
// one pair of host processes and measures what they cost idle: each
// host's CPU over 10 s, as a share of one CPU, per host and per VM, and
// each host's resident memory per VM (its growth from no VMs, over N).
// It also reports how long the N starts took until every VM was
// protected. Run it with -benchtime 1x; the sizes are the sub-benchmarks
// (FTVM_DENSITY_MAX caps them, 1000 by default).
func BenchmarkDensity(b *testing.B) {
	limit := 1000
	if s := os.Getenv("FTVM_DENSITY_MAX"); s != "" {
		limit, _ = strconv.Atoi(s)
	}
	for _, n := range []int{10, 100, 1000} {
		if n > limit {
			continue
		}
		b.Run(fmt.Sprintf("vms=%d", n), func(b *testing.B) {
			for range b.N {
				benchDensity(b, n)
			}
		})
	}
}

func benchDensity(b *testing.B, n int) {
	prof := benchProfileDir(b)
	c := newCluster(b)
	for _, h := range []string{"h1", "h2"} {
		var env []string
		if prof != "" {
			env = []string{"FTVM_MEMPROFILE=" + filepath.Join(prof, h+".mem.pprof")}
		}
		c.startHost(h, env...)
	}
	pids := []int{c.hosts["h1"].cmd.Process.Pid, c.hosts["h2"].cmd.Process.Pid}
	time.Sleep(time.Second)
	rss0 := []int64{procRSS(b, pids[0]), procRSS(b, pids[1])}
	guest := defaultguest.Counter()
	start := time.Now()
	names := startVMs(b, c, guest, n)
	waitProtected(b, c, names, time.Duration(n)*200*time.Millisecond+30*time.Second)
	started := time.Since(start)
	time.Sleep(2 * time.Second) // let the starts' work settle
	cpu0 := []time.Duration{procCPU(b, pids[0]), procCPU(b, pids[1])}
	const window = 10 * time.Second
	time.Sleep(window)
	var cpu, rss float64
	for i, pid := range pids {
		cpu = max(cpu, float64(procCPU(b, pid)-cpu0[i])/float64(window))
		rss = max(rss, float64(procRSS(b, pid)-rss0[i]))
	}
	if prof != "" {
		// The live heap of each, with its VMs (see FTVM_MEMPROFILE).
		for _, h := range c.hosts {
			_ = h.cmd.Process.Signal(syscall.SIGUSR2)
		}
		time.Sleep(time.Second)
	}
	b.ReportMetric(100*cpu, "idle-cpu-%/host")
	b.ReportMetric(100*cpu/float64(n), "idle-cpu-%/vm")
	b.ReportMetric(rss/float64(n)/1024, "rss-KiB/vm")
	b.ReportMetric(started.Seconds(), "start-s")
}

// startVMs starts n counter VMs in one batch (as ftvm start --each
// does), each with a listener of its own, and returns their names.
func startVMs(b testing.TB, c *cluster, guest []byte, n int) []string {
	names := make([]string, n)
	addrs := freeAddrs(b, n)
	starts := make([]host.Start, n)
	for i := range names {
		names[i] = fmt.Sprintf("vm%04d", i)
		starts[i] = host.Start{Spec: storage.VMSpec{Name: names[i], Args: []string{defaultguest.Name}, Listeners: []string{addrs[i]}}, Module: guest}
	}
	for _, r := range host.StartVMs(c.store, starts, time.Now()) {
		if r.Err != nil {
			b.Fatalf("start %s: %v", r.Spec.Name, r.Err)
		}
	}
	return names
}

// freeAddrs returns n distinct free loopback addresses: all are held open
// until every one is picked, so none is picked twice.
func freeAddrs(b testing.TB, n int) []string {
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs
}

// waitProtected waits until every VM's primary says it is protected.
func waitProtected(b testing.TB, c *cluster, names []string, limit time.Duration) {
	deadline := time.Now().Add(limit)
	left := names
	for len(left) > 0 {
		var still []string
		for _, vm := range left {
			if !protected(c, vm) {
				still = append(still, vm)
			}
		}
		left = still
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d vms not protected after %v (first: %s)", len(left), len(names), limit, left[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// protected reports whether vm's current primary says it is protected.
func protected(c *cluster, vm string) bool {
	o, ok, err := c.store.Latest(vm)
	if err != nil || !ok {
		return false
	}
	sts, _ := c.store.Statuses(vm)
	for _, st := range sts {
		if st.Host == o.Host && st.Generation == o.Generation && st.Protected {
			return true
		}
	}
	return false
}

// procRSS returns process pid's resident memory, in bytes.
func procRSS(b testing.TB, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// BenchmarkMassFailover: N counter VMs on a pair of hosts, their
// primaries spread over both, and a third host up as a spare; then one of
// the pair is killed (SIGKILL), with N/2 primaries. It reports how long
// until every one of those answered again from the survivor, and until
// every VM was protected again (clones onto the spare, --max-clones at a
// time). FTVM_MASS_VMS sets N (1000 by default: 500 primaries killed).
func BenchmarkMassFailover(b *testing.B) {
	n := 1000
	if s := os.Getenv("FTVM_MASS_VMS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for range b.N {
		prof := benchProfileDir(b)
		var args []string
		if prof != "" {
			// The survivor's CPU profile of the failover alone.
			args = []string{"--http", "127.0.0.1:0", "--pprof"}
		}
		c := newCluster(b, args...)
		c.startHost("h1")
		c.startHost("h2")
		names := startVMs(b, c, defaultguest.Counter(), n)
		waitProtected(b, c, names, time.Duration(n)*200*time.Millisecond+30*time.Second)
		c.startHost("h3")
		var victims []string
		addrs := map[string]string{}
		for _, vm := range names {
			if c.owner(vm).Host == "h1" {
				victims = append(victims, vm)
				spec, _ := c.store.VM(vm)
				addrs[vm] = spec.Listeners[0]
			}
		}
		time.Sleep(2 * time.Second)
		survivor := c.hosts["h2"].cmd.Process.Pid
		cpu0 := procCPU(b, survivor)
		profiled := make(chan struct{})
		if prof != "" {
			go func() {
				defer close(profiled)
				fetchProfile(b, c, "h2", 3*time.Second, filepath.Join(prof, "h2-failover.cpu.pprof"))
			}()
			time.Sleep(100 * time.Millisecond) // the profile runs
		} else {
			close(profiled)
		}
		c.signal("h1", syscall.SIGKILL)
		killed := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for _, vm := range victims {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				get(b, addrs[vm], time.Minute)
			}()
		}
		wg.Wait()
		served := time.Since(killed)
		cpu := procCPU(b, survivor) - cpu0
		waitProtected(b, c, names, 10*time.Minute)
		if dir := os.Getenv("FTVM_BENCH_LOGS"); dir != "" {
			for name, h := range c.hosts {
				_ = os.WriteFile(filepath.Join(dir, name+".log"), []byte(h.logs.String()), 0o644)
			}
		}
		<-profiled
		b.ReportMetric(float64(len(victims)), "primaries-killed")
		b.ReportMetric(served.Seconds(), "served-again-s")
		b.ReportMetric(cpu.Seconds(), "survivor-cpu-s-until-served")
		b.ReportMetric(time.Since(killed).Seconds(), "protected-again-s")
	}
}

// fetchProfile writes a CPU profile of host name over d, from its
// /debug/pprof (the hosts run with --http and --pprof), to path.
func fetchProfile(b testing.TB, c *cluster, name string, d time.Duration, path string) {
	hosts, err := c.store.Hosts()
	if err != nil {
		b.Error(err)
		return
	}
	for _, h := range hosts {
		if h.Name != name {
			continue
		}
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", h.HTTP, int(d.Seconds())))
		if err != nil {
			b.Error(err)
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		if err == nil {
			err = os.WriteFile(path, body, 0o644)
		}
		if err != nil {
			b.Error(err)
		}
		return
	}
	b.Errorf("no host %s in the registry", name)
}
