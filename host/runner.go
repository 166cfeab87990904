package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"ftvm/ft"
	"ftvm/storage"
	"ftvm/vmm"
	"ftvm/wasi"
	"ftvm/wasm"
)

// chunk is how many instructions a runner lets its VM run between looks at
// the world (flow control, position reports): a few milliseconds.
const chunk = 1 << 20

// runner runs one VM on this host, as primary or backup, with its ft.Node.
type runner struct {
	h        *Host
	vm       string
	spec     storage.VMSpec
	cm       *wasm.CompiledModule // the guest, compiled
	startGen uint64               // the generation it started in
	log      *slog.Logger

	events chan ft.Event
	// ops carries functions to run on the node (see withNode).
	ops    chan func(*ft.Node)
	ctx    context.Context // the runner's life
	cancel context.CancelFunc
	done   chan struct{} // closed when the runner has ended

	// side is the role-specific half: a primary's, or a backup's until it
	// goes live and hands over to a primary's (see promote). Read it with
	// currentSide.
	side    side
	primary *primarySide // side, when it is a primary's
	// sessions are the guest's sessions this host serves (as the live
	// primary).
	sessions sessionTable

	mu sync.Mutex
	// soft is the node's role, generation and peer, as its last Ready
	// reported them: the one copy of them outside the node, for the
	// goroutines other than drive (heartbeats, channels, statuses).
	soft ft.SoftState
	// For the status: how restoring redundancy goes (cloneState), the
	// last clone that completed, and since when the VM runs alone.
	// cloneFailed is when each spare last failed a clone.
	cloneState string
	cloneProg  *storage.CloneProgress // the clone in progress
	lastClone  string
	moveState  string // how a planned move goes, or went
	moveID     string // the move's request's id
	moving     bool   // a planned move is in progress
	// moveWait, if set, hears the outcome of the planned clone of a move.
	moveWait    chan cloneOutcome
	restarted   string // how the VM came to be started again, if it was
	aloneSince  time.Time
	cloneFailed map[string]time.Time
	state       string
	detail      string
	exitCode    *int // the guest's exit status, once it ended
	ended       bool // the VM has ended (exited, halted, stopped, failed)
	// superseded is the latest later generation checkSuperseded told the
	// node of.
	superseded atomic.Uint64
	// claiming mirrors the node's Claiming after each of its turns: its
	// peer was declared failed (a switchover waiting for acks gives up).
	claiming atomic.Bool
	stopping bool // shutdown has begun
	lastLag  time.Time
	lagLine  string // the last lag event logged
	// The status last written, with its time zeroed, and when (see
	// status.go), under the host's statusMu.
	lastStatus   storage.VMStatus
	statusAt     time.Time
	statusDirty  atomic.Bool  // something happened since the last look
	statusUrgent atomic.Bool  // and it is to be written at once (kickStatus)
	activeAt     atomic.Int64 // when it last did, Unix ns

	// Between the runner and the host's pulse (see pulse.go).
	wake      chan struct{} // the node's deadline came
	heardAt   atomic.Int64  // when the peer was last heard, Unix ns
	next      atomic.Int64  // the node's deadline, Unix ns; 0 for none
	silence   atomic.Int64  // ft.Node.SilenceTimeout, when lazy
	lazy      atomic.Bool   // heartbeats may be noted without waking drive
	beating   atomic.Bool   // this host vouches for the VM in heartbeats
	busySince atomic.Int64  // when drive's current turn began; 0 between turns
}

// side is the role-specific half of a runner: its primary or its backup.
type side interface {
	// won: this host won the next generation after its peer failed, or
	// its primary handed it the VM; pairWith, if set, is the backup it
	// goes live paired with (a switchover's: the old primary).
	won(pairWith string)
	// stop ends the VM: it lost (halt), it was stopped for good (ftvm
	// stop), or its host goes down; reason is told to the peer.
	stop(reason string, stopped bool)
	// wait waits until the guest's goroutine has returned.
	wait()
	// fill adds the side's figures to a status.
	fill(st *storage.VMStatus)
}

// Event shorthands for the paths that cannot block.
var (
	eventHeartbeat = ft.Event{Kind: ft.EvHeartbeat}
	eventTraffic   = ft.Event{Kind: ft.EvLogTraffic}
	eventPeerGone  = ft.Event{Kind: ft.EvPeerGone}
)

