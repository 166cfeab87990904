package host

import (
	"context"
	"fmt"
	"time"

	"ftvm/ft"
	"ftvm/storage"
)

// Statuses are written by one loop per host (statusLoop), for all its
// VMs at once, and only when they changed: a VM that nothing happens to
// costs its host nothing here. A runner marks its status dirty at every
// turn of its node, and the loop writes it within a second;
// kickStatus asks for a write at once (a role or state changed).
// An unchanged status is not written again, except, every statusRefresh,
// one whose text depends on the time (a VM alone: "backup lost 5s ago"; a
// clone or a move in progress) or whose quantiles still cover recent
// activity (see primarySide.fill). Readers tell a silent host from an
// idle one by its registry entry, not by its statuses.

const (
	// statusInterval is how often the loop looks at dirty statuses.
	statusInterval = 250 * time.Millisecond
	// statusRefresh is how often an unchanged status that depends on the
	// time is written again, and a changed one on a host with more than
	// manyStatuses VMs.
	statusRefresh = time.Second
	manyStatuses  = 100
)

// statusLoop writes the statuses of the host's VMs, until ctx is done. It
// runs apart from the runners: a store that does not answer (etcd cut
// off) must not hold up a node, whose heartbeats and timeouts are what
// the pair lives by.
func (h *Host) statusLoop(ctx context.Context) {
	t := time.NewTicker(statusInterval)
	defer t.Stop()
	var deferred time.Time // since when writes wait for a take-over
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-h.statusKick:
		}
		now := time.Now()
		if h.takingOver() {
			// Statuses are what operators read; the go-lives are
			// what clients wait for (see takingOver).
			if deferred.IsZero() {
				deferred = now
			}
			if now.Sub(deferred) < takeoverFirst {
				continue
			}
		}
		deferred = time.Time{}
		h.writeStatuses(now)
	}
}

// writeStatuses writes, in one batch, the statuses of the runners that
// need it (see statusLoop).
func (h *Host) writeStatuses(now time.Time) {
	h.statusMu.Lock()
	defer h.statusMu.Unlock()
	var rs []*runner
	var sts []storage.VMStatus
	runners := h.allRunners()
	// A host with many VMs writes a changed status once a second at most
	// (a thousand busy VMs' statuses four times a second would take a
	// good part of a CPU); one with a few, at every look.
	every := statusInterval
	if len(runners) > manyStatuses {
		every = statusRefresh
	}
	for _, r := range runners {
		if r.finished() {
			continue
		}
		if !r.statusUrgent.Swap(false) && r.statusDirty.Load() && now.Sub(r.statusAt) < every && !r.connectedChanged() {
			continue
		}
		if r.statusDirty.Swap(false) {
			r.activeAt.Store(now.UnixNano())
		} else if now.Sub(time.Unix(0, r.activeAt.Load())) > delayWindow*statusInterval+statusRefresh && !r.timely() {
			continue
		}
		if st, ok := r.status(); ok {
			rs, sts = append(rs, r), append(sts, st)
		}
	}
	if len(sts) == 0 {
		return
	}
	err := h.dir.PutStatuses(sts)
	for i, r := range rs {
		if err != nil {
			r.statusDirty.Store(true) // tried again at the next look
			continue
		}
		r.wrote(sts[i])
	}
}

// kickStatus asks for the runner's status to be written now.
func (r *runner) kickStatus() {
	r.statusUrgent.Store(true)
	r.statusDirty.Store(true)
	select {
	case r.h.statusKick <- struct{}{}:
	default:
	}
}

// connectedChanged reports whether the runner's logging channel came up
// or went down, or its primary became protected or not, since its status
// was last written: what waits for a pair to be up wants to know at once.
// The caller holds the host's statusMu.
func (r *runner) connectedChanged() bool {
	var st storage.VMStatus
	switch sd := r.currentSide().(type) {
	case *primarySide:
		st.Connected = sd.ch.up()
		st.Protected = sd.protected(st.Connected)
	case *backupSide:
		st.Connected = sd.ch.up()
	default:
		return false
	}
	return st.Connected != r.lastStatus.Connected || st.Protected != r.lastStatus.Protected
}

// timely reports whether the runner's status says something that changes
// with time alone.
func (r *runner) timely() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.soft.Role == ft.Alone || r.cloneProg != nil || r.moving
}

// writeStatus publishes the runner's status to the store if it changed
// (see status): from drive, once the VM ended.
func (r *runner) writeStatus() {
	r.h.statusMu.Lock()
	defer r.h.statusMu.Unlock()
	if st, ok := r.status(); ok && r.h.dir.PutStatus(st) == nil {
		r.wrote(st)
	}
}

// wrote notes that st was written.
func (r *runner) wrote(st storage.VMStatus) {
	r.lastStatus, r.statusAt = st, st.Updated
	r.lastStatus.Updated = time.Time{}
}

// status returns the runner's status, and whether it is to be written:
// it changed, or it is timely and was last written statusRefresh ago.
// The caller holds the host's statusMu.
func (r *runner) status() (storage.VMStatus, bool) {
	r.mu.Lock()
	st := storage.VMStatus{
		VM: r.vm, Host: r.h.cfg.Name, Generation: r.soft.Gen, Role: r.soft.Role.String(),
		State: r.state, Detail: r.detail, ExitCode: r.exitCode, Peer: r.soft.Peer, LastClone: r.lastClone, Restarted: r.restarted, Move: r.moveState, MoveID: r.moveID,
		Clone: r.cloneProg, Updated: time.Now().UTC(),
	}
	if r.soft.Role == ft.Alone {
		st.Protection = "backup lost " + time.Since(r.aloneSince).Round(time.Second).String() + " ago"
		if r.aloneSince.IsZero() {
			// Started alone (again from its disk, or at a restart).
			st.Protection = "no backup yet"
		}
		if r.cloneState != "" {
			st.Protection += "; " + r.cloneState
		}
	}
	r.mu.Unlock()
	if sd := r.currentSide(); sd != nil {
		sd.fill(&st)
	}
	st.Protected = st.Protected && st.Role == ft.Primary.String()
	if st.Role == ft.Alone.String() || st.Role == ft.Halted.String() {
		st.Peer = ""
	}
	r.logLag(st)
	same := st
	same.Updated = time.Time{}
	return st, same != r.lastStatus || (st.Updated.Sub(r.statusAt) >= statusRefresh && r.timely())
}

// logLag logs the primary's lag every 5 s while it changes (so an idle
// pair is quiet).
func (r *runner) logLag(st storage.VMStatus) {
	if r.primarySide() != nil && st.Role == ft.Primary.String() && time.Since(r.lastLag) >= 5*time.Second {
		line := fmt.Sprintf("%d/%d/%.0f/%d/%v", st.LagEntries, st.LagBytes, st.LagMillis, st.HeldOut, st.Connected)
		if line != r.lagLine {
			r.lastLag, r.lagLine = time.Now(), line
			r.log.Info("lag", "entries", st.LagEntries, "bytes", st.LagBytes, "ms", st.LagMillis, "held_outputs", st.HeldOut, "backup_connected", st.Connected, "log_bytes", st.LogBytes,
				"output_delay_p50_ms", st.OutputDelayP50, "output_delay_p99_ms", st.OutputDelayP99, "log_rtt_p50_ms", st.AckRTTP50)
		}
	}
}
