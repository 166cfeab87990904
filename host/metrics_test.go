package host_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"ftvm/host"
	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// scrape reads the metrics of host name (its HTTP address from the
// registry) as series ("name{labels}", labels sorted as exposed) to value.
func (c *cluster) scrape(name string) (map[string]float64, error) {
	hs, err := c.store.Hosts()
	if err != nil {
		return nil, err
	}
	addr := ""
	for _, h := range hs {
		if h.Name == name {
			addr = h.HTTP
		}
	}
	if addr == "" {
		return nil, fmt.Errorf("host %s recorded no HTTP address", name)
	}
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET /metrics: %s\n%s", resp.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("bad line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bad line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// waitMetrics waits until host name's metrics have every series of want
// with its value (and a value above it for those whose name ends in ">").
func (c *cluster) waitMetrics(name string, want map[string]float64) map[string]float64 {
	c.t.Helper()
	var got map[string]float64
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err = c.scrape(name)
		ok := err == nil
		for k, v := range want {
			if more, found := strings.CutSuffix(k, ">"); found {
				ok = ok && got[more] > v
			} else {
				g, has := got[k]
				ok = ok && has && g == v
			}
		}
		if ok {
			return got
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var lines []string
	for k, v := range got {
		if strings.HasPrefix(k, "ftvm_") {
			lines = append(lines, fmt.Sprintf("%s %g", k, v))
		}
	}
	sort.Strings(lines)
	c.t.Fatalf("host %s's metrics never had %v (err %v); last:\n%s", name, want, err, strings.Join(lines, "\n"))
	return nil
}

// TestMetricsOfAFailover scrapes two real hosts' /metrics: the pair's
// roles, generation and protection, the Output Rule's delays and the log
// once a client was served, and after the primary is killed, the
// backup's claim and failover.
func TestMetricsOfAFailover(t *testing.T) {
	c := newCluster(t, "--http", "127.0.0.1:0")
	addr := counterPair(t, c, false)
	for range 5 {
		get(t, addr, 10*time.Second)
	}
	c.waitMetrics("h1", map[string]float64{
		`ftvm_vm_role{role="primary",vm="counter"}`:               1,
		`ftvm_vm_generation{vm="counter"}`:                        1,
		`ftvm_vm_protected{vm="counter"}`:                         1,
		`ftvm_vm_logging_channel_up{vm="counter"}`:                1,
		`ftvm_vm_output_delay_seconds_count{vm="counter"}>`:       4,
		`ftvm_vm_log_round_trip_seconds_count{vm="counter"}>`:     0,
		`ftvm_vm_log_entries_total{type="fd_read",vm="counter"}>`: 0,
		`ftvm_heartbeats_sent_total>`:                             0,
		`ftvm_heartbeats_received_total>`:                         0,
		`process_cpu_seconds_total>`:                              0,
	})
	c.waitMetrics("h2", map[string]float64{
		`ftvm_vm_role{role="backup",vm="counter"}`: 1,
		`ftvm_vm_generation{vm="counter"}`:         1,
		`ftvm_vm_received_entries{vm="counter"}>`:  0,
	})
	c.signal("h1", syscall.SIGKILL)
	get(t, addr, 30*time.Second)
	got := c.waitMetrics("h2", map[string]float64{
		`ftvm_vm_role{role="alone",vm="counter"}`:          1,
		`ftvm_vm_generation{vm="counter"}`:                 2,
		`ftvm_vm_protected{vm="counter"}`:                  0,
		`ftvm_failovers_total{vm="counter"}`:               1,
		`ftvm_claims_total{outcome="won",vm="counter"}`:    1,
		`ftvm_events_total{kind="went live",vm="counter"}`: 1,
	})
	if _, ok := got[`ftvm_claims_total{outcome="lost",vm="counter"}`]; ok {
		t.Errorf("h2 counts a claim lost")
	}
	if _, ok := got[`ftvm_vm_role{role="backup",vm="counter"}`]; ok {
		t.Errorf("h2 still reports the backup role")
	}

	// Stopped, the VM leaves the host: none of its series stays.
	if err := host.StopVM(c.store, "counter"); err != nil {
		t.Fatal(err)
	}
	c.waitMetrics("h2", map[string]float64{`ftvm_host_vms`: 0})
	c.waitFor(30*time.Second, "the stopped vm's series gone", func() bool {
		got, err := c.scrape("h2")
		if err != nil {
			return false
		}
		for k := range got {
			if strings.Contains(k, `vm="counter"`) {
				return false
			}
		}
		return true
	})
}

// TestMetricsLint: a host's registry is its own (two hosts in a process
// do not collide) and its metrics follow Prometheus's conventions.
func TestMetricsLint(t *testing.T) {
	dir := t.TempDir()
	var hs []*host.Host
	for _, name := range []string{"a", "b"} {
		h, err := host.New(host.Config{Shared: dir, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		// Run at once ended: it closes the host's ports.
		t.Cleanup(func() {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_ = h.Run(ctx)
		})
		hs = append(hs, h)
	}
	for _, h := range hs {
		problems, err := testutil.GatherAndLint(h.Registry())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			if strings.HasPrefix(p.Metric, "ftvm_") {
				t.Errorf("%s: %s", p.Metric, p.Text)
			}
		}
		n, err := testutil.GatherAndCount(h.Registry(), "ftvm_heartbeats_sent_total")
		if err != nil || n != 1 {
			t.Errorf("ftvm_heartbeats_sent_total: %d series, %v", n, err)
		}
	}
}

// TestStoppedVMGivesItsMemoryBack: a stopped VM's guest memory leaves its
// hosts' resident memory soon after the stop, not at a collection minutes
// later (a guest's memory lies outside the Go heap, whose growth alone
// would start that collection).
func TestStoppedVMGivesItsMemoryBack(t *testing.T) {
	guest := memGuest(t)
	c := newCluster(t)
	c.startHost("h1")
	c.startHost("h2")
	addr := guesttest.FreeAddr(t)
	c.startVM("mem", guest, storage.VMSpec{Args: []string{"ft-mem", "256"}, Listeners: []string{addr}, Primary: "h1", Backup: "h2"})
	memCheck(t, addr) // answered: the memory is filled, on both hosts
	const guestMem = 256 << 20
	rss := map[string]int64{}
	for _, h := range []string{"h1", "h2"} {
		c.waitFor(30*time.Second, h+" holding the guest's memory", func() bool {
			rss[h] = procRSS(t, c.hosts[h].cmd.Process.Pid)
			return rss[h] > guestMem
		})
	}
	if err := host.StopVM(c.store, "mem"); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h1", "h2"} {
		c.waitFor(30*time.Second, h+" giving the guest's memory back", func() bool {
			return procRSS(t, c.hosts[h].cmd.Process.Pid) < rss[h]-guestMem*3/4
		})
	}
}
