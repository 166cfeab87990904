package host

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

var testKey = bytes.Repeat([]byte{7}, 32)

func TestHeartbeatRoundTripAndTamper(t *testing.T) {
	hb := heartbeat{Epoch: 99, Counter: 3, From: "h1", EchoEpoch: 98, Echo: 41, Vouch: 2950, VMs: []beatVM{{"counter", 2}, {"kv", 7}}}
	b := hb.marshal(testKey)
	got, err := parseHeartbeat(testKey, b)
	if err != nil || !reflect.DeepEqual(got, hb) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for i := range b {
		bad := bytes.Clone(b)
		bad[i] ^= 0x20
		if _, err := parseHeartbeat(testKey, bad); !errors.Is(err, errHeartbeat) {
			t.Fatalf("byte %d flipped: accepted (%v)", i, err)
		}
	}
	other := bytes.Repeat([]byte{8}, 32)
	if _, err := parseHeartbeat(other, b); err == nil {
		t.Fatal("heartbeat accepted under another key")
	}
	if _, err := parseHeartbeat(testKey, b[:len(b)-1]); err == nil {
		t.Fatal("truncated heartbeat accepted")
	}
}

// TestBeatDatagrams: a thousand VMs' heartbeat is split into datagrams
// that each fit maxDatagram, carry increasing counters, and together name
// every VM once, in order.
func TestBeatDatagrams(t *testing.T) {
	var vms []beatVM
	for i := range 1000 {
		vms = append(vms, beatVM{VM: fmt.Sprintf("vm-with-a-longish-name-%04d", i), Gen: uint64(i)})
	}
	var counter uint64
	next := func() uint64 { counter++; return counter }
	dgs := beatDatagrams(testKey, heartbeat{Epoch: 5, From: "host-one", EchoEpoch: 1 << 62, Echo: 1 << 62, Vouch: 1 << 62}, next, vms)
	if len(dgs) < 2 {
		t.Fatalf("%d datagrams for 1000 vms", len(dgs))
	}
	var got []beatVM
	for i, b := range dgs {
		if len(b) > maxDatagram {
			t.Fatalf("datagram %d is %d bytes, more than %d", i, len(b), maxDatagram)
		}
		hb, err := parseHeartbeat(testKey, b)
		if err != nil || hb.Counter != uint64(i+1) || hb.From != "host-one" || hb.Epoch != 5 || hb.Echo != 1<<62 || hb.Vouch != 1<<62 {
			t.Fatalf("datagram %d: %+v %v", i, hb, err)
		}
		got = append(got, hb.VMs...)
	}
	if !reflect.DeepEqual(got, vms) {
		t.Fatalf("the datagrams carry %d vms, not the 1000 given in order", len(got))
	}
	if dgs := beatDatagrams(testKey, heartbeat{Epoch: 5, From: "h"}, next, nil); len(dgs) != 0 {
		t.Fatalf("no vms: %d datagrams", len(dgs))
	}
}

func TestBeatClockRejectsReplays(t *testing.T) {
	c := beatClock{}
	hb := heartbeat{Epoch: 10, Counter: 5, From: "h1"}
	if !c.fresh(hb) {
		t.Fatal("first heartbeat refused")
	}
	if c.fresh(hb) {
		t.Fatal("replayed heartbeat accepted")
	}
	hb.Counter = 4
	if c.fresh(hb) {
		t.Fatal("older heartbeat accepted")
	}
	hb.Epoch, hb.Counter = 11, 1 // the sender restarted
	if !c.fresh(hb) {
		t.Fatal("heartbeat of a restarted sender refused")
	}
	if !c.fresh(heartbeat{Epoch: 1, Counter: 1, From: "h2"}) {
		t.Fatal("senders are not independent")
	}
}

func TestHello(t *testing.T) {
	h := logHello{VM: "vm", Gen: 3, Backup: "h2", HaveSeq: 17}
	got, err := parseHello(h.marshal())
	if err != nil || got.kind != helloLog || got.log != h {
		t.Fatalf("log hello: %+v %v", got, err)
	}
	ch := cloneHello{VM: "vm", Gen: 4, Primary: "h1"}
	if got, err := parseHello(ch.marshal()); err != nil || got.kind != helloClone || got.clone != ch {
		t.Fatalf("clone hello: %+v %v", got, err)
	}
	if got, err := parseHello(controlHello()); err != nil || got.kind != helloControl {
		t.Fatalf("control hello: %+v %v", got, err)
	}
	for _, bad := range [][]byte{nil, []byte("\x03xyz"), append(h.marshal(), 0), h.marshal()[:5], append(ch.marshal(), 1)} {
		if _, err := parseHello(bad); err == nil {
			t.Errorf("hello %q accepted", bad)
		}
	}
}

