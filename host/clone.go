package host

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"ftvm/ft"
	"ftvm/replog"
	"ftvm/storage"
	"ftvm/vmm"
)

// Restoring redundancy: a primary running alone clones its VM onto a spare
// host while the guest runs (VMware FT's FT VMotion), then commits the new
// pair by claiming the next generation for it. The clone's steps:
//
//  1. The primary dials the spare with a clone hello; the spare checks that
//     the primary owns the VM's current generation and that it runs nothing
//     of the VM, compiles the module and says it is ready.
//  2. Pre-copy: at each pause of the guest between runs (the run loop's,
//     or a poke that interrupts a call that waits), the VM's goroutine
//     copies a bounded amount of memory pages (vmm.CloneSource); this
//     driver sends them; the spare lays them into its image. Rounds go on
//     until what is left can cross within the pause budget
//     (--clone-pause). A guest that writes its memory faster than the
//     channel carries it is slowed at each pause, more and more (as QEMU's
//     auto-converge does); a clone that does not converge in time is
//     abandoned, and the primary goes on alone as before.
//  3. Stop-and-copy: the guest pauses; the last pages and the rest of the
//     state cross; the spare restores a replaying VM from them and says
//     so; the primary claims the next generation for the pair on storage,
//     tells the spare, and resumes the guest with its log kept for the new
//     backup and its Output Rule armed again; the same connection carries
//     the log from then on. A spare that does not hear the commit discards
//     what it has: only a completed clone makes a backup.

// Frames of a clone connection, after its hello.
const (
	frameCloneReady    = replog.FrameControl + 1 // spare → primary: ready to receive
	frameCloneChunk    = replog.FrameControl + 2 // primary → spare: memory pages (vmm.EncodeChunk)
	frameCloneFinal    = replog.FrameControl + 3 // primary → spare: the final state
	frameCloneRestored = replog.FrameControl + 4 // spare → primary: the VM is restored
	frameCloneCommit   = replog.FrameControl + 5 // primary → spare: the pair owns the generation
	frameCloneSessions = replog.FrameControl + 7 // primary → spare, before the final state: the sessions' output (sessionSeed)
	// frameCloneSync (primary → spare) asks for a frameCloneReady once
	// every chunk before it is in, so that the final pause does not wait
	// for chunks still in flight.
	frameCloneSync = replog.FrameControl + 6
)

// Clone tuning.
const (
	// DefaultClonePause is the default bound on a clone's final pause.
	DefaultClonePause = 50 * time.Millisecond
	// cloneCopyLimit bounds the memory the VM's goroutine copies at one
	// pause of the guest.
	cloneCopyLimit = 4 << 20
	// cloneQueue is how many copied chunks may wait for the channel.
	cloneQueue = 4
	// cloneChunkBytes is the memory a chunk carries: a frame of it stays
	// within the buffer a connection keeps between frames, so that chunks
	// reuse one buffer rather than fault in a fresh one each.
	cloneChunkBytes = 1<<20 - 64<<10
	// cloneTimeout bounds a whole clone; one that has not converged by
	// then is abandoned.
	cloneTimeout = 2 * time.Minute
	// cloneStepTimeout bounds each exchange with the spare.
	cloneStepTimeout = 15 * time.Second
	// cloneDialTimeout bounds the connection and handshake with a spare.
	cloneDialTimeout = 3 * time.Second
	// finalTimeout bounds the exchange of the final pause, while the guest
	// waits: a spare that does not restore the VM within it (frozen, or
	// far too slow) costs one pause this long, and the clone.
	finalTimeout = time.Second
	// finalTries is how many times a clone goes back to its pre-copy
	// because the guest wrote more before the final pause than the pause
	// budget carries.
	finalTries = 3
	// maxThrottle is the longest the guest is held at a pause to let the
	// pre-copy converge.
	maxThrottle = 100 * time.Millisecond
	// maxRunShift bounds how much shorter the guest's runs between pauses
	// get once the throttle is at its most: chunk>>maxRunShift, 1,024
	// instructions (a guest can write a page every few instructions, so
	// a full run may rewrite hundreds of MiB however long its pauses).
	maxRunShift = 10
)

