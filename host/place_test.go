package host_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"ftvm/host"
	"ftvm/storage"
)

// registeredHosts returns shared storage with hosts h1, h2 and h3
// registered and alive; a remote address, so that only the registry says
// whether they live.
func registeredHosts(t *testing.T) (*storage.Dir, time.Time) {
	t.Helper()
	dir, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, name := range []string{"h1", "h2", "h3"} {
		if err := dir.PutHost(storage.HostInfo{Name: name, Addr: "192.0.2.1:7000", PID: os.Getpid(), Started: now, Seen: now}); err != nil {
			t.Fatal(err)
		}
	}
	return dir, now
}

// TestPlacementSpreadsPrimaries: three VMs started on three idle hosts
// get one primary on each host, and a backup on each.
func TestPlacementSpreadsPrimaries(t *testing.T) {
	dir, now := registeredHosts(t)
	guest := counterGuest(t)
	primaries, backups := map[string]int{}, map[string]int{}
	for _, vm := range []string{"a", "b", "c"} {
		spec, _, err := host.StartVM(dir, storage.VMSpec{Name: vm, Args: []string{"ft-counter"}}, guest, now)
		if err != nil {
			t.Fatal(err)
		}
		primaries[spec.Primary]++
		backups[spec.Backup]++
		if spec.Primary == spec.Backup {
			t.Fatalf("%s: primary and backup on %s", vm, spec.Primary)
		}
	}
	if len(primaries) != 3 || len(backups) != 3 {
		t.Fatalf("primaries %v, backups %v: want one of each on every host", primaries, backups)
	}
}

// TestStartRefusesAnotherVMsAddress: two VMs of one cluster may not listen
// where they would share connections, written alike or not.
func TestStartRefusesAnotherVMsAddress(t *testing.T) {
	dir, now := registeredHosts(t)
	guest := counterGuest(t)
	if _, _, err := host.StartVM(dir, storage.VMSpec{Name: "a", Listeners: []string{"127.0.0.1:7000"}}, guest, now); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"127.0.0.1:7000", "0.0.0.0:7000", "[::]:7000", "localhost:7000"} {
		if _, _, err := host.StartVM(dir, storage.VMSpec{Name: "b", Listeners: []string{addr}}, guest, now); err == nil || !strings.Contains(err.Error(), "is vm a's") {
			t.Errorf("start of b on %s: %v; want refused, a listens there", addr, err)
		}
	}
	if _, _, err := host.StartVM(dir, storage.VMSpec{Name: "b", Listeners: []string{"127.0.0.2:7000", "127.0.0.1:7001"}}, guest, now); err != nil {
		t.Errorf("start of b on other addresses: %v", err)
	}
}

// TestStateWhileGoingLive: a backup that won the next generation and
// still replays the log's end is shown going live, not running.
func TestStateWhileGoingLive(t *testing.T) {
	dir, now := registeredHosts(t)
	if _, _, err := host.StartVM(dir, storage.VMSpec{Name: "a", Primary: "h1", Backup: "h2"}, counterGuest(t), now); err != nil {
		t.Fatal(err)
	}
	if won, _, err := dir.Claim("a", storage.Owner{Generation: 2, Host: "h2", Role: "primary"}); err != nil || !won {
		t.Fatalf("claim: %v %v", won, err)
	}
	if err := dir.PutStatus(storage.VMStatus{VM: "a", Host: "h2", Generation: 2, Role: "backup", State: "running", Updated: now}); err != nil {
		t.Fatal(err)
	}
	vms, err := host.VMs(dir, now)
	if err != nil || len(vms) != 1 || vms[0].State != "going live" {
		t.Fatalf("VMs() = %+v, %v; want a going live", vms, err)
	}

	// Before it wrote a status in the new generation at all (a host
	// taking VMs over writes them last): its status as the backup of
	// the generation before says where it stands.
	if won, _, err := dir.Claim("a", storage.Owner{Generation: 3, Host: "h1", Role: "primary"}); err != nil || !won {
		t.Fatalf("claim: %v %v", won, err)
	}
	if err := dir.PutStatus(storage.VMStatus{VM: "a", Host: "h1", Generation: 2, Role: "backup", State: "running", Updated: now}); err != nil {
		t.Fatal(err)
	}
	vms, err = host.VMs(dir, now)
	if err != nil || len(vms) != 1 || vms[0].State != "going live" {
		t.Fatalf("VMs() = %+v, %v; want a going live, its status as the primary not written yet", vms, err)
	}
}

