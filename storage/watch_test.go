package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// watch starts a WatchVMs that ends with the test: the test waits for
// its end, so that the next test counts no descriptor of it.
func watch(t *testing.T, w Watcher) <-chan []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := w.WatchVMs(ctx)
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

// waitFor reads batches until one names vm; a nil batch fails the test,
// the changes of these tests being too few to overflow anything.
func waitFor(t *testing.T, ch <-chan []string, vm string) {
	t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		select {
		case b, ok := <-ch:
			if !ok {
				t.Fatalf("the watch ended before reporting %s", vm)
			}
			if b == nil {
				t.Fatalf("a nil batch (changes missed) while waiting for %s", vm)
			}
			if slices.Contains(b, vm) {
				return
			}
		case <-deadline:
			t.Fatalf("%s was not reported", vm)
		}
	}
}

// quiet fails the test if a batch comes within d.
func quiet(t *testing.T, ch <-chan []string, d time.Duration, what string) {
	t.Helper()
	select {
	case b := <-ch:
		t.Fatalf("%s reported %v", what, b)
	case <-time.After(d):
	}
}

// drain reads the batches that come within d.
func drain(ch <-chan []string, d time.Duration) {
	for {
		select {
		case <-ch:
		case <-time.After(d):
			return
		}
	}
}

// TestWatchVMsNewAndRemoved: a watch begun on a storage with no vms
// directory yet (and while the failpoint says unreachable) reports a VM
// created afterwards, a spec rewritten, and a VM removed.
func TestWatchVMsNewAndRemoved(t *testing.T) {
	d, err := OpenExisting(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	down := true
	d.SetReachable(func() bool { return !down })
	ch := watch(t, d)
	down = false
	if err := d.PutVM(VMSpec{Name: "a"}, []byte("\x00asm")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, "a")
	drain(ch, 50*time.Millisecond)
	if err := d.PutVM(VMSpec{Name: "a", Stopped: true}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, "a")
	drain(ch, 50*time.Millisecond)
	if err := os.RemoveAll(d.vmDir("a")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, "a")
}

// TestWatchVMsClaims: claims are reported, of a VM that existed before the
// watch (its owners directory watched from the start) and of one that did
// not (its directories watched as they appear), later generations too.
func TestWatchVMsClaims(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.PutVM(VMSpec{Name: "old"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Claim("old", Owner{Generation: 1, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	ch := watch(t, d)
	if _, _, err := d.Claim("old", Owner{Generation: 2, Host: "h2"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, "old")
	// A VM claimed as it is created, its directories made at once.
	if _, _, err := d.Claim("new", Owner{Generation: 1, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, "new")
	drain(ch, 50*time.Millisecond)
	if _, _, err := d.Claim("new", Owner{Generation: 2, Host: "h2"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, "new")
	// A VM created with no owners directory, which its first claim
	// makes: the watch must add it then.
	if err := d.PutVM(VMSpec{Name: "later"}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, "later")
	drain(ch, 50*time.Millisecond)
	for gen := uint64(1); gen <= 2; gen++ {
		if _, _, err := d.Claim("later", Owner{Generation: gen, Host: "h1"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ch, "later")
		drain(ch, 50*time.Millisecond)
	}
}

// TestWatchVMsIgnoresStatuses: statuses, the registry, events and the
// temporary files of a lost claim report nothing.
func TestWatchVMsIgnoresStatuses(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.PutVM(VMSpec{Name: "vm"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Claim("vm", Owner{Generation: 1, Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	ch := watch(t, d)
	sts := []VMStatus{{VM: "vm", Host: "h1", State: "running"}, {VM: "vm", Host: "h2", State: "running"}}
	for range 5 {
		if err := d.PutStatuses(sts); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.PutHost(HostInfo{Name: "h1", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if err := d.AppendEvent(Event{Host: "h1", Kind: "test"}); err != nil {
		t.Fatal(err)
	}
	// A temporary file of a claim left behind by a host that died.
	if err := os.WriteFile(filepath.Join(d.vmDir("vm"), "owners", genName(3)+".h1.1.tmp"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	quiet(t, ch, 200*time.Millisecond, "statuses, hosts and events")
}

// TestWatchVMsSlowConsumer: VMs created while the consumer does not read
// are all reported, in few batches, each naming a VM once.
func TestWatchVMsSlowConsumer(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ch := watch(t, d)
	const n = 50
	for i := range n {
		if err := d.PutVM(VMSpec{Name: fmt.Sprintf("vm%02d", i)}, nil); err != nil {
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
				seen[vm] = true
				got[vm] = true
			}
		case <-deadline:
			t.Fatalf("%d of %d VMs reported", len(got), n)
		}
	}
	// The consumer slept until the VMs were written: one batch, or a few
	// if the notifications came late.
	if batches > 5 {
		t.Fatalf("%d batches for VMs created while the consumer slept", batches)
	}
}

// TestWatchVMsCancel: ending the context closes the channel, and the
// notifications' file descriptor.
func TestWatchVMsCancel(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	before := inotifyFDs(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := d.WatchVMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" && inotifyFDs(t) != before+1 {
		t.Fatalf("%d inotify descriptors while watching, %d before", inotifyFDs(t), before)
	}
	if err := d.PutVM(VMSpec{Name: "vm"}, nil); err != nil {
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
	if after := inotifyFDs(t); after != before {
		t.Fatalf("%d inotify descriptors after the watch ended, %d before", after, before)
	}
}

// inotifyFDs counts the process's inotify descriptors (0 but on Linux).
func inotifyFDs(t *testing.T) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		return 0
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.Contains(l, "inotify") {
			n++
		}
	}
	return n
}

// TestPutStatuses: 300 statuses written at once read back; an invalid one
// fails without keeping the others from being written.
func TestPutStatuses(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var sts []VMStatus
	for i := range 100 {
		for _, h := range []string{"h3", "h1", "h2"} {
			sts = append(sts, VMStatus{VM: fmt.Sprintf("vm%03d", i), Host: h, Seq: uint64(i), State: "running"})
		}
	}
	bad := append(slices.Clone(sts[:150]), VMStatus{VM: "a/b", Host: "h1"})
	bad = append(bad, sts[150:]...)
	if err := d.PutStatuses(bad); err == nil {
		t.Fatal("a status of a VM named a/b was written")
	}
	for i := range 100 {
		vm := fmt.Sprintf("vm%03d", i)
		got, err := d.Statuses(vm)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got[0].Host != "h1" || got[2].Host != "h3" || got[1].Seq != uint64(i) {
			t.Fatalf("statuses of %s: %+v", vm, got)
		}
	}
}
