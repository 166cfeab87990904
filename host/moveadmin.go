package host

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"ftvm/storage"
)

// This file holds what ftvm move and ftvm drain do: they check the request
// against shared storage, ask the primary's host (or the drained host) over
// its control port, and follow the VM's owner records and statuses until
// the move is done.

// MoveProgress is one report of a move or a drain: a step, or how the
// clone of one goes.
type MoveProgress struct {
	Step  string
	Clone *storage.CloneProgress
}

func step(format string, args ...any) MoveProgress {
	return MoveProgress{Step: fmt.Sprintf(format, args...)}
}

// moveWait bounds how long MoveVM follows a move: a clone of the largest
// guest, a switchover, and the new primary's clone of a new backup.
const moveWait = 2*cloneTimeout + time.Minute

// protectedWait bounds how long MoveVM waits, after a switchover, for the
// new primary to clone a new backup before it reports it running alone.
const protectedWait = 20 * time.Second

// MoveVM moves a VM's backup (or with primary, its primary) to host to, and
// returns once the move is done (or failed, with the reason). progress
// hears each step. Bad requests (an unknown or dead host, an unknown VM,
// a VM that is not running, a move to where it already is) fail at once and
// change nothing.
func MoveVM(ctx context.Context, dir storage.Store, vm, to string, primary bool, progress func(MoveProgress)) error {
	now := time.Now()
	hosts, err := Hosts(dir, now)
	if err != nil {
		return err
	}
	target, ok := findHost(hosts, to)
	switch {
	case !ok:
		return fmt.Errorf("no host %q in the registry", to)
	case !target.Alive:
		return fmt.Errorf("host %s is down", to)
	case target.Draining:
		return fmt.Errorf("host %s is draining", to)
	}
	vs, err := runningVM(dir, now, hosts, vm)
	if err != nil {
		return err
	}
	switch {
	case primary && vs.Primary == to:
		return fmt.Errorf("%s is already %s's primary", to, vm)
	case !primary && vs.Primary == to:
		return fmt.Errorf("%s is %s's primary; its backup must be elsewhere (to move the primary, add --primary)", to, vm)
	case !primary && vs.Backup == to:
		return fmt.Errorf("%s is already %s's backup", to, vm)
	}
	return moveVM(ctx, dir, hosts, vs, to, primary, progress)
}

// moveVM asks vs's primary's host for the move and follows it.
func moveVM(ctx context.Context, dir storage.Store, hosts []HostState, vs VMState, to string, primary bool, progress func(MoveProgress)) error {
	prim, ok := findHost(hosts, vs.Primary)
	if !ok || !prim.Alive {
		return fmt.Errorf("%s's primary's host %s is down", vs.Name, vs.Primary)
	}
	key, err := dir.ClusterKey()
	if err != nil {
		return err
	}
	// The hosts tag the statuses of this move with its id.
	id := fmt.Sprintf("%s-%d", vs.Name, time.Now().UnixNano())
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = control(cctx, prim.Addr, key, controlRequest{Op: "move", VM: vs.Name, To: to, Primary: primary, ID: id})
	cancel()
	var refused *controlRefusal
	switch {
	case errors.As(err, &refused):
		return fmt.Errorf("host %s: %w", prim.Name, err)
	case err != nil:
		return fmt.Errorf("%s's primary's host %s did not take the request (%w): it may be down, or the vm failing over; see ftvm status", vs.Name, prim.Name, err)
	}
	what := "backup"
	if primary {
		what = "primary"
	}
	progress(step("%s: moving the %s to %s (primary %s, backup %s, generation %d)", vs.Name, what, to, vs.Primary, orNone(vs.Backup), vs.Generation))
	ctx, cancel = context.WithTimeout(ctx, moveWait)
	defer cancel()
	// The host's first step says what the line above said.
	last := fmt.Sprintf("moving the %s to %s", what, to)
	var switched time.Time
	for {
		select {
		case <-ctx.Done():
			// The primary's host does the move: it goes on without us.
			if errors.Is(ctx.Err(), context.Canceled) {
				return fmt.Errorf("%s: stopped following the move; %s goes on with it (see ftvm status): %w", vs.Name, vs.Primary, ctx.Err())
			}
			return fmt.Errorf("%s: the move did not finish within %v (see ftvm status)", vs.Name, moveWait)
		case <-time.After(100 * time.Millisecond):
		}
		now := time.Now()
		hosts, err := Hosts(dir, now)
		if err != nil {
			continue
		}
		cur, err := findVM(dir, now, hosts, vs.Name)
		if err != nil {
			return err
		}
		if VMEnded(cur.State) {
			return fmt.Errorf("vm %s ended during the move: %s", vs.Name, cur.State)
		}
		// The steps the hosts report, and a failure.
		sts, _ := dir.Statuses(vs.Name)
		for _, st := range sts {
			if st.MoveID != id || st.Move == last {
				continue
			}
			if strings.Contains(st.Move, "failed") {
				return fmt.Errorf("%s: %s", vs.Name, st.Move)
			}
			last = st.Move
			progress(step("%s: %s", vs.Name, st.Move))
		}
		for _, st := range sts {
			if st.Clone != nil && st.Host == cur.Primary && st.Generation == cur.Generation {
				progress(MoveProgress{Clone: st.Clone})
			}
		}
		// A switchover that took place, then a failover away from its
		// new primary (it died): the move is over, the VM went on.
		for g := vs.Generation + 1; primary && cur.Primary != to && g < cur.Generation; g++ {
			if o, ok, err := dir.Owner(vs.Name, g); err == nil && ok && o.Host == to {
				return fmt.Errorf("%s: the primary moved to %s (generation %d), then failed over to %s (generation %d)", vs.Name, to, g, cur.Primary, cur.Generation)
			}
		}
		switch {
		case cur.Restarted != "" && cur.Generation > vs.Generation:
			return fmt.Errorf("%s: every replica was lost during the move, its memory with them; it was started again from its disk on %s (generation %d)", vs.Name, cur.Primary, cur.Generation)
		case cur.Primary != vs.Primary && (cur.Primary != to || !primary):
			return fmt.Errorf("%s: failed over to %s during the move (generation %d)", vs.Name, cur.Primary, cur.Generation)
		case !primary && cur.Backup == to && cur.Generation > vs.Generation && cur.Protected:
			progress(step("%s: done: primary %s, backup %s, generation %d", vs.Name, cur.Primary, cur.Backup, cur.Generation))
			return nil
		case primary && cur.Primary == to && strings.HasPrefix(cur.State, "running"):
			if switched.IsZero() {
				switched = now
				progress(step("%s: %s is the primary (generation %d)", vs.Name, to, cur.Generation))
			}
			if cur.Protected {
				progress(step("%s: done: primary %s, backup %s, generation %d", vs.Name, cur.Primary, cur.Backup, cur.Generation))
				return nil
			}
			if now.Sub(switched) > protectedWait {
				progress(step("%s: done: primary %s, running alone (%s)", vs.Name, cur.Primary, cur.Protection))
				return nil
			}
		}
	}
}

