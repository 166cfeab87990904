//go:build linux

package wasi

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A clock subscription is reported no earlier than its timeout, and a poll
// whose deadline passed while it waited returns (the timer fires).
func TestOSHostPollTimeout(t *testing.T) {
	h, err := NewOSHost(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.CloseAll()
	for _, d := range []time.Duration{0, 50 * time.Microsecond, time.Millisecond, 20 * time.Millisecond} {
		start := time.Now()
		events, err := h.Poll(context.Background(), []Subscription{{Userdata: 9, Type: EventClock, Clock: ClockMonotonic, Timeout: uint64(d)}})
		if err != nil || len(events) != 1 || events[0].Userdata != 9 {
			t.Fatalf("poll %v = %+v, %v", d, events, err)
		}
		if took := time.Since(start); took < d {
			t.Fatalf("a %v timeout reported after %v", d, took)
		}
	}
	// Armed by one poll and left by it (an input came first), the timer
	// does not end the next poll early.
	h.timer.arm(time.Microsecond)
	time.Sleep(time.Millisecond)
	start := time.Now()
	if _, err := h.Poll(context.Background(), []Subscription{{Type: EventClock, Clock: ClockMonotonic, Timeout: uint64(20 * time.Millisecond)}}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 20*time.Millisecond {
		t.Fatalf("a stale expiry ended a 20 ms poll after %v", took)
	}
}

// BenchmarkPollTimeout measures how late a poll that waits only for a
// timeout returns on an idle machine: the precision of the guest's timers.
//
//	go test ./wasi -run '^$' -bench BenchmarkPollTimeout -benchtime 200x
func BenchmarkPollTimeout(b *testing.B) {
	h, err := NewOSHost(Config{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer h.CloseAll()
	for _, d := range []time.Duration{20 * time.Microsecond, 100 * time.Microsecond, 500 * time.Microsecond, 2 * time.Millisecond} {
		b.Run(fmt.Sprint(d), func(b *testing.B) {
			sub := []Subscription{{Type: EventClock, Clock: ClockMonotonic, Timeout: uint64(d)}}
			var late time.Duration
			for b.Loop() {
				start := time.Now()
				if _, err := h.Poll(context.Background(), sub); err != nil {
					b.Fatal(err)
				}
				late += time.Since(start) - d
			}
			b.ReportMetric(float64(late.Microseconds())/float64(b.N), "late-µs")
		})
	}
}
