package host_test

import (
	"os"
	"testing"
	"time"

	"ftvm/host"
	"ftvm/storage"
)

// TestPlacementSpreadsPrimaries: three VMs started on three idle hosts
// get one primary on each host, and a backup on each.
func TestPlacementSpreadsPrimaries(t *testing.T) {
	dir, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, name := range []string{"h1", "h2", "h3"} {
		// Registered and alive; a remote address, so that only the
		// registry says whether it lives.
		if err := dir.PutHost(storage.HostInfo{Name: name, Addr: "192.0.2.1:7000", PID: os.Getpid(), Started: now, Seen: now}); err != nil {
			t.Fatal(err)
		}
	}
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
