package host

import (
	"context"
	"errors"
	"fmt"
	"time"

	"ftvm/ft"
	"ftvm/storage"
	"ftvm/vmm"
)

// Planned moves (VMware's VMotion of the halves of an FT VM), asked for by
// ftvm move and ftvm drain through the primary's host:
//
//   - Moving the backup: the primary clones its VM onto the new host while
//     the guest runs, as when it restores redundancy, and the new pair
//     claims the next generation. The old backup is told to leave (it
//     would lose the claim anyway).
//   - Moving the primary (a switchover) to its backup: the primary pauses
//     its guest between two calls, waits until the backup has every
//     entry and has heard how much output was written, lets out the
//     outputs that were waiting for them, closes its listening sockets and
//     hands over: the backup claims the next generation at once, naming
//     the old primary its backup, and goes live where the log ends,
//     paired with it (its outputs wait for the old primary's
//     acknowledgements). The old primary, its guest still paused, watches
//     the storage: once the backup's claim shows there it follows
//     (follow): its paused VM, whose state is the new primary's at the
//     end of the log, becomes a VM that replays the new primary's log
//     from there, and it dials the new primary as any backup does. Its
//     clients see their connections close and reconnect to the new
//     primary, as after a failure, but nothing is lost or repeated; and
//     the VM is never without a backup. Should the backup fall silent
//     first (it crashed, or never heard the goodbye and took the silence
//     for a failure), the old primary claims the next generation itself,
//     and if it wins it goes on alone where it paused. Either way the
//     test-and-set decides, and a handover never loses the VM. To move
//     the primary to a host that is not the backup, the backup is moved
//     there first.
//
// Draining a host marks it draining in the registry (no VM is placed or
// cloned onto it) and moves every VM off it that way.

// Goodbyes of planned moves.
const (
	// byeMoved tells a backup that a clone replaced it: it leaves.
	byeMoved = "moved"
	// byeHandover tells a backup that its primary handed the VM over: it
	// has every entry, the primary emits nothing more, and the backup
	// claims the next generation at once.
	byeHandover = "handover"
)

// handoverTimeout bounds the wait, at a switchover, for the backup to have
// every entry; the guest is paused meanwhile.
const handoverTimeout = 2 * time.Second

// handoverPoll is how often a primary that handed its VM over reads the
// owner record for its backup's claim: its clients wait for that to see
// their connections close.
const handoverPoll = 10 * time.Millisecond

var errBusy = errors.New("a move or a clone of this vm is in progress")

// move starts a planned move of vm, which this host runs as primary: its
// backup to host to, or with primary its primary role (a switchover; to
// becomes the backup first if it is not). It returns at once; the runner's
// status says how the move goes.
func (h *Host) move(vm, to string, primary bool, id string) error {
	r := h.runner(vm)
	if r == nil || r.finished() {
		return fmt.Errorf("this host does not run %s", vm)
	}
	st := r.softState()
	switch {
	case st.Role != ft.Primary && st.Role != ft.Alone:
		return fmt.Errorf("this host is not %s's primary (it is its %s)", vm, st.Role)
	case to == h.cfg.Name:
		if primary {
			return fmt.Errorf("%s is already %s's primary", to, vm)
		}
		return fmt.Errorf("the primary's host cannot be the backup")
	case !primary && to == st.Peer && st.Role == ft.Primary:
		return fmt.Errorf("%s is already %s's backup", to, vm)
	}
	if hs, ok := h.peer(to); !ok || hs.Addr == "" {
		return fmt.Errorf("no host %s", to)
	} else if hs.Draining {
		return fmt.Errorf("host %s is draining", to)
	}
	r.mu.Lock()
	if r.moving {
		r.mu.Unlock()
		return errBusy
	}
	r.moving, r.moveState, r.moveID = true, "", id
	r.mu.Unlock()
	go func() {
		defer func() {
			r.mu.Lock()
			r.moving = false
			r.mu.Unlock()
		}()
		if err := r.moveTo(to, primary); err != nil {
			r.log.Warn("planned move failed", "to", to, "primary", primary, "err", err)
			r.setMove(fmt.Sprintf("move to %s failed: %v", to, err))
		}
	}()
	return nil
}

