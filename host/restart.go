package host

import (
	"errors"
	"slices"
	"time"

	"ftvm/ft"
	"ftvm/storage"
)

// When every replica of a VM is lost (both hosts of its pair at once, or a
// primary running alone, mid-clone or not, with no backup yet), its memory
// is gone; its disk is not. As vSphere HA restarts a VM whose FT pair is
// gone, a live host then starts it again from its disk on the least loaded
// live hosts, by claiming its next generation with reason "restart", unless
// its spec says never (ftvm start --restart never). The claim makes the
// restart happen once, whichever hosts notice; the hosts named in it start
// the VM as after ftvm start.

var errNoLiveHost = errors.New("no live host")

// reasonRestart marks the owner record of a VM started again from its
// disk after every replica was lost.
const reasonRestart = "restart"

// lostGrace is how long every replica of a VM must have looked lost before
// a host restarts it: longer than a failure timeout, so that a backup that
// is about to take over does, and statuses written before a death are not
// taken for the truth.
const lostGrace = 2 * time.Second

// replicas returns the hosts that may hold the VM's memory in owner's
// generation: its owner, and the backup the generation started with.
func replicas(owner storage.Owner) []string {
	if owner.Backup == "" {
		return []string{owner.Host}
	}
	return []string{owner.Host, owner.Backup}
}

// lost reports whether every replica of the VM is gone: no host that holds
// it in owner's generation is alive, and runs it since it came up (a host
// started again lost what it ran). A guest that ended by itself (exited,
// trapped, failed) is not lost: it is over.
func lost(owner storage.Owner, hosts []HostState, sts []storage.VMStatus) bool {
	for _, st := range sts {
		if st.Generation == owner.Generation && st.Host == owner.Host &&
			(st.State == "exited" || st.State == "failed" || st.State == "stopped") {
			return false
		}
	}
	for _, h := range replicas(owner) {
		for _, hs := range hosts {
			if hs.Name != h || !hs.Alive {
				continue
			}
			// A host that came up after the generation began runs the
			// VM only if it says so since; so does the backup a clone
			// names (the clone may have failed after its claim).
			if since, clone := hs.Started, owner.Reason == reasonClone && h == owner.Backup; clone || since.After(owner.Time) {
				if clone && owner.Time.After(since) {
					since = owner.Time
				}
				running := false
				for _, st := range sts {
					if st.Host == h && st.Generation >= owner.Generation && st.Updated.After(since) &&
						(st.State == "running" || st.State == "starting") {
						running = true
					}
				}
				if !running {
					continue
				}
			}
			return false
		}
	}
	return true
}

// beatSeen is when a host's last heartbeat came, and the epoch (its
// process's start) and counter it carried.
type beatSeen struct {
	at    time.Time
	epoch uint64
	// counter is the heartbeat's, echoed back to its sender (vouch.go).
	counter uint64
}

// ownerBeats reports whether the heartbeats of owner's host, from the
// process that held owner's generation (started before it began), came
// within AliveWindow. Such a host is alive, only its registry entry is
// stale (a loaded machine delays its writes): restarting its VM would
// lose the VM's memory for nothing (the lease fences it meanwhile: see
// lease.go). This host hears the hosts it shares VMs with. The owner's
// heartbeats alone count: a backup's host may be alive while the backup
// failed, but an owner whose VM failed or ended says so in its status.
func (h *Host) ownerBeats(owner storage.Owner, now time.Time) bool {
	v, ok := h.beatFrom.Load(owner.Host)
	if !ok {
		return false
	}
	b := v.(beatSeen)
	return now.Sub(b.at) < AliveWindow && b.epoch <= uint64(owner.Time.UnixNano())
}

