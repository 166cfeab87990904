package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"ftvm/ft"
	"ftvm/replog"
	"ftvm/storage"
	"ftvm/vmm"
	"ftvm/wasi"
	"ftvm/wasm"
)

// backupSide is a runner's backup half: the VM replaying what the logging
// channel delivers, and the channel itself, which it dials.
type backupSide struct {
	r *runner
	// The pair it is the backup in: its primary and their generation.
	peer string
	gen  uint64
	src  *vmm.LiveSource
	at   atomic.Uint64 // the replay's position
	vm   *vmm.VM

	vmCtx    context.Context
	vmCancel context.CancelFunc
	vmDone   chan struct{}
	halted   atomic.Bool
	// left: the primary said goodbye for good (a handover, a move): the
	// channel is not dialed again.
	left atomic.Bool
	// everUp: the logging channel came up at least once (the primary
	// ran the VM).
	everUp atomic.Bool
	ch     channel
	aside  *stepAside
	prio   *replayPriority // used by the replay goroutine only, but for boost
	// claiming is set once the node claims the next generation, to go
	// live: the replay stays at the host's priority from then on.
	claiming atomic.Bool
	// ackLoop waits on kick while the replay stands still; a batch or the
	// replay moving on wakes it.
	kick    chan struct{}
	ackIdle atomic.Bool
	// Closed when the primary says its guest ended and its output is all
	// written, and when this backup won the next generation.
	primaryEnded, wonCh chan struct{}
	endedOnce, wonOnce  sync.Once
	// kept is the sessions' output the replay regenerated that their
	// clients may not have yet.
	kept *keptOutput
	// pairWith is the backup this side goes live paired with (a
	// switchover's: the old primary), set before the log ends.
	pairWith atomic.Pointer[string]
	// cpu is the replaying VM's share of the host's processors.
	cpu *cpuShare
}

// advance records that the replay reached pos, waking an idle ackLoop:
// a primary held back by flow control sends nothing more until it hears
// that the backup caught up.
func (b *backupSide) advance(pos uint64) {
	if pos > b.at.Load() {
		b.at.Store(pos)
		b.src.Replayed(pos)
		if b.ackIdle.Load() {
			b.kickAcks()
		}
	}
}

// kickAcks wakes ackLoop.
func (b *backupSide) kickAcks() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// trackedSource is the backup's Source; it notes where the replay is
// waiting, so acks can say how far it got, and lets the logging channel's
// reader in (see stepAside).
type trackedSource struct {
	*vmm.LiveSource
	b *backupSide
}

func (s trackedSource) Peek(ctx context.Context, pos uint64) (replog.Entry, bool, error) {
	s.b.advance(pos)
	s.b.prio.check()
	s.b.aside.look(ctx, &s.b.ch)
	return s.LiveSource.Peek(ctx, pos)
}

func (r *runner) startBackup(cm *wasm.CompiledModule) error {
	b := r.newBackupSide(vmm.NewLiveSource(0))
	vm, err := vmm.New(cm, b.vmConfig())
	if err != nil {
		return err
	}
	b.start(vm, nil)
	return nil
}

// newBackupSide returns the backup side of the pair the runner's node is
// in, replaying from src; start runs it.
func (r *runner) newBackupSide(src *vmm.LiveSource) *backupSide {
	st := r.softState()
	b := &backupSide{r: r, peer: st.Peer, gen: st.Gen, src: src, vmDone: make(chan struct{}), aside: newStepAside(), kick: make(chan struct{}, 1),
		primaryEnded: make(chan struct{}), wonCh: make(chan struct{}), kept: newKeptOutput()}
	b.prio = newReplayPriority(r.h.cfg.ReplayNice, r.h.cfg.LagBound, b.src.BehindAt, r.log)
	b.vmCtx, b.vmCancel = context.WithCancel(r.ctx)
	return b
}

// vmConfig is the configuration of the backup's replaying VM: it keeps
// its sessions' output for their clients.
func (b *backupSide) vmConfig() vmm.Config {
	cfg := b.r.vmConfig(vmm.Config{WASI: b.wasiConfig(), Replay: trackedSource{b.src, b},
		SessionOutput: b.kept.output, SessionClosed: b.kept.closed})
	b.cpu = cfg.CPU.(*cpuShare)
	b.cpu.replay.Store(true)
	// Trailing as the replay's priority says it trails: by a quarter of
	// the lag bound.
	trails := b.prio.high
	b.cpu.trailing = func() bool { return b.src.BehindAt(time.Now()) >= trails }
	return cfg
}

