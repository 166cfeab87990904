package host_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ftvm/cmd/ftvm/defaultguest"
	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// BenchmarkCounter measures a request/response guest (the counter: one
// line in, one number out) driven by 16 concurrent clients over loopback
// TCP, and by one (the latency FT adds, without queueing), run by `ftvm
// exec` (no replication) and under FT (primary and backup host processes
// on this machine). Two builds of the counter are measured:
// "go" (testdata/guests/ft-counter, a Go program with its runtime's
// scheduler and netpoller) and "c" (the default guest of ftvm run, a
// single-threaded poll loop). FT runs with the hosts' defaults, and again
// with coalescing off. It reports requests per second, the latency
// percentiles, the CPU time per request of each process and of the
// clients, the machine's idle share, and for FT the log bytes per request.
//
//	go test ./host -run '^$' -bench BenchmarkCounter -benchtime 20000x
//
// With FTVM_BENCH_PROFILES=DIR, the runs also write guest profiles and
// CPU profiles of the ftvm processes there.
func BenchmarkCounter(b *testing.B) {
	for _, g := range benchGuests {
		b.Run(g.name+"/exec", func(b *testing.B) { benchExec(b, g.wasm(b), benchClients) })
		b.Run(g.name+"/ft", func(b *testing.B) { benchFT(b, g.wasm(b), benchClients) })
		// What coalescing (on by default on hosts) brings.
		b.Run(g.name+"/ft-coalesce-off", func(b *testing.B) { benchFT(b, g.wasm(b), benchClients, "--coalesce", "0s") })
		// One client: the latency FT adds to a request, without queueing.
		b.Run(g.name+"/exec-1client", func(b *testing.B) { benchExec(b, g.wasm(b), 1) })
		b.Run(g.name+"/ft-1client", func(b *testing.B) { benchFT(b, g.wasm(b), 1) })
	}
}

// benchGuests are the two builds of the counter the FT benchmarks run.
var benchGuests = []struct {
	name string
	wasm func(testing.TB) []byte
}{
	{"go", counterGuest},
	{"c", func(testing.TB) []byte { return defaultguest.Counter() }},
}

// benchClients is how many clients drive a benchmark at once, but for the
// one-client runs.
const benchClients = 16

// envBenchProfiles names a directory where BenchmarkCounter's runs write
// their guest profiles (exec --profile, host --guest-profiles), one
// subdirectory per sub-benchmark: where the guest's instructions go.
const envBenchProfiles = "FTVM_BENCH_PROFILES"

