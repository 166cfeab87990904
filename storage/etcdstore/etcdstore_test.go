package etcdstore

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"testing"
	"time"

	"ftvm/internal/etcdtest"

	"ftvm/storage"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func open(t *testing.T, endpoint string, cfg Config) *Store {
	t.Helper()
	cfg.Endpoints = []string{endpoint}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestClaimOneWinner: of many hosts claiming a generation at once through
// their own clients, exactly one wins, and every one reads its record; a
// retry of the winner's claim reports the win.
func TestClaimOneWinner(t *testing.T) {
	ep := etcdtest.Start(t)
	const hosts = 8
	stores := make([]*Store, hosts)
	for i := range stores {
		stores[i] = open(t, ep, Config{})
	}
	for gen := uint64(1); gen <= 5; gen++ {
		var wg sync.WaitGroup
		won := make([]bool, hosts)
		cur := make([]storage.Owner, hosts)
		for i := range hosts {
			wg.Go(func() {
				var err error
				won[i], cur[i], err = stores[i].Claim("vm", storage.Owner{Generation: gen, Host: fmt.Sprintf("h%d", i), Role: "primary"})
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		winners := 0
		for i := range hosts {
			if won[i] {
				winners++
				if cur[i].Host != fmt.Sprintf("h%d", i) {
					t.Errorf("h%d won generation %d, but the record names %s", i, gen, cur[i].Host)
				}
			}
			if cur[i].Host != cur[0].Host {
				t.Errorf("generation %d: h%d read %s as the owner, h0 %s", gen, i, cur[i].Host, cur[0].Host)
			}
		}
		if winners != 1 {
			t.Fatalf("generation %d: %d winners", gen, winners)
		}
		if again, _, err := stores[0].Claim("vm", storage.Owner{Generation: gen, Host: cur[0].Host}); err != nil || !again {
			t.Fatalf("the winner's retried claim: won %v, %v", again, err)
		}
	}
	o, ok, err := stores[3].Latest("vm")
	if err != nil || !ok || o.Generation != 5 {
		t.Fatalf("latest: %+v %v %v", o, ok, err)
	}
	if _, _, err := stores[0].Claim("a/b", storage.Owner{Generation: 1, Host: "h"}); err == nil {
		t.Fatal("a claim of a VM named a/b succeeded")
	}
}

// TestLatestOrdersGenerations: generation 10 is newer than 9 (keys are
// zero-padded).
func TestLatestOrdersGenerations(t *testing.T) {
	s := open(t, etcdtest.Start(t), Config{})
	for _, g := range []uint64{9, 10, 2} {
		if _, _, err := s.Claim("vm", storage.Owner{Generation: g, Host: "h"}); err != nil {
			t.Fatal(err)
		}
	}
	if o, _, _ := s.Latest("vm"); o.Generation != 10 {
		t.Fatalf("latest generation %d, want 10", o.Generation)
	}
	if _, ok, err := s.Latest("other"); ok || err != nil {
		t.Fatalf("latest of a VM never claimed: %v %v", ok, err)
	}
	if o, ok, _ := s.Owner("vm", 9); !ok || o.Generation != 9 {
		t.Fatalf("owner of generation 9: %+v %v", o, ok)
	}
}

// TestHostLeaseExpires: a host's registry entry goes when the store that
// kept its lease alive goes (the host died), after the lease's TTL.
func TestHostLeaseExpires(t *testing.T) {
	ep := etcdtest.Start(t)
	reader := open(t, ep, Config{})
	h := open(t, ep, Config{HostTTL: time.Second})
	if err := h.PutHost(storage.HostInfo{Name: "h1", Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if hs, err := reader.Hosts(); err != nil || len(hs) != 1 || hs[0].Name != "h1" {
		t.Fatalf("hosts: %+v %v", hs, err)
	}
	// Refreshing reuses the lease; the entry stays past the TTL.
	time.Sleep(1500 * time.Millisecond)
	if err := h.PutHost(storage.HostInfo{Name: "h1", Addr: "127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	if hs, _ := reader.Hosts(); len(hs) != 1 || hs[0].Addr != "127.0.0.1:2" {
		t.Fatalf("hosts after a refresh: %+v", hs)
	}
	h.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		hs, err := reader.Hosts()
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead host's entry is still registered")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestVMsAndModules: specs and modules round-trip, large modules in
// chunks; a module damaged in etcd is refused.
func TestVMsAndModules(t *testing.T) {
	s := open(t, etcdtest.Start(t), Config{})
	mod := make([]byte, 3*chunkSize+12345)
	for i := range mod {
		mod[i] = byte(i * 7)
	}
	spec := storage.VMSpec{Name: "big", Args: []string{"big"}, Listeners: []string{"127.0.0.1:7000"}}
	if err := s.PutVM(spec, mod); err != nil {
		t.Fatal(err)
	}
	if err := s.PutVM(storage.VMSpec{Name: "small"}, []byte("\x00asm")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Module("big")
	if err != nil || !bytes.Equal(got, mod) {
		t.Fatalf("module: %d bytes, %v", len(got), err)
	}
	if names, err := s.VMs(); err != nil || fmt.Sprint(names) != "[big small]" {
		t.Fatalf("vms: %v %v", names, err)
	}
	if sp, err := s.VM("big"); err != nil || sp.Listeners[0] != "127.0.0.1:7000" {
		t.Fatalf("spec: %+v %v", sp, err)
	}
	if _, err := s.VM("none"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("spec of no VM: %v", err)
	}
	// A spec update without a module keeps the module.
	spec.Stopped = true
	if err := s.PutVM(spec, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Module("big"); err != nil || len(got) != len(mod) {
		t.Fatalf("module after a spec update: %d bytes, %v", len(got), err)
	}
	if err := s.putRaw("damage", s.key("vms", "big", "module", "000001"), []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Module("big"); err == nil {
		t.Fatal("a damaged module was returned")
	}
}

// TestStatusesEventsAndKey: statuses by host, events oldest first and
// trimmed to the newest, one cluster key for every client.
func TestStatusesEventsAndKey(t *testing.T) {
	ep := etcdtest.Start(t)
	s := open(t, ep, Config{EventsMax: 20})
	for _, h := range []string{"h2", "h1"} {
		if err := s.PutStatus(storage.VMStatus{VM: "vm", Host: h, State: "running"}); err != nil {
			t.Fatal(err)
		}
	}
	if sts, err := s.Statuses("vm"); err != nil || len(sts) != 2 || sts[0].Host != "h1" {
		t.Fatalf("statuses: %+v %v", sts, err)
	}
	stamp0, _ := s.EventsStamp()
	t0 := time.Now()
	for i := range 40 {
		if err := s.AppendEvent(storage.Event{Time: t0.Add(time.Duration(i) * time.Millisecond), Host: "h1", Kind: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var batch []storage.Event
	for i := 40; i < 50; i++ {
		batch = append(batch, storage.Event{Time: t0.Add(time.Duration(i) * time.Millisecond), Host: "h1", Kind: fmt.Sprint(i)})
	}
	if err := s.AppendEvents(batch); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events()
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) > 20+20/8 || evs[len(evs)-1].Kind != "49" {
		t.Fatalf("%d events kept, the last %q", len(evs), evs[len(evs)-1].Kind)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Time.Before(evs[i-1].Time) {
			t.Fatal("events out of order")
		}
	}
	if stamp1, _ := s.EventsStamp(); stamp1 == stamp0 {
		t.Fatal("the events' stamp did not change")
	}
	k1, err := s.ClusterKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := open(t, ep, Config{}).ClusterKey()
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("two clients read different cluster keys: %v", err)
	}
	if bad, err := s.Unreadable(); err != nil || len(bad) != 0 {
		t.Fatalf("unreadable: %v %v", bad, err)
	}
}

// TestUnreachable: the failpoint makes every operation fail as
// unreachable; so does an etcd that is gone, within the request timeout.
func TestUnreachable(t *testing.T) {
	s := open(t, etcdtest.Start(t), Config{RequestTimeout: 500 * time.Millisecond})
	down := true
	s.SetReachable(func() bool { return !down })
	if _, _, err := s.Claim("vm", storage.Owner{Generation: 1, Host: "h"}); !errors.Is(err, storage.ErrUnreachable) {
		t.Fatalf("claim while unreachable: %v", err)
	}
	down = false
	if won, _, err := s.Claim("vm", storage.Owner{Generation: 1, Host: "h"}); err != nil || !won {
		t.Fatalf("claim: %v %v", won, err)
	}
	gone := open(t, etcdtest.FreeURL(t).Host, Config{RequestTimeout: 300 * time.Millisecond, DialTimeout: 300 * time.Millisecond})
	if _, err := gone.Hosts(); !errors.Is(err, storage.ErrUnreachable) {
		t.Fatalf("hosts from no etcd: %v", err)
	}
}

// TestVMsOnPort: the index names every VM that has or had a listener on a
// port, and a cluster written before the index gets it at its first use.
func TestVMsOnPort(t *testing.T) {
	s := open(t, etcdtest.Start(t), Config{})
	for _, spec := range []storage.VMSpec{
		{Name: "a", Listeners: []string{"127.0.0.1:7000", "0.0.0.0:7001"}},
		{Name: "b", Listeners: []string{"[::1]:7000"}},
		{Name: "c"},
	} {
		if err := s.PutVM(spec, []byte("\x00asm")); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		t.Helper()
		for port, want := range map[int]string{7000: "[a b]", 7001: "[a]", 7002: "[]"} {
			if got, err := s.VMsOnPort(port); err != nil || fmt.Sprint(got) != want {
				t.Errorf("%s: VMsOnPort(%d) = %v, %v; want %s", when, port, got, err, want)
			}
		}
	}
	check("indexed")
	ctx, cancel := s.ctx()
	defer cancel()
	if _, err := s.cli.Delete(ctx, s.key("ports"), clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	check("after the index was removed")
}