// cloneJob is a clone in progress, shared by its driver (runner.clone) and
// the VM's goroutine (primarySide.cloneStep), which alone touches the VM.
type cloneJob struct {
	chunks    chan vmm.CloneChunk
	remaining atomic.Uint64 // bytes of memory the spare does not have, at the last pause
	round     atomic.Int64
	finish    atomic.Bool   // the driver wants the final pause
	finalMax  atomic.Uint64 // the most bytes of pages the final pause may carry
	throttle  atomic.Int64  // how long the guest waits at each pause, in ns
	runShift  atomic.Int32  // the guest's runs are chunk>>runShift instructions
	final     chan cloneFinal
	resume    chan cloneResume
	src       *vmm.CloneSource // the VM's goroutine's
	stopped   atomic.Bool      // the driver gave up: drop the job
}

// slower slows the guest down, as QEMU's auto-converge slows a vCPU: it
// doubles how long the guest waits at each pause (1 ms at first), up to
// maxThrottle, then halves its runs between pauses, down to
// chunk>>maxRunShift instructions.
func (j *cloneJob) slower() {
	if t := time.Duration(j.throttle.Load()); t < maxThrottle {
		j.throttle.Store(int64(min(max(time.Millisecond, 2*t), maxThrottle)))
		return
	}
	if s := j.runShift.Load(); s < maxRunShift {
		j.runShift.Store(s + 1)
	}
}

// runLength is how many instructions the guest runs between two pauses.
func (p *primarySide) runLength() uint64 {
	if j := p.job.Load(); j != nil {
		return chunk >> j.runShift.Load()
	}
	return chunk
}

// cloneFinal is the final state of a clone, taken at the guest's pause.
type cloneFinal struct {
	chunks []vmm.CloneChunk // the last pages, before the state
	state  []byte
	// sessions is what the sessions hold for their clients (sessionSeed).
	sessions []byte
	seq      uint64
	err      error
	at       time.Time // when the pause began
	// again: the guest wrote more since the driver asked for the final
	// pause than the pause can carry (left bytes); the pre-copy goes on.
	again bool
	left  uint64
}

// cloneResume is the driver's word at the end of the final pause.
type cloneResume struct {
	commit bool
	conn   *replog.Conn // the new backup's logging channel, if commit
	peer   string
	gen    uint64 // the new pair's generation, if commit
}

// cloneStep is the VM's goroutine's part of a clone, at a pause of the
// guest: start it, copy pages for the driver, slow the guest down, or take
// the final state and wait for the driver's word.
func (p *primarySide) cloneStep() {
	j := p.job.Load()
	if j == nil {
		return
	}
	if j.stopped.Load() {
		p.job.CompareAndSwap(j, nil)
		return
	}
	if j.src == nil {
		src, err := p.vm.StartClone()
		if err != nil {
			p.job.CompareAndSwap(j, nil)
			j.final <- cloneFinal{err: err}
			return
		}
		if p.r.h.cfg.VerifyClones {
			src.Verify()
		}
		j.src = src
	}
	if j.finish.Load() {
		at := time.Now()
		chunks, left, ok := j.src.FinishPages(cloneChunkBytes, j.finalMax.Load())
		if ok {
			p.cloneFinish(j, chunks, at)
			p.job.CompareAndSwap(j, nil)
			return
		}
		// Not now: the guest runs on, and the pre-copy with it.
		j.finish.Store(false)
		j.final <- cloneFinal{again: true, left: left, at: at}
	}
	for copied := 0; copied < cloneCopyLimit && len(j.chunks) < cap(j.chunks); {
		c := j.src.Copy(cloneChunkBytes)
		if len(c.Runs) == 0 {
			break
		}
		copied += c.Bytes()
		j.chunks <- c
	}
	j.remaining.Store(j.src.Remaining())
	j.round.Store(int64(j.src.Round()))
	if d := time.Duration(j.throttle.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-p.vmCtx.Done():
		}
	}
}

// cloneFinish is the final pause, on the VM's goroutine: with the last
// pages taken, it takes the state, and waits for the driver's word.
func (p *primarySide) cloneFinish(j *cloneJob, chunks []vmm.CloneChunk, at time.Time) {
	written, unwritten := p.gate.Output()
	state, seq, err := j.src.Finish(written, unwritten)
	var sessions []byte
	if err == nil {
		sessions = p.r.sessionSeed(p.vm)
	}
	j.final <- cloneFinal{chunks: chunks, state: state, sessions: sessions, seq: seq, err: err, at: at}
	if err != nil {
		return
	}
	select {
	case d := <-j.resume:
		if d.commit {
			// A backup this one replaces (a planned move) is told to
			// leave, rather than to take over.
			p.ch.bye(byeMoved)
			// The backup has the state through seq: the log is kept
			// from there, and outputs wait for its acks.
			p.buf.attach(seq)
			p.gate.Rearm(seq)
			p.startChannel(d.conn, seq, d.peer, d.gen)
		}
	case <-p.vmCtx.Done():
	}
}