// benchProfileDir returns the sub-benchmark's profile directory, or "".
func benchProfileDir(b *testing.B) string {
	dir := os.Getenv(envBenchProfiles)
	if dir == "" {
		return ""
	}
	dir = filepath.Join(dir, strings.ReplaceAll(b.Name(), "/", "-"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	return dir
}

// cpuProfileEnv returns the environment that makes an ftvm process
// write a CPU profile of itself into prof as NAME.cpu.pprof, if prof is
// set.
func cpuProfileEnv(prof, name string) []string {
	if prof == "" {
		return nil
	}
	return []string{"FTVM_CPUPROFILE=" + filepath.Join(prof, name+".cpu.pprof")}
}

// stopGently stops a process with SIGTERM, so that it writes its
// profiles, and waits for done.
func stopGently(b *testing.B, p *os.Process, done func()) {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	done()
}

func benchExec(b *testing.B, guest []byte, clients int) {
	prof := benchProfileDir(b)
	s := startExecSide(b, guest, guestRun{}, prof, "exec")
	pid := s.pids[0]
	cpu0 := procCPU(b, pid)
	n := drive(b, s.addr, clients)
	b.ReportMetric(float64((procCPU(b, pid)-cpu0).Microseconds())/float64(n), "cpu-µs/req")
	if prof != "" {
		stopGently(b, s.cmd.Process, func() { s.cmd.Wait() })
	}
}

func benchFT(b *testing.B, guest []byte, clients int, hostArgs ...string) {
	prof := benchProfileDir(b)
	if prof != "" {
		hostArgs = append(hostArgs, "--guest-profiles", prof)
	}
	c := newCluster(b, hostArgs...)
	for _, h := range []string{"h1", "h2"} {
		c.startHost(h, cpuProfileEnv(prof, h)...)
	}
	addr := guesttest.FreeAddr(b)
	c.startVM("counter", guest, storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2"})
	get(b, addr, 20*time.Second)
	time.Sleep(300 * time.Millisecond)
	before := c.status("counter", "h1").LogBytes
	p1, p2 := c.hosts["h1"].cmd.Process.Pid, c.hosts["h2"].cmd.Process.Pid
	cpu1, cpu2 := procCPU(b, p1), procCPU(b, p2)
	stopLag := sampleLag(c, "counter", "h1")
	n := drive(b, addr, clients)
	if mean, most, ok := stopLag(); ok {
		b.ReportMetric(mean, "lag-mean-ms")
		b.ReportMetric(most, "lag-max-ms")
	}
	b.ReportMetric(float64((procCPU(b, p1)-cpu1).Microseconds())/float64(n), "primary-cpu-µs/req")
	b.ReportMetric(float64((procCPU(b, p2)-cpu2).Microseconds())/float64(n), "backup-cpu-µs/req")
	time.Sleep(400 * time.Millisecond) // a status refresh
	after := c.status("counter", "h1")
	if after.Generation != 1 || after.Role != "primary" {
		b.Fatalf("the pair did not hold through the run: %+v", after)
	}
	b.ReportMetric(float64(after.LogBytes-before)/float64(n), "logB/req")
	if prof != "" {
		for _, h := range c.hosts {
			stopGently(b, h.cmd.Process, func() { <-h.done })
		}
	}
}

// sampleLag reads the primary's status every 100 ms, until the function
// it returns is called, which returns the mean and the largest of the
// lags it read: how far the backup's replay trailed (the status
// refreshes every 250 ms, so it sees some lags twice).
func sampleLag(c *cluster, vm, primary string) func() (mean, largest float64, ok bool) {
	stop, done := make(chan struct{}), make(chan struct{})
	var sum, most float64
	var n int
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			l := c.status(vm, primary).LagMillis
			sum += l
			n++
			most = max(most, l)
		}
	}()
	return func() (float64, float64, bool) {
		close(stop)
		<-done
		if n == 0 {
			return 0, 0, false
		}
		return sum / float64(n), most, true
	}
}

// drive runs b.N requests from clients connections and reports the
// throughput and latency, the CPU the clients (this process) used per
// request and the share of the machine's CPU left idle; it returns the
// number of requests.
func drive(b *testing.B, addr string, clients int) int {
	b.ResetTimer()
	r := measure(b, addr, clients, b.N)
	b.StopTimer()
	n := len(r.lat)
	if n == 0 {
		return 0
	}
	b.ReportMetric(r.rate(), "req/s")
	b.ReportMetric(float64(r.clientsCPU.Microseconds())/float64(n), "clients-cpu-µs/req")
	b.ReportMetric(r.idle, "idle-%")
	b.ReportMetric(float64(r.lat[n/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(r.lat[n*99/100].Microseconds()), "p99-µs")
	return n
}

// measured is what measure found.
type measured struct {
	lat        []time.Duration // of every request answered, sorted
	elapsed    time.Duration
	clientsCPU time.Duration // this process's CPU time
	idle       float64       // the percentage of the machine's CPU left idle
}

func (r measured) rate() float64 { return float64(len(r.lat)) / r.elapsed.Seconds() }

// measure sends n requests to the counter at addr from clients connections,
// each waiting for its reply before the next request.
func measure(b *testing.B, addr string, clients, n int) measured {
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	self0 := procCPU(b, os.Getpid())
	idle0, total0 := machineIdle(b)
	start := time.Now()
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc := &counterClient{lineClient{addr: addr}}
			defer cc.close()
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				if _, err := cc.do("inc", 10*time.Second); err != nil {
					b.Error(err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	r := measured{elapsed: time.Since(start), clientsCPU: procCPU(b, os.Getpid()) - self0}
	idle1, total1 := machineIdle(b)
	r.idle = 100 * float64(idle1-idle0) / float64(max(total1-total0, 1))
	r.lat = slices.Concat(lat...)
	slices.Sort(r.lat)
	return r
}

// BenchmarkFailover measures, per iteration, the time from SIGKILL (or
// SIGSTOP) of the primary's host to the first reply from the survivor, split into
// detection (until the survivor's claim of the next generation is on
// storage) and go-live (from the claim to the reply: replaying the rest of
// the log, adopting the guest's handles, binding the listener, and the
// client's reconnect, which retries every 5 ms). Default settings.
//
//	go test ./host -run '^$' -bench BenchmarkFailover -benchtime 10x
func BenchmarkFailover(b *testing.B) {
	b.Run("default", func(b *testing.B) { benchFailover(b, syscall.SIGKILL) })
	// A failure timeout for a quiet LAN: 20 ms heartbeats, 200 ms.
	b.Run("timeout-200ms", func(b *testing.B) { benchFailover(b, syscall.SIGKILL, "--heartbeat", "20ms", "--timeout", "200ms") })
	// A silent failure: the frozen primary ends no connection, so its
	// backup waits the whole failure timeout (then fences it).
	b.Run("frozen", func(b *testing.B) { benchFailover(b, syscall.SIGSTOP) })
}

// benchFailover measures failovers of the primary's host hit by sig:
// SIGKILL, a crash whose connections the kernel ends, or SIGSTOP, a
// freeze that ends nothing.
func benchFailover(b *testing.B, sig syscall.Signal, hostArgs ...string) {
	guest := counterGuest(b)
	var total, detect, live []time.Duration
	for range b.N {
		b.StopTimer()
		c := newCluster(b, hostArgs...)
		c.startHost("h1")
		c.startHost("h2")
		addr := guesttest.FreeAddr(b)
		c.startVM("counter", guest, storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2"})
		l := startLoad(addr, 2)
		l.waitReplies(b, 50, 20*time.Second)
		l.finish()
		b.StartTimer()
		killed := time.Now()
		c.signal("h1", sig)
		cc := &counterClient{lineClient{addr: addr}}
		for {
			if _, err := cc.do("inc", time.Second); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		replied := time.Now()
		cc.close()
		b.StopTimer()
		claimed := c.owner("counter").Time
		total = append(total, replied.Sub(killed))
		detect = append(detect, claimed.Sub(killed))
		live = append(live, replied.Sub(claimed))
	}
	ms := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	b.ReportMetric(ms(total), "failover-ms")
	b.ReportMetric(ms(detect), "detect-ms")
	b.ReportMetric(ms(live), "golive-ms")
	b.ReportMetric(float64(slices.Max(total).Microseconds())/1000, "max-failover-ms")
}

// machineIdle returns the machine's idle and total CPU time so far, in
// clock ticks (the first line of /proc/stat).
func machineIdle(b *testing.B) (idle, total uint64) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i < 8 {
			total += n
		}
		if i == 3 {
			idle = n
		}
	}
	return idle, total
}

// procCPU returns the CPU time process pid has used, threads that ended
// included (a backup's replay ends a thread after each stretch in the
// background): the process's CPU-time clock (clock_gettime of
// MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)), the scheduler's run time,
// exact to the nanosecond. The clock-tick counts of /proc/PID/stat are
// samples taken 100 times a second, and on this kind of virtual machine
// they were seen to charge a process pinned to one CPU with 1.1
// CPU-seconds a second.
func procCPU(b testing.TB, pid int) time.Duration {
	clock := int32(^pid)<<3 | 2
	var ts unix.Timespec
	if err := unix.ClockGettime(clock, &ts); err != nil {
		b.Fatalf("CPU clock of process %d: %v", pid, err)
	}
	return time.Duration(ts.Nano())
}
