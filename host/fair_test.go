package host_test

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"ftvm/host"
	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// TestBusyVMsShareFairly: many VMs that compute without end (ft-spin) on
// one pair of hosts, far more than its CPUs. Once all are paired and
// their backups caught up, for 10 s, each gets a share of the CPU (the one that got least did at least a
// fifth of what the one that got most did), and none fails over: a busy
// VM starves neither another's logging channel nor the heartbeats. (All
// started at once, some may fail over before their backups first spoke:
// a host compiling twenty modules while its CPUs are busy can take more
// than the start timeout, 5 s, to start a backup; the primary then wins
// and clones.) FTVM_BUSY_VMS sets how many (20 by default;
// BenchmarkBusyThroughput runs 100), FTVM_HOST_ARGS adds flags to the
// hosts (to try, say, --replay-nice 0).
func TestBusyVMsShareFairly(t *testing.T) {
	if testing.Short() {
		t.Skip("many busy VMs")
	}
	n := 20
	if s := os.Getenv("FTVM_BUSY_VMS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	guest := guesttest.Build(t, "ft-spin")
	c := newCluster(t, strings.Fields(os.Getenv("FTVM_HOST_ARGS"))...)
	c.startHost("h1")
	c.startHost("h2")
	// All started at once, then all waited for: each one started while
	// the others already compute would wait for a share of the CPU.
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("spin%03d", i)
		spec := storage.VMSpec{Name: names[i], Args: []string{"ft-spin"}, Primary: "h1", Backup: "h2"}
		if _, _, err := host.StartVM(c.store, spec, guest, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	c.waitFor(time.Duration(n)*2*time.Second+30*time.Second, "every busy vm paired", func() bool {
		for _, vm := range names {
			if !c.status(vm, "h1").Connected {
				return false
			}
		}
		return true
	})
	pos := func() []uint64 {
		out := make([]uint64, n)
		for i, vm := range names {
			out[i] = c.status(vm, "h1").Pos
		}
		return out
	}
	// And protected, after the failovers of the start if any, and caught
	// up: a backup that connected after its primary ran for seconds
	// replays them first, and its primary waits meanwhile (the lag bound),
	// as it should.
	waitProtected(t, c, names, time.Duration(n)*2*time.Second+30*time.Second)
	// Caught up means trailing by about a round of the host's turns, which
	// grows with the VMs that share its processors: a second for 20.
	caughtUp := float64(max(1000, 50*n))
	c.waitFor(time.Duration(n)*2*time.Second+30*time.Second, "every backup caught up", func() bool {
		for _, vm := range names {
			if st := c.status(vm, "h1"); st.LagMillis > caughtUp {
				return false
			}
		}
		return true
	})
	time.Sleep(2 * time.Second)
	gens := map[string]uint64{}
	for _, vm := range names {
		gens[vm] = c.owner(vm).Generation
	}
	before := pos()
	time.Sleep(10 * time.Second)
	after := pos()
	var ran []uint64
	for i := range names {
		ran = append(ran, after[i]-before[i])
		if o := c.owner(names[i]); o.Generation != gens[names[i]] {
			t.Errorf("%s failed over while busy: %+v", names[i], o)
		}
	}
	least, most := slices.Min(ran), slices.Max(ran)
	t.Logf("instructions run in 10 s per VM: least %d, most %d", least, most)
	if most == 0 || least*5 < most {
		t.Errorf("unfair shares: least %d, most %d instructions (%v)", least, most, ran)
	}
}
