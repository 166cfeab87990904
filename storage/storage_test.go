package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestClaimHasExactlyOneWinner(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for gen := uint64(1); gen <= 20; gen++ {
		var wg sync.WaitGroup
		wins := make(chan string, 8)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				host := fmt.Sprintf("h%d", i)
				won, cur, err := d.Claim("vm", Owner{Generation: gen, Host: host})
				if err != nil {
					t.Error(err)
					return
				}
				if won != (cur.Host == host) {
					t.Errorf("won=%v but owner is %s", won, cur.Host)
				}
				if won {
					wins <- host
				}
			}()
		}
		wg.Wait()
		close(wins)
		var winners []string
		for w := range wins {
			winners = append(winners, w)
		}
		if len(winners) != 1 {
			t.Fatalf("generation %d: winners %v", gen, winners)
		}
		// A retry by the winner still reports the win.
		won, _, err := d.Claim("vm", Owner{Generation: gen, Host: winners[0]})
		if err != nil || !won {
			t.Fatalf("retry by the winner: won=%v err=%v", won, err)
		}
	}
	latest, ok, err := d.Latest("vm")
	if err != nil || !ok || latest.Generation != 20 {
		t.Fatalf("latest = %+v %v %v", latest, ok, err)
	}
}

// TestClaimAcrossProcesses races real processes on the same directory.
func TestClaimAcrossProcesses(t *testing.T) {
	if os.Getenv("FTVM_STORAGE_CLAIMER") != "" {
		d, err := Open(os.Getenv("FTVM_STORAGE_DIR"))
		if err != nil {
			os.Exit(3)
		}
		won, _, err := d.Claim("vm", Owner{Generation: 1, Host: os.Getenv("FTVM_STORAGE_CLAIMER")})
		if err != nil {
			os.Exit(3)
		}
		if won {
			os.Exit(0)
		}
		os.Exit(1)
	}
	dir := t.TempDir()
	var cmds []*exec.Cmd
	for i := range 6 {
		c := exec.Command(os.Args[0], "-test.run=^TestClaimAcrossProcesses$")
		c.Env = append(os.Environ(), "FTVM_STORAGE_CLAIMER=p"+strconv.Itoa(i), "FTVM_STORAGE_DIR="+dir)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	wins := 0
	for _, c := range cmds {
		err := c.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			wins++
		case errors.As(err, &ee) && ee.ExitCode() == 1:
		default:
			t.Fatalf("claimer failed: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d processes won generation 1", wins)
	}
}

func TestUnreachableStorage(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	up := false
	d.SetReachable(func() bool { return up })
	if _, _, err := d.Claim("vm", Owner{Generation: 1, Host: "a"}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("claim while unreachable: %v", err)
	}
	up = true
	if won, _, err := d.Claim("vm", Owner{Generation: 1, Host: "a"}); err != nil || !won {
		t.Fatalf("claim after reconnect: %v %v", won, err)
	}
}

func TestClusterKeyIsPrivateAndStable(t *testing.T) {
	root := t.TempDir()
	d, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	k1, err := d.ClusterKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := d.ClusterKey()
	if err != nil || string(k1) != string(k2) || len(k1) != 32 {
		t.Fatalf("keys differ or are short: %v", err)
	}
	st, err := os.Stat(filepath.Join(root, "cluster.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cluster key mode %v, %v", st.Mode(), err)
	}
}

func TestHostsAndVMs(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"b", "a"} {
		if err := d.PutHost(HostInfo{Name: n, Addr: "127.0.0.1:1", PID: 7}); err != nil {
			t.Fatal(err)
		}
	}
	hs, err := d.Hosts()
	if err != nil || len(hs) != 2 || hs[0].Name != "a" {
		t.Fatalf("hosts %+v %v", hs, err)
	}
	if err := d.PutVM(VMSpec{Name: "counter", Args: []string{"counter.wasm"}}, []byte("\x00asm")); err != nil {
		t.Fatal(err)
	}
	spec, err := d.VM("counter")
	if err != nil || spec.Args[0] != "counter.wasm" {
		t.Fatalf("vm %+v %v", spec, err)
	}
	mod, err := d.Module("counter")
	if err != nil || string(mod) != "\x00asm" {
		t.Fatalf("module %q %v", mod, err)
	}
	if _, err := d.Module("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a missing VM's module: %v", err)
	}
	if _, err := d.VM("missing"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), `no vm "missing"`) {
		t.Fatalf("a missing VM's spec: %v", err)
	}
	if err := d.PutVM(VMSpec{Name: "../x"}, nil); err == nil {
		t.Fatal("a path-like VM name was accepted")
	}
}

