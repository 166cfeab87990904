//go:build linux

package wasi

import (
	"context"
	"errors"
	"math"
	"slices"
	"time"
)

// Poll implements Host. Clock subscriptions become timers; a relative
// timeout counts from the start of the call, an absolute one is compared
// with the clock it names. A Poll that had to wait coalesces (see
// Config.Coalesce) while inputs come from more than one source (see
// busyLocked): when something becomes ready it waits up to the coalescing
// time more, but never past a clock subscription's deadline, then reports
// all that is ready.
func (h *OSHost) Poll(ctx context.Context, subs []Subscription) ([]Event, error) {
	start := time.Now()
	deadlines := make([]time.Time, len(subs))
	var failed []Event
	for i, s := range subs {
		if s.Type != EventClock {
			continue
		}
		timeout := s.Timeout
		if s.Flags&SubclockAbstime != 0 {
			now, errno := h.ClockTime(s.Clock, 0)
			if errno != ESUCCESS {
				failed = append(failed, Event{Userdata: s.Userdata, Type: EventClock, Errno: errno})
				continue
			}
			timeout = 0
			if s.Timeout > now {
				timeout = s.Timeout - now
			}
		}
		deadlines[i] = start.Add(time.Duration(min(timeout, math.MaxInt64/2)))
	}
	if len(failed) > 0 {
		return failed, nil
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	waited, coalesced := false, false
	var readable []Handle
	for {
		now := time.Now()
		var events []Event
		var next time.Time
		fdReady := 0            // coalescing is for I/O, not timers
		readable = readable[:0] // the handles of read events among them
		for i, s := range subs {
			if s.Type == EventClock {
				if !now.Before(deadlines[i]) {
					events = append(events, Event{Userdata: s.Userdata, Type: EventClock})
				} else if next.IsZero() || deadlines[i].Before(next) {
					next = deadlines[i]
				}
				continue
			}
			if ev, ok := h.readyLocked(s); ok {
				events = append(events, ev)
				fdReady++
				if s.Type == EventFdRead && ev.Errno == ESUCCESS {
					readable = append(readable, s.Handle)
				}
			}
		}
		if fdReady > 0 && waited && !coalesced && h.coalesce > 0 && h.busyLocked(now, readable) {
			coalesced = true
			d := h.coalesce
			if !next.IsZero() {
				d = min(d, next.Sub(now))
			}
			if d > 0 {
				// The deadline timer, not time.Sleep: at low load that
				// would wait a whole millisecond, adding it to every
				// reply.
				h.mu.Unlock()
				var err error
				select {
				case <-h.timer.arm(d):
				case <-ctx.Done():
					h.timer.disarm()
					err = ctx.Err()
				}
				h.mu.Lock()
				if err != nil {
					return nil, err
				}
				continue
			}
		}
		if len(events) > 0 {
			if fdReady > 0 {
				h.together = fdReady > 1
				h.noteReadyLocked(now, readable)
			}
			return events, nil
		}
		if h.closed {
			return nil, errors.New("poll: host closed")
		}
		// Poll runs on the guest's goroutine, one call at a time, so it
		// has the deadline timer to itself.
		var fire <-chan struct{}
		if !next.IsZero() {
			fire = h.timer.arm(next.Sub(now))
		}
		err := h.wait(ctx, fire)
		waited = true
		if fire != nil {
			h.timer.disarm()
		}
		if err != nil {
			return nil, err
		}
	}
}

// readyAt is a handle Poll found readable, and when.
type readyAt struct {
	h  Handle
	at time.Time
}

// busyWindow, in coalescing times, is how recently an input from another
// source than the one now ready makes Poll coalesce: 1 ms by default. Four
// (200 µs) was too short for a guest serving 16 clients at 2000 requests
// a second, whose inputs are 500 µs apart on average.
const busyWindow = 20

// busyLocked reports whether inputs arrive from more than one source: the
// last Poll found several descriptors ready, or another handle than those
// ready now was readable within busyWindow coalescing times. Under load
// from many clients this holds even when each Poll finds one input ready,
// as it does when every reply waits for something (the Output Rule's
// acknowledgement), so that coalescing still gathers their inputs; a lone
// client is never delayed. h.mu is held.
func (h *OSHost) busyLocked(now time.Time, readable []Handle) bool {
	if h.together {
		return true
	}
	for _, r := range h.recent {
		if r.at.IsZero() || now.Sub(r.at) > busyWindow*h.coalesce {
			return false
		}
		if !slices.Contains(readable, r.h) {
			return true
		}
	}
	return false
}

// noteReadyLocked records in h.recent the handles found readable. h.mu is
// held.
func (h *OSHost) noteReadyLocked(now time.Time, readable []Handle) {
	for _, x := range readable {
		if h.recent[0].h != x || h.recent[0].at.IsZero() {
			h.recent[1] = h.recent[0]
		}
		h.recent[0] = readyAt{x, now}
	}
}

// readyLocked returns the event of an fd subscription if it is ready.
// h.mu is held.
func (h *OSHost) readyLocked(s Subscription) (Event, bool) {
	ev := Event{Userdata: s.Userdata, Type: s.Type}
	read := s.Type == EventFdRead
	readable := func(st *stream) bool {
		ev.NBytes = uint64(len(st.buf))
		if st.err != nil || st.closed {
			ev.Flags = EventFdHangup
			return true
		}
		return len(st.buf) > 0
	}
	switch r := h.res[s.Handle].(type) {
	case nil:
		ev.Errno = EBADF
		return ev, true
	case *stream:
		return ev, read && readable(r)
	case *outStream:
		return ev, !read
	case *osConn:
		if !read {
			return ev, r.writable(&ev)
		}
		return ev, readable(r.in)
	case *osListener:
		if read && (len(r.queue) > 0 || r.err != nil || r.closed) {
			ev.NBytes = uint64(len(r.queue))
			return ev, true
		}
		return ev, false
	}
	// Files and directories never block.
	return ev, true
}
