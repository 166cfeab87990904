package vmm

import (
	"sync"
	"time"

	"ftvm/ft"
	"ftvm/internal/latency"
	"ftvm/wasi"
)

// Gate enforces the Output Rule in front of a Host: an output (bytes on
// stdout, stderr or a connection, a shutdown, a close) produced after log
// entry S leaves only once the backup has acknowledged entry S. The guest
// does not wait: the output is queued and the call returns at once; only
// the output waits. Outputs leave in the order they were produced, from the
// Gate's own goroutine.
//
// Inputs pass straight through to the inner Host; effects wait for the
// acknowledgement of the entries before them (see barrier).
type Gate struct {
	wasi.Host
	tag      func() uint64 // the last entry an output produced now depends on
	reserver reserver      // the inner Host's, or nil

	mu        sync.Mutex
	cond      *sync.Cond
	queue     []heldOutput
	acked     uint64
	open      bool // release without waiting for acks
	closed    bool
	waiting   bool // an effect waits at the barrier
	releasing bool // the release goroutine is performing an output
	held      GateStats
	delays    latency.Histogram // of the outputs performed since TakeDelays
	done      chan struct{}
	// written counts the bytes of stdout and stderr performed; onWritten,
	// if set, hears each new count (from the release goroutine).
	written   [2]uint64
	onWritten func([2]uint64)
	// onDelay, if set, hears how long each output performed waited.
	onDelay func(time.Duration)
	// inflight is the output the release goroutine is performing.
	inflight heldOutput
	// localFile, if set, says the guest's files are this replica's own
	// (see LocalFiles) and tells a file's handle.
	localFile func(wasi.Handle) bool
	// lease, if set, must be valid for anything to leave (see Lease).
	lease *Lease
}

// reserver is a Host that counts the bytes a Gate holds for a connection
// against the connection's send window (wasi.OSHost.Reserve), so that the
// guest's send credit covers them too.
type reserver interface {
	Reserve(h wasi.Handle, n int)
}

type outputKind uint8

const (
	outWrite outputKind = iota
	outShutdown
	outClose
)

type heldOutput struct {
	seq  uint64
	kind outputKind
	h    wasi.Handle
	data []byte
	how  uint8
	at   time.Time // when the guest produced it
}

// GateStats counts what a Gate holds now.
type GateStats struct {
	Outputs int
	Bytes   int
	// StdBytes counts the bytes of stdout and stderr among them: a
	// primary holds its guest back while they pass a bound, which is what
	// a backup keeps of them to write again (see outTail).
	StdBytes int
	// Effect is set while the guest waits at the barrier of an effect.
	Effect bool
}

// NewGate returns a Gate in front of inner. tag reports the sequence number
// of the last log entry the guest's state depends on at the moment an
// output is produced.
func NewGate(inner wasi.Host, tag func() uint64) *Gate {
	g := &Gate{Host: inner, tag: tag, done: make(chan struct{})}
	g.reserver, _ = inner.(reserver)
	g.cond = sync.NewCond(&g.mu)
	go g.release()
	return g
}

// UseLease makes the Gate release outputs and let effects run only while
// l is valid. Call it before the guest runs.
func (g *Gate) UseLease(l *Lease) {
	g.mu.Lock()
	g.lease = l
	g.mu.Unlock()
	l.add(g)
}

// may reports whether what the guest produced when the log's last entry
// was tag may leave now: the Output Rule (ft.MayRelease), under the
// host's lease.
func (g *Gate) may(tag uint64) bool {
	return ft.MayRelease(g.open, g.acked, tag) && g.lease.Valid()
}

// wake makes the release goroutine and an effect at the barrier look
// again: the lease was renewed.
func (g *Gate) wake() {
	g.mu.Lock()
	g.cond.Broadcast()
	g.mu.Unlock()
}

// OnDelay makes the Gate call f with how long each output it performs
// waited (what TakeDelays counts), from its release goroutine, under its
// lock: f must be quick and must not call the Gate. Call it before the
// guest runs.
func (g *Gate) OnDelay(f func(time.Duration)) {
	g.mu.Lock()
	g.onDelay = f
	g.mu.Unlock()
}