// cloneOutcome is how a clone ended, for the log and the status.
type cloneOutcome struct {
	target      string
	rounds      int
	bytes       uint64
	pause, took time.Duration
	err         error
	lost        bool // the generation was claimed by another host
	noSpare     bool
}

// clone clones the VM onto target (a spare it picks if "") and commits
// the new pair in generation gen, then tells the node how it went, and a
// planned move that waits for it.
func (r *runner) clone(gen uint64, target string) {
	// An earlier attempt's claim of gen may have happened with its answer
	// lost: then gen is this host's, no spare takes a clone for it (they
	// take one for the generation after the latest), and the node serves
	// in it alone and clones for the next.
	if o, ok, err := r.h.dir.Latest(r.vm); err == nil && ok && o.Generation == gen && o.Host == r.h.cfg.Name {
		r.log.Warn("an earlier clone's claim of this generation happened after all; going on in it alone", "generation", gen, "named_backup", o.Backup)
		if target != "" {
			r.mu.Lock()
			if r.moveWait != nil {
				r.moveWait <- cloneOutcome{err: fmt.Errorf("generation %d was claimed by an earlier clone that did not join; try again", gen)}
				r.moveWait = nil
			}
			r.mu.Unlock()
		}
		select {
		case r.events <- ft.Event{Kind: ft.EvCloneFailed, Gen: gen, Owned: true}:
		case <-r.ctx.Done():
		}
		return
	}
	out := cloneOutcome{err: r.ctx.Err()}
	if r.h.cloneSlot(r) {
		out = r.cloneOnce(gen, target)
		r.h.releaseCloneSlot()
	}
	if target != "" {
		r.mu.Lock()
		if r.moveWait != nil {
			r.moveWait <- out
			r.moveWait = nil
		}
		r.mu.Unlock()
	}
	ev := ft.Event{Kind: ft.EvCloneFailed, Gen: gen, Lost: out.lost}
	switch {
	case out.err == nil:
		ev = ft.Event{Kind: ft.EvCloneDone, Gen: gen, Peer: out.target}
		msg := "clone done: protected again"
		if target != "" {
			msg = "clone done: the backup moved"
		}
		r.log.Info(msg, "backup", out.target, "generation", gen,
			"pause", out.pause.Round(time.Microsecond).String(), "rounds", out.rounds, "bytes", out.bytes, "took", out.took.Round(time.Millisecond).String())
		r.mu.Lock()
		r.cloneState = ""
		rounds := fmt.Sprintf("%d rounds", out.rounds)
		if out.rounds == 1 {
			rounds = "1 round"
		}
		r.lastClone = fmt.Sprintf("to %s at %s: pause %s, %s, %s, took %s", out.target, time.Now().UTC().Format(time.TimeOnly),
			out.pause.Round(100*time.Microsecond), rounds, storage.Size(out.bytes), out.took.Round(time.Millisecond))
		r.mu.Unlock()
	case out.noSpare:
		r.setClone("no spare host")
	case target != "":
		r.log.Warn("planned clone failed", "target", out.target, "err", out.err)
	default:
		r.log.Warn("clone failed; running alone, will retry", "target", out.target, "err", out.err)
		r.setClone(fmt.Sprintf("clone to %s failed: %v", out.target, out.err))
	}
	select {
	case r.events <- ev:
	case <-r.ctx.Done():
	}
}

func (r *runner) setClone(s string) {
	r.mu.Lock()
	r.cloneState = s
	r.mu.Unlock()
	r.statusDirty.Store(true)
}

