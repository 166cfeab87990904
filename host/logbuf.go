package host

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"ftvm/internal/latency"
	"ftvm/replog"
	"ftvm/vmm"
)

// logBuffer is the primary's side of the logging channel: the entries the
// VM records (it is the VM's Sink), kept in memory until the backup
// acknowledges them, so that a backup whose connection broke can dial again
// and receive the rest. It never touches the disk. It also keeps enough of
// the primary's history (when it reached which position) to tell how far,
// in time, the backup's replay trails the primary: that lag drives flow
// control and ftvm status.
type logBuffer struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a waiter needs news
	// Who waits on changed: for anything, or for anything but progress (a
	// sender already holding back a progress report).
	waitAny, waitNoProgress bool

	entries []replog.Entry // appended and not yet acknowledged, in order
	bytes   uint64         // the encoded size of entries
	total   uint64         // the encoded size of every entry appended
	last    uint64         // sequence number of the last entry appended
	pos     uint64         // the log is complete through this position
	acked   uint64         // the backup has every entry through acked
	ackPos  uint64         // the backup's replay position
	samples []sample       // (position, time) of the primary, increasing
	// When the batches not yet acknowledged were written, by their last
	// entry, and the round trips (written to acknowledged) since TakeRTT.
	inFlight []sentAt
	rtt      latency.Histogram
	closed   bool
	alone    bool // no backup any more: entries are counted, not kept
	// heard: the backup acknowledged something since it was attached
	// (the first backup, or a clone's): until then, a clone's target
	// that died before its commit would pass for a backup.
	heard bool
	// out is how much of the guest's stdout and stderr the Gate has
	// written (replog.Batch.Out); outAcked, how much of it the backup
	// acknowledged hearing (replog.Ack.Out).
	out, outAcked [2]uint64
	// onRTT, if set, hears each round trip as it is measured (metrics).
	onRTT func(time.Duration)
	// byType counts the entries appended, and their encoded bytes, by
	// entry type (metrics).
	byType [256]typeCount
}

// typeCount is how many entries of a type were logged, and their bytes.
type typeCount struct{ entries, bytes uint64 }

type sample struct {
	pos uint64
	at  time.Time
}

// sentAt is when the batch ending with entry seq was written.
type sentAt struct {
	seq uint64
	at  time.Time
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

// newAloneLogBuffer returns the buffer of a primary running alone whose log
// reached entry seq and position pos (a backup that went live): it counts
// entries and keeps none, until a clone attaches a backup.
func newAloneLogBuffer(seq, pos uint64) *logBuffer {
	b := newLogBuffer()
	b.last, b.acked, b.pos, b.alone = seq, seq, pos, true
	return b
}

// notifyLocked wakes the waiters; progress says the change is progress
// alone.
func (b *logBuffer) notifyLocked(progress bool) {
	if b.waitAny || (!progress && b.waitNoProgress) {
		close(b.changed)
		b.changed = make(chan struct{})
		b.waitAny, b.waitNoProgress = false, false
	}
}

// progressDelay is how long a sender holds back a report of progress
// alone (no new entry), so that a guest making many calls without inputs
// does not cost a frame each: the backup needs it only to run past calls
// that have no entry, and an entry reports the progress before it anyway.
const progressDelay = time.Millisecond

// maxHold bounds how long new entries wait behind a batch the backup has
// not acknowledged yet.
const maxHold = 500 * time.Microsecond

// Append implements vmm.Sink.
func (b *logBuffer) Append(e replog.Entry) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("logging channel closed")
	}
	b.last = e.Seq
	b.total += uint64(replog.EntrySize(e))
	tc := &b.byType[e.Type]
	tc.entries++
	tc.bytes += uint64(replog.EntrySize(e))
	if through := vmm.CompleteThrough(e); through > b.pos {
		// The call at e.Pos has its entry (an intent only announces it):
		// the log is complete through it.
		b.pos = through
	}
	if b.alone {
		return nil
	}
	e.Data = append([]byte(nil), e.Data...)
	b.entries = append(b.entries, e)
	b.bytes += uint64(replog.EntrySize(e))
	b.notifyLocked(false)
	return nil
}

// Progress records that the log is complete through pos (the VM calls it
// after every host call).
func (b *logBuffer) Progress(pos uint64) {
	now := time.Now()
	b.mu.Lock()
	if pos > b.pos {
		b.pos = pos
		if b.alone {
			b.mu.Unlock()
			return
		}
		b.notifyLocked(true)
		if n := len(b.samples); n == 0 || now.Sub(b.samples[n-1].at) >= time.Millisecond {
			b.samples = append(b.samples, sample{pos, now})
		} else {
			b.samples[n-1].pos = pos
		}
	}
	b.mu.Unlock()
}