func (r *runner) setMove(s string) {
	r.mu.Lock()
	r.moveState = s
	r.mu.Unlock()
	r.statusDirty.Store(true)
}

// moveTo carries out a planned move (see move).
func (r *runner) moveTo(to string, primary bool) error {
	if st := r.softState(); st.Peer != to {
		// The backup first (or a backup at all, for a primary alone).
		if err := r.moveBackup(to); err != nil {
			return err
		}
		if !primary {
			return nil
		}
		// The node takes the new pair on its next turn.
		deadline := time.Now().Add(5 * time.Second)
		for st := r.softState(); st.Peer != to || st.Role != ft.Primary; st = r.softState() {
			if time.Now().After(deadline) || r.ctx.Err() != nil {
				return errors.New("the new pair did not form")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if !primary {
		return nil
	}
	return r.switchover(to)
}

// moveBackup has the node clone the VM onto to and waits for the outcome.
// A failover or a clone under way goes first: the move waits for it (up
// to cloneTimeout).
func (r *runner) moveBackup(to string) error {
	wait := make(chan cloneOutcome, 1)
	deadline := time.Now().Add(cloneTimeout)
	for {
		accepted, already, ignored := false, false, false
		err := r.withNode(r.ctx, func(n *ft.Node) {
			if !n.CanMoveBackup() {
				return
			}
			if n.Role() == ft.Primary && n.Peer() == to {
				// A clone that restored redundancy picked it meanwhile.
				already = true
				return
			}
			r.mu.Lock()
			r.moveWait = wait
			r.mu.Unlock()
			n.Step(ft.Event{Kind: ft.EvMoveBackup, Peer: to})
			accepted, ignored = n.Cloning(), !n.Cloning()
		})
		switch {
		case err != nil:
			return err
		case already:
			r.setMove("the backup is on " + to + " already")
			return nil
		case ignored:
			r.mu.Lock()
			r.moveWait = nil
			r.mu.Unlock()
			return errors.New("the node did not take the move")
		}
		if accepted {
			break
		}
		if time.Now().After(deadline) {
			return errBusy
		}
		time.Sleep(20 * time.Millisecond)
	}
	from := r.softState().Peer
	r.setMove("moving the backup to " + to)
	r.log.Info("planned move of the backup", "to", to, "from", from)
	var out cloneOutcome
	select {
	case out = <-wait:
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
	if out.err != nil {
		return out.err
	}
	r.setMove(fmt.Sprintf("moved the backup to %s (pause %s)", to, out.pause.Round(100*time.Microsecond)))
	r.log.Info("planned move of the backup done", "to", to, "from", from, "pause", out.pause.Round(time.Microsecond).String())
	return nil
}

// tellNode hands the node an event, waiting for room.
func (r *runner) tellNode(ev ft.Event) error {
	select {
	case r.events <- ev:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// switchover hands the VM over to its backup to: the guest pauses, the
// backup gets every entry, the outputs waiting for them leave, and the
// backup is told to take over; this side then waits, paused, until the
// storage shows the backup's claim (it follows as the backup, or halts
// if the claim does not name it) or it wins the next generation itself
// (the backup did not take over: it goes on alone).
func (r *runner) switchover(to string) error {
	p := r.primarySide()
	st := r.softState()
	if p == nil || st.Role != ft.Primary || st.Peer != to {
		return fmt.Errorf("%s is not the backup", to)
	}
	r.setMove("handing the primary over to " + to)
	r.log.Info("switchover: handing the vm over", "to", to)
	done := make(chan error, 1)
	if !p.handover.CompareAndSwap(nil, &done) {
		return errBusy
	}
	p.poke()
	select {
	case err := <-done:
		if err != nil {
			return err
		}
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
	r.log.Info("switchover: waiting for the backup's claim", "to", to)
	r.setMove("handed the primary over to " + to + ": waiting for its claim")
	t := time.NewTicker(handoverPoll)
	defer t.Stop()
	for {
		if r.finished() {
			// Halted as handed over (see halt), or ended otherwise.
			r.mu.Lock()
			state, detail := r.state, r.detail
			r.mu.Unlock()
			if state != "moved" {
				return fmt.Errorf("the vm ended here while %s took over: %s", to, detail)
			}
			r.log.Info("switchover: handed over", "to", to)
			r.setMove("handed the primary over to " + to)
			return nil
		}
		switch cur := r.softState(); {
		case cur.Role == ft.Alone:
			return fmt.Errorf("%s did not take over (silent): the vm goes on here", to)
		case cur.Role == ft.Backup && cur.Gen > st.Gen:
			// follow reports how turning into its backup went.
			r.log.Info("switchover: handed over", "to", to, "generation", cur.Gen, "following", true)
			return nil
		}
		if owner, ok, err := r.h.dir.Latest(r.vm); err == nil && ok {
			r.h.checkSuperseded(r, owner)
		}
		select {
		case <-t.C:
		case <-r.done:
		}
	}
}

// handoverStep is the VM's goroutine's part of a switchover, at a pause of
// the guest: with the guest held, wait until the backup has every entry,
// let out what waited for them, and hand over; or give up and go on. Once
// handed over, the guest stays paused until the runner ends, or this side
// wins the next generation after all (won).
func (p *primarySide) handoverStep() {
	ch := p.handover.Load()
	if ch == nil {
		return
	}
	resume := make(chan struct{})
	p.resume.Store(&resume)
	err := p.handOver()
	*ch <- err
	p.handover.Store(nil)
	if err == nil {
		select {
		case <-resume:
			p.r.log.Info("switchover: the backup did not take over; the guest goes on here")
		case f := <-p.takeState:
			f()
		case <-p.vmCtx.Done():
		}
	}
	p.resume.Store(nil)
}

func (p *primarySide) handOver() error {
	ctx, cancel := context.WithTimeout(p.vmCtx, handoverTimeout)
	defer cancel()
	// Every output waits for entries the backup has: once it has them
	// all, let every output out before the backup starts emitting, and
	// wait until the backup acknowledged hearing how much of stdout and
	// stderr that wrote, so that it writes none of it again, even if the
	// goodbye is lost and it takes over on its failure timeout.
	for {
		st := p.buf.lag(time.Now())
		written, _ := p.gate.Output()
		heard := p.buf.outputAcked()
		if st.Acked >= st.Last && p.gate.Flushed() && heard == written {
			break
		}
		if p.r.claiming.Load() {
			return errors.New("the backup failed (its failover is under way)")
		}
		select {
		case <-p.buf.wait():
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			switch {
			case st.Acked < st.Last:
				return fmt.Errorf("the backup did not acknowledge the log within %v (entry %d of %d)", handoverTimeout, st.Acked, st.Last)
			case heard != written:
				return fmt.Errorf("the backup did not hear how much output was written within %v (%v of %v bytes)", handoverTimeout, heard, written)
			}
			return fmt.Errorf("outputs were not all out within %v", handoverTimeout)
		}
	}
	if !p.ch.up() {
		return errors.New("the logging channel is down")
	}
	ok := false
	if err := p.r.withNode(ctx, func(n *ft.Node) {
		if ok = n.CanHandOver(); ok {
			n.Step(ft.Event{Kind: ft.EvHandedOver})
		}
	}); err != nil {
		return err
	}
	if !ok {
		return errors.New("the pair is failing over or cloning")
	}
	// From here this side emits nothing. Its listening sockets close, for
	// the new primary to take; its connections stay until the backup's
	// claim shows (then they close, and clients reconnect to the new
	// primary), or until this side goes on after all. The backup hears
	// that it takes over; were the goodbye lost, it would take over after
	// the failure timeout, this side being silent.
	p.handedOver.Store(true)
	p.halted.Store(true)
	p.os.Unlisten()
	p.ch.bye(byeHandover)
	return nil
}

// goOnAfterHandover makes a side that handed its VM over, whose backup did
// not take over, go on where it paused: it listens again and lets its
// guest run. It reports whether the side had handed over.
func (p *primarySide) goOnAfterHandover() bool {
	if !p.handedOver.Load() {
		return false
	}
	if err := p.os.Relisten(); err != nil {
		// The guest goes on; its listeners accept nothing.
		p.r.log.Error("switchover undone: the guest's listening sockets could not be opened again", "err", err)
	}
	p.handedOver.Store(false)
	p.halted.Store(false)
	if ch := p.resume.Load(); ch != nil {
		close(*ch)
	}
	return true
}

// namesFollower reports whether owner record o is a switchover's claim by
// this runner's peer that names this host its backup.
func (r *runner) namesFollower(o storage.Owner) bool {
	return o.Host == r.softState().Peer && o.Backup == r.h.cfg.Name
}

// follow makes this host, which handed its VM over to peer, peer's backup
// in generation gen (ft.ActFollow). The guest is paused where it handed
// over, with every entry acknowledged and every output written: its state
// is the new primary's at the start of gen. On the VM's goroutine, the VM
// becomes one that replays peer's log from there (vmm.VM.Replaying: the
// memory moves over, uncopied); the primary's side ends (its client
// connections close: the clients reconnect to the new primary) and a
// backup's side runs the new VM and dials peer. Should that fail, the VM
// ends here, and peer, its backup silent, goes on alone and clones a new
// one.
func (r *runner) follow(gen uint64, peer string) {
	start := time.Now()
	p := r.primarySide()
	if p == nil || !p.handedOver.Load() {
		r.log.Error("switchover: cannot follow: this side did not hand over")
		r.end("failed", "switchover: cannot follow "+peer)
		return
	}
	var (
		b   *backupSide
		vm  *vmm.VM
		seq uint64
		err error
	)
	taken := make(chan struct{})
	take := func() {
		defer close(taken)
		// Nothing more runs on this side: the guest is the backup's now.
		p.halted.Store(true)
		p.vmCancel()
		seq = p.vm.Seq()
		b = r.newBackupSide(vmm.NewLiveSource(seq))
		if serr := b.kept.seed(r.sessionSeed(p.vm)); serr != nil {
			r.log.Warn("switchover: the sessions' output was not kept", "err", serr)
		}
		cfg := b.vmConfig()
		written, unwritten := p.gate.Output()
		vm, _, err = p.vm.Replaying(r.cm, cfg, written, unwritten)
	}
	select {
	case p.takeState <- take:
		<-taken
	case <-p.vmDone:
		err = errors.New("the guest is no longer paused")
	case <-r.ctx.Done():
		return
	}
	// Its client connections close: the clients reconnect to the new
	// primary.
	p.stop("now the backup of "+peer, false)
	if err != nil {
		r.log.Error("switchover: cannot follow as the backup", "primary", peer, "err", err)
		r.setMove(fmt.Sprintf("handed the primary over to %s; following it as its backup failed: %v", peer, err))
		r.end("failed", "switchover: following "+peer+": "+err.Error())
		return
	}
	if err := r.attachMirror(vm); err != nil {
		vm.Close()
		r.log.Error("switchover: cannot follow as the backup", "primary", peer, "err", err)
		r.end("failed", "switchover: following "+peer+": "+err.Error())
		return
	}
	r.mu.Lock()
	r.primary = nil
	r.mu.Unlock()
	b.start(vm, nil)
	r.log.Info("switchover: following the new primary as its backup", "primary", peer, "generation", gen, "from_entry", seq+1,
		"took", time.Since(start).Round(time.Microsecond).String())
	r.setMove("handed the primary over to " + peer + ", and follows it as its backup")
}