// DrainVMs empties host name for maintenance: it marks the host draining
// (no VM is placed or cloned onto it) and moves every VM off it, one at a
// time: a backup to the least loaded other host, a primary to its backup
// (the old primary, which follows as the backup, is then moved off as a
// backup). With undo it clears the mark. A host
// that is down, or the last live host, is refused and nothing changes.
func DrainVMs(ctx context.Context, dir storage.Store, name string, undo bool, progress func(MoveProgress)) error {
	now := time.Now()
	hosts, err := Hosts(dir, now)
	if err != nil {
		return err
	}
	h, ok := findHost(hosts, name)
	switch {
	case !ok:
		return fmt.Errorf("no host %q in the registry", name)
	case !h.Alive:
		return fmt.Errorf("host %s is down (its VMs failed over or will)", name)
	}
	others := 0
	for _, o := range hosts {
		if o.Alive && !o.Draining && o.Name != name {
			others++
		}
	}
	switch {
	case undo && !h.Draining:
		progress(step("%s: was not draining", name))
		return nil
	case !undo && others == 0 && h.Draining:
		return fmt.Errorf("cannot drain %s: it is marked draining already, and no other live host is free to take its VMs", name)
	case !undo && others == 0:
		return fmt.Errorf("cannot drain %s: it is the last live host that is not draining; its VMs would have nowhere to go", name)
	}
	if !undo {
		// Every VM on the host must have somewhere to go, before any moves.
		vms, err := vmStates(dir, now, hosts)
		if err != nil {
			return err
		}
		for _, v := range vms {
			if !strings.HasPrefix(v.State, "running") || (v.Primary != name && v.Backup != name) {
				continue
			}
			_, to, primary := drainTarget(v, vms, hosts, name)
			if to == "" {
				return fmt.Errorf("cannot drain %s: vm %s has nowhere to go (no live host that is not draining, other than its primary and backup)", name, v.Name)
			}
			// A primary hands over to its backup, which then needs a new
			// backup: without a host for it the VM would run unprotected.
			if primary && to == v.Backup && !slices.ContainsFunc(hosts, func(o HostState) bool {
				return o.Alive && !o.Draining && o.Name != name && o.Name != v.Backup
			}) {
				return fmt.Errorf("cannot drain %s: vm %s would run unprotected (no live host but %s, its backup, to clone a new backup onto)", name, v.Name, v.Backup)
			}
		}
	}
	key, err := dir.ClusterKey()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = control(cctx, h.Addr, key, controlRequest{Op: "drain", Drain: !undo})
	cancel()
	if err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	if undo {
		progress(step("%s: no longer draining", name))
		return nil
	}
	progress(step("%s: draining: no VM is placed on it any more", name))
	// The VMs moved off: one may move twice (its primary hands over to
	// its backup, then the old primary, now its backup, moves off).
	moved := map[string]bool{}
	var waited time.Time
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := time.Now()
		hosts, err := Hosts(dir, now)
		if err != nil {
			return err
		}
		vms, err := vmStates(dir, now, hosts)
		if err != nil {
			return err
		}
		next, to, primary := drainNext(vms, hosts, name)
		if next == nil {
			// Not drained while the host receives a clone (one that
			// began before the mark: it is refused at its final pause,
			// or it committed and its VM is moved off next), or while a
			// VM's latest owner record is on the host and its status
			// does not say yet how it runs.
			wait, err := drainWait(ctx, key, h.Addr, vms, name)
			if err != nil {
				return err
			}
			if wait != "" {
				if waited.IsZero() {
					waited = now
					progress(step("%s: waiting: %s", name, wait))
				}
				if now.Sub(waited) > moveWait {
					return fmt.Errorf("cannot drain %s: %s", name, wait)
				}
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
				continue
			}
			if len(moved) == 1 {
				progress(step("%s: drained: 1 VM moved off", name))
			} else {
				progress(step("%s: drained: %d VMs moved off", name, len(moved)))
			}
			return nil
		}
		if to == "" {
			return fmt.Errorf("cannot move %s off %s: no other live host", next.Name, name)
		}
		if err := moveVM(ctx, dir, hosts, *next, to, primary, progress); err != nil {
			return err
		}
		moved[next.Name] = true
	}
}