// TestClusterKeyCreatedConcurrently: hosts starting together, in one
// process or several, all end up with the one key.
func TestClusterKeyCreatedConcurrently(t *testing.T) {
	for range 20 {
		root := t.TempDir()
		keys := make(chan string, 8)
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				d, err := Open(root)
				if err == nil {
					var k []byte
					k, err = d.ClusterKey()
					keys <- string(k)
				}
				errs <- err
			}()
		}
		var first string
		for i := range 8 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			k := <-keys
			if i == 0 {
				first = k
			} else if k != first {
				t.Fatal("two hosts got different cluster keys")
			}
		}
		if ents, _ := os.ReadDir(root); len(ents) != 3 { // hosts, vms, cluster.key
			t.Fatalf("left behind: %v", ents)
		}
	}
}

func TestCloneProgressString(t *testing.T) {
	c := CloneProgress{Target: "h3", Round: 3, SentBytes: 9 << 20, LeftBytes: 12 << 20}
	if got, want := c.String(), "cloning to h3: 42 %, round 3, 12.0 MiB left"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for n, want := range map[uint64]string{0: "0 KiB", 1: "1 KiB", 1 << 20: "1.0 MiB", 3<<20 + 1<<19: "3.5 MiB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestUnreadableRecordsAreSkipped: one damaged record does not hide the
// others, and Unreadable names it.
func TestUnreadableRecordsAreSkipped(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, n := range []string{"a", "b"} {
		if err := d.PutHost(HostInfo{Name: n, Addr: "127.0.0.1:1", Seen: now}); err != nil {
			t.Fatal(err)
		}
		if err := d.PutStatus(VMStatus{VM: "vm", Host: n, State: "running"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d.Root(), "hosts", "b.json"), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.statusDir("vm"), "a.json"), []byte(`{"vm": "vm", "ho`), 0o644); err != nil {
		t.Fatal(err)
	}
	if hs, err := d.Hosts(); err != nil || len(hs) != 1 || hs[0].Name != "a" {
		t.Errorf("Hosts() = %v, %v; want a alone", hs, err)
	}
	if sts, err := d.Statuses("vm"); err != nil || len(sts) != 1 || sts[0].Host != "b" {
		t.Errorf("Statuses() = %v, %v; want b's alone", sts, err)
	}
	bad, err := d.Unreadable()
	if err != nil || len(bad) != 2 || !strings.HasPrefix(bad[0], "hosts/b.json: ") || !strings.HasPrefix(bad[1], "vms/vm/status/a.json: ") {
		t.Errorf("Unreadable() = %q, %v; want the two damaged records", bad, err)
	}
}

// TestEvents: hosts' events come back oldest first, a torn line is
// skipped, and each host's history is bounded.
func TestEvents(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC()
	for i, e := range []Event{
		{Time: t0.Add(2 * time.Millisecond), Host: "b", VM: "vm", Generation: 2, Kind: "went live"},
		{Time: t0, Host: "a", VM: "vm", Generation: 1, Kind: "started"},
		{Time: t0.Add(time.Millisecond), Host: "b", VM: "vm", Generation: 2, Kind: "claim won"},
	} {
		if err := d.AppendEvent(e); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	f, err := os.OpenFile(filepath.Join(d.Root(), "events", "a.jsonl"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"time": "2026-`) // a host that died mid-line
	f.Close()
	evs, err := d.Events()
	if err != nil || len(evs) != 3 || evs[0].Kind != "started" || evs[1].Kind != "claim won" || evs[2].Kind != "went live" {
		t.Fatalf("Events() = %+v, %v", evs, err)
	}
	if err := d.AppendEvent(Event{Host: "../x", Kind: "bad"}); err == nil {
		t.Error("an event of host ../x was written")
	}
	// A batch, of two hosts' events: each in order, one write per host.
	batch := []Event{
		{Time: t0.Add(3 * time.Millisecond), Host: "b", VM: "vm2", Kind: "k1"},
		{Time: t0.Add(4 * time.Millisecond), Host: "d", VM: "vm2", Kind: "k2"},
		{Time: t0.Add(5 * time.Millisecond), Host: "b", VM: "vm2", Kind: "k3"},
	}
	if err := d.AppendEvents(batch); err != nil {
		t.Fatal(err)
	}
	if err := d.AppendEvents([]Event{{Host: "ok"}, {Host: "../x"}}); err == nil {
		t.Error("a batch with an event of host ../x was written")
	}
	evs, err = d.Events()
	if err != nil || len(evs) != 6 || evs[3].Kind != "k1" || evs[4].Kind != "k2" || evs[5].Kind != "k3" {
		t.Fatalf("Events() after a batch = %+v, %v", evs, err)
	}
	// Bounded: a host's files hold at most twice EventsMax.
	big := Event{Time: t0, Host: "c", Kind: "k", Detail: strings.Repeat("x", 4096)}
	for range 3 * EventsMax / 4096 {
		if err := d.AppendEvent(big); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	for _, n := range []string{"c.jsonl", "c.jsonl.1"} {
		fi, err := os.Stat(filepath.Join(d.Root(), "events", n))
		if err != nil {
			t.Fatal(err)
		}
		total += fi.Size()
	}
	if total > 2*EventsMax {
		t.Errorf("host c keeps %d bytes of events, over %d", total, 2*EventsMax)
	}
}

// Claims of many VMs at once, by two hosts each, commit in groups: each
// generation of each VM still has exactly one winner, who every claimant
// is told of, and no record is left half-made.
func TestGroupedClaimsHaveOneWinnerEach(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const vms = 200
	type result struct {
		vm, host string
		won      bool
		cur      Owner
	}
	results := make(chan result, 2*vms)
	var wg sync.WaitGroup
	for v := range vms {
		for _, host := range []string{"a", "b"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				vm := fmt.Sprintf("vm%03d", v)
				won, cur, err := d.Claim(vm, Owner{Generation: 2, Host: host})
				if err != nil {
					t.Error(err)
				}
				results <- result{vm, host, won, cur}
			}()
		}
	}
	wg.Wait()
	close(results)
	winners := map[string]string{}
	for r := range results {
		if r.won {
			if w, ok := winners[r.vm]; ok {
				t.Fatalf("%s: both %s and %s won generation 2", r.vm, w, r.host)
			}
			winners[r.vm] = r.host
		}
		if r.won != (r.cur.Host == r.host) {
			t.Fatalf("%s: %s told won=%v with owner %q", r.vm, r.host, r.won, r.cur.Host)
		}
	}
	if len(winners) != vms {
		t.Fatalf("%d of %d VMs have a winner", len(winners), vms)
	}
	for vm, host := range winners {
		if o, ok, err := d.Latest(vm); err != nil || !ok || o.Host != host {
			t.Fatalf("%s: latest owner %+v (%v), want %s", vm, o, err, host)
		}
		left, _ := filepath.Glob(filepath.Join(d.vmDir(vm), "owners", "*.tmp"))
		if len(left) > 0 {
			t.Fatalf("%s: temporary records left: %v", vm, left)
		}
	}
}

// TestVMsOnPort: the index names every VM that has or had a listener on a
// port, and a store written before the index gets it at its first use.
func TestVMsOnPort(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []VMSpec{
		{Name: "a", Listeners: []string{"127.0.0.1:7000", "0.0.0.0:7001"}},
		{Name: "b", Listeners: []string{"[::1]:7000"}},
		{Name: "c"},
	} {
		if err := d.PutVM(spec, []byte("\x00asm")); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		for port, want := range map[int]string{7000: "[a b]", 7001: "[a]", 7002: "[]"} {
			if got, err := d.VMsOnPort(port); err != nil || fmt.Sprint(got) != want {
				t.Errorf("%s: VMsOnPort(%d) = %v, %v; want %s", when, port, got, err, want)
			}
		}
	}
	check("indexed")
	if err := os.RemoveAll(filepath.Join(d.Root(), "ports")); err != nil {
		t.Fatal(err)
	}
	check("after the index was removed")
}

// TestNamesRefused: names that cannot be file names, or would break the
// tables and log lines that show them, are refused with a clear error.
func TestNamesRefused(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", ".", "..", "a/b", `a\b`, "tab\there", "new\nline", "del\x7f", "nul\x00", strings.Repeat("x", 129)} {
		err := d.PutVM(VMSpec{Name: name, Args: []string{"g"}}, []byte("\x00asm\x01\x00\x00\x00"))
		if err == nil || !strings.Contains(err.Error(), "invalid vm name") {
			t.Errorf("PutVM %q: %v, want an invalid name error", name, err)
		}
	}
	if err := d.PutVM(VMSpec{Name: "ok-name_1.2", Args: []string{"g"}}, []byte("\x00asm\x01\x00\x00\x00")); err != nil {
		t.Errorf("a plain name refused: %v", err)
	}
}
