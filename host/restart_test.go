package host

import (
	"testing"
	"time"

	"ftvm/storage"
)

// TestLostCountsOnlyRunningReplicas: a VM is lost when no host of its
// generation holds it. A host alive since before the generation began
// holds it (it may not have reported yet), except the backup a clone's
// record names, which holds it only once it reported running in that
// generation: a clone can fail after its claim.
func TestLostCountsOnlyRunningReplicas(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0).UTC()
	alive := func(name string, started time.Time) HostState {
		return HostState{HostInfo: storage.HostInfo{Name: name, Started: started}, Alive: true}
	}
	dead := func(name string) HostState { return HostState{HostInfo: storage.HostInfo{Name: name, Started: t0}} }
	running := func(host string, gen uint64, at time.Time) storage.VMStatus {
		return storage.VMStatus{Host: host, Generation: gen, State: "running", Updated: at}
	}
	start := storage.Owner{Generation: 1, Host: "a", Backup: "b", Reason: reasonStart, Time: t0.Add(time.Second)}
	clone := storage.Owner{Generation: 3, Host: "a", Backup: "c", Reason: reasonClone, Time: t0.Add(time.Minute)}
	for _, c := range []struct {
		name  string
		owner storage.Owner
		hosts []HostState
		sts   []storage.VMStatus
		lost  bool
	}{
		{"both alive", start, []HostState{alive("a", t0), alive("b", t0)}, nil, false},
		{"backup alive, not reported yet", start, []HostState{dead("a"), alive("b", t0)}, nil, false},
		{"both dead", start, []HostState{dead("a"), dead("b")}, nil, true},
		{"backup restarted since, not running it", start, []HostState{dead("a"), alive("b", t0.Add(time.Hour))}, nil, true},
		{"backup restarted since, running it", start, []HostState{dead("a"), alive("b", t0.Add(time.Hour))},
			[]storage.VMStatus{running("b", 1, t0.Add(2*time.Hour))}, false},
		{"clone's backup never joined", clone, []HostState{dead("a"), alive("c", t0)}, nil, true},
		{"clone's backup ran an older generation", clone, []HostState{dead("a"), alive("c", t0)},
			[]storage.VMStatus{running("c", 2, t0.Add(2*time.Minute))}, true},
		{"clone's backup joined", clone, []HostState{dead("a"), alive("c", t0)},
			[]storage.VMStatus{running("c", 3, t0.Add(2*time.Minute))}, false},
		{"clone's primary alive", clone, []HostState{alive("a", t0), alive("c", t0)}, nil, false},
	} {
		if got := lost(c.owner, c.hosts, c.sts); got != c.lost {
			t.Errorf("%s: lost %v, want %v", c.name, got, c.lost)
		}
	}
}

