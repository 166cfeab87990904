package host

import (
	"context"
	"slices"
	"strings"
	"time"

	"ftvm/ft"
	"ftvm/storage"
)

// Fencing a host that others take for lost. A VM whose every replica looks
// lost is started again from its disk (restart.go), and the look is the
// registry: a host whose entry has not been refreshed for AliveWindow is
// taken for dead. But a host can be alive and stale: stalled for seconds
// on a loaded machine, or cut off from the storage. If it went on letting
// its VMs' outputs and disk writes out, a VM started again elsewhere would
// run beside it, both writing one disk. Two rules make that impossible:
//
//  1. A host lets nothing out past its lease (vmm.Lease): leaseTerm from
//     the start of its last registry refresh that succeeded, which is the
//     time the entry says it was seen. Every gate checks the lease where an
//     output or effect is about to leave. When a refresh succeeds after
//     the lease ran out, the host first reads the owner record of every VM
//     it runs, and a VM whose generation was claimed past (started again)
//     has its held outputs dropped and halts, before the lease is renewed.
//  2. A host named by a restart's claim starts the VM only once every host
//     that may have run it since its last generation that was not a
//     restart is quiet (restartQuiet): dead (its process is gone), stale
//     for longer than its lease could have lasted (leaseTerm plus
//     leaseSkew for the clocks), or seen since the claim not running it.
//
// A stale host is fenced by rule 1 once its lease runs out, which is before
// anyone could take it for lost (AliveWindow plus lostGrace). If it comes
// back after a restart claim, it reads the claim before it lets anything
// out again. If it came back before the claim but after the restarting
// host read the registry, it is not quiet for rule 2, and the restarted VM
// waits for it to see the claim and halt.

const (
	// leaseTerm is how long a host may let outputs out after the start of
	// its last registry refresh: no longer than other hosts see it alive.
	leaseTerm = AliveWindow
	// leaseSkew is how far apart the hosts' clocks may be: a restart waits
	// for a stale host's entry to be leaseTerm plus this old.
	leaseSkew = time.Second
	// restartChain is how many restart claims back restartQuiet looks for
	// hosts that may still run the VM.
	restartChain = 16
)

// renewLease renews the host's lease after a registry refresh that began
// at start succeeded. If the lease had run out, the host first makes sure
// that none of its VMs was started again meanwhile (rule 1); if it cannot
// read their owner records, the lease stays out until the next refresh.
func (h *Host) renewLease(start time.Time) {
	if h.lease.Granted() && !h.lease.Valid() {
		h.noteLapse()
		h.log.Info("registry refreshed: checking that no vm of this host's was started elsewhere before letting outputs out")
		if !h.verifyOwners() {
			return
		}
		h.log.Info("lease renewed: outputs flow again")
	}
	h.lapsed.Store(false)
	h.lease.Extend(start.Add(leaseTerm))
}

// noteLapse logs, once per lapse, that the host's lease ran out: its
// primaries whose backup vouches for them serve on, the others hold their
// outputs.
func (h *Host) noteLapse() {
	if !h.lease.Granted() || h.lease.Valid() || h.lapsed.Swap(true) {
		return
	}
	h.log.Warn("the host's lease ran out (its registry entry went stale): vms with no fresh backup to vouch for them hold their outputs",
		"expired", h.lease.Expiry().Format(time.TimeOnly+".000"))
}

// verifyOwners reads the owner record of every VM the host runs, halts
// those whose generation was claimed past by another host, and drops what
// their gates hold at once. It reports whether it could read them all.
func (h *Host) verifyOwners() bool {
	for _, r := range h.allRunners() {
		if r.finished() {
			continue
		}
		owner, ok, err := h.dir.Latest(r.vm)
		if err != nil {
			h.log.Warn("cannot read a vm's owner record: outputs stay held", "vm", r.vm, "err", err)
			return false
		}
		if !ok {
			continue
		}
		if lost, _ := r.supersedes(owner); lost {
			if p := r.primarySide(); p != nil && p.gate != nil {
				p.gate.Discard()
			}
		}
		h.checkOwner(r, owner)
	}
	return true
}

// supersedes reports whether owner, the latest owner record of the VM,
// means that the node of runner r lost it, and whether it is instead the
// switchover r's node handed over, naming it the backup (follow). Only a
// node that lets outputs out (a primary, alone, or one that handed over)
// can lose: one whose generation another host claimed past. Its own clone
// claims the next generation for itself.
func (r *runner) supersedes(owner storage.Owner) (lost, follow bool) {
	st := r.softState()
	if st.Role != ft.Alone && st.Role != ft.Primary && st.Role != ft.HandingOver {
		return false, false
	}
	if st.Role == ft.HandingOver && owner.Generation == st.Gen+1 && owner.Host == st.Peer && owner.Backup == r.h.cfg.Name {
		return false, true
	}
	return owner.Generation > st.Gen+1 || owner.Generation == st.Gen+1 && owner.Host != r.h.cfg.Name, false
}