func TestFailpoints(t *testing.T) {
	var f Failpoints
	var cut []string
	f.onCut = func(p string) { cut = append(cut, p) }
	if !f.Fence() {
		t.Fatal("fencing off by default")
	}
	if err := f.Set("cut=h2, cut-heartbeat=h3,storage=unreachable,fence=off"); err != nil {
		t.Fatal(err)
	}
	if !f.LogCut("h2") || !f.BeatCut("h2") || f.LogCut("h3") || !f.BeatCut("h3") || f.StorageReachable() || f.Fence() {
		t.Fatalf("failpoints %s", f.String())
	}
	if f.String() != "cut=h2,cut-heartbeat=h3,storage=unreachable,fence=off" {
		t.Fatalf("String() = %q", f.String())
	}
	if len(cut) != 1 || cut[0] != "h2" {
		t.Fatalf("channels closed for %v", cut)
	}
	if err := f.Set(""); err != nil || f.LogCut("h2") || !f.StorageReachable() || !f.Fence() || f.String() != "" {
		t.Fatalf("clear: %v %q", err, f.String())
	}
	for _, bad := range []string{"cut", "cut=", "explode=h1", "storage=maybe", "fence=maybe", "output-rule=maybe"} {
		if err := f.Set(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzFailpoints: a spec that Set accepts is shown by String in a form
// that Set accepts again and that means the same faults (`ftvm failpoint`
// shows a host's failpoints this way, to be edited and set again).
func FuzzFailpoints(f *testing.F) {
	for _, s := range []string{"cut=h2, cut-heartbeat=h3,storage=unreachable,fence=off", "cut-log=a,cut-heartbeat=a", "cut=a=b,,", "storage=reachable,fence=on", "cut",
		"crash-before-effect=Mkdir,crash-after-send=any", "crash-after-effect=Pwrite,crash-after-effect=Open", "output-rule=off,cut=a", "output-rule=on"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		var a Failpoints
		if err := a.Set(spec); err != nil {
			return
		}
		shown := a.String()
		var b Failpoints
		if err := b.Set(shown); err != nil {
			t.Fatalf("Set(%q) accepted, but not its String %q: %v", spec, shown, err)
		}
		if b.String() != shown {
			t.Fatalf("Set(%q): String %q, then %q", spec, shown, b.String())
		}
		if a.StorageReachable() != b.StorageReachable() || a.Fence() != b.Fence() || a.crash != b.crash || a.OutputRuleOff() != b.OutputRuleOff() {
			t.Fatalf("Set(%q) and Set(%q) differ on storage or fencing", spec, shown)
		}
		for _, p := range append(append([]string{}, a.cutLog...), a.cutBeat...) {
			if a.LogCut(p) != b.LogCut(p) || a.BeatCut(p) != b.BeatCut(p) {
				t.Fatalf("Set(%q) and Set(%q) differ on peer %q", spec, shown, p)
			}
		}
	})
}

func FuzzParseHeartbeat(f *testing.F) {
	f.Add(heartbeat{Epoch: 1, Counter: 2, From: "h", EchoEpoch: 3, Echo: 4, Vouch: 5, VMs: []beatVM{{"v", 1}}}.marshal(testKey))
	f.Add(heartbeat{Epoch: 1, Counter: 2, From: "h"}.marshal(testKey))
	f.Add([]byte("FTHB"))
	f.Fuzz(func(t *testing.T, b []byte) {
		hb, err := parseHeartbeat(testKey, b)
		if err != nil {
			return
		}
		if !bytes.Equal(hb.marshal(testKey), b) {
			t.Fatalf("accepted a heartbeat that does not re-encode to itself: %x", b)
		}
	})
}

func FuzzParseHello(f *testing.F) {
	f.Add(logHello{VM: "vm", Gen: 1, Backup: "h2", HaveSeq: 3}.marshal())
	f.Add(controlHello())
	f.Add(cloneHello{VM: "vm", Gen: 2, Primary: "h1"}.marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHello(b)
		if err != nil {
			return
		}
		if h.kind == helloLog && !bytes.Equal(h.log.marshal(), b) {
			t.Fatalf("log hello does not re-encode to itself: %x", b)
		}
		if h.kind == helloClone && !bytes.Equal(h.clone.marshal(), b) {
			t.Fatalf("clone hello does not re-encode to itself: %x", b)
		}
	})
}

// TestVouchGrantsFromTheEchoedSendTime: a heartbeat's vouch extends this
// host's primaries' leases from the send time of this host's heartbeat it
// echoes, never from when it arrived; an echo of another process's
// heartbeat, of one forgotten, or a vouch of 0 grants nothing.
func TestVouchGrantsFromTheEchoedSendTime(t *testing.T) {
	h := &Host{epoch: 7}
	sent := time.Now().Add(-10 * time.Second)
	h.sent.note(41, sent)
	for _, c := range []struct {
		name  string
		hb    heartbeat
		until time.Time
	}{
		{"echo of a heartbeat sent 10 s ago", heartbeat{EchoEpoch: 7, Echo: 41, Vouch: 3000}, sent.Add(3 * time.Second)},
		{"no vouch", heartbeat{EchoEpoch: 7, Echo: 41}, time.Time{}},
		{"another process's heartbeat", heartbeat{EchoEpoch: 6, Echo: 41, Vouch: 3000}, time.Time{}},
		{"a heartbeat never sent", heartbeat{EchoEpoch: 7, Echo: 42, Vouch: 3000}, time.Time{}},
		{"no echo", heartbeat{EchoEpoch: 7, Vouch: 3000}, time.Time{}},
		{"one forgotten", heartbeat{EchoEpoch: 7, Echo: 41 + beatRingSize, Vouch: 3000}, time.Time{}},
	} {
		until, ok := h.grantOf(c.hb)
		if ok != !c.until.IsZero() || !until.Equal(c.until) {
			t.Errorf("%s: grant until %v (%v), want %v", c.name, until, ok, c.until)
		}
	}
}