// TestRestartWaitsForQuietHosts: a host named by a restart's claim starts
// the VM only once every host that owned one of its generations since the
// last that was not a restart is quiet: stale for longer than its lease,
// seen since the claim not running the VM, or already in the restart's
// generation. Backups do not count: they emit nothing unless they win a
// claim, and the restart took the generation.
func TestRestartWaitsForQuietHosts(t *testing.T) {
	now := time.Now().UTC()
	claimAt := now.Add(-2 * time.Second)
	fresh := func(name string, runs ...string) HostState {
		return HostState{HostInfo: storage.HostInfo{Name: name, Seen: now.Add(-100 * time.Millisecond), Runs: runs}, Alive: true}
	}
	staleFor := func(name string, d time.Duration) HostState {
		return HostState{HostInfo: storage.HostInfo{Name: name, Seen: now.Add(-d), Runs: []string{"vm"}}}
	}
	owners := []storage.Owner{
		{Generation: 1, Host: "a", Backup: "b", Reason: reasonStart},
		{Generation: 2, Host: "c", Reason: reasonRestart}, // never ran: c was stalled too
		{Generation: 3, Host: "me", Backup: "d", Reason: reasonRestart, Time: claimAt},
	}
	for _, c := range []struct {
		name  string
		hosts []HostState
		sts   []storage.VMStatus
		quiet bool
		wait  string
		// bQuiet is when b was first seen not running the VM since
		// the claim, if before the look.
		bQuiet time.Time
	}{
		{"both owners and the backer long stale", []HostState{staleFor("a", 10*time.Second), staleFor("b", 10*time.Second), staleFor("c", 10*time.Second)}, nil, true, "", time.Time{}},
		{"the backer fresh, running it: it may vouch for its owner", []HostState{staleFor("a", 10*time.Second), fresh("b", "vm"), staleFor("c", 10*time.Second)}, nil, false, "b", time.Time{}},
		{"the backer stopped running it just now", []HostState{staleFor("a", 10*time.Second), fresh("b", "other"), staleFor("c", 10*time.Second)}, nil, false, "b", time.Time{}},
		{"the backer stopped running it a lease ago", []HostState{staleFor("a", 10*time.Second), fresh("b", "other"), staleFor("c", 10*time.Second)}, nil, true, "", now.Add(-leaseTerm - leaseSkew - time.Second)},
		{"the backer in the new generation a lease ago", []HostState{staleFor("a", 10*time.Second), fresh("b", "vm"), staleFor("c", 10*time.Second)},
			[]storage.VMStatus{{VM: "vm", Host: "b", Generation: 3, State: "running"}}, true, "", now.Add(-leaseTerm - leaseSkew - time.Second)},
		{"stale, but its lease may last", []HostState{staleFor("a", leaseTerm+leaseSkew/2), staleFor("c", 10*time.Second)}, nil, false, "a", time.Time{}},
		{"back, still running it", []HostState{fresh("a", "vm"), staleFor("c", 10*time.Second)}, nil, false, "a", time.Time{}},
		{"back, halted it", []HostState{fresh("a", "other"), staleFor("c", 10*time.Second)}, nil, true, "", time.Time{}},
		{"the restart's earlier host back, running it", []HostState{staleFor("a", 10*time.Second), fresh("c", "vm")}, nil, false, "c", time.Time{}},
		{"the earlier host in the new generation", []HostState{staleFor("a", 10*time.Second), fresh("c", "vm")},
			[]storage.VMStatus{{VM: "vm", Host: "c", Generation: 3, State: "running"}}, true, "", time.Time{}},
		{"never registered", []HostState{staleFor("c", 10*time.Second)}, nil, true, "", time.Time{}},
	} {
		dir, err := storage.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range owners {
			if won, _, err := dir.Claim("vm", o); err != nil || !won {
				t.Fatalf("claim %+v: %v %v", o, won, err)
			}
		}
		for _, st := range c.sts {
			if err := dir.PutStatus(st); err != nil {
				t.Fatal(err)
			}
		}
		h := &Host{cfg: Config{Name: "me"}, dir: dir, hosts: c.hosts, quiet: map[string]time.Time{}}
		if !c.bQuiet.IsZero() {
			h.quiet["vm\x00b"] = c.bQuiet
		}
		latest, _, _ := dir.Latest("vm")
		latest.Time = claimAt
		quiet, wait := h.restartQuiet("vm", latest, now)
		if quiet != c.quiet || wait != c.wait {
			t.Errorf("%s: quiet %v waiting for %q, want %v, %q", c.name, quiet, wait, c.quiet, c.wait)
		}
	}
}

// TestOwnerBeatsKeepAVMFromARestart: heartbeats from the owner's host,
// from the process that held the generation, say it is alive whatever
// the registry says; those of a process started since (it lost what it
// ran), or heard too long ago, do not.
func TestOwnerBeatsKeepAVMFromARestart(t *testing.T) {
	now := time.Now()
	owner := storage.Owner{Generation: 4, Host: "a", Time: now.Add(-time.Minute)}
	h := &Host{}
	if h.ownerBeats(owner, now) {
		t.Fatal("beats from a host never heard")
	}
	for _, c := range []struct {
		name  string
		seen  beatSeen
		alive bool
	}{
		{"heard lately, same process", beatSeen{at: now.Add(-100 * time.Millisecond), epoch: uint64(now.Add(-time.Hour).UnixNano())}, true},
		{"heard lately, a process started since", beatSeen{at: now.Add(-100 * time.Millisecond), epoch: uint64(now.Add(-time.Second).UnixNano())}, false},
		{"heard long ago", beatSeen{at: now.Add(-2 * AliveWindow), epoch: uint64(now.Add(-time.Hour).UnixNano())}, false},
	} {
		h.beatFrom.Store("a", c.seen)
		if got := h.ownerBeats(owner, now); got != c.alive {
			t.Errorf("%s: ownerBeats %v, want %v", c.name, got, c.alive)
		}
	}
	h.beatFrom.Store("b", beatSeen{at: now, epoch: 1})
	h.beatFrom.Delete("a")
	if h.ownerBeats(owner, now) {
		t.Error("another host's beats counted for the owner's")
	}
}