// restartQuiet reports whether the VM restarted by owner (a claim with
// reason restart) may start: every other host that may still run it is
// quiet (rule 2). If not, it names the host it waits for.
func (h *Host) restartQuiet(vm string, owner storage.Owner, now time.Time) (bool, string) {
	// suspects are the owners, which let outputs out; backers, the
	// backups, which let nothing out themselves but vouch for their
	// owners' leases (vouch.go).
	var suspects, backers []string
	for gen := owner.Generation - 1; gen > 0 && gen+restartChain >= owner.Generation; gen-- {
		prev, ok, err := h.dir.Owner(vm, gen)
		if err != nil {
			return false, "" // unknown: look again later
		}
		if ok {
			if prev.Host != h.cfg.Name && !slices.Contains(suspects, prev.Host) {
				suspects = append(suspects, prev.Host)
			}
			if prev.Backup != "" && prev.Backup != h.cfg.Name && !slices.Contains(backers, prev.Backup) {
				backers = append(backers, prev.Backup)
			}
			if prev.Reason != reasonRestart {
				break
			}
		}
	}
	if len(suspects) == 0 && len(backers) == 0 {
		return true, ""
	}
	h.mu.Lock()
	hosts := h.hosts
	h.mu.Unlock()
	var sts []storage.VMStatus
	// moved reports whether host runs the VM in the restart's generation
	// or a later one: whatever it ran before is stopped.
	moved := func(host string) (bool, error) {
		if sts == nil {
			var err error
			if sts, err = h.dir.Statuses(vm); err != nil {
				return false, err
			}
		}
		return slices.ContainsFunc(sts, func(st storage.VMStatus) bool {
			return st.Host == host && st.Generation >= owner.Generation
		}), nil
	}
	for i, name := range append(suspects, backers...) {
		j := slices.IndexFunc(hosts, func(hs HostState) bool { return hs.Name == name })
		if j < 0 {
			continue // not registered: never ran anything
		}
		hs := hosts[j]
		if gone(hs.HostInfo) || now.Sub(hs.Seen) > leaseTerm+leaseSkew {
			continue
		}
		since := hs.Seen.After(owner.Time.Add(leaseSkew))
		if i < len(suspects) {
			if since && !slices.Contains(hs.Runs, vm) {
				continue // seen since the claim, not running it
			}
			if m, err := moved(name); err != nil || !m {
				return false, name
			}
			continue
		}
		// A backer: its last vouch may hold its owner's lease for up to
		// a term after it stopped, which its entries since the claim
		// show; the first such entry must be a term old.
		if !since {
			return false, name
		}
		m := !slices.Contains(hs.Runs, vm)
		if !m {
			var err error
			if m, err = moved(name); err != nil {
				return false, name
			}
		}
		if !m || now.Sub(h.quietSince(vm, name, hs.Seen)) <= leaseTerm+leaseSkew {
			return false, name
		}
	}
	return true, ""
}

// quietSince returns the registry time of the first entry of host, seen
// since vm's restart claim, that did not run vm: seen is the current
// entry's, which is the first if none was noted before.
func (h *Host) quietSince(vm, host string, seen time.Time) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	k := vm + "\x00" + host
	if t, ok := h.quiet[k]; ok {
		return t
	}
	h.quiet[k] = seen
	return seen
}

// mayRestart is scanVM's rule 2 for a VM this host is named to start again
// by owner: it reports whether every other host is quiet, and otherwise
// remembers the VM (prev is the host it waited for at the last look),
// which discovery looks at again each registry period
// (retryRestarts).
func (h *Host) mayRestart(vm string, owner storage.Owner, prev string) bool {
	ok, waitFor := h.restartQuiet(vm, owner, time.Now())
	if ok {
		h.mu.Lock()
		for k := range h.quiet {
			if strings.HasPrefix(k, vm+"\x00") {
				delete(h.quiet, k)
			}
		}
		h.mu.Unlock()
		return true
	}
	h.mu.Lock()
	h.restarts[vm] = waitFor
	h.mu.Unlock()
	if prev != waitFor && waitFor != "" {
		h.log.Warn("restart waits: a host that ran the vm is alive and has not stopped it yet",
			"vm", vm, "generation", owner.Generation, "host", waitFor)
	}
	return ok
}

// retryRestarts looks again at the VMs whose restart waits (mayRestart).
func (h *Host) retryRestarts(ctx context.Context) {
	h.mu.Lock()
	names := make([]string, 0, len(h.restarts))
	for name := range h.restarts {
		names = append(names, name)
	}
	h.mu.Unlock()
	if len(names) > 0 {
		h.scan(ctx, names)
	}
}
