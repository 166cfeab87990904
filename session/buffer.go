package session

import (
	"sync"
	"time"
)

// queue is a byte FIFO that reuses its array: bytes are pushed at the
// back and dropped from the front.
type queue struct {
	buf   []byte
	start int
}

func (q *queue) len() int      { return len(q.buf) - q.start }
func (q *queue) bytes() []byte { return q.buf[q.start:] }

func (q *queue) push(p []byte) {
	// Compacting only once the dead front is at least half the array
	// keeps the copying amortized O(1) a byte.
	if q.start > 0 && q.start >= len(q.buf)/2 && len(q.buf)+len(p) > cap(q.buf) {
		n := copy(q.buf, q.buf[q.start:])
		q.buf = q.buf[:n]
		q.start = 0
	}
	q.buf = append(q.buf, p...)
}

func (q *queue) drop(n int) {
	q.start += n
	if q.start == len(q.buf) {
		q.buf = q.buf[:0]
		q.start = 0
	}
}

// deadline is a net.Conn deadline for waits on a sync.Cond: when it
// passes, its timer wakes the waiters, which then see exceeded.
type deadline struct {
	t     time.Time
	timer *time.Timer
}

// set must be called with mu held.
func (d *deadline) set(t time.Time, mu *sync.Mutex, cond *sync.Cond) {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.t = t
	if dur := time.Until(t); !t.IsZero() && dur > 0 {
		d.timer = time.AfterFunc(dur, func() {
			mu.Lock()
			cond.Broadcast()
			mu.Unlock()
		})
	}
	cond.Broadcast()
}

func (d *deadline) exceeded() bool { return !d.t.IsZero() && !time.Now().Before(d.t) }

func (d *deadline) stop() {
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}
