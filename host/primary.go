package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"ftvm/ft"
	"ftvm/internal/latency"
	"ftvm/replog"
	"ftvm/storage"
	"ftvm/vmm"
	"ftvm/wasi"
	"ftvm/wasm"
)

// primarySide is a runner's primary half: the VM recording into the log
// buffer, the Gate holding its outputs until the backup acks, and the
// logging channel the backup dialed.
type primarySide struct {
	r    *runner
	buf  *logBuffer
	gate *vmm.Gate
	os   *wasi.OSHost
	vm   *vmm.VM

	vmCtx    context.Context
	vmCancel context.CancelFunc
	vmDone   chan struct{}

	halted atomic.Bool
	ch     channel

	// Output delays and logging-channel round trips over the last few
	// status intervals; only fill touches them.
	delays, rtts *latency.Window
	windowAt     time.Time // the start of the windows' current interval

	// crashSent, if not 0, is the entry after whose send a crash
	// failpoint kills this host (see crashHost).
	crashSent atomic.Uint64

	// job is the clone in progress, if any (see clone.go); handover, the
	// switchover asked for (see move.go), which it answers.
	job      atomic.Pointer[cloneJob]
	handover atomic.Pointer[chan error]
	// handedOver: the switchover handed the VM over, and the guest waits,
	// paused, for the outcome; resume lets it go on (goOnAfterHandover).
	handedOver atomic.Bool
	resume     atomic.Pointer[chan struct{}]
	// takeState carries, to the VM's goroutine paused after a handover,
	// the function that takes the VM's state for the backup this host
	// becomes (see follow).
	takeState chan func()
	// safe holds the sessions' input the guest read until the backup
	// has the entries that logged it.
	safe safeInput
	// pokeRun interrupts the guest's current run, even in a call that
	// waits, so that the run loop pauses for a clone.
	pokeMu  sync.Mutex
	pokeRun context.CancelFunc
	// pokeDue is a poke the run loop has not paused for yet: one that
	// came between two runs interrupts the next at once, rather than
	// being lost on a run that ended (an idle guest would then wait in
	// its next call, and the clone with it, until a client came).
	pokeDue bool
	// lease lets outputs out (see vouch.go).
	lease *vmm.Lease
}

// paired reports whether the primary has a backup: its node is a primary's
// (running alone, or halted, it is not), so its outputs wait for the
// backup's acknowledgements and its log is kept for the backup.
func (p *primarySide) paired() bool { return p.r.role() == ft.Primary }

// delayWindow is how many status intervals (statusInterval) the quantiles in the
// status cover: 10 s, so that someone who looks at it after trying a few
// requests by hand still sees them.
const delayWindow = 40

// startPrimary starts the VM as primary, or alone (restarted with no
// other live host: outputs leave at once, the log is not kept, until a
// clone gives it a backup).
func (r *runner) startPrimary(cm *wasm.CompiledModule, alone bool) error {
	wcfg := r.wasiConfig()
	oh, err := wasi.NewOSHost(wcfg, r.log)
	if err != nil {
		return explainListenErr(err, r.spec.Listeners)
	}
	p := r.newPrimarySide(oh, newLogBuffer())
	if alone {
		p.buf.detach()
		p.gate.Release()
	}
	cfg := r.vmConfig(vmm.Config{WASI: wcfg, Host: p.gate, Record: p.buf, SessionOf: oh.SessionOf})
	vm, err := vmm.New(cm, cfg)
	if err != nil {
		p.gate.Discard()
		oh.CloseAll()
		return err
	}
	p.vm = vm
	r.mu.Lock()
	r.primary, r.side = p, p
	r.mu.Unlock()
	go p.run()
	r.setState("running", "")
	return nil
}

