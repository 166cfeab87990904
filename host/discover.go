package host

import (
	"context"
	"time"

	"ftvm/ft"
	"ftvm/storage"
)

// Discovery: how a host learns which VMs to run, stop or start again. With
// a store that can watch (storage.Watcher: inotify on a directory, a watch
// on etcd) it reads a VM's spec and owner record when they change, not
// every VM on a timer, so that a thousand idle VMs cost their host no reads.
// What does not show as a change of a VM is looked at on the registry's
// period (registryInterval), for the few VMs it concerns:
//
//   - every replica of a VM lost is a change of the hosts, not of the VM:
//     while a host came up, went down or restarted within the last
//     lostWatch, every VM that does not run here is looked at once a
//     period (restartIfLost needs two looks lostGrace apart);
//   - a backup that never heard from its primary looks at the primary's
//     status, which says if the start failed (checkStartFailed);
//   - sessions whose clients are gone expire.
//
// Every backstopScan all VMs are read anyway: on a shared file system
// (NFS) inotify sees this machine's changes only. A store that cannot
// watch is scanned every scanInterval, as before watches.

const (
	// lostWatch is how long after a change of the hosts every VM is
	// looked at each period: long enough for a host to be seen down
	// (AliveWindow) and for restartIfLost's grace.
	lostWatch = AliveWindow + lostGrace + 2*registryInterval
	// backstopScan is how often every VM is read whatever the watch says.
	backstopScan = 10 * time.Second
)

// discover runs the host's discovery until ctx is done.
func (h *Host) discover(ctx context.Context) {
	var changes <-chan []string
	if w, ok := h.dir.(storage.Watcher); ok {
		ch, err := w.WatchVMs(ctx)
		if err != nil {
			h.log.Warn("cannot watch the store: scanning it every "+scanInterval.String()+" instead", "err", err)
		} else {
			changes = ch
		}
	}
	h.refresh(true)
	// The registry entry is refreshed apart: discovery may be busy for
	// seconds starting hundreds of VMs, and the host must not look dead
	// meanwhile.
	hostsChanged := make(chan struct{}, 1)
	go h.registryLoop(ctx, hostsChanged)
	h.scan(ctx, nil)
	period := registryInterval
	if changes == nil {
		period = scanInterval
	}
	t := time.NewTicker(period)
	defer t.Stop()
	now := time.Now()
	scanned := now
	lostUntil := now.Add(lostWatch) // a host that just came up is a change
	for {
		select {
		case <-ctx.Done():
			return
		case <-hostsChanged:
			lostUntil = time.Now().Add(lostWatch)
		case names, ok := <-changes:
			if !ok {
				if ctx.Err() != nil {
					return
				}
				h.log.Warn("the store's watch ended: scanning it every " + scanInterval.String() + " instead")
				changes = nil
				t.Reset(scanInterval)
				continue
			}
			h.scan(ctx, names) // nil: changes were lost, every VM
			if names == nil {
				scanned = time.Now()
			}
		case now := <-t.C:
			switch {
			case changes == nil, now.Sub(scanned) >= backstopScan:
				h.scan(ctx, nil)
				scanned = now
			case now.Before(lostUntil):
				h.scanNotRunning(ctx)
				h.checkStarts()
			default:
				h.checkStarts()
			}
			h.retryRestarts(ctx)
			h.expireSessions(now)
		}
	}
}

// scanNotRunning scans the VMs that run nowhere on this host: after a
// change of the hosts, whether every replica of one is lost. The watch
// tells what happens to those that run here; after a mass failover they
// are hundreds, whose records a full scan would read every period while
// they go live.
func (h *Host) scanNotRunning(ctx context.Context) {
	names, err := h.dir.VMs()
	if err != nil {
		return
	}
	h.mu.Lock()
	idle := names[:0]
	for _, name := range names {
		if r := h.runners[name]; r == nil || r.finished() {
			idle = append(idle, name)
		}
	}
	h.mu.Unlock()
	if len(idle) > 0 {
		h.scan(ctx, idle)
	}
}

// registryLoop refreshes the host's registry entry every registryInterval,
// and reads the registry at once when asked (readHosts), until ctx is
// done; changed hears when a host came up, went down or restarted.
func (h *Host) registryLoop(ctx context.Context, changed chan<- struct{}) {
	t := time.NewTicker(registryInterval)
	defer t.Stop()
	for {
		put := false
		select {
		case <-ctx.Done():
			return
		case <-h.hostsNow:
		case <-t.C:
			put = true
		}
		if _, ch := h.refresh(put); ch {
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}
}

// checkStarts looks, for each backup that never heard from its primary,
// whether the primary failed to start the VM.
func (h *Host) checkStarts() {
	for _, r := range h.allRunners() {
		if r.finished() || r.role() != ft.Backup {
			continue
		}
		h.checkStartFailed(r)
	}
}

// checkOwner is scanVM's look at a VM this host runs.
func (h *Host) checkOwner(r *runner, owner storage.Owner) {
	h.checkSuperseded(r, owner)
	h.checkStartFailed(r)
}
