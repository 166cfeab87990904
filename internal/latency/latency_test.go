package latency

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	"unsafe"
)

func TestBucketsAreOrderedAndBounded(t *testing.T) {
	prev := -1
	for us := 0; us < 1<<20; us = us*9/8 + 1 {
		d := time.Duration(us) * time.Microsecond
		i := bucket(d)
		if i < prev {
			t.Fatalf("%v in bucket %d, below %d of a shorter duration", d, i, prev)
		}
		prev = i
		if u := upper(i); d >= u {
			t.Fatalf("%v in bucket %d whose upper bound is %v", d, i, u)
		}
		if i > 0 {
			if l := upper(i - 1); d < l {
				t.Fatalf("%v in bucket %d, but bucket %d goes up to %v", d, i, i-1, l)
			}
		}
	}
	if got := bucket(time.Hour); got != nBuckets-1 {
		t.Fatalf("an hour in bucket %d, want the last", got)
	}
	if got := bucket(-time.Second); got != 0 {
		t.Fatalf("a negative duration in bucket %d, want 0", got)
	}
}

// TestQuantileAgainstSorted compares quantiles with the exact ones of the
// same random durations: off by at most a bucket's width (a quarter of the
// power of two, so under 25 %, or 1 µs in the first bucket).
func TestQuantileAgainstSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for run := range 50 {
		var h Histogram
		var ds []time.Duration
		n := 1 + r.IntN(2000)
		for range n {
			// Log-uniform from 1 µs to about 1 s.
			d := time.Duration(float64(time.Microsecond) * math.Exp2(r.Float64()*20))
			ds = append(ds, d)
			h.Record(d)
		}
		slices.Sort(ds)
		for _, q := range []float64{0, 0.1, 0.5, 0.9, 0.99, 1} {
			rank := max(int(q*float64(n)+0.5), 1)
			exact := ds[rank-1]
			got := h.Quantile(q)
			if diff := got - exact; diff > exact/4+time.Microsecond || -diff > exact/4+time.Microsecond {
				t.Fatalf("run %d, q %v of %d: got %v, exact %v", run, q, n, got, exact)
			}
		}
		if h.Max() != ds[n-1] || h.Quantile(1) != ds[n-1] {
			t.Fatalf("run %d: max %v, q1 %v, want %v", run, h.Max(), h.Quantile(1), ds[n-1])
		}
	}
}

func TestEmptyResetAndTake(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Count() != 0 || h.Max() != 0 {
		t.Fatal("empty histogram reports durations")
	}
	h.Record(time.Millisecond)
	h.Reset()
	if h.Count() != 0 || h.Quantile(0.99) != 0 {
		t.Fatal("Reset kept durations")
	}
	h.Record(time.Second)
	if got := h.Take(); got.Count() != 1 || got.Max() != time.Second || h.Count() != 0 {
		t.Fatalf("Take returned %d durations (max %v) and left %d", got.Count(), got.Max(), h.Count())
	}
}

func TestWindowForgetsOldIntervals(t *testing.T) {
	w := NewWindow(2)
	var a, b Histogram
	a.Record(10 * time.Millisecond)
	b.Record(time.Millisecond)
	w.Add(&a)
	w.Rotate()
	w.Add(&b)
	if s := w.Sum(); s.Count() != 2 || s.Max() != 10*time.Millisecond {
		t.Fatalf("window of two intervals: %d durations, max %v", s.Count(), s.Max())
	}
	w.Rotate() // drops a's interval
	if s := w.Sum(); s.Count() != 1 || s.Max() != time.Millisecond {
		t.Fatalf("after rotation: %d durations, max %v", s.Count(), s.Max())
	}
	w.Rotate() // drops b's
	if s := w.Sum(); s.Count() != 0 {
		t.Fatalf("after two rotations: %d durations", s.Count())
	}
}

// An idle window gives back the histograms of its busy intervals as they
// rotate out.
func TestWindowOfIdleIntervalsIsSmall(t *testing.T) {
	w := NewWindow(40)
	empty := w.Bytes()
	var h Histogram
	h.Record(time.Millisecond)
	for range 40 {
		w.Add(&h)
		w.Rotate()
	}
	if busy := w.Bytes(); busy < 39*int(unsafe.Sizeof(h)) {
		t.Fatalf("window of 39 busy intervals holds %d bytes", busy)
	}
	var none Histogram
	for range 40 {
		w.Add(&none)
		w.Rotate()
	}
	if idle := w.Bytes(); idle != empty {
		t.Fatalf("window of idle intervals holds %d bytes, want %d (as new)", idle, empty)
	}
	if s := w.Sum(); s.Count() != 0 {
		t.Fatal("idle window still counts durations")
	}
}