// newPrimarySide returns a primary side around the OS host oh and the log
// buffer buf: its Gate in front of oh; the caller sets its VM.
func (r *runner) newPrimarySide(oh *wasi.OSHost, buf *logBuffer) *primarySide {
	p := &primarySide{
		r: r, buf: buf, os: oh, vmDone: make(chan struct{}), takeState: make(chan func()),
		delays: latency.NewWindow(delayWindow), rtts: latency.NewWindow(delayWindow),
	}
	// The Gate's tag is the last entry the guest's state depends on: the
	// VM's sequence number, read on the VM's goroutine during the call.
	// The crash failpoints' kill after a send waits for the entry the
	// effect's call logs next.
	armSent := func() { p.crashSent.Store(p.vm.Seq() + 1) }
	tag := func() uint64 {
		if r.h.fp.OutputRuleOff() {
			// The test-only failpoint output-rule=off: an output
			// tagged 0 depends on no entry, so ft.MayRelease lets it
			// out at once, acknowledged or not. Tagging rather than
			// opening the gate (Release) keeps the gate's own logic
			// untouched, holds whether the failpoint is set before or
			// after the VM starts or a clone rearms the gate, and
			// ends when the failpoint is cleared.
			return 0
		}
		return p.vm.Seq()
	}
	p.gate = vmm.NewGate(crashHost{oh, r.h.fp, armSent}, tag)
	p.gate.OnWritten(buf.written)
	// Its own lease, backed by the host's: the backup's heartbeats
	// extend it (vouch.go).
	p.lease = r.h.lease.Backed()
	p.gate.UseLease(p.lease)
	if r.spec.LocalDisk() {
		p.gate.LocalFiles(oh.IsFile)
	}
	r.h.metrics.watch(r.vm, p.gate, buf)
	p.vmCtx, p.vmCancel = context.WithCancel(r.ctx)
	return p
}

// run runs the guest, slowing it when the backup trails by more than the
// lag bound.
func (p *primarySide) run() {
	defer close(p.vmDone)
	r := p.r
	defer r.saveProfile(p.vm)
	bound := r.h.cfg.LagBound
	for {
		// A run a clone can interrupt: a call that waits is then left
		// pending, and serviced again by the next run.
		runCtx, poked := context.WithCancel(p.vmCtx)
		p.pokeMu.Lock()
		p.pokeRun = poked
		if p.pokeDue {
			poked()
		}
		p.pokeMu.Unlock()
		paused, exit, err := p.vm.RunUntil(runCtx, p.vm.Position()+p.runLength())
		// The steps below see whatever the pokes until now were for.
		p.pokeMu.Lock()
		p.pokeDue = false
		p.pokeMu.Unlock()
		poked()
		if errors.Is(err, context.Canceled) && p.vmCtx.Err() == nil {
			p.cloneStep()
			p.handoverStep()
			continue
		}
		if err != nil {
			if p.vmCtx.Err() == nil && !p.halted.Load() {
				r.log.Error("vm failed", "err", err)
				p.buf.close()
				p.gate.Discard()
				r.end("failed", err.Error())
			}
			return
		}
		if !paused {
			p.finish(exit)
			return
		}
		if pos := p.vm.Position(); pos > 0 {
			// A call due at pos is still pending: the log is complete
			// through the instruction before it.
			p.buf.Progress(pos - 1)
		}
		p.cloneStep()
		p.handoverStep()
		if p.vmCtx.Err() != nil {
			return
		}
		// Flow control: a backup that trails by more than the lag bound
		// slows the guest, and so does a reader of its stdout that does
		// not keep up: the backup keeps only so much of what is held.
		for p.vmCtx.Err() == nil {
			if (!p.paired() || p.buf.lag(time.Now()).Time <= bound) && p.gate.Held().StdBytes <= vmm.MaxHeldOutput {
				break
			}
			select {
			case <-p.buf.wait():
			case <-time.After(2 * time.Millisecond):
			case <-p.vmCtx.Done():
			}
		}
	}
}

// finish waits until the backup has the end of the log (or the primary
// runs alone), lets the last outputs out and records the exit.
func (p *primarySide) finish(exit vmm.Exit) {
	r := p.r
	for p.paired() && p.vmCtx.Err() == nil {
		if st := p.buf.lag(time.Now()); st.Acked >= st.Last {
			break
		}
		select {
		case <-p.buf.wait():
		case <-time.After(10 * time.Millisecond):
		case <-p.vmCtx.Done():
		}
	}
	if p.vmCtx.Err() != nil {
		return
	}
	p.gate.Stop()
	r.log.Info("guest ended", "detail", exitDetail(exit))
	p.ch.bye(byeGuestEnded)
	r.exited(exit)
	p.os.CloseAll()
}

