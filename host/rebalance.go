package host

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"ftvm/storage"
)

// Failures leave the VMs unevenly spread: a backup that goes live makes
// its host the primary of every VM of the pair, and a host that comes
// back (or a new one) holds nothing until new VMs are placed. ftvm
// rebalance evens them out with the moves ftvm move makes: first the
// replicas (a backup cloned from the host with the most to the one with
// the fewest), then the primaries (a switchover hands a primary to its
// backup's host, which swaps their roles in one generation, without a
// clone).

// Rebalancing is one move of a rebalance: vm's backup from From to To, or
// with Primary, its primary handed over to its backup on To (a
// switchover). The moves of a stage are made together, after those of the
// stages before.
type Rebalancing struct {
	VM, From, To string
	Primary      bool
	Stage        int
}

func (m Rebalancing) String() string {
	if m.Primary {
		return fmt.Sprintf("vm %s: primary %s -> %s (switchover)", m.VM, m.From, m.To)
	}
	return fmt.Sprintf("vm %s: backup %s -> %s (clone)", m.VM, m.From, m.To)
}

// maxStages bounds a plan: backups, switchovers, and the backups the
// switchovers left where the primaries were.
const maxStages = 4

// PlanRebalance returns the moves that even out the running, paired VMs
// among the live hosts that are not draining: stages of backups' moves,
// until no host holds more than one replica more than another where a
// backup can move, and of switchovers, until no host holds more than one
// primary more than another where a switchover can help.
func PlanRebalance(vms []VMState, hosts []HostState) []Rebalancing {
	var live []string
	for _, h := range hosts {
		if h.Alive && !h.Draining {
			live = append(live, h.Name)
		}
	}
	slices.Sort(live)
	// The VMs that count: running, with both replicas on live hosts.
	var pairs []VMState
	for _, v := range vms {
		if strings.HasPrefix(v.State, "running") && v.Backup != "" && slices.Contains(live, v.Primary) && slices.Contains(live, v.Backup) {
			pairs = append(pairs, v)
		}
	}
	if len(live) < 2 || len(pairs) == 0 {
		return nil
	}
	replicas, primaries := map[string]int{}, map[string]int{}
	for _, v := range pairs {
		replicas[v.Primary]++
		replicas[v.Backup]++
		primaries[v.Primary]++
	}
	// byCount returns the live hosts, those with the most of count first
	// (by name on a tie).
	byCount := func(count map[string]int) []string {
		return slices.SortedStableFunc(slices.Values(live), func(a, b string) int { return count[b] - count[a] })
	}
	var plan []Rebalancing
	// backups plans one stage of backups' moves; it reports whether it
	// planned any.
	backups := func(stage int) bool {
		moved := map[string]bool{} // one move per VM in a stage
		any := false
		for range len(pairs) {
			hs := byCount(replicas)
			to := hs[len(hs)-1]
			i := -1
			for _, from := range hs {
				if replicas[from]-replicas[to] <= 1 {
					break
				}
				if i = slices.IndexFunc(pairs, func(v VMState) bool { return v.Backup == from && v.Primary != to && !moved[v.Name] }); i >= 0 {
					break
				}
			}
			if i < 0 {
				return any
			}
			v := &pairs[i]
			plan = append(plan, Rebalancing{VM: v.Name, From: v.Backup, To: to, Stage: stage})
			moved[v.Name], any = true, true
			replicas[v.Backup]--
			replicas[to]++
			v.Backup = to
		}
		return any
	}
	// switchovers plans one stage of switchovers.
	switchovers := func(stage int) bool {
		moved := map[string]bool{}
		any := false
		for range len(pairs) {
			// The host with the most primaries that a switchover can
			// relieve: one of its VMs has its backup where there are at
			// least two primaries fewer.
			var best *VMState
			for _, from := range byCount(primaries) {
				for i := range pairs {
					v := &pairs[i]
					if v.Primary == from && !moved[v.Name] && primaries[v.Backup] < primaries[from]-1 && (best == nil || primaries[v.Backup] < primaries[best.Backup]) {
						best = v
					}
				}
				if best != nil {
					break
				}
			}
			if best == nil {
				return any
			}
			plan = append(plan, Rebalancing{VM: best.Name, From: best.Primary, To: best.Backup, Primary: true, Stage: stage})
			moved[best.Name], any = true, true
			primaries[best.Primary]--
			primaries[best.Backup]++
			best.Primary, best.Backup = best.Backup, best.Primary
		}
		return any
	}
	stage := 0
	for stage < maxStages {
		b := backups(stage)
		if b {
			stage++
		}
		if stage >= maxStages {
			break
		}
		sw := switchovers(stage)
		if sw {
			stage++
		}
		if !b && !sw {
			break
		}
	}
	return plan
}

// Rebalance plans the moves that even out the VMs among the live hosts
// (PlanRebalance) and, unless dryRun, makes them, stage after stage,
// parallel at a time within each. progress hears
// the plan, each move's steps and each failure; it is called from one
// goroutine at a time. It returns the plan and the number of moves that
// failed (a VM that failed over or was stopped meanwhile, say); the others
// are made regardless.
func Rebalance(ctx context.Context, dir storage.Store, dryRun bool, parallel int, progress func(MoveProgress)) ([]Rebalancing, int, error) {
	now := time.Now()
	hosts, err := Hosts(dir, now)
	if err != nil {
		return nil, 0, err
	}
	vms, err := vmStates(dir, now, hosts)
	if err != nil {
		return nil, 0, err
	}
	plan := PlanRebalance(vms, hosts)
	var mu sync.Mutex
	say := func(p MoveProgress) {
		mu.Lock()
		defer mu.Unlock()
		progress(p)
	}
	for _, m := range plan {
		say(step("plan: stage %d: %s", m.Stage+1, m))
	}
	if dryRun || len(plan) == 0 {
		return plan, 0, nil
	}
	failed := 0
	for stage := 0; len(plan) > 0 && stage <= plan[len(plan)-1].Stage; stage++ {
		work := make(chan Rebalancing)
		var wg sync.WaitGroup
		for range max(parallel, 1) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for m := range work {
					if err := MoveVM(ctx, dir, m.VM, m.To, m.Primary, say); err != nil {
						say(step("%s: not moved: %v", m, err))
						mu.Lock()
						failed++
						mu.Unlock()
					}
				}
			}()
		}
		for _, m := range plan {
			if m.Stage == stage && ctx.Err() == nil {
				work <- m
			}
		}
		close(work)
		wg.Wait()
	}
	return plan, failed, ctx.Err()
}