// TestConcurrentStartsOfOneVM: starts of one VM at the same time, each
// with its own listener, some on the same host: exactly one succeeds, and
// the spec stored is the one its claim was made with.
func TestConcurrentStartsOfOneVM(t *testing.T) {
	for round := range 20 {
		dir, now := registeredHosts(t)
		guest := counterGuest(t)
		type result struct {
			spec storage.VMSpec
			err  error
		}
		results := make(chan result, 4)
		for i := range 4 {
			go func() {
				spec := storage.VMSpec{Name: "vm", Args: []string{"ft-counter"}, Listeners: []string{fmt.Sprintf("127.0.0.1:%d", 7100+i)}, Primary: "h1", Backup: "h2"}
				got, _, err := host.StartVM(dir, spec, guest, now.Add(time.Duration(i)))
				results <- result{got, err}
			}()
		}
		var won []storage.VMSpec
		for range 4 {
			if r := <-results; r.err == nil {
				won = append(won, r.spec)
			} else if !strings.Contains(r.err.Error(), "another start") && !errors.Is(r.err, host.ErrRunning) {
				t.Errorf("round %d: %v", round, r.err)
			}
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d starts succeeded, want 1", round, len(won))
		}
		stored, err := dir.VM("vm")
		if err != nil || stored.Listeners[0] != won[0].Listeners[0] {
			t.Fatalf("round %d: stored spec %+v (%v), but the start that won was %+v", round, stored, err, won[0])
		}
	}
}

// specReads is a store that counts the reads of each VM's spec.
type specReads struct {
	*storage.Dir
	mu    sync.Mutex
	reads map[string]int
}

func (s *specReads) VM(name string) (storage.VMSpec, error) {
	s.mu.Lock()
	s.reads[name]++
	s.mu.Unlock()
	return s.Dir.VM(name)
}

// TestStartReadsFewSpecs: in a cluster whose hosts count every VM they
// run, a start reads the spec of no VM but those indexed on its
// listeners' ports (to check for a clash), and still refuses a clash; in
// a store written before the index existed, the first start builds it.
func TestStartReadsFewSpecs(t *testing.T) {
	dir, now := registeredHosts(t)
	guest := counterGuest(t)
	var names []string
	for i := range 50 {
		name := fmt.Sprintf("v%d", i)
		if _, _, err := host.StartVM(dir, storage.VMSpec{Name: name, Listeners: []string{fmt.Sprintf("127.0.0.1:%d", 7000+i)}, Primary: "h1", Backup: "h2"}, guest, now); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	for _, h := range []string{"h1", "h2"} {
		if err := dir.PutHost(storage.HostInfo{Name: h, Addr: "192.0.2.1:7000", PID: os.Getpid(), Started: now, Seen: now, VMs: 50, Counted: now, Runs: names}); err != nil {
			t.Fatal(err)
		}
	}
	s := &specReads{Dir: dir, reads: map[string]int{}}
	if _, _, err := host.StartVM(s, storage.VMSpec{Name: "new", Listeners: []string{"127.0.0.2:7007"}}, guest, now); err != nil {
		t.Fatal(err)
	}
	delete(s.reads, "new")
	if len(s.reads) != 1 || s.reads["v7"] != 1 {
		t.Errorf("a start read the specs %v; want v7's alone (it listens on the same port)", s.reads)
	}
	if _, _, err := host.StartVM(s, storage.VMSpec{Name: "clash", Listeners: []string{"0.0.0.0:7008"}}, guest, now); err == nil || !strings.Contains(err.Error(), "is vm v8's") {
		t.Errorf("start on v8's port: %v; want refused", err)
	}

	// A store from before the index: the first start indexes it whole.
	if err := os.RemoveAll(filepath.Join(dir.Root(), "ports")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := host.StartVM(dir, storage.VMSpec{Name: "clash", Listeners: []string{"127.0.0.1:7009"}}, guest, now); err == nil || !strings.Contains(err.Error(), "is vm v9's") {
		t.Errorf("start on v9's port in an unindexed store: %v; want refused", err)
	}
	if _, _, err := host.StartVM(dir, storage.VMSpec{Name: "clash", Listeners: []string{"127.0.0.1:8000"}}, guest, now); err != nil {
		t.Errorf("start on a free port: %v", err)
	}
	if _, _, err := host.StartVM(dir, storage.VMSpec{Name: "named", Listeners: []string{"127.0.0.1:http"}}, guest, now); err == nil || !strings.Contains(err.Error(), "want a port number") {
		t.Errorf("start on a named port: %v; want refused", err)
	}
}
