package host_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"ftvm/host"
	"ftvm/storage"
)

// applyPlan makes the plan's moves on vms, checking that each is one a
// host could make then: a backup moved to a host other than the VM's
// two, a switchover to the VM's backup.
func applyPlan(t *testing.T, vms []host.VMState, plan []host.Rebalancing) {
	t.Helper()
	stage := 0
	for _, m := range plan {
		if m.Stage < stage {
			t.Fatalf("%v: stage %d after stage %d", m, m.Stage, stage)
		}
		stage = m.Stage
		i := slices.IndexFunc(vms, func(v host.VMState) bool { return v.Name == m.VM })
		if i < 0 {
			t.Fatalf("%v: no such vm", m)
		}
		v := &vms[i]
		switch {
		case m.Primary && (v.Primary != m.From || v.Backup != m.To):
			t.Fatalf("%v: a switchover of a vm with primary %s, backup %s", m, v.Primary, v.Backup)
		case m.Primary:
			v.Primary, v.Backup = v.Backup, v.Primary
		case v.Backup != m.From || m.To == v.Primary || m.To == v.Backup:
			t.Fatalf("%v: a backup move of a vm with primary %s, backup %s", m, v.Primary, v.Backup)
		default:
			v.Backup = m.To
		}
	}
}

func replicaCounts(vms []host.VMState) (replicas, primaries map[string]int) {
	replicas, primaries = map[string]int{}, map[string]int{}
	for _, v := range vms {
		replicas[v.Primary]++
		replicas[v.Backup]++
		primaries[v.Primary]++
	}
	return replicas, primaries
}

func spread(count map[string]int, hosts []string) int {
	lo, hi := count[hosts[0]], count[hosts[0]]
	for _, h := range hosts {
		lo, hi = min(lo, count[h]), max(hi, count[h])
	}
	return hi - lo
}

// TestPlanRebalance: after failures and new hosts, the plan leaves the
// replicas and the primaries within one of each other across the live
// hosts, with moves a host can make, and leaves dead, draining hosts and
// VMs that do not run alone.
func TestPlanRebalance(t *testing.T) {
	live := func(names ...string) []host.HostState {
		var hs []host.HostState
		for _, n := range names {
			hs = append(hs, host.HostState{HostInfo: storage.HostInfo{Name: n}, Alive: true})
		}
		return hs
	}
	pairs := func(n int, primary, backup string) []host.VMState {
		var vms []host.VMState
		for i := range n {
			vms = append(vms, host.VMState{Name: fmt.Sprintf("%s-%s-%d", primary, backup, i), Primary: primary, Backup: backup, State: "running"})
		}
		return vms
	}
	for _, c := range []struct {
		name  string
		hosts []string
		vms   []host.VMState
		// primarySpread is how far apart the primaries may stay: a
		// switchover moves a primary only to its own backup's host, so
		// where none of the busiest host's VMs has its backup on the
		// idlest, two apart is as close as switchovers get.
		primarySpread int
	}{
		{"a new host beside a pair whose primaries are all on one", []string{"a", "b", "c"}, pairs(6, "a", "b"), 1},
		{"after two failures", []string{"a", "b", "c"}, append(pairs(196, "a", "b"), append(pairs(4, "b", "a"), pairs(1, "a", "c")...)...), 1},
		{"two pairs, one backwards", []string{"a", "b"}, append(pairs(10, "a", "b"), pairs(2, "b", "a")...), 1},
		{"balanced already", []string{"a", "b", "c"}, append(pairs(2, "a", "b"), append(pairs(2, "b", "c"), pairs(2, "c", "a")...)...), 1},
		{"five hosts, two empty", []string{"a", "b", "c", "d", "e"}, append(pairs(40, "a", "b"), pairs(20, "c", "a")...), 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			hosts := live(c.hosts...)
			hosts = append(hosts, host.HostState{HostInfo: storage.HostInfo{Name: "dead"}}, host.HostState{HostInfo: storage.HostInfo{Name: "drained", Draining: true}, Alive: true})
			vms := append(slices.Clone(c.vms),
				host.VMState{Name: "alone", Primary: "a", State: "running alone"},
				host.VMState{Name: "on-dead", Primary: "dead", Backup: "a", State: "running"},
				host.VMState{Name: "ended", Primary: "a", Backup: "b", State: "exited"})
			plan := host.PlanRebalance(vms, hosts)
			for _, m := range plan {
				if slices.Contains([]string{"alone", "on-dead", "ended"}, m.VM) || m.To == "dead" || m.To == "drained" {
					t.Fatalf("%v: moves what it must leave", m)
				}
			}
			applyPlan(t, c.vms, plan)
			replicas, primaries := replicaCounts(c.vms)
			if s := spread(replicas, c.hosts); s > 1 {
				t.Errorf("replicas spread by %d after %d moves: %v", s, len(plan), replicas)
			}
			if s := spread(primaries, c.hosts); s > c.primarySpread {
				t.Errorf("primaries spread by %d after %d moves: %v", s, len(plan), primaries)
			}
			if c.name == "balanced already" && len(plan) > 0 {
				t.Errorf("%d moves for a balanced cluster: %v", len(plan), plan)
			}
			t.Logf("%d moves: replicas %v, primaries %v", len(plan), replicas, primaries)
		})
	}
}

// TestRebalance: a pair's six VMs, every primary on h1, and a third host
// that joined empty: ftvm rebalance's moves leave each host with four
// replicas and two primaries, every VM protected and its counter intact.
func TestRebalance(t *testing.T) {
	c := newCluster(t)
	for _, h := range []string{"h1", "h2", "h3"} {
		c.startHost(h)
	}
	var names []string
	addrs := freeAddrs(t, 6)
	for i := range 6 {
		name := fmt.Sprintf("c%d", i)
		names = append(names, name)
		c.startVM(name, counterGuest(t), storage.VMSpec{Primary: "h1", Backup: "h2", Listeners: []string{addrs[i]}})
	}
	waitProtected(t, c, names, time.Minute)
	for i := range names {
		cc := &counterClient{lineClient{addr: addrs[i]}}
		for range i + 1 {
			if _, err := cc.do("inc", 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		cc.close()
	}
	var steps []string
	plan, failed, err := host.Rebalance(t.Context(), c.store, false, 3, func(p host.MoveProgress) {
		if p.Step != "" {
			steps = append(steps, p.Step)
		}
	})
	if err != nil || failed > 0 {
		t.Fatalf("rebalance: %d of %d moves failed, %v\n%v", failed, len(plan), err, steps)
	}
	waitProtected(t, c, names, time.Minute)
	vms, err := host.VMs(c.store, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	replicas, primaries := replicaCounts(vms)
	for _, h := range []string{"h1", "h2", "h3"} {
		if replicas[h] != 4 || primaries[h] != 2 {
			t.Errorf("after %d moves: replicas %v, primaries %v; want 4 and 2 on each", len(plan), replicas, primaries)
			break
		}
	}
	for i := range names {
		if got := get(t, addrs[i], 30*time.Second); got != uint64(i+1) {
			t.Errorf("%s: counter %d after the moves, want %d", names[i], got, i+1)
		}
	}
	if again := host.PlanRebalance(vms, mustHosts(t, c)); len(again) > 0 {
		t.Errorf("balanced, the plan still moves: %v", again)
	}
}

func mustHosts(t *testing.T, c *cluster) []host.HostState {
	hs, err := host.Hosts(c.store, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return hs
}