// drainWait says what a drain of host name (at addr) must wait for before
// it is done: a clone the host receives, or a VM whose latest generation
// is on the host but whose state is not known yet; "" for nothing.
func drainWait(ctx context.Context, key []byte, addr string, vms []VMState, name string) (string, error) {
	for _, v := range vms {
		if (v.Primary == name || v.Backup == name) && !strings.HasPrefix(v.State, "running") && !VMEnded(v.State) {
			return fmt.Sprintf("vm %s's generation %d is on it, and its state is not known yet", v.Name, v.Generation), nil
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	rep, err := control(cctx, addr, key, controlRequest{Op: "incoming"})
	cancel()
	if err != nil {
		return "", fmt.Errorf("host %s: %w", name, err)
	}
	if len(rep.Incoming) > 0 {
		return fmt.Sprintf("it is receiving a clone of %s", strings.Join(rep.Incoming, ", ")), nil
	}
	return "", nil
}

// drainNext picks the next VM to move off host name, where to, and whether
// its primary moves; nil when no running VM uses the host.
func drainNext(vms []VMState, hosts []HostState, name string) (*VMState, string, bool) {
	for i, v := range vms {
		if strings.HasPrefix(v.State, "running") && (v.Primary == name || v.Backup == name) {
			_, to, primary := drainTarget(v, vms, hosts, name)
			return &vms[i], to, primary
		}
	}
	return nil, "", false
}

// drainTarget says where v goes off host name: a backup to the least
// loaded other live host, a primary to its backup (or, with none, to such
// a host); "" if there is none.
func drainTarget(v VMState, vms []VMState, hosts []HostState, name string) (VMState, string, bool) {
	if v.Primary == name {
		if b, ok := findHost(hosts, v.Backup); ok && b.Alive && !b.Draining && b.Name != name {
			return v, v.Backup, true
		}
	}
	var cands []string
	for _, h := range hosts {
		if h.Alive && !h.Draining && h.Name != name && h.Name != v.Primary && h.Name != v.Backup {
			cands = append(cands, h.Name)
		}
	}
	byLoad(cands, loadOf(vms, "", true), v.Primary == name)
	if len(cands) == 0 {
		return v, "", v.Primary == name
	}
	return v, cands[0], v.Primary == name
}

// runningVM returns VM vm's state, or an error unless it runs.
func runningVM(dir storage.Store, now time.Time, hosts []HostState, vm string) (VMState, error) {
	v, err := findVM(dir, now, hosts, vm)
	switch {
	case err != nil:
	case v.State == "starting" || v.State == "going live":
		err = fmt.Errorf("vm %s is %s (a failover or a move is under way): try again once it runs", vm, v.State)
	case !strings.HasPrefix(v.State, "running"):
		err = fmt.Errorf("vm %s is not running (%s)", vm, v.State)
	}
	return v, err
}

// findVM returns VM vm's state.
func findVM(dir storage.Store, now time.Time, hosts []HostState, vm string) (VMState, error) {
	vms, err := vmStatesOf(dir, now, hosts, []string{vm})
	if err != nil {
		return VMState{}, err
	}
	for _, v := range vms {
		if v.Name == vm {
			return v, nil
		}
	}
	return VMState{}, fmt.Errorf("no vm %q", vm)
}

// VMEnded reports whether a VM in state (VMState.State) runs nowhere any
// more.
func VMEnded(state string) bool {
	switch {
	case state == "stopped", state == "exited", state == "failed", state == "halted", strings.HasPrefix(state, "lost"):
		return true
	}
	return false
}

func findHost(hosts []HostState, name string) (HostState, bool) {
	for _, h := range hosts {
		if h.Name == name {
			return h, true
		}
	}
	return HostState{}, false
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