// poke interrupts the guest's current run, so that the run loop pauses.
func (p *primarySide) poke() {
	p.pokeMu.Lock()
	p.pokeDue = true
	if p.pokeRun != nil {
		p.pokeRun()
	}
	p.pokeMu.Unlock()
}

// attach makes c, from backup peer, the logging channel, sending from the
// entry after have. It returns a reason to refuse c, or "".
func (p *primarySide) attach(c *replog.Conn, have uint64, peer string, gen uint64) string {
	if !p.paired() || p.halted.Load() {
		return "no longer paired"
	}
	p.startChannel(c, have, peer, gen)
	return ""
}

// startChannel makes c, from backup peer of the pair's generation gen,
// the logging channel, sending from the entry after have.
func (p *primarySide) startChannel(c *replog.Conn, have uint64, peer string, gen uint64) {
	id := p.ch.set(c)
	p.r.h.track(c, peer)
	// The generation is said: after a clone's commit the node may not
	// have taken the new one yet (the event history reads it here).
	p.r.log.Info("backup connected", "backup", peer, "from_entry", have+1, "generation", gen)
	ctx, cancel := context.WithCancel(p.vmCtx)
	go p.send(ctx, cancel, c, have, peer)
	go p.readAcks(ctx, cancel, c, id, peer)
	p.r.sessionsToBackup(c)
}

// send streams the log to the backup: every entry after have, then each new
// one as it comes. An output flushes at once because nothing waits: a batch
// leaves as soon as the previous one is written.
func (p *primarySide) send(ctx context.Context, cancel context.CancelFunc, c *replog.Conn, have uint64, peer string) {
	defer cancel()
	seq, pos, out := have, uint64(0), [2]uint64{}
	// This backup has acknowledged nothing yet.
	p.buf.newChannel()
	for {
		b, ok, err := p.buf.next(ctx, seq, pos, out)
		if err != nil {
			p.r.log.Warn("logging channel refused", "reason", err)
			_ = c.WriteFrame(replog.FrameBye, []byte(err.Error()))
			c.Close()
			return
		}
		if !ok {
			return
		}
		if p.r.h.fp.LogCut(peer) {
			c.Close()
			return
		}
		if n := len(b.Entries); n > 0 {
			// Timed from before the write: the ack may be read before
			// WriteBatch returns.
			p.buf.sent(b.Entries[n-1].Seq, time.Now())
		}
		if err := c.WriteBatch(b); err != nil {
			if ctx.Err() == nil {
				p.r.log.Warn("logging channel closed", "backup", peer, "reason", err)
				if peerEnded(err) {
					p.r.event(eventPeerGone)
				}
			}
			c.Close()
			return
		}
		if n := len(b.Entries); n > 0 {
			seq = b.Entries[n-1].Seq
			if at := p.crashSent.Load(); at != 0 && seq >= at {
				crash()
			}
		}
		pos, out = b.Pos, b.Out
	}
}

// readAcks reads the backup's acknowledgements. Anything else, or a frame
// that does not parse, closes the channel with a logged reason; the guest
// runs on (its outputs wait), and the backup may dial again.
func (p *primarySide) readAcks(ctx context.Context, cancel context.CancelFunc, c *replog.Conn, id int, peer string) {
	defer func() {
		cancel()
		c.Close()
		p.r.h.untrack(c)
		p.ch.clear(id)
	}()
	for {
		typ, payload, err := c.ReadFrame()
		if err != nil {
			// A goodbye (a move, a handover) closed it on purpose.
			byed := errors.Is(err, net.ErrClosed) && p.ch.current() != c
			if ctx.Err() == nil && !errors.Is(err, io.EOF) && !byed {
				p.r.log.Warn("logging channel closed", "backup", peer, "reason", err)
			}
			if ctx.Err() == nil && peerEnded(err) {
				p.r.event(eventPeerGone)
			}
			return
		}
		if p.r.h.fp.LogCut(peer) {
			return
		}
		switch typ {
		case replog.FrameAck:
			a, err := replog.ParseAck(payload)
			if err == nil {
				err = p.buf.ack(a)
			}
			if err != nil {
				p.r.log.Warn("logging channel closed", "backup", peer, "reason", err)
				return
			}
			p.gate.Ack(a.Seq)
			p.inputAcked(a.Seq)
			p.r.event(eventTraffic)
		case replog.FrameBye:
			p.r.log.Info("backup closed the logging channel", "reason", string(payload))
			if string(payload) == byeHostDown {
				p.r.event(eventPeerGone)
			}
			return
		default:
			p.r.log.Warn("logging channel closed", "backup", peer, "reason", fmt.Sprintf("unexpected frame type %d", typ))
			return
		}
	}
}