// wasiConfig is the guest's system configuration for the backup: a backup
// performs nothing, and its outputs are computed and dropped.
func (b *backupSide) wasiConfig() wasi.Config {
	cfg := b.r.wasiConfig()
	cfg.Stdout, cfg.Stderr = nil, nil
	return cfg
}

// start runs the backup side on vm, a VM replaying from b.src; c, if not
// nil, is its logging channel already open (a clone's).
func (b *backupSide) start(vm *vmm.VM, c *replog.Conn) {
	b.vm = vm
	r := b.r
	r.mu.Lock()
	r.side = b
	r.mu.Unlock()
	go b.run()
	go b.dialLoop(c)
	r.setState("running", "")
}

// run replays the log; when the log ends for good (this backup won the
// generation after its primary failed) it goes live where the replay
// stopped and runs on as the only copy. While it replays, it alternates
// between segments in the background, each on a nicer thread of its own
// that ends with the segment, and at the host's priority (see
// replayPriority).
func (b *backupSide) run() {
	defer close(b.vmDone)
	for {
		res := stepOn
		if b.prio.enabled() && !b.claiming.Load() {
			res = b.backgroundSegment()
		}
		if res == stepOn {
			res = b.segment(false)
		}
		switch res {
		case stepDone:
			b.r.saveProfile(b.vm)
			return
		case stepLogEnded:
			// On this goroutine, at the host's priority: the guest is
			// about to be the VM's only copy, which a primary's side
			// runs from now on.
			if p := b.goLive(); p != nil {
				p.run()
			}
			return
		}
	}
}

// backgroundSegment runs a segment in the background on a thread of its
// own, which ends with it.
func (b *backupSide) backgroundSegment() stepResult {
	done := make(chan stepResult)
	// Holding this goroutine's thread while it waits keeps the segment
	// off it: it may be the main thread, which Go cannot end.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	go func() {
		// Never unlocked: Go ends the nicer thread with this goroutine,
		// rather than hand it to others.
		runtime.LockOSThread()
		if threadID() == os.Getpid() {
			// The main thread: Go would park it for good rather than end
			// it. Leave it as it is, and this segment to the host's
			// priority.
			runtime.UnlockOSThread()
			done <- stepOn
			return
		}
		done <- b.segment(true)
	}()
	return <-done
}

// stepResult is what a run of the VM came to.
type stepResult int

const (
	stepOn       stepResult = iota // the VM runs on
	stepLogEnded                   // the log ended for good: go live
	stepDone                       // the VM's run here is over
)

// replayStretch bounds a replay's runs between looks at its priority and
// turns of the host's processors: about a millisecond on either tier. (On
// the compiler an eighth of that, 2^17 instructions, made 8 times the
// turns of a primary's; with 100 busy VMs the turns' own costs took a
// tenth of what FT got of exec's throughput.)
func replayStretch(e wasm.Engine) uint64 {
	if e == wasm.EngineCompiler {
		return chunk
	}
	return chunk / 8
}

// segment runs the VM until its run here is over, its log ends, or (while
// it replays) the replay should change its priority. In the background
// it first raises the nice value of its thread, which the caller locked.
func (b *backupSide) segment(background bool) stepResult {
	if background {
		if !b.prio.lower() {
			return stepOn
		}
		// Before its thread ends, or is handed back (see boost).
		defer b.prio.ended()
	} else {
		b.prio.atHostPriority()
	}
	for {
		res := b.step(replayStretch(b.r.h.modules.engine))
		if res != stepOn || b.prio.switchWanted {
			return res
		}
	}
}

