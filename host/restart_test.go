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