// event hands ev to the node without blocking: heartbeats and traffic come
// often, and dropping one when the queue is full loses nothing.
func (r *runner) event(ev ft.Event) {
	select {
	case r.events <- ev:
	default:
	}
}

func (h *Host) startRunner(ctx context.Context, spec storage.VMSpec, gen uint64, role ft.Role, peer string) (*runner, error) {
	mod, err := h.dir.Module(spec.Name)
	if err != nil {
		return nil, err
	}
	cm, err := h.modules.compile(mod)
	if err != nil {
		return nil, err
	}
	node := ft.NewNode(h.cfg.Node, role, gen, peer, time.Now())
	r := h.newRunner(ctx, spec, node)
	r.cm = cm
	switch {
	case role == ft.Backup && spec.LocalDisk():
		// Only a clone makes a copy of the disk known to agree.
		err = errors.New("a backup of a vm with a local disk is made by cloning its primary, not started afresh")
	case role == ft.Backup:
		err = r.startBackup(cm)
	case spec.LocalDisk():
		if err = h.prepareLocalDisk(spec.Name, gen); err == nil {
			err = r.startPrimary(cm, role == ft.Alone)
		}
	default:
		err = r.startPrimary(cm, role == ft.Alone)
	}
	if err != nil {
		r.cancel()
		return nil, err
	}
	r.log.Info("vm started", "role", role.String(), "generation", gen, "peer", peer)
	go r.drive(node)
	return r, nil
}

