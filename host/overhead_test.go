package host_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"ftvm/cmd/ftvm/defaultguest"
	"ftvm/host"
	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// BenchmarkOverhead measures the throughput of the counter under FT
// against `ftvm exec`, the ratio the pair is judged by, with the runs
// interleaved: two exec processes and an FT pair run side by side, and
// each round turns the 16 clients from one to the next (b.N requests each,
// a different one going first each round), so that the machine's drift
// (other tenants, clock frequency) falls on all alike. The exec processes
// are one with exec's defaults and one coalescing inputs as hosts do by
// default (--coalesce 50us), the same setting as FT's. It reports the
// median of the rounds' ratios and their range, each side's median rate and
// p50 latency, and each process's CPU time per request. With
// FTVM_BENCH_BASE=BINARY it runs a second FT pair with that binary, to
// compare a change with (see envBenchBase).
//
//	go test ./host -run '^$' -bench BenchmarkOverhead -benchtime 5000x
//
// Three placements of the processes:
//
//   - shared: every process may run on every CPU, so the backup competes
//     with the primary, and with the clients, for the same cores.
//
//   - hosts: the CPUs are split into two halves standing for two hosts.
//     The primary's host runs exec, the primary and the clients; the
//     backup's host runs the backup alone. exec and the primary have the
//     same CPUs, as a VM has its host's whether or not it is replicated to
//     another server.
//
//   - hosts-clients-with-backup: the same, but the clients run on the
//     backup's host, so that exec and the primary have their host to
//     themselves (and the backup shares its host with the clients).
func BenchmarkOverhead(b *testing.B) {
	for _, g := range benchGuests {
		b.Run(g.name+"/shared", func(b *testing.B) { benchOverhead(b, g.wasm(b), guestRun{}, shared) })
		b.Run(g.name+"/hosts", func(b *testing.B) { benchOverhead(b, g.wasm(b), guestRun{}, hosts) })
		b.Run(g.name+"/hosts-clients-with-backup", func(b *testing.B) {
			benchOverhead(b, g.wasm(b), guestRun{}, hostsClientsWithBackup)
		})
	}
}

// BenchmarkEffects is BenchmarkOverhead with guests that write their disk
// on every request, in the shared and hosts placements: what exactly-once
// effects cost, against exec and, with FTVM_BENCH_BASE set to a build from
// before them, against that build's pair in the same rounds (ft/ft-base).
//
//   - journal: testdata/guests/ft-journal (Go): each request makes a lock
//     directory, writes and renames a state file, removes the lock and
//     appends a journal line; four of those five effects have an intent.
//
//   - counter-file: the C counter with -file, which overwrites its value
//     at offset 0 before each reply: an effect without an intent.
//
//     go test ./host -run '^$' -bench BenchmarkEffects -benchtime 2000x
func BenchmarkEffects(b *testing.B) {
	runs := []struct {
		name string
		wasm func(testing.TB) []byte
		run  guestRun
	}{
		{"journal", journalGuest, guestRun{args: []string{"/disk"}, disk: true}},
		{"counter-file", func(testing.TB) []byte { return defaultguest.Counter() }, guestRun{args: []string{"-file", "/disk/counter"}, disk: true}},
	}
	for _, g := range runs {
		b.Run(g.name+"/shared", func(b *testing.B) { benchOverhead(b, g.wasm(b), g.run, shared) })
		b.Run(g.name+"/hosts", func(b *testing.B) { benchOverhead(b, g.wasm(b), g.run, hosts) })
	}
}

// BenchmarkLocalDisk is BenchmarkEffects with a fifth side, "ft-local": the
// same guests on an FT pair whose disk is local (each replica its own
// copy, the backup performing the writes as it replays them), against the
// shared disk's "ft" in the same interleaved rounds (ft-local/ft).
//
//	go test ./host -run '^$' -bench BenchmarkLocalDisk -benchtime 2000x
func BenchmarkLocalDisk(b *testing.B) {
	runs := []struct {
		name string
		wasm func(testing.TB) []byte
		run  guestRun
	}{
		{"journal", journalGuest, guestRun{args: []string{"/disk"}, disk: true, local: true}},
		{"counter-file", func(testing.TB) []byte { return defaultguest.Counter() }, guestRun{args: []string{"-file", "/disk/counter"}, disk: true, local: true}},
	}
	for _, g := range runs {
		b.Run(g.name+"/hosts", func(b *testing.B) { benchOverhead(b, g.wasm(b), g.run, hosts) })
	}
}

// guestRun is how a benchmark runs its guest: with these arguments, and a
// disk (a directory as /disk) or not; with local, an FT pair with a local
// disk runs too, as the side "ft-local".
type guestRun struct {
	args  []string
	disk  bool
	local bool
}

// overheadRounds is how many times BenchmarkOverhead measures each side.
const overheadRounds = 7

// placement says which CPUs BenchmarkOverhead's processes run on.
type placement int

