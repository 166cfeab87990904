package host_test

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// TestBusyVMsShareFairly: many VMs that compute without end (ft-spin) on
// one pair of hosts, far more than its CPUs. Each gets a share of the CPU
// (the one that got least did at least a fifth of what the one that got
// most did), and none fails over: a busy VM starves neither another's
// logging channel nor the heartbeats. FTVM_BUSY_VMS sets how many (20 by
// default; BENCHMARKS.md has 100).
func TestBusyVMsShareFairly(t *testing.T) {
	if testing.Short() {
		t.Skip("many busy VMs")
	}
	n := 20
	if s := os.Getenv("FTVM_BUSY_VMS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	guest := guesttest.Build(t, "ft-spin")
	c := newCluster(t)
	c.startHost("h1")
	c.startHost("h2")
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("spin%03d", i)
		c.startVM(names[i], guest, storage.VMSpec{Primary: "h1", Backup: "h2"})
	}
	pos := func() []uint64 {
		out := make([]uint64, n)
		for i, vm := range names {
			out[i] = c.status(vm, "h1").Pos
		}
		return out
	}
	before := pos()
	time.Sleep(10 * time.Second)
	after := pos()
	var ran []uint64
	for i := range names {
		ran = append(ran, after[i]-before[i])
		if o := c.owner(names[i]); o.Generation != 1 {
			t.Errorf("%s failed over while busy: %+v", names[i], o)
		}
	}
	least, most := slices.Min(ran), slices.Max(ran)
	t.Logf("instructions run in 10 s per VM: least %d, most %d", least, most)
	if most == 0 || least*5 < most {
		t.Errorf("unfair shares: least %d, most %d instructions (%v)", least, most, ran)
	}
}