// written records how much of the guest's stdout and stderr the Gate has
// written out; the backup hears it with the next batch, which a change
// makes due, as progress does.
func (b *logBuffer) written(out [2]uint64) {
	b.mu.Lock()
	if out != b.out {
		b.out = out
		b.notifyLocked(true)
	}
	b.mu.Unlock()
}

// newChannel forgets what an earlier channel's backup acknowledged
// hearing of the output counts: a new backup says for itself.
func (b *logBuffer) newChannel() {
	b.mu.Lock()
	b.outAcked = [2]uint64{}
	b.mu.Unlock()
}

// outputAcked returns how much of the guest's stdout and stderr the
// backup acknowledged hearing the Gate had written.
func (b *logBuffer) outputAcked() [2]uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.outAcked
}

// maxInFlight bounds the batches whose round trip is being timed.
const maxInFlight = 1024

// sent records that a batch ending with entry seq was written at at, to
// time its acknowledgement.
func (b *logBuffer) sent(seq uint64, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// A batch from a new connection starts again below what the old one
	// had in flight: those acknowledgements will not come.
	for n := len(b.inFlight); n > 0 && b.inFlight[n-1].seq >= seq; n-- {
		b.inFlight = b.inFlight[:n-1]
	}
	if len(b.inFlight) >= maxInFlight {
		b.inFlight = b.inFlight[1:]
	}
	b.inFlight = append(b.inFlight, sentAt{seq, at})
}

// TakeRTT returns the histogram of the logging channel's round trips
// (batch written to its acknowledgement read) since the last call, and
// starts a new one.
func (b *logBuffer) TakeRTT() latency.Histogram {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rtt.Take()
}

// observeRTT makes the buffer call f with each round trip it measures,
// under its lock: f must be quick.
func (b *logBuffer) observeRTT(f func(time.Duration)) {
	b.mu.Lock()
	b.onRTT = f
	b.mu.Unlock()
}

// types calls f with the entries and bytes logged of each entry type that
// has any.
func (b *logBuffer) types(f func(t replog.Type, entries, bytes uint64)) {
	b.mu.Lock()
	counts := b.byType
	b.mu.Unlock()
	for t, c := range counts {
		if c.entries > 0 {
			f(replog.Type(t), c.entries, c.bytes)
		}
	}
}

// ack records an acknowledgement and drops what it covers.
func (b *logBuffer) ack(a replog.Ack) error {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.Seq > b.last {
		return fmt.Errorf("ack of entry %d, but only %d were sent", a.Seq, b.last)
	}
	b.heard = true
	b.outAcked = a.Out
	i := 0
	for i < len(b.inFlight) && b.inFlight[i].seq <= a.Seq {
		d := now.Sub(b.inFlight[i].at)
		b.rtt.Record(d)
		if b.onRTT != nil {
			b.onRTT(d)
		}
		i++
	}
	b.inFlight = b.inFlight[i:]
	if a.Seq > b.acked {
		b.acked = a.Seq
		i := 0
		for i < len(b.entries) && b.entries[i].Seq <= a.Seq {
			b.bytes -= uint64(replog.EntrySize(b.entries[i]))
			i++
		}
		// The acknowledged entries' data is dropped now, and an array
		// that a burst grew is given back once mostly empty: an idle
		// VM's buffer shrinks back.
		clear(b.entries[:i])
		b.entries = b.entries[i:]
		if len(b.entries) == 0 {
			b.entries = nil
		} else if cap(b.entries) > 64 && len(b.entries) < cap(b.entries)/4 {
			b.entries = slices.Clone(b.entries)
		}
	}
	if a.Pos > b.ackPos {
		b.ackPos = a.Pos
		i := 0
		for i+1 < len(b.samples) && b.samples[i+1].pos <= a.Pos {
			i++
		}
		b.samples = b.samples[i:]
	}
	b.notifyLocked(false)
	return nil
}

// lagStats is how far the backup trails.
type lagStats struct {
	Last, Acked   uint64
	Entries       uint64 // sent or queued, not yet acknowledged
	Bytes         uint64
	Time          time.Duration // how long ago the primary was where the backup is
	Total         uint64        // bytes logged in all
	Pos, ReplayAt uint64
}