const (
	shared placement = iota
	hosts
	hostsClientsWithBackup
)

func benchOverhead(b *testing.B, guest []byte, run guestRun, place placement) {
	var primaryCPUs, backupCPUs []int
	if place != shared {
		all, err := allowedCPUs()
		if err != nil || len(all) < 2 {
			b.Skipf("needs two CPUs to place two hosts on (have %v, %v)", all, err)
		}
		primaryCPUs, backupCPUs = all[:len(all)/2], all[len(all)/2:]
		// This process (the clients) runs on the primary's host, and
		// so does every process it starts from now on.
		if err := pinProcess(os.Getpid(), primaryCPUs); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			if err := pinProcess(os.Getpid(), all); err != nil {
				b.Error(err)
			}
		})
	}

	// The exec processes: with exec's defaults, and coalescing as the
	// hosts do by default.
	prof := benchProfileDir(b)
	ex := startExecSide(b, guest, run, prof, "exec")
	exc := startExecSide(b, guest, run, prof, "exec-coalesce", "--coalesce", host.DefaultCoalesce.String())

	// The FT pair, and with FTVM_BENCH_BASE another one running that
	// binary.
	var pairs []*cluster
	startPair := func(name, bin string, local bool) (*side, *cluster) {
		var hostArgs []string
		if prof != "" {
			dir := filepath.Join(prof, name)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			hostArgs = []string{"--guest-profiles", dir}
		}
		c := newCluster(b, hostArgs...)
		if bin != "" {
			c.bin = bin
		}
		for _, h := range []string{"h1", "h2"} {
			c.startHost(h, cpuProfileEnv(prof, name+"-"+h)...)
		}
		if place != shared {
			if err := pinProcess(c.hosts["h2"].cmd.Process.Pid, backupCPUs); err != nil {
				b.Fatal(err)
			}
		}
		s := &side{name: name, addr: guesttest.FreeAddr(b), pids: []int{c.hosts["h1"].cmd.Process.Pid, c.hosts["h2"].cmd.Process.Pid}, pair: c}
		spec := storage.VMSpec{Listeners: []string{s.addr}, Primary: "h1", Backup: "h2",
			Disk: run.disk, Args: append([]string{"counter"}, run.args...)}
		if local {
			// Alone on h1, then cloned onto h2, its only spare.
			spec.Name, spec.Backup, spec.DiskKind = "counter", "", storage.DiskLocal
			if _, _, err := host.StartVM(c.store, spec, guest, time.Now()); err != nil {
				b.Fatal(err)
			}
			c.protected("counter", 0, time.Minute)
		} else {
			c.startVM("counter", guest, spec)
		}
		s.gen = c.owner("counter").Generation
		get(b, s.addr, 20*time.Second)
		pairs = append(pairs, c)
		return s, c
	}
	ft, _ := startPair("ft", "", false)
	sides := []*side{ex, exc, ft}
	var base, local *side
	if bin := os.Getenv(envBenchBase); bin != "" {
		base, _ = startPair("ft-base", bin, false)
		sides = append(sides, base)
	}
	if run.local {
		local, _ = startPair("ft-local", "", true)
		sides = append(sides, local)
	}
	if place == hostsClientsWithBackup {
		if err := pinProcess(os.Getpid(), backupCPUs); err != nil {
			b.Fatal(err)
		}
	}
	for _, s := range sides {
		s.cpu = make([]time.Duration, len(s.pids))
		measure(b, s.addr, benchClients, 1000) // warm up
	}
	b.ResetTimer()
	for i := range overheadRounds {
		// Each side goes first in turn.
		for j := range sides {
			sides[(i+j)%len(sides)].run(b)
		}
	}
	b.StopTimer()
	for _, s := range sides {
		if s.pair == nil {
			continue
		}
		if st := s.pair.status("counter", "h1"); st.Generation != s.gen || st.Role != "primary" {
			b.Fatalf("%s: the pair did not hold through the run: %+v", s.name, st)
		}
	}
	if prof != "" {
		for _, s := range []*side{ex, exc} {
			stopGently(b, s.cmd.Process, func() { s.cmd.Wait() })
		}
		for _, c := range pairs {
			for _, h := range c.hosts {
				stopGently(b, h.cmd.Process, func() { <-h.done })
			}
		}
	}

	ratio := func(of, against *side) {
		var ratios []float64
		for i := range of.rates {
			ratios = append(ratios, of.rates[i]/against.rates[i])
		}
		b.ReportMetric(median(ratios), of.name+"/"+against.name)
		b.ReportMetric(slices.Min(ratios), of.name+"/"+against.name+"-min")
		b.ReportMetric(slices.Max(ratios), of.name+"/"+against.name+"-max")
	}
	for _, against := range []*side{ex, exc, base} {
		if against != nil {
			ratio(ft, against)
		}
	}
	if local != nil {
		ratio(local, ft)
		ratio(local, exc)
		b.ReportMetric(local.cpuPerReq(0), "ft-local-primary-cpu-µs/req")
		b.ReportMetric(local.cpuPerReq(1), "ft-local-backup-cpu-µs/req")
	}
	for _, s := range sides {
		b.ReportMetric(median(s.rates), s.name+"-req/s")
		b.ReportMetric(float64(median(s.p50s).Microseconds()), s.name+"-p50-µs")
	}
	ft.reportDelays(b)
	b.ReportMetric(ex.cpuPerReq(0), "exec-cpu-µs/req")
	b.ReportMetric(exc.cpuPerReq(0), "exec-coalesce-cpu-µs/req")
	b.ReportMetric(ft.cpuPerReq(0), "primary-cpu-µs/req")
	b.ReportMetric(ft.cpuPerReq(1), "backup-cpu-µs/req")
	if base != nil {
		b.ReportMetric(base.cpuPerReq(0), "ft-base-primary-cpu-µs/req")
		b.ReportMetric(base.cpuPerReq(1), "ft-base-backup-cpu-µs/req")
	}
}