// step runs the VM for up to n instructions.
func (b *backupSide) step(n uint64) stepResult {
	r := b.r
	paused, exit, err := b.vm.RunUntil(b.vmCtx, b.vm.Position()+n)
	b.advance(b.vm.Position())
	b.prio.check()
	switch {
	case errors.Is(err, vmm.ErrLogEnded):
		return stepLogEnded
	case err != nil:
		if b.vmCtx.Err() == nil && !b.halted.Load() {
			var div *vmm.DivergenceError
			if errors.As(err, &div) {
				r.log.Error("replay diverged", "err", err)
			} else {
				r.log.Error("vm failed", "err", err)
			}
			r.end("failed", err.Error())
		}
		return stepDone
	case !paused:
		b.guestEnded(exit)
		return stepDone
	case b.src.Drained():
		// The log ended and the replay consumed it all: go live here,
		// rather than at the guest's next call, which a guest that only
		// computes may not make for minutes (it stayed going live, and
		// unprotected, all that time).
		return stepLogEnded
	}
	return stepOn
}

// guestEnded: the replay reached the guest's end. The primary may still
// hold output of the guest that it has not written (a slow reader of its
// stdout), which this backup replayed and keeps: so the backup stays, its
// node and channel with it, until the primary says it has written it all
// (its goodbye when its guest ended), or fails, and then this backup,
// once it won the next generation, writes it itself.
func (b *backupSide) guestEnded(exit vmm.Exit) {
	r := b.r
	detail := exitDetail(exit)
	r.log.Info("guest ended; waiting for the primary to write its last output", "detail", detail)
	select {
	case <-b.primaryEnded:
	case <-b.wonCh:
		stdout, stderr := b.vm.Unwritten()
		wout, werr := r.output()
		_, _ = wout.Write(stdout)
		_, _ = werr.Write(stderr)
		r.log.Info("the primary failed after its guest ended: wrote the output it may not have written",
			"stdout_bytes", len(stdout), "stderr_bytes", len(stderr))
	case <-b.vmCtx.Done():
		return
	}
	r.log.Info("guest ended", "detail", detail)
	b.ch.bye(byeGuestEnded)
	r.exited(exit)
	b.vm.Close()
}

// goLive makes the VM, whose replay stopped at the first call its ended
// log has no entry for, the VM's only copy, run by a primary's side from
// now on, which it returns; nil if it failed.
func (b *backupSide) goLive() *primarySide {
	r := b.r
	start := time.Now()
	seq, _ := b.src.Received()
	b.fencePrimary()
	pairWith := ""
	if s := b.pairWith.Load(); s != nil {
		pairWith = *s
	}
	p, err := r.promote(b.vm, b.peer, pairWith, b.kept)
	if err != nil {
		r.log.Error("go-live failed", "err", err)
		r.end("failed", "go-live: "+err.Error())
		b.vm.Close()
		return nil
	}
	// Its guest's own computation from here: its turns are weighed by
	// its use like any other's.
	b.cpu.replay.Store(false)
	if pairWith != "" && r.h.fp.CrashOn("switched") {
		crash()
	}
	// A primary that was only frozen must hear nothing more from its old
	// backup, and may send nothing it would take.
	b.ch.bye("the backup went live")
	r.log.Info("live", "replayed_entries", seq, "position", b.vm.Position(), "took", time.Since(start).Round(time.Microsecond).String())
	select {
	case r.events <- ft.Event{Kind: ft.EvLive}:
	case <-b.vmCtx.Done():
	}
	return p
}

// fencePrimary fences the old primary's process if it runs on this machine
// (see fencePeer): a frozen primary must not keep taking new connections,
// holding its clients, or resume with a disk write in flight. Failing
// that, the backup goes live regardless.
func (b *backupSide) fencePrimary() {
	r := b.r
	p, ok := r.h.peer(b.peer)
	if !ok || !r.h.fp.Fence() {
		return
	}
	done, err := fencePeer(p, r.h.self(), r.spec.Listeners)
	switch {
	case err != nil:
		r.log.Warn("could not fence the old primary; clients it holds wait until it halts", "primary", b.peer, "err", err)
	case done.sockets > 0 || done.killed:
		r.log.Info("fenced the old primary", "primary", b.peer, "pid", p.PID, "sockets_shut", done.sockets, "killed_stopped_process", done.killed)
	}
}

// dialLoop keeps the logging channel to the primary up while this host is
// its backup. Between dials it pauses redialFirst, doubling up to
// redialMax while the channel does not come up (typically: the primary's
// host has not started the VM yet, and its first output waits for this
// backup), and starting again from redialFirst after a channel that was up.
func (b *backupSide) dialLoop(first *replog.Conn) {
	r := b.r
	pause := redialFirst
	if first != nil {
		b.serve(first)
	}
	for b.vmCtx.Err() == nil && !b.src.Ended() && !b.left.Load() {
		if !r.h.fp.LogCut(b.peer) {
			if p, ok := r.h.peerNow(b.peer); ok && b.session(p.Addr) {
				pause = redialFirst
			}
		}
		select {
		case <-b.vmCtx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, redialMax)
	}
}

