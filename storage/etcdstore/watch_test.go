package etcdstore

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"ftvm/internal/etcdtest"
	"ftvm/storage"
)

// watch starts a WatchVMs that ends with the test.
func watch(t *testing.T, s *Store) <-chan []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := s.WatchVMs(ctx)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		for range ch {
		}
	})
	return ch
}

// waitFor reads batches until one names vm (nil, when nilOK, until a nil
// batch); any other nil batch fails the test, the changes of these tests
// being too few to lose any.
func waitFor(t *testing.T, ch <-chan []string, vm string, nilOK bool) {
	t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		select {
		case b, ok := <-ch:
			if !ok {
				t.Fatalf("the watch ended before reporting %q", vm)
			}
			if b == nil && nilOK {
				return
			}
			if b == nil {
				t.Fatalf("a nil batch (changes missed) while waiting for %q", vm)
			}
			if slices.Contains(b, vm) {
				return
			}
		case <-deadline:
			t.Fatalf("%q was not reported", vm)
		}
	}
}

// TestWatchVMsSpecsAndClaims: a watch begun on an empty etcd reports a VM
// stored afterwards, a claim of it, and a claim of a VM with no spec;
// the failpoint does not stop it.
func TestWatchVMsSpecsAndClaims(t *testing.T) {
	ep := etcdtest.Start(t)
	s := open(t, ep, Config{})
	down := true
	s.SetReachable(func() bool { return !down })
	ch := watch(t, s)
	down = false
	// Written through another client, as another host would.
	other := open(t, ep, Config{})
	if err := other.PutVM(storage.VMSpec{Name: "a"}, []byte("\x00asm")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, "a", false)
	if _, _, err := other.Claim("a", storage.Owner{Generation: 1, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, "a", false)
	if _, _, err := other.Claim("b", storage.Owner{Generation: 1, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, "b", false)
}

// TestWatchVMsIgnoresStatuses: statuses, the registry and events report
// nothing.
func TestWatchVMsIgnoresStatuses(t *testing.T) {
	s := open(t, etcdtest.Start(t), Config{})
	if err := s.PutVM(storage.VMSpec{Name: "vm"}, []byte("\x00asm")); err != nil {
		t.Fatal(err)
	}
	ch := watch(t, s)
	if err := s.PutStatus(storage.VMStatus{VM: "vm", Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutStatuses([]storage.VMStatus{{VM: "vm", Host: "h1"}, {VM: "vm", Host: "h2"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutHost(storage.HostInfo{Name: "h1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvent(storage.Event{Host: "h1", Kind: "test"}); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-ch:
		t.Fatalf("statuses, hosts and events reported %v", b)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestWatchVMsSlowConsumer: VMs stored while the consumer does not read
// are all reported, in few batches, each naming a VM once.
func TestWatchVMsSlowConsumer(t *testing.T) {
	s := open(t, etcdtest.Start(t), Config{})
	ch := watch(t, s)
	const n = 50
	for i := range n {
		if err := s.PutVM(storage.VMSpec{Name: fmt.Sprintf("vm%02d", i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	got := make(map[string]bool)
	batches := 0
	deadline := time.After(3 * time.Second)
	for len(got) < n {
		select {
		case b := <-ch:
			if b == nil {
				t.Fatal("a nil batch: changes were missed")
			}
			batches++
			seen := make(map[string]bool)
			for _, vm := range b {
				if seen[vm] {
					t.Fatalf("%s twice in a batch", vm)
				}
				seen[vm], got[vm] = true, true
			}
		case <-deadline:
			t.Fatalf("%d of %d VMs reported", len(got), n)
		}
	}
	if batches > 5 {
		t.Fatalf("%d batches for VMs stored while the consumer slept", batches)
	}
}

// TestWatchVMsCancel: ending the context closes the channel.
func TestWatchVMsCancel(t *testing.T) {
	s := open(t, etcdtest.Start(t), Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := s.WatchVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutVM(storage.VMSpec{Name: "vm"}, nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.After(2 * time.Second)
	for closed := false; !closed; {
		select {
		case _, ok := <-ch:
			closed = !ok
		case <-deadline:
			t.Fatal("the channel is still open after the context ended")
		}
	}
}

// TestWatchVMsRestart: a watch whose stream closes under it (as its
// client's watcher does when it is torn down) reports a nil batch, and
// watches again.
func TestWatchVMsRestart(t *testing.T) {
	s := open(t, etcdtest.Start(t), Config{})
	ch := watch(t, s)
	old := s.cli.Watcher
	s.cli.Watcher = clientv3.NewWatcher(s.cli)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, "", true)
	if err := s.PutVM(storage.VMSpec{Name: "after"}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, "after", false)
}

// TestPutStatuses: 300 statuses (one repeated) written at once read back,
// in three transactions (three revisions); an invalid one fails without
// keeping the others from being written.
func TestPutStatuses(t *testing.T) {
	s := open(t, etcdtest.Start(t), Config{})
	var sts []storage.VMStatus
	for i := range 100 {
		for _, h := range []string{"h3", "h1", "h2"} {
			sts = append(sts, storage.VMStatus{VM: fmt.Sprintf("vm%03d", i), Host: h, Seq: uint64(i)})
		}
	}
	// A repeat in the first transaction: the later one stays.
	sts = slices.Insert(sts, 10, storage.VMStatus{VM: "vm000", Host: "h1", Seq: 1000})
	sts = append(sts, storage.VMStatus{VM: "a/b", Host: "h1"})
	rev0, err := s.revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutStatuses(sts); err == nil {
		t.Fatal("a status of a VM named a/b was written")
	}
	rev1, err := s.revision(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rev1-rev0 != 3 {
		t.Fatalf("300 statuses written in %d revisions, want 3 transactions", rev1-rev0)
	}
	for i := range 100 {
		vm := fmt.Sprintf("vm%03d", i)
		got, err := s.Statuses(vm)
		if err != nil {
			t.Fatal(err)
		}
		seq := uint64(i)
		if i == 0 {
			seq = 1000
		}
		if len(got) != 3 || got[0].Host != "h1" || got[2].Host != "h3" || got[0].Seq != seq || got[1].Seq != uint64(i) {
			t.Fatalf("statuses of %s: %+v", vm, got)
		}
	}
}