// won: the backup failed and this primary won the next generation. Held
// outputs leave, new ones leave at once, and the log is no longer kept.
func (p *primarySide) won(string) {
	p.goOnAfterHandover()
	p.buf.detach()
	p.gate.Release()
	p.inputAcked(math.MaxUint64)
	p.ch.bye("primary goes on alone")
}

// stop ends the primary. Stopped for good, it lets out what the backup
// has acknowledged and tells the backup not to take over; otherwise (it
// lost, or its host goes down) nothing more leaves it.
func (p *primarySide) stop(reason string, stopped bool) {
	p.halted.Store(true)
	p.vmCancel()
	p.buf.close()
	if stopped {
		p.gate.Stop()
		p.ch.bye(byeStopped)
	} else {
		p.gate.Discard()
		p.ch.bye(reason)
	}
	<-p.vmDone
	// The sessions' clients resume with the survivor (or, the VM
	// stopped, are refused): their connections close, with no Close.
	p.r.sessions.endAll(errSessionLeft)
	p.os.CloseAll()
}

// byeHostDown is the Bye reason of a host that is going down (SIGTERM,
// SIGINT): its side of every VM ends, and it sends no more heartbeats, so
// its peer takes it for gone (ft.EvPeerGone) and takes over after the gone
// timeout rather than the whole failure timeout.
const byeHostDown = "host shutting down"

// byeGuestEnded is the Bye reason of a side whose guest ended; from the
// primary it also says that its output is all written (see guestEnded).
const byeGuestEnded = "guest ended"

// byeStopped is the Bye reason that tells a backup its VM was stopped for
// good, so it must not take over.
const byeStopped = "stopped"

func (p *primarySide) wait() { <-p.vmDone }

func (p *primarySide) fill(st *storage.VMStatus) {
	lag := p.buf.lag(time.Now())
	held := p.gate.Held()
	st.Connected = p.ch.up()
	st.Protected = p.protected(st.Connected)
	st.Seq, st.Pos, st.Acked, st.LogBytes = lag.Last, lag.Pos, lag.Acked, lag.Total
	if p.paired() {
		st.LagEntries, st.LagBytes = lag.Entries, lag.Bytes
		st.LagMillis = millis(lag.Time)
	}
	st.HeldOut, st.HeldBytes = held.Outputs, held.Bytes
	st.Sessions = len(p.r.sessions.all())
	d, rtt := p.gate.TakeDelays(), p.buf.TakeRTT()
	// The window moves with time, whenever the status is looked at (an
	// idle VM's is looked at rarely).
	now := time.Now()
	if p.windowAt.IsZero() {
		p.windowAt = now
	}
	steps := min(int(now.Sub(p.windowAt)/statusInterval), delayWindow)
	p.windowAt = p.windowAt.Add(time.Duration(steps) * statusInterval)
	if steps == delayWindow {
		p.windowAt = now
	}
	for range steps {
		p.delays.Rotate()
		p.rtts.Rotate()
	}
	p.delays.Add(&d)
	p.rtts.Add(&rtt)
	if p.paired() {
		d, rtt = p.delays.Sum(), p.rtts.Sum()
		st.OutputDelayP50, st.OutputDelayP99 = millis(d.Quantile(0.5)), millis(d.Quantile(0.99))
		st.AckRTTP50, st.AckRTTP99 = millis(rtt.Quantile(0.5)), millis(rtt.Quantile(0.99))
	}
}

// protected reports whether the VM is protected, its channel being up or
// not: paired, and the backup heard on it since (a clone's target that
// died before its commit has a channel that looks up for a while).
func (p *primarySide) protected(up bool) bool {
	return p.paired() && up && p.buf.heardBackup()
}

// millis is d in milliseconds, to the microsecond.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
