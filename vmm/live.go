package vmm

import (
	"context"
	"fmt"
	"sync"
	"time"

	"ftvm/replog"
)

// LiveSource is the Source of a backup: the entries the logging channel
// delivers, in batches, while the primary runs. Each batch also says how
// far the primary had run when it sent it (Batch.Pos): the log is complete
// through that position, so a backup at a call at or before it knows
// whether the call has an entry without waiting.
//
// Push and End are called by the channel's receiver; Peek and Consume by
// the VM. A call waits only when the VM has caught up with the primary.
type LiveSource struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	queue   []replog.Entry
	known   uint64 // the log is complete through this position
	lastSeq uint64 // the last entry received
	written [2]uint64
	ended   bool
	// arrivals holds, for each batch with entries still queued, when it
	// arrived and its last entry: how far behind the replay is (Behind).
	arrivals []arrival
	// reached holds when the log first reached beyond each position the
	// replay has not reached yet (see Replayed), a mark every markEvery at
	// most: how far behind a replay with no entry to wait on is
	// (BehindAt). A guest that only computes sends no entry, only its
	// position.
	reached []mark
}

type mark struct {
	pos uint64
	at  time.Time
}

// The marks of reached: one per markEvery at most, and at most maxMarks
// (a replay that trails by more is far behind whatever the exact figure).
// A mark holds the first time of its window and the last position: it
// overestimates BehindAt by up to markEvery, never underestimates it. (With
// the first position instead, a replay past it but short of the last was
// taken to be caught up; its primary, held back by the lag bound, sent no
// more marks, and the replay, niced and last in line, stayed behind for
// minutes.)
const (
	markEvery = 5 * time.Millisecond
	maxMarks  = 4096
)

type arrival struct {
	lastSeq uint64
	at      time.Time
}

// NewLiveSource returns an empty LiveSource. after is the sequence number
// of the last entry the backup already has (0 for a fresh backup).
func NewLiveSource(after uint64) *LiveSource {
	return &LiveSource{changed: make(chan struct{}), lastSeq: after}
}

func (s *LiveSource) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Push adds a batch. Its entries must follow the last one received
// without a gap; a batch that does not is refused (the channel is then
// broken and the caller closes it).
func (s *LiveSource) Push(b replog.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return fmt.Errorf("vmm: batch after the end of the log")
	}
	for _, e := range b.Entries {
		if e.Seq != s.lastSeq+1 {
			return fmt.Errorf("vmm: log entry %d received after %d", e.Seq, s.lastSeq)
		}
		e.Data = append([]byte(nil), e.Data...) // the batch's buffer is reused
		s.queue = append(s.queue, e)
		s.lastSeq = e.Seq
	}
	if len(b.Entries) > 0 {
		s.arrivals = append(s.arrivals, arrival{s.lastSeq, time.Now()})
	}
	if b.Pos > s.known {
		s.known = b.Pos
		now := time.Now()
		if n := len(s.reached); n == 0 || n < maxMarks && now.Sub(s.reached[n-1].at) >= markEvery {
			s.reached = append(s.reached, mark{b.Pos, now})
		} else {
			s.reached[n-1].pos = b.Pos
		}
	}
	for i, n := range b.Out {
		s.written[i] = max(s.written[i], n)
	}
	s.notifyLocked()
	return nil
}

// Written returns how many bytes of the guest's stdout and stderr the
// primary reported it had written out (replog.Batch.Out).
func (s *LiveSource) Written() [2]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written
}

// End marks the log as ended for good: the primary is gone. A Peek that
// would have to wait returns ErrLogEnded instead.
func (s *LiveSource) End() {
	s.mu.Lock()
	s.ended = true
	s.notifyLocked()
	s.mu.Unlock()
}

// Ended reports whether End was called.
func (s *LiveSource) Ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// Drained reports whether the log has ended and its every entry was
// consumed: a replay past that point needs nothing more from the log, and
// may go live wherever it stands, between two instructions as well as at a
// call (GoLive). A guest that only computes makes no call at which its
// replay would find the end.
func (s *LiveSource) Drained() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended && len(s.queue) == 0
}

// Received returns the sequence number of the last entry received and the
// position through which the log is complete.
func (s *LiveSource) Received() (seq, pos uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSeq, s.known
}

// Peek implements Source.
func (s *LiveSource) Peek(ctx context.Context, pos uint64) (replog.Entry, bool, error) {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			e := s.queue[0]
			s.mu.Unlock()
			return e, e.Pos <= pos, nil
		}
		if s.known >= pos {
			s.mu.Unlock()
			return replog.Entry{}, false, nil
		}
		if s.ended {
			s.mu.Unlock()
			return replog.Entry{}, false, ErrLogEnded
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return replog.Entry{}, false, ctx.Err()
		}
	}
}

// Consume implements Source.
func (s *LiveSource) Consume() {
	s.mu.Lock()
	if len(s.queue) > 0 {
		seq := s.queue[0].Seq
		s.queue = s.queue[1:]
		for len(s.arrivals) > 0 && s.arrivals[0].lastSeq <= seq {
			s.arrivals = s.arrivals[1:]
		}
	}
	s.mu.Unlock()
}

// Replayed tells the source that the replay reached pos: the marks of
// how far behind it is (BehindAt) at or before pos are forgotten.
func (s *LiveSource) Replayed(pos uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < len(s.reached) && s.reached[i].pos <= pos {
		i++
	}
	s.reached = s.reached[i:]
	if len(s.reached) == 0 {
		s.reached = nil // the array goes with its last mark
	}
}

// BehindAt returns how far the replay trails the primary, in time: the
// longer of Behind and how long ago the log first reached beyond the
// position the replay last said it reached (Replayed).
func (s *LiveSource) BehindAt(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.behindLocked(now)
	if len(s.reached) == 0 {
		return d
	}
	return max(d, now.Sub(s.reached[0].at))
}

// Behind returns how long the oldest entry not yet consumed has waited
// since its batch arrived, 0 if none waits: how far the replay trails the
// primary, in time, seen from the backup.
func (s *LiveSource) Behind(now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.behindLocked(now)
}

func (s *LiveSource) behindLocked(now time.Time) time.Duration {
	if len(s.arrivals) == 0 {
		return 0
	}
	return max(now.Sub(s.arrivals[0].at), 0)
}