func (b *logBuffer) lag(now time.Time) lagStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	st := lagStats{Total: b.total, Last: b.last, Acked: b.acked, Entries: uint64(len(b.entries)), Bytes: b.bytes, Pos: b.pos, ReplayAt: b.ackPos}
	if b.ackPos < b.pos {
		for _, s := range b.samples {
			if s.pos > b.ackPos {
				st.Time = now.Sub(s.at)
				break
			}
		}
	}
	return st
}

// wait returns a channel closed at the next change.
func (b *logBuffer) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.waitAny = true
	return b.changed
}

// heardBackup reports whether the backup acknowledged anything since it
// was attached.
func (b *logBuffer) heardBackup() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.heard && !b.alone
}

// detach drops what the buffer holds and keeps nothing more: the primary
// runs alone. Senders stop.
func (b *logBuffer) detach() {
	b.mu.Lock()
	b.alone = true
	b.entries, b.bytes, b.samples = nil, 0, nil
	b.acked = b.last
	b.waitAny = true
	b.notifyLocked(false)
	b.mu.Unlock()
}

// attach makes the buffer keep the entries after seq for a backup again:
// a clone gave the primary a new backup, whose state goes through seq.
func (b *logBuffer) attach(seq uint64) {
	b.mu.Lock()
	b.alone, b.heard = false, false
	b.entries, b.bytes, b.samples, b.inFlight = nil, 0, nil, nil
	b.last, b.acked, b.ackPos = seq, seq, b.pos
	b.waitAny = true
	b.notifyLocked(false)
	b.mu.Unlock()
}

// close ends the buffer: Append fails and senders stop.
func (b *logBuffer) close() {
	b.mu.Lock()
	b.closed = true
	b.waitAny = true
	b.notifyLocked(false)
	b.mu.Unlock()
}

// maxBatchBytes keeps batches well below replog.MaxFrameSize.
const maxBatchBytes = 1 << 20

// next waits for entries after seq, progress past pos or output written
// beyond out, and returns the batch to send; ok is false once the buffer is
// closed or ctx is done. An error means the backup asked for entries the
// buffer no longer has.
func (b *logBuffer) next(ctx context.Context, seq, pos uint64, out [2]uint64) (replog.Batch, bool, error) {
	var due time.Time  // when progress alone is reported
	var hold time.Time // when entries held behind an unacknowledged batch go
	for {
		b.mu.Lock()
		if b.closed || b.alone {
			b.mu.Unlock()
			return replog.Batch{}, false, nil
		}
		now := time.Now()
		if (b.pos > pos || b.out != out) && due.IsZero() {
			due = now.Add(progressDelay)
		}
		if b.last > seq && hold.IsZero() {
			hold = now.Add(maxHold)
		}
		// New entries go at once when the backup has acknowledged all
		// that was sent; otherwise they wait for that ack (or maxHold),
		// so that under load one batch and one ack carry many entries.
		send := b.last > seq && (b.acked >= seq || !now.Before(hold))
		if send || (!due.IsZero() && !now.Before(due)) {
			batch, err := b.batchLocked(seq)
			b.mu.Unlock()
			return batch, err == nil, err
		}
		if due.IsZero() {
			b.waitAny = true
		} else {
			b.waitNoProgress = true
		}
		ch := b.changed
		b.mu.Unlock()
		wake := due
		if !hold.IsZero() && (wake.IsZero() || hold.Before(wake)) {
			wake = hold
		}
		var timer *time.Timer
		var fire <-chan time.Time
		if !wake.IsZero() {
			timer = time.NewTimer(wake.Sub(now))
			fire = timer.C
		}
		select {
		case <-ch:
		case <-fire:
		case <-ctx.Done():
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return replog.Batch{}, false, nil
		}
	}
}

// batchLocked builds the batch after entry seq.
func (b *logBuffer) batchLocked(seq uint64) (replog.Batch, error) {
	var batch replog.Batch
	if seq < b.acked && (len(b.entries) == 0 || b.entries[0].Seq > seq+1) {
		return batch, fmt.Errorf("the backup has entries through %d, but entries after it were acknowledged and dropped", seq)
	}
	size := 0
	for _, e := range b.entries {
		if e.Seq <= seq {
			continue
		}
		if size > 0 && size+replog.EntrySize(e) > maxBatchBytes {
			break
		}
		size += replog.EntrySize(e)
		batch.Entries = append(batch.Entries, e)
	}
	batch.Pos, batch.Out = b.pos, b.out
	if n := len(batch.Entries); n > 0 && batch.Entries[n-1].Seq < b.last {
		// Cut short: complete only through the last entry sent.
		batch.Pos = vmm.CompleteThrough(batch.Entries[n-1])
	}
	return batch, nil
}