// The backup's pauses between dials of a logging channel that does not
// come up.
const (
	redialFirst = 5 * time.Millisecond
	redialMax   = 100 * time.Millisecond
)

// refusedFresh is how long a refused dial of a peer host's address
// stands for every VM's: after a host dies, each of its VMs' backups
// dials it every few milliseconds until it goes live, thousands of dials
// a second for one fact.
const refusedFresh = 50 * time.Millisecond

// noteRefused records that a dial of addr was refused now.
func (h *Host) noteRefused(addr string) { h.refused.Store(addr, time.Now().UnixNano()) }

// refusedLately reports whether a dial of addr was refused within
// refusedFresh.
func (h *Host) refusedLately(addr string) bool {
	at, ok := h.refused.Load(addr)
	return ok && time.Since(time.Unix(0, at.(int64))) < refusedFresh
}

// session runs one logging-channel connection: batches in, acks out. It
// reports whether the channel came up (a batch arrived).
func (b *backupSide) session(addr string) (up bool) {
	r := b.r
	if r.h.refusedLately(addr) {
		// Its host refused another VM's dial a moment ago: its process
		// is gone, and the hundreds of backups it leaves need not each
		// hear so again (see refusedLately).
		r.event(eventPeerGone)
		return false
	}
	have, _ := b.src.Received()
	ctx, cancel := context.WithTimeout(b.vmCtx, time.Second)
	c, err := replog.Dial(ctx, addr, r.h.key, logHello{VM: r.vm, Gen: b.gen, Backup: r.h.cfg.Name, HaveSeq: have}.marshal())
	cancel()
	if errors.Is(err, syscall.ECONNREFUSED) {
		r.h.noteRefused(addr)
	}
	if err != nil {
		r.log.Debug("dial primary failed", "primary", b.peer, "err", err)
		if peerEnded(err) && b.vmCtx.Err() == nil {
			r.event(eventPeerGone)
		}
		return false
	}
	return b.serve(c)
}

// serve runs the logging-channel connection c: batches in, acks out. It
// reports whether the channel came up (a batch arrived).
func (b *backupSide) serve(c *replog.Conn) (up bool) {
	r := b.r
	id := b.ch.set(c)
	r.h.track(c, b.peer)
	ctx, cancel := context.WithCancel(b.vmCtx)
	defer func() {
		cancel()
		c.Close()
		r.h.untrack(c)
		b.ch.clear(id)
		b.aside.took()
	}()
	go b.ackLoop(ctx, c)
	var ackedOut [2]uint64 // the output counts last acknowledged
	for {
		typ, payload, err := c.ReadFrame()
		if err != nil {
			// Closed here on purpose (going live, a cut) or ended.
			if ctx.Err() == nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				r.log.Warn("logging channel closed", "primary", b.peer, "reason", err)
			}
			if ctx.Err() == nil && peerEnded(err) {
				r.event(eventPeerGone)
			}
			return
		}
		if r.h.fp.LogCut(b.peer) {
			return
		}
		switch typ {
		case replog.FrameBatch:
			batch, err := replog.ParseBatch(payload)
			if err == nil {
				err = b.src.Push(batch)
			}
			if err != nil {
				r.log.Warn("logging channel closed", "primary", b.peer, "reason", err)
				return
			}
			first := !up
			if first {
				r.log.Info("logging channel up", "primary", b.peer)
				up = true
				b.everUp.Store(true)
			}
			r.event(eventTraffic)
			if first || len(batch.Entries) > 0 || b.src.Written() != ackedOut {
				// Outputs wait for this ack, and a switchover for the
				// output counts; progress alone is reported by ackLoop.
				// The first batch is acknowledged even if empty: the
				// primary counts itself protected only once it has heard
				// its backup, and an idle guest may send nothing more.
				ackedOut = b.sendAck(c)
			}
			b.aside.took()
			b.kickAcks()
		case frameSessionAck, frameSessionEnd:
			id, pos, err := parseSessionFrame(payload)
			if err != nil {
				r.log.Warn("logging channel closed", "primary", b.peer, "reason", err)
				return
			}
			if typ == frameSessionAck {
				b.kept.ack(id, pos)
			} else {
				b.kept.end(id)
			}
		case replog.FrameBye:
			reason := string(payload)
			switch reason {
			case byeGuestEnded:
				b.endedOnce.Do(func() { close(b.primaryEnded) })
			case byeMoved:
				b.left.Store(true)
				r.log.Info("a clone on another host replaced this backup: leaving")
				go r.shutdownAs("replaced by a backup on another host", "moved", false)
				return
			case byeHandover:
				if r.h.fp.CrashOn("handover") {
					crash()
				}
				b.left.Store(true)
				r.log.Info("the primary handed the vm over: taking over")
				go func() { _ = r.tellNode(ft.Event{Kind: ft.EvHandover}) }()
				return
			}
			if reason == byeStopped {
				r.log.Info("primary stopped the vm")
				go r.shutdown("stopped by the primary", true)
			} else if !up {
				// Refused before it came up: typically the primary's host
				// has not started the VM yet.
				r.log.Debug("primary refused the logging channel", "reason", reason)
			} else {
				r.log.Info("primary closed the logging channel", "reason", reason)
				if reason == byeHostDown {
					r.event(eventPeerGone)
				}
			}
			return
		default:
			r.log.Warn("logging channel closed", "primary", b.peer, "reason", fmt.Sprintf("unexpected frame type %d", typ))
			return
		}
	}
}