// envBenchBase names another ftvm binary (say, main's, built with go build
// -o) whose FT pair BenchmarkOverhead runs as a fourth side, "ft-base":
// the ratio ft/ft-base compares a change with it in interleaved rounds,
// the only comparison this machine's drift leaves trustworthy.
const envBenchBase = "FTVM_BENCH_BASE"

// side is one of the servers BenchmarkOverhead compares: its processes and
// what each round measured.
type side struct {
	name  string
	addr  string
	cmd   *exec.Cmd // of an exec side
	pids  []int
	rates []float64
	p50s  []time.Duration
	cpu   []time.Duration // per process, over every round
	n     int
	// gen is the generation its VM runs in throughout.
	gen uint64
	// An FT side's pair, and after each round the primary's output delay
	// (p50, p99) and log round trip (p50), in ms, from its status.
	pair   *cluster
	delays [][3]float64
}

// startExecSide starts `ftvm exec` with args and waits until its guest
// answers: listening before the hosts start, whose ports could be the
// same. With prof set, it writes its profiles there.
func startExecSide(b *testing.B, guest []byte, run guestRun, prof, name string, args ...string) *side {
	s := &side{name: name, addr: guesttest.FreeAddr(b)}
	path := filepath.Join(b.TempDir(), "counter.wasm")
	writeFile(b, path, guest)
	// On the tier the hosts run ($FTVM_WASM_ENGINE), so that the two
	// sides compare the pair's costs, not the tiers.
	args = append(append([]string{"exec", "--listen", s.addr}, guesttest.EngineArgs()...), args...)
	if run.disk {
		args = append(args, "--dir", b.TempDir()+":/disk")
	}
	if prof != "" {
		args = append(args, "--profile", filepath.Join(prof, name+".pprof"))
	}
	args = append(append(args, path), run.args...)
	cmd := exec.Command(ftvmBinary(b), args...)
	cmd.Env = append(os.Environ(), cpuProfileEnv(prof, name)...)
	s.cmd = cmd
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s.pids = []int{cmd.Process.Pid}
	get(b, s.addr, 20*time.Second)
	return s
}

// run sends one round of b.N requests.
func (s *side) run(b *testing.B) {
	cpu0 := make([]time.Duration, len(s.pids))
	for i, pid := range s.pids {
		cpu0[i] = procCPU(b, pid)
	}
	r := measure(b, s.addr, benchClients, b.N)
	for i, pid := range s.pids {
		s.cpu[i] += procCPU(b, pid) - cpu0[i]
	}
	if len(r.lat) == 0 {
		b.Fatalf("%s: no request was answered", s.name)
	}
	s.rates = append(s.rates, r.rate())
	s.p50s = append(s.p50s, r.lat[len(r.lat)/2])
	s.n += len(r.lat)
	if s.pair != nil {
		// The status covers the last 10 s (this round, and the FT
		// rounds before it in that time): wait for its refresh (every
		// 250 ms) after the round.
		time.Sleep(300 * time.Millisecond)
		st := s.pair.status("counter", "h1")
		s.delays = append(s.delays, [3]float64{st.OutputDelayP50, st.OutputDelayP99, st.AckRTTP50})
	}
}

// reportDelays reports the medians over the rounds of an FT side's output
// delay and log round trip.
func (s *side) reportDelays(b *testing.B) {
	for i, name := range []string{"output-delay-p50-µs", "output-delay-p99-µs", "log-rtt-p50-µs"} {
		var v []float64
		for _, d := range s.delays {
			v = append(v, d[i]*1000)
		}
		b.ReportMetric(median(v), s.name+"-"+name)
	}
}

// cpuPerReq returns the CPU time process i used per request, in µs.
func (s *side) cpuPerReq(i int) float64 {
	return float64(s.cpu[i].Microseconds()) / float64(s.n)
}

// median returns the middle value of v (the upper one of an even count).
func median[T float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