// restartIfLost starts the VM again from its disk if every replica has
// been lost for lostGrace, on the least loaded live hosts.
func (h *Host) restartIfLost(spec storage.VMSpec, owner storage.Owner, hosts []HostState) {
	sts, err := h.dir.Statuses(spec.Name)
	now := time.Now()
	// h.mu guards the map only: the storage is not to be waited on under
	// it (the pulse and the heartbeats need it).
	forget := func() {
		h.mu.Lock()
		delete(h.lost, spec.Name)
		h.mu.Unlock()
	}
	if err != nil || !lost(owner, hosts, sts) || h.ownerBeats(owner, now) {
		forget()
		return
	}
	h.mu.Lock()
	since, ok := h.lost[spec.Name]
	if !ok || since.IsZero() {
		h.lost[spec.Name] = now
	}
	h.mu.Unlock()
	if !ok || since.IsZero() {
		return
	}
	if now.Sub(since) < lostGrace || spec.Restart == storage.RestartNever {
		return
	}
	primary, backup, err := place(h.dir, now, spec.Name)
	if err != nil {
		return // no live host: try again at the next scan
	}
	if spec.LocalDisk() {
		// The latest copy of its disk is on the host that ran it last:
		// it starts there, alone, once that host is up (see
		// localdisk.go), and a clone gives it its backup.
		up := slices.ContainsFunc(hosts, func(hs HostState) bool { return hs.Name == owner.Host && hs.Alive })
		if !up {
			return
		}
		primary, backup = owner.Host, ""
	}
	o := storage.Owner{Generation: owner.Generation + 1, Host: primary, Role: "primary", Reason: reasonRestart, Backup: backup, Time: now.UTC()}
	won, _, err := h.dir.Claim(spec.Name, o)
	forget()
	if err == nil && won {
		h.log.Warn("every replica of the vm was lost: starting it again from its disk; its memory is lost",
			"vm", spec.Name, "lost_generation", owner.Generation, "generation", o.Generation, "primary", primary, "backup", backup)
	}
}

// checkSuperseded halts runner r if it is a primary, or runs alone, in a
// generation that another host has since claimed past (its backup went
// live, or a host restarted the VM after taking it for lost): a primary
// running alone hears from no peer, and one whose planned clone is under
// way watches no peer, so storage is where it learns it lost.
func (h *Host) checkSuperseded(r *runner, owner storage.Owner) {
	lost, follow := r.supersedes(owner)
	if follow {
		// The switchover took place: this host follows as the backup
		// (told at every look until the node did).
		r.event(ft.Event{Kind: ft.EvFollow, Gen: owner.Generation, Peer: owner.Host})
		return
	}
	st := r.softState()
	// Once told, the node halts; a scan before it did tells it nothing
	// new.
	if lost {
		for {
			prev := r.superseded.Load()
			if prev >= owner.Generation {
				return
			}
			if r.superseded.CompareAndSwap(prev, owner.Generation) {
				break
			}
		}
		if st.Role == ft.HandingOver {
			r.log.Info("switchover: another host's claim won", "generation", owner.Generation, "by", owner.Host)
		} else {
			r.log.Warn("a later generation was claimed by another host: halting", "generation", st.Gen, "claimed", owner.Generation, "by", owner.Host)
		}
		r.event(ft.Event{Kind: ft.EvSuperseded, Gen: owner.Generation})
	}
}

// checkStartFailed ends runner r if it is a backup whose primary failed
// to start the VM (its logging channel never came up, and the primary's
// status says the VM failed in their generation): ftvm start reported the
// start failed, and taking over after the start timeout would start the
// VM after all, on this host.
func (h *Host) checkStartFailed(r *runner) {
	b, ok := r.currentSide().(*backupSide)
	if !ok || b.everUp.Load() {
		return
	}
	sts, err := h.dir.Statuses(r.vm)
	if err != nil {
		return
	}
	for _, st := range sts {
		if st.Host == b.peer && st.Generation == b.gen && st.State == "failed" {
			r.log.Warn("the primary failed to start the vm: not taking over", "primary", b.peer, "detail", st.Detail)
			go r.shutdownAs("the primary failed to start it: "+st.Detail, "failed", false)
			return
		}
	}
}

// place picks a primary and a backup for VM vm among the live hosts: the
// least loaded (the fewest VMs they are primary or backup of), then by
// name. With one live host the backup is "".
func place(dir storage.Store, now time.Time, vm string) (primary, backup string, err error) {
	hosts, err := Hosts(dir, now)
	if err != nil {
		return "", "", err
	}
	vms, err := vmStates(dir, now, hosts)
	if err != nil {
		return "", "", err
	}
	var cands []string
	for _, hs := range hosts {
		if hs.Alive && !hs.Draining {
			cands = append(cands, hs.Name)
		}
	}
	if len(cands) == 0 {
		return "", "", errNoLiveHost
	}
	load := loadOf(vms, vm, false)
	byLoad(cands, load, true)
	primary = cands[0]
	cands = cands[1:]
	byLoad(cands, load, false)
	if len(cands) > 0 {
		backup = cands[0]
	}
	return primary, backup, nil
}