// sendAck acknowledges what the backup received, and returns the output
// counts it acknowledged hearing.
func (b *backupSide) sendAck(c *replog.Conn) [2]uint64 {
	seq, _ := b.src.Received()
	out := b.src.Written()
	_ = c.WriteAck(replog.Ack{Seq: seq, Pos: b.at.Load(), Out: out})
	return out
}

// ackLoop reports the replay's progress between batches, so the primary's
// flow control sees the backup catch up. Once the replay has stood still
// for a few ticks it stops ticking until the replay moves or a batch
// comes: an idle pair stays idle.
func (b *backupSide) ackLoop(ctx context.Context, c *replog.Conn) {
	const tick, idleAfter = 5 * time.Millisecond, 4
	t := time.NewTicker(tick)
	defer t.Stop()
	var last uint64
	still := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if at := b.at.Load(); at != last {
			last, still = at, 0
			b.sendAck(c)
			continue
		}
		if still++; still < idleAfter {
			continue
		}
		t.Stop()
		b.ackIdle.Store(true)
		// A move between the look above and the flag is seen here;
		// a later one kicks.
		if b.at.Load() == last {
			select {
			case <-ctx.Done():
				return
			case <-b.kick:
			}
		}
		b.ackIdle.Store(false)
		still = 0
		t.Reset(tick)
	}
}

// goingLive: the node claims the next generation, to go live. The
// replay returns to the host's priority now, not once it wins: it must
// then replay what is left and go live at once.
func (b *backupSide) goingLive() {
	b.claiming.Store(true)
	b.prio.boost()
}

// won: the primary failed and this backup won the next generation. The
// log has ended: the replay runs to its end and goes live (see run), or,
// if the guest has ended already, the backup writes what the primary may
// not have (see guestEnded).
func (b *backupSide) won(pairWith string) {
	b.pairWith.Store(&pairWith)
	b.src.End()
	b.wonOnce.Do(func() { close(b.wonCh) })
}

// stop ends the backup, telling the primary why.
func (b *backupSide) stop(reason string, _ bool) {
	b.halted.Store(true)
	b.vmCancel()
	b.ch.bye(reason)
	<-b.vmDone
	b.vm.Close()
}

func (b *backupSide) wait() { <-b.vmDone }

func (b *backupSide) fill(st *storage.VMStatus) {
	seq, known := b.src.Received()
	st.Connected = b.ch.up()
	st.Seq, st.Pos = seq, b.at.Load()
	st.Sessions, st.SessionBytes = b.kept.size()
	if known > st.Pos && st.Detail == "" {
		// How far the primary's log reaches beyond the replay, in
		// instructions; the primary reports the lag in time. A backup
		// that ended keeps the detail that says why.
		st.Detail = fmt.Sprintf("replay %d instructions behind the log", known-st.Pos)
	}
}
