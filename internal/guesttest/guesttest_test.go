package guesttest

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"ftvm/wasi"
)

func TestBuildCached(t *testing.T) {
	a := Build(t, "cpu-fib")
	b := Build(t, "cpu-fib")
	if !bytes.Equal(a, b) {
		t.Fatal("second Build returned a different binary")
	}
	if !bytes.HasPrefix(a, []byte("\x00asm")) {
		t.Fatal("not a WebAssembly binary")
	}
}

func TestBuildUnknown(t *testing.T) {
	if _, err := build("no-such-guest"); err == nil {
		t.Fatal("building a missing guest succeeded")
	}
	if _, err := build("../x"); err == nil {
		t.Fatal("building a path succeeded")
	}
}

func TestRunWazero(t *testing.T) {
	bin := Build(t, "cpu-fib")
	out, errOut, code := RunWazero(t, bin, []string{"cpu-fib", "20"}, nil)
	if code != 0 || string(out) != "fib(20) = 6765\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = RunWazero(t, bin, []string{"cpu-fib", "x"}, nil)
	if code != 2 || len(out) != 0 || !strings.Contains(string(errOut), "bad n") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestRandDeterministic(t *testing.T) {
	a, b := make([]byte, 37), make([]byte, 37)
	NewRand(5).Read(a)
	NewRand(5).Read(b)
	if !bytes.Equal(a, b) || bytes.Equal(a, make([]byte, 37)) {
		t.Fatal("Rand is not a deterministic non-zero stream")
	}
}

func TestRunFTVM(t *testing.T) {
	bin := Build(t, "cpu-fib")
	out, errOut, code := RunFTVM(t, bin, []string{"cpu-fib", "20"}, nil)
	if code != 0 || string(out) != "fib(20) = 6765\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, errOut, code = RunFTVM(t, bin, []string{"cpu-fib", "x"}, nil)
	if code != 2 || len(out) != 0 || !strings.Contains(string(errOut), "bad n") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestFakeHostClocksAndState(t *testing.T) {
	h := NewFakeHost([]byte("hello"))
	t1, _ := h.ClockTime(wasi.ClockMonotonic, 0)
	t2, _ := h.ClockTime(wasi.ClockMonotonic, 0)
	if t2 <= t1 {
		t.Fatalf("monotonic clock did not advance: %d then %d", t1, t2)
	}
	if rt, _ := h.ClockTime(wasi.ClockRealtime, 0); rt < fakeEpoch {
		t.Fatalf("realtime %d before the fake epoch", rt)
	}
	if _, errno := h.ClockTime(wasi.ClockID(9), 0); errno != wasi.EINVAL {
		t.Fatalf("unknown clock: %v", errno)
	}
	data, _, _ := h.Read(context.Background(), 0, 2, 0)
	if string(data) != "he" {
		t.Fatalf("read %q", data)
	}
	state := h.MarshalState()

	// A relative clock wait jumps the fake time to its deadline.
	now, _ := h.ClockTime(wasi.ClockMonotonic, 0)
	evs, err := h.Poll(context.Background(), []wasi.Subscription{
		{Userdata: 7, Type: wasi.EventClock, Clock: wasi.ClockMonotonic, Timeout: 5e9},
		{Userdata: 8, Type: wasi.EventClock, Clock: wasi.ClockMonotonic, Timeout: 9e9},
	})
	if err != nil || len(evs) != 1 || evs[0].Userdata != 7 {
		t.Fatalf("poll: %v %+v", err, evs)
	}
	if later, _ := h.ClockTime(wasi.ClockMonotonic, 0); later < now+5e9 {
		t.Fatalf("clock at %d after waiting 5s from %d", later, now)
	}
	// Ready stdin wins over a clock.
	evs, err = h.Poll(context.Background(), []wasi.Subscription{
		{Userdata: 1, Type: wasi.EventClock, Clock: wasi.ClockMonotonic, Timeout: 5e9},
		{Userdata: 2, Type: wasi.EventFdRead, Handle: 0},
	})
	if err != nil || len(evs) != 1 || evs[0].Userdata != 2 || evs[0].NBytes != 3 {
		t.Fatalf("poll: %v %+v", err, evs)
	}

	// The state taken before the wait brings back time, random stream and
	// stdin position.
	h2 := NewFakeHost([]byte("hello"))
	if err := h2.UnmarshalState(state); err != nil {
		t.Fatal(err)
	}
	h3 := NewFakeHost([]byte("hello"))
	if err := h3.UnmarshalState(state); err != nil {
		t.Fatal(err)
	}
	a, _ := h2.ClockTime(wasi.ClockMonotonic, 0)
	b, _ := h3.ClockTime(wasi.ClockMonotonic, 0)
	if a != now || b != now {
		t.Fatalf("restored clocks read %d and %d, want %d", a, b, now)
	}
	r2, _ := h2.Random(16)
	r3, _ := h3.Random(16)
	if !bytes.Equal(r2, r3) {
		t.Fatal("restored random streams differ")
	}
	if data, _, _ := h2.Read(context.Background(), 0, 10, 0); string(data) != "llo" {
		t.Fatalf("restored stdin reads %q", data)
	}
	if err := NewFakeHost(nil).UnmarshalState(state); err == nil {
		t.Fatal("state with a stdin position past a shorter stdin accepted")
	}
	if err := h2.UnmarshalState([]byte("junk")); err == nil {
		t.Fatal("junk state accepted")
	}
}

func TestMachineSnapshotRejectsJunk(t *testing.T) {
	bin := Build(t, "cpu-fib")
	cm, err := Compile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, snap := range [][]byte{nil, []byte("junk"), []byte(machineMagic), []byte(machineMagic + "\x05ab")} {
		if _, err := Restore(cm, snap, nil); err == nil {
			t.Errorf("Restore(%q) succeeded", snap)
		}
	}
}