// OnWritten makes the Gate call f with the bytes of stdout and stderr it
// has written so far, each time it writes more of them, from its release
// goroutine: the primary tells its backup, which writes again what lies
// beyond if it goes live (see outTail). Call it before the guest runs.
func (g *Gate) OnWritten(f func(written [2]uint64)) {
	g.mu.Lock()
	g.onWritten = f
	g.mu.Unlock()
}

// Flushed reports whether the Gate holds nothing and performs nothing: every
// output the guest produced so far is out.
func (g *Gate) Flushed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue) == 0 && !g.releasing
}

// startWritten sets where the Gate's counts of stdout and stderr start: a
// backup going live takes the streams on where its old primary left them.
func (g *Gate) startWritten(written [2]uint64) {
	g.mu.Lock()
	g.written = written
	f := g.onWritten
	g.mu.Unlock()
	if f != nil {
		f(written)
	}
}

// Output returns how many bytes of stdout and stderr the Gate has written,
// and the bytes of them the guest produced that it has not written yet
// (held, or being written): a live clone hands them to the new backup,
// which writes them again if it goes live (see outTail).
func (g *Gate) Output() (written [2]uint64, unwritten [2][]byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	add := func(o heldOutput) {
		if o.kind == outWrite && (o.h == 1 || o.h == 2) {
			unwritten[o.h-1] = append(unwritten[o.h-1], o.data...)
		}
	}
	if g.releasing {
		add(g.inflight)
	}
	for _, o := range g.queue {
		add(o)
	}
	return g.written, unwritten
}

// Ack records that the backup has every entry through seq.
func (g *Gate) Ack(seq uint64) {
	g.mu.Lock()
	if seq > g.acked {
		g.acked = seq
		// Wake only who can go on: the head of the queue, or an effect
		// at the barrier.
		if g.waiting || len(g.queue) > 0 && g.queue[0].seq <= seq {
			g.cond.Broadcast()
		}
	}
	g.mu.Unlock()
}

// Acked returns the highest acknowledged sequence number.
func (g *Gate) Acked() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.acked
}

// Release makes the Gate release everything, held or future, without waiting
// for acknowledgements: the primary goes on alone after its backup failed
// and it won the test-and-set.
func (g *Gate) Release() {
	g.mu.Lock()
	g.open = true
	g.cond.Broadcast()
	g.mu.Unlock()
}

// Rearm makes an open Gate wait for acknowledgements again, the backup
// having every entry through acked: a primary running alone was given a
// new backup by a clone whose state goes through acked.
func (g *Gate) Rearm(acked uint64) {
	g.mu.Lock()
	g.open = false
	g.acked = max(g.acked, acked)
	g.mu.Unlock()
}

// Held reports the outputs waiting now.
func (g *Gate) Held() GateStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.held
	st.Effect = g.waiting
	return st
}

// TakeDelays returns the histogram of how long the outputs performed since
// the last call waited between the guest producing them and their
// leaving (the Output Rule's cost as a client sees it), and starts a new
// one.
func (g *Gate) TakeDelays() latency.Histogram {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.delays.Take()
}

// Discard drops every held output and stops the Gate: a primary that lost
// the test-and-set halts and emits nothing more.
func (g *Gate) Discard() {
	g.mu.Lock()
	dropped := g.queue
	g.queue, g.held, g.closed = nil, GateStats{}, true
	g.cond.Broadcast()
	g.mu.Unlock()
	<-g.done
	for _, o := range dropped {
		g.reserve(o, -1)
	}
}

// reserve counts output o's bytes against its connection's send window
// (sign 1) or releases them (sign -1).
func (g *Gate) reserve(o heldOutput, sign int) {
	if g.reserver != nil && o.kind == outWrite {
		g.reserver.Reserve(o.h, sign*len(o.data))
	}
}

// Stop releases what may be released and stops the Gate; it returns once
// the release goroutine has finished.
func (g *Gate) Stop() {
	g.mu.Lock()
	g.closed = true
	g.cond.Broadcast()
	g.mu.Unlock()
	<-g.done
}