// newRunner returns a runner of spec's VM for node, in ctx; the caller
// starts its side, then its node (go r.drive(node)).
func (h *Host) newRunner(ctx context.Context, spec storage.VMSpec, node *ft.Node) *runner {
	st := node.SoftState()
	if h.events != nil {
		h.events.gens.Store(spec.Name, st.Gen)
	}
	r := &runner{
		h: h, vm: spec.Name, spec: spec, startGen: st.Gen,
		log:    h.log.With("vm", spec.Name),
		events: make(chan ft.Event, 32), // one per VM: kept small (see event)
		wake:   make(chan struct{}, 1),
		ops:    make(chan func(*ft.Node)),
		done:   make(chan struct{}),
		soft:   st,
		state:  "starting",
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	r.statusDirty.Store(true) // its first status
	return r
}

// output returns the writers of the guest's stdout and stderr: the host's,
// its lines labeled with the VM's name if the host labels them.
func (r *runner) output() (stdout, stderr io.Writer) {
	if o := r.h.labeled; o[0] != nil {
		return o[0].forVM(r.vm), o[1].forVM(r.vm)
	}
	return r.h.cfg.Stdout, r.h.cfg.Stderr
}

// wasiConfig is the guest's system configuration on this host. The
// listeners may share their addresses only with the host processes of
// peers (an old primary going down).
func (r *runner) wasiConfig(peers ...string) wasi.Config {
	stdout, stderr := r.output()
	cfg := wasi.Config{Args: r.spec.Args, Env: r.spec.Env, Stdout: stdout, Stderr: stderr, Coalesce: r.h.cfg.Coalesce}
	switch {
	case r.spec.LocalDisk():
		cfg.Preopens = []wasi.Preopen{{GuestPath: "/disk", HostDir: r.h.localDiskDir(r.vm)}}
	case r.spec.Disk:
		cfg.Preopens = []wasi.Preopen{{GuestPath: "/disk", HostDir: r.h.dir.DiskDir(r.vm)}}
	}
	for _, a := range r.spec.Listeners {
		// Shared: the backup binds it while a halting primary may still.
		guard := func(ln net.Listener) error { return r.h.guardListener(a, ln, peers) }
		cfg.Listeners = append(cfg.Listeners, wasi.Listener{Addr: a, Shared: true, Guard: guard})
	}
	return cfg
}

func (r *runner) setState(state, detail string) {
	r.mu.Lock()
	r.state, r.detail = state, detail
	r.mu.Unlock()
	r.kickStatus()
}

// exited records that the guest ended, with exit's detail and status.
func (r *runner) exited(exit vmm.Exit) {
	code := exit.Status()
	r.mu.Lock()
	if !r.ended {
		r.exitCode = &code
	}
	r.mu.Unlock()
	r.end("exited", exitDetail(exit))
}

// end records that the VM has ended; the node stops with it.
func (r *runner) end(state, detail string) {
	r.mu.Lock()
	if !r.ended {
		r.ended = true
		r.state, r.detail = state, detail
	}
	r.mu.Unlock()
	r.statusDirty.Store(true)
	r.cancel()
}

func (r *runner) finished() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// drive runs the node: events, operations and the pulse's wake-ups (at the
// node's deadline, see pulse.go), and the actions they produce, until the
// runner ends. It alone touches the node. It ticks the node before every
// event, after telling it when its peer was last heard (heartbeats are
// noted by the host as they come, not handed over one by one), and holds
// no timer of its own: an idle VM wakes only at its peer's timeout, and
// then only if the peer fell silent.
func (r *runner) drive(node *ft.Node) {
	defer close(r.done)
	defer func() {
		r.next.Store(0)
		r.beating.Store(false)
		r.writeStatus() // the last word, once the VM has ended
	}()
	var told int64 // the latest heartbeat the node was told of
	r.publish(node)
	for {
		var ev *ft.Event
		var op func(*ft.Node)
		select {
		case <-r.ctx.Done():
			r.waitVM()
			return
		case e := <-r.events:
			ev = &e
		case op = <-r.ops:
		case <-r.wake:
		}
		now := time.Now()
		r.busySince.Store(now.UnixNano())
		for r.h.fp.Stalled(r.vm) && r.ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		now = r.readBeatsFirst(now)
		if at := r.heardAt.Load(); at > told {
			node.Step(ft.Event{Kind: ft.EvHeartbeat, At: time.Unix(0, at)})
			told = at
		}
		node.Tick(now)
		switch {
		case ev != nil:
			node.Step(*ev)
		case op != nil:
			op(node)
		}
		rd := node.Ready()
		if st := rd.SoftState; st != nil && r.spec.LocalDisk() && (st.Role == ft.Alone || st.Role == ft.Primary) {
			// This host's copy of the disk is the latest in this
			// generation (see localdisk.go).
			if err := r.h.markDisk(r.vm, st.Gen); err != nil {
				r.log.Warn("local disk: cannot mark this host's copy as the latest", "err", err)
			}
		}
		if rd.SoftState != nil {
			// Before the actions, which may depend on it.
			r.mu.Lock()
			if rd.SoftState.Role == ft.Alone && r.soft.Role != ft.Alone {
				r.aloneSince, r.cloneState = time.Now(), ""
				if !r.moving {
					// A move's last words no longer describe the VM.
					r.moveState = ""
				}
				// The peer just found failed stays alive in the registry
				// for a while (a frozen host, for as long as it is
				// frozen): clones try other spares first.
				if r.soft.Peer != "" {
					if r.cloneFailed == nil {
						r.cloneFailed = map[string]time.Time{}
					}
					r.cloneFailed[r.soft.Peer] = time.Now()
				}
			}
			r.soft = *rd.SoftState
			r.mu.Unlock()
			if ev := r.h.events; ev != nil {
				ev.gens.Store(r.vm, rd.SoftState.Gen)
			}
			r.kickStatus()
		}
		r.claiming.Store(node.Claiming())
		r.sessions.setQuiet(node.Claiming())
		for _, a := range rd.Actions {
			r.act(node, a)
		}
		r.publish(node)
		r.statusDirty.Store(true)
		r.busySince.Store(0)
	}
}

// readBeatsFirst lets heartbeats that wait unread be read before the node
// takes its peer's silence for a failure, and returns the time to tick
// at. With many busy guests on few CPUs, the goroutine that reads them,
// which the network poller wakes, waits behind every runnable goroutine,
// while a timer wakes the pulse, and the pulse this node, at once: a busy
// host would fail over a peer whose heartbeats it had received but not
// yet read. So while the peer seems silent and datagrams wait, the node
// yields to the reader (up to beatReadWait).
func (r *runner) readBeatsFirst(now time.Time) time.Time {
	for deadline := now.Add(beatReadWait); now.Before(deadline); now = time.Now() {
		if !r.lazy.Load() || now.UnixNano()-r.heardAt.Load() < r.silence.Load() || !r.h.beatsWaiting() {
			break
		}
		runtime.Gosched()
		time.Sleep(100 * time.Microsecond)
	}
	return now
}

// beatReadWait bounds how long a node waits for heartbeats that wait
// unread before it decides on its peer's silence.
const beatReadWait = 200 * time.Millisecond

// publish tells the pulse what it needs of the node between turns: its
// deadline, whether heartbeats may be noted without waking it, and
// whether this host vouches for the VM in its heartbeats.
func (r *runner) publish(node *ft.Node) {
	d, lazy := node.SilenceTimeout()
	r.silence.Store(int64(d))
	r.lazy.Store(lazy)
	st := node.SoftState()
	r.beating.Store((st.Role == ft.Primary || st.Role == ft.Backup) && !node.Claiming())
	var next int64
	if t := node.Next(); !t.IsZero() {
		next = t.UnixNano()
	}
	r.next.Store(next)
	r.h.deadlineChanged(next)
}

// heard notes a heartbeat from host from for the VM in generation gen, at
// now: if from is the runner's peer in that generation, the node hears of
// it when it next runs, or at once when it needs to (see
// ft.Node.SilenceTimeout).
func (r *runner) heard(from string, gen uint64, now time.Time) {
	if st := r.softState(); st.Peer != from || st.Gen != gen {
		return
	}
	r.heardAt.Store(now.UnixNano())
	if !r.lazy.Load() {
		r.event(eventHeartbeat)
	}
}

func (r *runner) act(node *ft.Node, a ft.Action) {
	switch a.Kind {
	case ft.ActClaim:
		if a.Reason == "switchover" {
			r.log.Info("handed the vm, claiming", "generation", a.Gen, "reason", a.Reason)
		} else {
			r.log.Info("peer silent, claiming", "generation", a.Gen, "reason", a.Reason, "silence", node.PeerSilence().Round(time.Millisecond).String(), "channel_ended", node.PeerGone())
		}
		if b, ok := r.currentSide().(*backupSide); ok {
			b.goingLive()
		}
		go r.claim(a.Gen, a.Reason, a.Peer)
	case ft.ActGoLive:
		if a.Peer != "" {
			r.log.Info("won generation", "generation", a.Gen, "reason", a.Reason, "backup", a.Peer)
		} else {
			r.log.Info("won generation", "generation", a.Gen, "reason", a.Reason)
		}
		r.currentSide().won(a.Peer)
	case ft.ActHalt:
		if p := r.primarySide(); p != nil && p.handedOver.Load() {
			r.log.Info("switchover: leaving to the new primary", "generation", a.Gen)
		} else {
			r.log.Warn("lost generation, halting", "generation", a.Gen)
		}
		r.halt()
	case ft.ActClone:
		go r.clone(a.Gen, a.Peer)
	case ft.ActFollow:
		go r.follow(a.Gen, a.Peer)
	}
	if a.Kind == ft.ActGoLive || a.Kind == ft.ActHalt || a.Kind == ft.ActFollow {
		r.kickStatus()
	}
}

// withNode runs f on the node, on the goroutine that drives it, and
// returns once it ran (the node's actions follow), or once ctx or the
// runner ended.
func (r *runner) withNode(ctx context.Context, f func(*ft.Node)) error {
	done := make(chan struct{})
	op := func(n *ft.Node) {
		f(n)
		close(done)
	}
	select {
	case r.ops <- op:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

// softState returns the node's role, generation and peer as last reported.
func (r *runner) softState() ft.SoftState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.soft
}

// currentSide returns the runner's side.
func (r *runner) currentSide() side {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.side
}

// primarySide returns the runner's side if it is a primary's, else nil.
func (r *runner) primarySide() *primarySide {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.primary
}

// role returns the node's role as last reported.
func (r *runner) role() ft.Role { return r.softState().Role }

// claim performs the test-and-set for gen, naming backup the backup (a
// switchover's claim names the old primary), and reports the outcome. A
// claim lost to a switchover claim that names this host the backup, with
// no generation after it, makes the node follow (a primary that handed
// over and claimed when its backup seemed silent).
func (r *runner) claim(gen uint64, reason, backup string) {
	r.h.claims.Add(1)
	defer func() {
		r.h.claimedAt.Store(time.Now().UnixNano())
		r.h.claims.Add(-1)
	}()
	won, cur, err := r.h.dir.Claim(r.vm, storage.Owner{Generation: gen, Host: r.h.cfg.Name, Role: "primary", Reason: reason, Backup: backup})
	ev := ft.Event{Kind: ft.EvClaimed, Gen: gen, Won: won}
	if err != nil {
		r.log.Warn("claim failed, will retry", "generation", gen, "err", err)
		ev = ft.Event{Kind: ft.EvClaimFailed, Gen: gen}
	} else if !won {
		r.log.Info("generation already claimed", "generation", gen, "by", cur.Host)
		if latest, ok, err := r.h.dir.Latest(r.vm); err == nil && ok && latest.Generation == gen && r.namesFollower(cur) {
			ev = ft.Event{Kind: ft.EvFollow, Gen: gen, Peer: cur.Host}
		}
	}
	select {
	case r.events <- ev:
	case <-r.ctx.Done():
	}
}

// halt stops the VM for good: it lost its generation, and emits nothing
// more.
func (r *runner) halt() {
	if p := r.primarySide(); p != nil && p.handedOver.Load() {
		// A switchover: the backup's claim won, as it should.
		to := r.softState().Peer
		r.setMove("handed the primary over to " + to)
		p.stop("handed over to "+to, false)
		r.end("moved", "handed over to "+to)
		return
	}
	r.currentSide().stop("halted", false)
	r.end("halted", "lost the test-and-set")
}

// shutdown ends the runner: for good if stopped (ftvm stop), or because the
// host goes down (then the peer takes over).
func (r *runner) shutdown(reason string, stopped bool) {
	state := "stopped"
	if !stopped {
		state = "host down"
	}
	r.shutdownAs(reason, state, stopped)
}

// shutdownAs is shutdown, leaving the VM in state.
func (r *runner) shutdownAs(reason, state string, stopped bool) {
	r.mu.Lock()
	busy := r.ended || r.stopping
	r.stopping = true
	r.mu.Unlock()
	sd := r.currentSide()
	if sd == nil {
		return
	}
	if busy {
		<-r.done
		return
	}
	r.log.Info("vm shutting down", "reason", reason)
	sd.stop(reason, stopped)
	r.end(state, reason)
	<-r.done
}

func (r *runner) waitVM() {
	// A backup that went live hands over to a primary side: wait for the
	// one that runs the guest last.
	for {
		sd := r.currentSide()
		if sd == nil {
			return
		}
		sd.wait()
		if r.currentSide() == sd {
			return
		}
	}
}

// vmConfig completes a side's VM configuration with what the host adds.
func (r *runner) vmConfig(cfg vmm.Config) vmm.Config {
	cfg.Slice, cfg.Logger, cfg.CPU = chunk, r.log, r.h.cpu.share()
	cfg.SessionInput = r.sessionInput
	if r.h.cfg.Profiles != "" {
		cfg.ProfilePeriod = vmm.DefaultProfilePeriod
	}
	return cfg
}

// saveProfile writes vm's guest profile if the host keeps them.
func (r *runner) saveProfile(vm *vmm.VM) {
	if r.h.cfg.Profiles == "" || vm == nil {
		return
	}
	path := filepath.Join(r.h.cfg.Profiles, fmt.Sprintf("%s-gen%d-%s.pprof", r.vm, r.startGen, r.h.cfg.Name))
	// Written aside and renamed, so that a file at path is complete.
	err := os.MkdirAll(r.h.cfg.Profiles, 0o755)
	var f *os.File
	if err == nil {
		f, err = os.CreateTemp(r.h.cfg.Profiles, ".profile-*")
	}
	if err == nil {
		err = errors.Join(vm.WriteProfile(f), f.Close())
		if err == nil {
			err = os.Rename(f.Name(), path)
		}
		if err != nil {
			os.Remove(f.Name())
		}
	}
	if err != nil {
		r.log.Warn("guest profile not written", "path", path, "err", err)
		return
	}
	r.log.Info("guest profile written", "path", path)
}
