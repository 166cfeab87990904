// Package latency keeps histograms of durations: fixed-size, so that a hot
// path records into one without allocating, and they can be copied, merged
// and reset cheaply. The hosts use them for what the Output Rule costs: how
// long outputs wait for the backup's acknowledgement, and the logging
// channel's round trip.
//
// Buckets are logarithmic, four to each power of two from about a
// microsecond, so a quantile is estimated within a quarter of the true
// value.
package latency

import (
	"math/bits"
	"time"
	"unsafe"
)

const (
	subBits  = 2 // four buckets per power of two
	subCount = 1 << subBits
	// minShift: bucket 0 holds everything under 2^10 ns (about 1 µs).
	minShift = 10
	// Powers of two covered above that: up to 2^36 ns (about 69 s);
	// longer durations fall in the last bucket.
	powers   = 26
	nBuckets = 1 + powers*subCount
)

// Histogram counts durations. Its zero value is empty and ready to use. It
// is not safe for concurrent use: its owner locks.
type Histogram struct {
	counts [nBuckets]uint64
	n      uint64
	max    time.Duration
}

// bucket returns the bucket of d: 0 under 2^minShift ns; above, the
// power of two of d in ns and the subBits bits below its leading one.
func bucket(d time.Duration) int {
	ns := uint64(max(d, 0))
	if ns < 1<<minShift {
		return 0
	}
	p := bits.Len64(ns) - 1 // 2^p <= ns < 2^(p+1), p >= minShift
	if p >= minShift+powers {
		return nBuckets - 1
	}
	sub := (ns >> (p - subBits)) & (subCount - 1)
	return 1 + (p-minShift)*subCount + int(sub)
}

// upper returns the smallest duration above bucket i's.
func upper(i int) time.Duration {
	if i == 0 {
		return 1 << minShift
	}
	p, sub := minShift+(i-1)/subCount, uint64((i-1)%subCount)
	return time.Duration((subCount + sub + 1) << (p - subBits))
}

// Record counts d.
func (h *Histogram) Record(d time.Duration) {
	h.counts[bucket(d)]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

// Merge adds o's counts to h's.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return // most intervals of an idle VM's windows are empty
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// Reset empties h.
func (h *Histogram) Reset() { *h = Histogram{} }

// Take returns what h holds and empties it.
func (h *Histogram) Take() Histogram {
	t := *h
	h.Reset()
	return t
}

// Count returns how many durations h holds.
func (h *Histogram) Count() uint64 { return h.n }

// Max returns the largest duration recorded, or 0.
func (h *Histogram) Max() time.Duration { return h.max }

// Quantile estimates the duration below which the fraction q (0 to 1) of
// those recorded lie: it finds the bucket where that fraction is reached
// and interpolates within it, so the estimate is off by at most the
// bucket's width, a quarter of the true value (or 1 µs below that). It is
// never above the largest duration recorded, and 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	// The rank of the quantile, from 1: the first duration for q = 0.
	rank := max(uint64(q*float64(h.n)+0.5), 1)
	var seen uint64
	for i, c := range h.counts {
		if seen+c >= rank {
			var lo time.Duration
			if i > 0 {
				lo = upper(i - 1)
			}
			hi := upper(i)
			est := lo + time.Duration(float64(hi-lo)*float64(rank-seen)/float64(c))
			return min(est, h.max)
		}
		seen += c
	}
	return h.max
}

// Window is the histogram of the last few intervals: durations are
// recorded into the current one, and Rotate starts a new interval,
// forgetting the oldest. An interval holds a histogram only while it has
// durations, so the window of an idle VM is a few pointers, not the
// 40-odd histograms of a busy one. The zero value is not usable: see
// NewWindow.
type Window struct {
	slots []*Histogram
	cur   int
}

// NewWindow returns a Window over n intervals (n >= 1).
func NewWindow(n int) *Window { return &Window{slots: make([]*Histogram, max(n, 1))} }

// Add merges h into the current interval.
func (w *Window) Add(h *Histogram) {
	if h.n == 0 {
		return
	}
	if w.slots[w.cur] == nil {
		w.slots[w.cur] = new(Histogram)
	}
	w.slots[w.cur].Merge(h)
}

// Rotate starts a new interval, dropping the oldest.
func (w *Window) Rotate() {
	w.cur = (w.cur + 1) % len(w.slots)
	w.slots[w.cur] = nil
}

// Sum returns the histogram of every interval in the window.
func (w *Window) Sum() Histogram {
	var h Histogram
	for _, s := range w.slots {
		if s != nil {
			h.Merge(s)
		}
	}
	return h
}

// Bytes returns the memory the window holds: its histograms and their
// pointers.
func (w *Window) Bytes() int {
	n := len(w.slots) * int(unsafe.Sizeof(w.slots[0]))
	for _, s := range w.slots {
		if s != nil {
			n += int(unsafe.Sizeof(*s))
		}
	}
	return n
}