func (g *Gate) push(o heldOutput) error {
	o.seq = g.tag()
	o.at = time.Now()
	// Reserved before it is queued, so that the release goroutine never
	// releases a reservation not yet made.
	g.reserve(o, 1)
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		g.reserve(o, -1)
		return nil
	}
	g.queue = append(g.queue, o)
	g.held.Outputs++
	g.held.Bytes += len(o.data)
	if o.h == 1 || o.h == 2 {
		g.held.StdBytes += len(o.data)
	}
	// Wake the release goroutine only if o can leave now and is first in
	// line: behind another output, it goes when that one does; and an
	// output that waits for an ack is woken by the Ack.
	if len(g.queue) == 1 && g.may(o.seq) {
		g.cond.Broadcast()
	}
	g.mu.Unlock()
	return nil
}

// Write queues data for handle h.
func (g *Gate) Write(h wasi.Handle, data []byte) error {
	return g.push(heldOutput{kind: outWrite, h: h, data: append([]byte(nil), data...)})
}

// Shutdown queues a shutdown of connection h.
func (g *Gate) Shutdown(h wasi.Handle, how uint8) error {
	return g.push(heldOutput{kind: outShutdown, h: h, how: how})
}

// Close queues the release of h; with LocalFiles, a file's is performed
// at once.
func (g *Gate) Close(h wasi.Handle) error {
	g.mu.Lock()
	local := g.localFile
	g.mu.Unlock()
	if local != nil && local(h) {
		return g.Host.Close(h)
	}
	return g.push(heldOutput{kind: outClose, h: h})
}

// LocalFiles makes the Gate treat the guest's files as this replica's own
// (a local disk, which its backup keeps a copy of by performing the same
// effects as it replays them): nobody else sees them, so an effect on them
// and a file's close are internal state, not outputs, and pass at once.
// What the primary writes beyond what its backup has is lost with it,
// along with the guest state that wrote it; outputs still wait. isFile
// tells whether a handle is a file or a directory. Call it before the
// guest runs.
func (g *Gate) LocalFiles(isFile func(wasi.Handle) bool) {
	g.mu.Lock()
	g.localFile = isFile
	g.mu.Unlock()
}

func (g *Gate) release() {
	defer close(g.done)
	defer func() {
		g.mu.Lock()
		l := g.lease
		g.mu.Unlock()
		if l != nil {
			l.remove(g)
		}
	}()
	g.mu.Lock()
	for {
		for len(g.queue) > 0 && g.may(g.queue[0].seq) {
			o := g.queue[0]
			g.queue = g.queue[1:]
			g.held.Outputs--
			g.held.Bytes -= len(o.data)
			if o.h == 1 || o.h == 2 {
				g.held.StdBytes -= len(o.data)
			}
			g.releasing, g.inflight = true, o
			g.mu.Unlock()
			switch o.kind {
			case outWrite:
				g.reserve(o, -1)
				_ = g.Host.Write(o.h, o.data)
				if o.h == 1 || o.h == 2 {
					// Written (or failed for good, which no one can
					// retry), and no longer in flight, at once: Output
					// counts each byte in one of the two.
					g.mu.Lock()
					g.written[o.h-1] += uint64(len(o.data))
					g.inflight = heldOutput{}
					written := g.written
					g.mu.Unlock()
					if g.onWritten != nil {
						g.onWritten(written)
					}
				}
			case outShutdown:
				_ = g.Host.Shutdown(o.h, o.how)
			case outClose:
				_ = g.Host.Close(o.h)
			}
			g.mu.Lock()
			d := time.Since(o.at)
			g.delays.Record(d)
			if g.onDelay != nil {
				g.onDelay(d)
			}
			g.releasing, g.inflight = false, heldOutput{}
			if g.waiting {
				g.cond.Broadcast() // an effect may wait for this output
			}
		}
		if g.closed {
			left := g.queue // not released: dropped
			g.queue, g.held = nil, GateStats{}
			g.mu.Unlock()
			for _, o := range left {
				g.reserve(o, -1)
			}
			return
		}
		g.cond.Wait()
	}
}
