package host_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftvm/host"
	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// busyEvery is how many hashes ft-spin computes per line of output: the
// unit of work the busy benchmark counts.
const busyEvery = 100

// BenchmarkBusyThroughput runs N VMs that compute without end (ft-spin)
// on one pair of hosts, placed as ftvm start places them, and then the
// same guest as N `ftvm exec` processes on the same machine: the work
// done per second each way (hashes, counted from the guests' output over
// 10 s, once all run and the VMs are protected), and their ratio. Both
// use every CPU of the machine: under FT the backups' replay shares them
// with the primaries. FTVM_BUSY_VMS sets N (100 by default).
func BenchmarkBusyThroughput(b *testing.B) {
	n := 100
	if s := os.Getenv("FTVM_BUSY_VMS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	guest := guesttest.Build(b, "ft-spin")
	for range b.N {
		ft, failovers := busyFT(b, guest, n)
		ex := busyExec(b, guest, n)
		b.ReportMetric(float64(n), "vms")
		b.ReportMetric(ft.hashesPerSec, "ft-hashes/s")
		b.ReportMetric(ex.hashesPerSec, "exec-hashes/s")
		b.ReportMetric(ft.hashesPerSec/ex.hashesPerSec, "ft/exec")
		b.ReportMetric(ft.least, "ft-least-vm-hashes/s")
		b.ReportMetric(ft.most, "ft-most-vm-hashes/s")
		b.ReportMetric(ex.least, "exec-least-hashes/s")
		b.ReportMetric(ex.most, "exec-most-hashes/s")
		b.ReportMetric(float64(failovers), "failovers")
	}
}

// lineCounter counts the lines written to it, by their first word (the
// VM's tag). One writer at a time: a process's output.
type lineCounter struct {
	mu      sync.Mutex
	partial []byte
	total   int64
	byTag   map[string]int64
}

func (l *lineCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		tag, _, _ := bytes.Cut(l.partial[:i], []byte{' '})
		if l.byTag == nil {
			l.byTag = map[string]int64{}
		}
		l.byTag[string(tag)]++
		l.total++
		l.partial = l.partial[i+1:]
	}
	return len(p), nil
}

// counts returns the lines so far of each tag, summed over ls, and in all.
func counts(ls []*lineCounter) (map[string]int64, int64) {
	all, total := map[string]int64{}, int64(0)
	for _, l := range ls {
		l.mu.Lock()
		for tag, n := range l.byTag {
			all[tag] += n
		}
		total += l.total
		l.mu.Unlock()
	}
	return all, total
}

// busyRate is the work done by the guests writing to ls in window, after
// settle: hashes per second in all, and the shares of the VM that did
// least and most (of the tags in want; 0 for none).
type busyRate struct {
	hashesPerSec float64
	least, most  float64  // hashes per second of one VM
	stalled      []string // the VMs that printed nothing in the window
}

func measureBusy(ls []*lineCounter, want []string, settle, window time.Duration) busyRate {
	time.Sleep(settle)
	before, total0 := counts(ls)
	time.Sleep(window)
	after, total1 := counts(ls)
	r := busyRate{hashesPerSec: float64(total1-total0) * busyEvery / window.Seconds()}
	if len(want) > 0 {
		var ran []int64
		for _, tag := range want {
			ran = append(ran, after[tag]-before[tag])
			if after[tag] == before[tag] {
				r.stalled = append(r.stalled, tag)
			}
		}
		r.least = float64(slices.Min(ran)) * busyEvery / window.Seconds()
		r.most = float64(slices.Max(ran)) * busyEvery / window.Seconds()
	}
	return r
}

func busyFT(b *testing.B, guest []byte, n int) (rate busyRate, failovers int) {
	prof := benchProfileDir(b)
	c := newCluster(b)
	outs := []*lineCounter{{}, {}}
	c.startHostWith("h1", outs[0], cpuProfileEnv(prof, "h1")...)
	c.startHostWith("h2", outs[1])
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("spin%03d", i)
		spec := storage.VMSpec{Name: names[i], Args: []string{"ft-spin", strconv.Itoa(busyEvery), names[i]}}
		if _, _, err := host.StartVM(c.store, spec, guest, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	waitProtected(b, c, names, time.Duration(n)*2*time.Second+60*time.Second)
	gens := map[string]uint64{}
	for _, vm := range names {
		gens[vm] = c.owner(vm).Generation
	}
	rate = measureBusy(outs, names, 2*time.Second, 10*time.Second)
	for _, vm := range rate.stalled {
		for _, h := range []string{"h1", "h2"} {
			st := c.status(vm, h)
			b.Logf("%s made no progress in the window: on %s: %s, role %s, generation %d, position %d, lag %.0f ms, held %d bytes, connected %v",
				vm, h, st.State, st.Role, st.Generation, st.Pos, st.LagMillis, st.HeldBytes, st.Connected)
		}
	}
	for _, vm := range names {
		if c.owner(vm).Generation != gens[vm] {
			failovers++
		}
	}
	if dir := os.Getenv("FTVM_BENCH_LOGS"); dir != "" {
		for name, h := range c.hosts {
			_ = os.WriteFile(filepath.Join(dir, name+".log"), []byte(h.logs.String()), 0o644)
		}
	}
	if prof != "" {
		stopGently(b, c.hosts["h1"].cmd.Process, func() { <-c.hosts["h1"].done })
	}
	for name, h := range c.hosts {
		select {
		case <-h.done:
		default:
			c.signal(name, syscall.SIGKILL)
		}
	}
	return rate, failovers
}

func busyExec(b *testing.B, guest []byte, n int) busyRate {
	path := filepath.Join(b.TempDir(), "ft-spin.wasm")
	if err := os.WriteFile(path, guest, 0o644); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var outs []*lineCounter
	var tags []string
	var cmds []*exec.Cmd
	defer func() {
		cancel()
		for _, cmd := range cmds {
			_ = cmd.Wait()
		}
	}()
	for i := range n {
		tag := fmt.Sprintf("exec%03d", i)
		out := &lineCounter{}
		cmd := exec.CommandContext(ctx, ftvmBinary(b), "exec", path, strconv.Itoa(busyEvery), tag)
		cmd.Stdout = out
		outs, tags = append(outs, out), append(tags, tag)
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	// Every process running: each has printed its first line (at hash 0).
	deadline := time.Now().Add(time.Duration(n)*time.Second + 30*time.Second)
	for {
		started, _ := counts(outs)
		if len(started) == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d ftvm exec processes started", len(started), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return measureBusy(outs, tags, 2*time.Second, 10*time.Second)
}