// cloneOnce runs one clone attempt, onto target, or a spare it picks if
// target is "".
func (r *runner) cloneOnce(gen uint64, target string) (out cloneOutcome) {
	start := time.Now()
	defer func() { out.took = time.Since(start) }()
	p := r.primarySide()
	if p == nil {
		return cloneOutcome{err: errors.New("not a primary")}
	}
	planned := target != ""
	if !planned {
		r.mu.Lock()
		var avoid []string
		for h, at := range r.cloneFailed {
			if time.Since(at) < cloneAvoid {
				avoid = append(avoid, h)
			}
		}
		r.mu.Unlock()
		var ok bool
		// A VM with a local disk starts alone: its first clone goes
		// where its start placed the backup.
		prefer := ""
		if r.spec.LocalDisk() && r.startGen == gen-1 {
			prefer = r.spec.Backup
		}
		if target, ok = r.h.pickSpare(avoid, prefer, r.spec.LocalDisk()); !ok {
			return cloneOutcome{noSpare: true, err: errors.New("no spare host")}
		}
		defer r.h.doneClone(target)
	}
	out.target = target
	defer func() {
		if out.err != nil && !out.lost {
			r.mu.Lock()
			if r.cloneFailed == nil {
				r.cloneFailed = map[string]time.Time{}
			}
			r.cloneFailed[target] = time.Now()
			r.mu.Unlock()
		}
	}()
	peer, ok := r.h.peerNow(target)
	if !ok {
		out.err = fmt.Errorf("host %s is not in the registry", target)
		return out
	}
	if planned {
		r.log.Info("cloning to move the backup", "target", target, "generation", gen)
	} else {
		r.log.Info("cloning to restore redundancy", "target", target, "generation", gen)
	}
	r.setClone("cloning to " + target + ": connecting")
	defer func() {
		r.mu.Lock()
		r.cloneProg = nil
		r.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(r.ctx, cloneTimeout)
	defer cancel()
	// A live host answers the handshake at once; a frozen one accepts the
	// connection (the kernel does) and never answers: the clone tries
	// another spare after cloneDialTimeout, not the step timeout.
	dctx, dcancel := context.WithTimeout(ctx, cloneDialTimeout)
	c, err := replog.Dial(dctx, peer.Addr, r.h.key, cloneHello{VM: r.vm, Gen: gen, Primary: r.h.cfg.Name}.marshal())
	dcancel()
	if err != nil {
		// The registry says a host is alive for a few seconds after it
		// died or froze.
		out.err = fmt.Errorf("host %s did not answer, it may be down or frozen: %w", target, err)
		return out
	}
	committed := false
	defer func() {
		if !committed {
			c.Close()
		}
	}()
	r.h.track(c, target)
	defer r.h.untrack(c)
	c.SetReadDeadline(time.Now().Add(cloneStepTimeout))
	if err := expectFrame(c, frameCloneReady); err != nil {
		out.err = err
		return out
	}

	var disk *diskSender
	if r.spec.LocalDisk() {
		// The disk first, while the guest runs; what changes meanwhile
		// goes again in the final pause (see diskcopy.go).
		r.setClone("cloning to " + target + ": copying the disk")
		disk = newDiskSender(r.h.localDiskDir(r.vm), func(rec []byte) error {
			c.SetWriteDeadline(time.Now().Add(cloneStepTimeout))
			return c.WriteFrame(frameCloneDisk, rec)
		})
		if err := disk.pass(false); err != nil {
			out.err = fmt.Errorf("copy the local disk: %w", err)
			return out
		}
	}

	j := &cloneJob{chunks: make(chan vmm.CloneChunk, cloneQueue), final: make(chan cloneFinal, 1), resume: make(chan cloneResume, 1)}
	// A clone that failed leaves its job for the guest's goroutine to
	// drop at its next pause, which it was poked to take: give it a
	// moment.
	for wait := time.Now().Add(time.Second); !p.job.CompareAndSwap(nil, j); {
		old := p.job.Load()
		if old == nil {
			continue
		}
		if !old.stopped.Load() || time.Now().After(wait) {
			out.err = errors.New("a clone is already in progress")
			return out
		}
		p.poke()
		time.Sleep(5 * time.Millisecond)
	}
	defer func() {
		// The guest's goroutine drops the job at its next pause: an
		// idle guest is poked to take one, or the job would stay and
		// refuse every later clone.
		j.stopped.Store(true)
		p.poke()
	}()
	pause := r.h.cfg.ClonePause
	var sent uint64
	copyStart := time.Now()
	lastRound, stuck := int64(0), 0
	var lastLeft uint64
	var f cloneFinal
	for tries := 0; ; {
		var budget uint64
		for {
			if ctx.Err() != nil {
				out.err = fmt.Errorf("did not converge within %v (%s left)", cloneTimeout, storage.Size(j.remaining.Load()))
				return out
			}
			// Pages copied at the guest's pauses; an idle guest, waiting
			// in a call, is poked to pause.
			var chunk vmm.CloneChunk
			select {
			case chunk = <-j.chunks:
			default:
				// None ready: ask for more at once, and again every 2 ms
				// while none comes.
				p.poke()
				select {
				case chunk = <-j.chunks:
				case <-time.After(2 * time.Millisecond):
					continue
				case <-ctx.Done():
					continue
				}
			}
			c.SetWriteDeadline(time.Now().Add(cloneStepTimeout))
			if err := c.WriteFrame(frameCloneChunk, vmm.EncodeChunk(nil, chunk)); err != nil {
				out.err = err
				return out
			}
			sent += uint64(chunk.Bytes())
			// What the pre-copy has moved per second, copies at the
			// guest's pauses and the spare's work included: the final
			// copy goes at about that rate too.
			rate := float64(sent) / max(time.Since(copyStart).Seconds(), 1e-3)
			left, round := j.remaining.Load(), j.round.Load()
			prog := storage.CloneProgress{Target: target, Round: round, SentBytes: sent, LeftBytes: left, Rate: rate}
			r.setClone(prog.String())
			r.mu.Lock()
			r.cloneProg = &prog
			r.mu.Unlock()
			// Done when what is left crosses within half the pause
			// budget, and the queue is empty (it would cross too).
			budget = max(256<<10, uint64(rate*pause.Seconds()/2))
			if left <= budget && len(j.chunks) == 0 {
				break
			}
			if round > lastRound {
				// A round ended: if what is left did not shrink, slow
				// the guest at its pauses, more and more.
				if lastRound > 0 && left >= lastLeft*9/10 {
					stuck++
					if stuck >= 2 {
						j.slower()
						r.log.Info("clone: slowing the guest to converge", "wait_per_pause", time.Duration(j.throttle.Load()).String(), "run_shift", j.runShift.Load(), "left", storage.Size(left))
					}
				} else {
					stuck = 0
				}
				lastRound, lastLeft = round, left
			}
		}

		// The chunks sent may still be in flight (socket buffers hold
		// megabytes): the final pause waits for none of them.
		c.SetDeadline(time.Now().Add(cloneStepTimeout))
		if err := c.WriteFrame(frameCloneSync, nil); err != nil {
			out.err = err
			return out
		}
		if err := expectFrame(c, frameCloneReady); err != nil {
			out.err = err
			return out
		}
		// The final pause, unless the guest wrote more meanwhile than it
		// can carry within the budget (twice what was left when we
		// decided): then the pre-copy goes on, with the guest slower. A
		// guest that writes that much within one run between two pauses
		// would never fit: after finalTries, the pause carries what
		// there is (in chunks; only the pause is longer).
		finalMax := uint64(math.MaxUint64)
		if tries++; tries <= finalTries {
			finalMax = 2 * budget
		}
		j.finalMax.Store(finalMax)
		j.finish.Store(true)
		p.poke()
		select {
		case f = <-j.final:
		case <-ctx.Done():
			out.err = errors.New("the guest did not pause for the final copy")
			return out
		}
		if !f.again {
			break
		}
		j.slower()
		r.log.Info("clone: the guest wrote too much before the final pause; the pre-copy goes on", "left", storage.Size(f.left), "wait_per_pause", time.Duration(j.throttle.Load()).String())
	}
	if f.err != nil {
		out.err = f.err
		return out
	}
	resumed := false
	resume := func(d cloneResume) {
		out.pause = time.Since(f.at)
		j.resume <- d
		resumed = true
	}
	defer func() {
		if !resumed {
			resume(cloneResume{})
		}
	}()
	if disk != nil {
		// The guest is paused: what it changed on its disk since the
		// pre-copy, and the list of every path.
		before := disk.bytes
		if err := disk.pass(true); err != nil {
			out.err = fmt.Errorf("copy the local disk: %w", err)
			return out
		}
		sent += disk.bytes
		r.log.Info("clone: local disk copied", "bytes", disk.bytes, "in_final_pause", disk.bytes-before)
	}
	// Chunks the guest's pauses queued after the check above hold pages
	// the final state leaves out (they were taken from the round): they
	// cross first.
	for drained := false; !drained; {
		select {
		case chunk := <-j.chunks:
			c.SetWriteDeadline(time.Now().Add(cloneStepTimeout))
			if err := c.WriteFrame(frameCloneChunk, vmm.EncodeChunk(nil, chunk)); err != nil {
				out.err = err
				return out
			}
			sent += uint64(chunk.Bytes())
		default:
			drained = true
		}
	}
	// Then the pages the final pause took, newer than any of those.
	for _, chunk := range f.chunks {
		c.SetWriteDeadline(time.Now().Add(cloneStepTimeout))
		if err := c.WriteFrame(frameCloneChunk, vmm.EncodeChunk(nil, chunk)); err != nil {
			out.err = err
			return out
		}
		sent += uint64(chunk.Bytes())
	}
	c.SetDeadline(time.Now().Add(finalTimeout))
	if err := c.WriteFrame(frameCloneSessions, f.sessions); err != nil {
		out.err = err
		return out
	}
	sent += uint64(len(f.sessions))
	if err := c.WriteFrame(frameCloneFinal, f.state); err != nil {
		out.err = err
		return out
	}
	sent += uint64(len(f.state))
	if err := expectFrame(c, frameCloneRestored); err != nil {
		out.err = err
		return out
	}
	won, cur, err := r.h.dir.Claim(r.vm, storage.Owner{Generation: gen, Host: r.h.cfg.Name, Role: "primary", Reason: reasonClone, Backup: target})
	if err != nil {
		// The claim may have happened with its answer lost: the owner
		// record, read again, says. Until it can be read the outcome is
		// unknown and the guest stays paused: a primary that took a won
		// claim for a failure would serve on with a backup that can no
		// longer win, and one running alone would release outputs that
		// the spare, named the backup on storage, does not hold (it takes
		// the clone as committed: see awaitCommit).
		for {
			o, ok, rerr := r.h.dir.Owner(r.vm, gen)
			if rerr == nil {
				if ok && (o.Host != r.h.cfg.Name || o.Backup == target) {
					r.log.Info("clone: the claim's answer was lost; the owner record says", "generation", gen, "owner", o.Host, "err", err)
					won, cur, err = o.Host == r.h.cfg.Name, o, nil
				}
				break
			}
			r.log.Warn("clone: the claim's outcome is unknown and the owner record cannot be read; the guest waits", "generation", gen, "err", rerr)
			select {
			case <-time.After(ft.DefaultClaimRetry):
			case <-r.ctx.Done():
				out.err = r.ctx.Err()
				return out
			}
		}
	}
	switch {
	case err != nil:
		out.err = fmt.Errorf("claim of generation %d: %w", gen, err)
		return out
	case !won:
		out.err, out.lost = fmt.Errorf("generation %d was claimed by %s", gen, cur.Host), true
		return out
	}
	if r.h.fp.CrashOn("clone-commit") {
		crash()
	}
	if err := c.WriteFrame(frameCloneCommit, nil); err != nil {
		// The pair is on storage, but the backup may not know: it will
		// be found silent and the primary goes on alone again.
		r.log.Warn("clone committed, but the new backup may not have heard", "target", target, "err", err)
	}
	c.SetDeadline(time.Time{})
	committed = true
	resume(cloneResume{commit: true, conn: c, peer: target, gen: gen})
	out.rounds, out.bytes = int(j.round.Load()), sent
	return out
}

// reasonClone marks the owner record of a pair made by a clone.
const reasonClone = "clone"

// expectFrame reads one frame and checks it is of type want; a goodbye
// says why the spare refused.
func expectFrame(c *replog.Conn, want byte) error {
	typ, p, err := c.ReadFrame()
	switch {
	case err != nil:
		return err
	case typ == replog.FrameBye:
		return fmt.Errorf("refused: %s", p)
	case typ != want:
		return fmt.Errorf("unexpected frame type %d", typ)
	}
	return nil
}

// MaxClones is how many clones a host has in flight at most, by default
// (Config.MaxClones): after a failure it may have hundreds to make, and
// all at once they would take every CPU of it and of its spares, from
// the guests, their replays and their heartbeats.
const MaxClones = 4

// cloneSlot waits for a clone slot for r, saying so in r's status; false
// if r ended first.
func (h *Host) cloneSlot(r *runner) bool {
	h.awaitTakeover(r.ctx)
	select {
	case h.cloneSlots <- struct{}{}:
		return true
	default:
	}
	r.setClone(fmt.Sprintf("waiting for a clone slot (%d in flight on this host)", cap(h.cloneSlots)))
	select {
	case h.cloneSlots <- struct{}{}:
		return true
	case <-r.ctx.Done():
		return false
	}
}

func (h *Host) releaseCloneSlot() { <-h.cloneSlots }

// Taking over. When a host has just lost a peer with hundreds of VMs, it
// claims and goes live for each of them, and their clients wait for
// nothing else. Until that is done (takingOver), what can wait does:
// clones (which copy memory), status writes, the event history and the
// dashboard's readings each wait up to takeoverFirst.

// takeoverFirst bounds how long work that can wait waits for a take-over.
const takeoverFirst = 2 * time.Second

// takeoverTail is how long after its last claim ended a host still
// counts as taking over: each winner's go-live follows its claim.
const takeoverTail = 250 * time.Millisecond

// takingOver reports whether the host has claims in flight, or ended one
// within takeoverTail.
func (h *Host) takingOver() bool {
	return h.claims.Load() > 0 || time.Since(time.Unix(0, h.claimedAt.Load())) < takeoverTail
}

// TakingOver reports whether the host is taking VMs over from a failed
// peer (see takingOver): a dashboard defers its readings meanwhile.
func (h *Host) TakingOver() bool { return h.takingOver() }

// awaitTakeover waits, up to takeoverFirst, while the host is taking
// over: a host that has just taken over hundreds of VMs goes live for
// them, which their clients wait for, before it spends CPU on copying
// their memory.
func (h *Host) awaitTakeover(ctx context.Context) {
	deadline := time.Now().Add(takeoverFirst)
	for h.takingOver() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
}

// cloneAvoid is how long a clone avoids a spare that failed it, while
// others are left.
const cloneAvoid = 10 * time.Second

// pickSpare chooses the host to clone vm onto: a live host other than this
// one, the least loaded first (see byLoad; the clones this host has in
// flight count as VMs of their targets), then by name; hosts in avoid
// (that failed a clone lately) only if no other is left. The caller holds
// a clone slot, and releases the pick with doneClone.
func (h *Host) pickSpare(avoid []string, prefer string, needData bool) (string, bool) {
	hosts, load, err := h.placement()
	if err != nil {
		return "", false
	}
	var cands []string
	for _, hs := range hosts {
		if hs.Alive && !hs.Draining && hs.Name != h.cfg.Name && !h.fp.LogCut(hs.Name) && (hs.Data || !needData) {
			cands = append(cands, hs.Name)
		}
	}
	if len(cands) == 0 {
		return "", false
	}
	pick := func(target string) (string, bool) {
		h.mu.Lock()
		h.cloningTo[target]++
		h.mu.Unlock()
		return target, true
	}
	if prefer != "" && slices.Contains(cands, prefer) && !slices.Contains(avoid, prefer) {
		return pick(prefer)
	}
	byLoad(cands, load, false)
	// Stable: within each group, least loaded first.
	slices.SortStableFunc(cands, func(a, b string) int {
		ai, bi := slices.Contains(avoid, a), slices.Contains(avoid, b)
		switch {
		case ai == bi:
			return 0
		case bi:
			return -1
		}
		return 1
	})
	return pick(cands[0])
}

// doneClone releases a target pickSpare picked.
func (h *Host) doneClone(target string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cloningTo[target]--; h.cloningTo[target] <= 0 {
		delete(h.cloningTo, target)
	}
}

// placement returns the registry, and each host's load as the registry
// says (each host counts its VMs there every second), with the clones this
// host has in flight counted as VMs of their targets. A host that lost its
// peer clones hundreds of VMs, each picking a target: reading every VM's
// records for each would cost more than the clones.
func (h *Host) placement() ([]HostState, map[string]hostLoad, error) {
	hosts, err := Hosts(h.dir, time.Now())
	if err != nil {
		return nil, nil, err
	}
	load := make(map[string]hostLoad, len(hosts))
	for _, hs := range hosts {
		load[hs.Name] = hostLoad{vms: hs.VMs, primaries: hs.Primaries}
	}
	h.mu.Lock()
	for target, n := range h.cloningTo {
		l := load[target]
		l.vms += n
		load[target] = l
	}
	h.mu.Unlock()
	return hosts, load, nil
}
