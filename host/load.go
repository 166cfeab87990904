package host

import (
	"slices"
	"strings"
)

// hostLoad is how busy a host is, for placement: how many VMs it is a
// replica of, and of how many the primary (which serves the clients and
// runs ahead; a host holding every primary of a pair of hosts is the
// busier one).
type hostLoad struct{ vms, primaries int }

// loadOf counts each host's load from vms, leaving out those that ended
// (or do not run, with running set) and the VM named skip.
func loadOf(vms []VMState, skip string, running bool) map[string]hostLoad {
	load := map[string]hostLoad{}
	for _, v := range vms {
		if v.Name == skip || VMEnded(v.State) || running && !strings.HasPrefix(v.State, "running") {
			continue
		}
		p := load[v.Primary]
		p.vms++
		p.primaries++
		load[v.Primary] = p
		if v.Backup != "" {
			b := load[v.Backup]
			b.vms++
			load[v.Backup] = b
		}
	}
	return load
}

// byLoad sorts hosts least loaded first, for a primary (primary set) or a
// backup: the fewest VMs, then the fewest VMs in that role (so that two
// hosts take turns at holding the primaries), then by name.
func byLoad(hosts []string, load map[string]hostLoad, primary bool) {
	slices.SortStableFunc(hosts, func(a, b string) int {
		la, lb := load[a], load[b]
		if la.vms != lb.vms {
			return la.vms - lb.vms
		}
		ra, rb := la.primaries, lb.primaries
		if !primary {
			ra, rb = la.vms-la.primaries, lb.vms-lb.primaries
		}
		if ra != rb {
			return ra - rb
		}
		return strings.Compare(a, b)
	})
}
