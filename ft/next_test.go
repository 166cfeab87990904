package ft

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestNextTicksAsDenseTicking: a node ticked only when Next says and
// before each event does what one ticked every millisecond does: the same
// actions at the same times, over random schedules of heartbeats, log
// traffic, channels closed under the node, claim answers (won, lost,
// failed) and silences.
func TestNextTicksAsDenseTicking(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		cfg := Config{
			HeartbeatInterval: time.Duration(5+rng.IntN(60)) * time.Millisecond,
			FailureTimeout:    time.Duration(20+rng.IntN(600)) * time.Millisecond,
			ClaimRetry:        time.Duration(1+rng.IntN(100)) * time.Millisecond,
			GoneTimeout:       time.Duration(rng.IntN(300)) * time.Millisecond,
			CloneRetry:        time.Duration(1+rng.IntN(500)) * time.Millisecond,
		}
		role := Primary
		if rng.IntN(2) == 0 {
			role = Backup
		}
		// Events at whole milliseconds, with silences long enough for
		// timeouts, and claim answers that follow a claim.
		start := time.Unix(1000, 0)
		type event struct {
			at time.Duration
			ev Event
		}
		var evs []event
		at := time.Duration(0)
		for range 200 {
			at += time.Duration(rng.IntN(80)) * time.Millisecond
			if rng.IntN(20) == 0 {
				at += cfg.FailureTimeout
			}
			var ev Event
			switch r := rng.IntN(13); {
			case r == 11:
				ev = Event{Kind: EvCloneFailed, Gen: 3, Lost: rng.IntN(4) == 0}
			case r == 12:
				ev = Event{Kind: EvCloneDone, Gen: 3, Peer: "C"}
			case r < 5:
				ev = Event{Kind: EvHeartbeat}
			case r < 7:
				ev = Event{Kind: EvLogTraffic}
			case r == 10:
				ev = Event{Kind: EvPeerGone}
			case r < 8:
				ev = Event{Kind: EvClaimFailed, Gen: 2}
			case r < 9:
				ev = Event{Kind: EvClaimed, Gen: 2, Won: rng.IntN(3) > 0}
			default:
				ev = Event{Kind: EvLive}
			}
			evs = append(evs, event{at, ev})
		}
		end := at + time.Second

		run := func(dense bool) []string {
			n := NewNode(cfg, role, 1, "B", start)
			var out []string
			record := func(now time.Time) {
				rd := n.Ready()
				for _, a := range rd.Actions {
					out = append(out, fmt.Sprintf("%v %v %d %s", now.Sub(start), a.Kind, a.Gen, a.Reason))
				}
				if rd.SoftState != nil {
					out = append(out, fmt.Sprintf("%v %+v", now.Sub(start), *rd.SoftState))
				}
			}
			i := 0
			for ms := time.Duration(0); ms <= end; ms += time.Millisecond {
				now := start.Add(ms)
				due := !n.Next().IsZero() && !now.Before(n.Next())
				if dense || due || (i < len(evs) && evs[i].at == ms) {
					n.Tick(now)
					record(now)
				}
				for i < len(evs) && evs[i].at == ms {
					n.Step(evs[i].ev)
					record(now)
					i++
				}
			}
			return out
		}
		if d, s := run(true), run(false); !slices.Equal(d, s) {
			t.Fatalf("seed %d, %+v, %v: ticking every ms gave\n%v\nticking at Next gave\n%v", seed, cfg, role, d, s)
		}
	}
}

func TestNextDeadlines(t *testing.T) {
	cfg := Config{HeartbeatInterval: 50 * time.Millisecond, FailureTimeout: 500 * time.Millisecond, ClaimRetry: 20 * time.Millisecond}
	t0 := time.Unix(1000, 0)
	n := NewNode(cfg, Backup, 1, "A", t0)
	if next := n.Next(); next.After(t0) {
		t.Fatalf("a new node's first heartbeat is due at %v, after its start", next.Sub(t0))
	}
	n.Tick(t0)
	if got := n.Next().Sub(t0); got != 50*time.Millisecond {
		t.Fatalf("after a heartbeat, next tick in %v, want 50ms", got)
	}
	if _, ok := silentUntilClaim(cfg, t0); ok != DefaultStartTimeout {
		t.Fatalf("a peer never heard from is failed after %v, want the start timeout %v", ok, DefaultStartTimeout)
	}
	n.Step(Event{Kind: EvHeartbeat}) // heard: the failure timeout applies
	// Silent for the timeout: the claim is due then, and once in flight
	// only its answer moves the node.
	for at := 50 * time.Millisecond; at <= 500*time.Millisecond; at += 50 * time.Millisecond {
		n.Tick(t0.Add(at))
	}
	if !n.Claiming() || !n.Next().IsZero() {
		t.Fatalf("claiming %v, next %v; want a claim in flight and no deadline", n.Claiming(), n.Next())
	}
	n.Step(Event{Kind: EvClaimFailed, Gen: 2})
	if got := n.Next().Sub(t0); got != 520*time.Millisecond {
		t.Fatalf("after a failed claim, next tick at %v, want the retry at 520ms", got)
	}
	n.Tick(t0.Add(520 * time.Millisecond))
	n.Step(Event{Kind: EvClaimed, Gen: 2, Won: true})
	n.Step(Event{Kind: EvLive})
	n.Ready()
	if n.Role() != Alone || n.Next() != t0.Add(520*time.Millisecond) {
		t.Fatalf("role %v, next %v; want alone, a clone due at once", n.Role(), n.Next())
	}
	// Running alone, the node asks for a clone; while it is in flight only
	// its answer moves the node, and a failed one is tried again after
	// the clone retry.
	n.Tick(t0.Add(520 * time.Millisecond))
	if a := n.Ready().Actions; len(a) != 1 || a[0].Kind != ActClone || a[0].Gen != 3 || !n.Next().IsZero() {
		t.Fatalf("alone: actions %v, next %v; want a clone of generation 3 and no deadline", a, n.Next())
	}
	n.Step(Event{Kind: EvCloneFailed, Gen: 3})
	if got := n.Next().Sub(t0); got != 520*time.Millisecond+DefaultCloneRetry {
		t.Fatalf("after a failed clone, next tick at %v, want the retry", got)
	}
	n.Tick(n.Next())
	n.Step(Event{Kind: EvCloneDone, Gen: 3, Peer: "C"})
	if st := n.SoftState(); st != (SoftState{Role: Primary, Gen: 3, Peer: "C"}) || n.Next().IsZero() {
		t.Fatalf("after the clone: %+v, next %v; want primary of generation 3 with C, heartbeats due", st, n.Next())
	}
}

// TestGoneTimeoutDefaults: the gone timeout defaults to four heartbeat
// intervals and never exceeds the failure timeout.
func TestGoneTimeoutDefaults(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want time.Duration
	}{
		{Config{}, DefaultGoneHeartbeats * DefaultHeartbeatInterval},
		{Config{HeartbeatInterval: 20 * time.Millisecond, FailureTimeout: 200 * time.Millisecond}, 80 * time.Millisecond},
		{Config{HeartbeatInterval: 200 * time.Millisecond, FailureTimeout: 500 * time.Millisecond}, 500 * time.Millisecond},
		{Config{GoneTimeout: time.Second}, DefaultFailureTimeout},
		{Config{GoneTimeout: 30 * time.Millisecond}, 30 * time.Millisecond},
	} {
		if got := c.cfg.withDefaults().GoneTimeout; got != c.want {
			t.Errorf("%+v: gone timeout %v, want %v", c.cfg, got, c.want)
		}
	}
}

// silentUntilClaim returns how long a new backup whose primary never says
// anything waits before it claims the next generation.
func silentUntilClaim(cfg Config, t0 time.Time) (*Node, time.Duration) {
	n := NewNode(cfg, Backup, 1, "A", t0)
	for at := time.Duration(0); at <= time.Minute; at += time.Millisecond {
		n.Tick(t0.Add(at))
		if n.Claiming() {
			return n, at
		}
	}
	return n, -1
}

// TestStallIsNoEvidence: a host that did not run for a while (its node
// ticked long after the time it asked for) does not take the silence of
// that while for its peer's failure: heartbeats may wait unread in its
// socket. For two heartbeat intervals it waits for them; a peer heard
// then stays; one still silent is declared failed after them.
func TestStallIsNoEvidence(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cfg := Config{HeartbeatInterval: 50 * time.Millisecond, FailureTimeout: 500 * time.Millisecond}
	for _, heard := range []bool{true, false} {
		n := NewNode(cfg, Backup, 1, "A", t0)
		n.Step(Event{Kind: EvHeartbeat})
		n.Tick(t0.Add(10 * time.Millisecond))
		// The host stalls for a second: the next tick comes that late.
		stall := t0.Add(time.Second)
		n.Tick(stall)
		if n.Claiming() {
			t.Fatal("claimed at the first tick after a stall")
		}
		if heard {
			n.Tick(stall.Add(5 * time.Millisecond))
			n.Step(Event{Kind: EvHeartbeat}) // read from the socket at last
		}
		advance(n, stall.Add(99*time.Millisecond))
		if n.Claiming() {
			t.Fatalf("heard after the stall %v: claimed within the grace", heard)
		}
		advance(n, stall.Add(100*time.Millisecond))
		if n.Claiming() == heard {
			t.Fatalf("heard after the stall %v: claiming %v at the grace's end", heard, n.Claiming())
		}
	}
	// Ticks that come when asked are no stall, however far apart: a node
	// that asks for its timeout only is ticked then, and claims then.
	p := NewNode(cfg, Primary, 1, "B", t0)
	p.Step(Event{Kind: EvHeartbeat})
	p.Step(Event{Kind: EvHandedOver})
	p.Tick(p.Next())
	if !p.Claiming() {
		t.Fatalf("a node ticked at its own deadline %v did not claim", p.Next().Sub(t0))
	}
}

// TestHostHeartbeatsAsDense: a node whose host sends the heartbeats
// (HostHeartbeats), run as a host runs one, ticked only when its deadline
// comes and the peer was not heard within SilenceTimeout since, and, while
// SilenceTimeout is ok, told what it heard (EvHeartbeat with At) only when
// it runs, does what a node
// told of every heartbeat at once and ticked every millisecond does: the
// same actions at the same times, over random schedules of heartbeats
// with silences, log traffic, channels closed under it and claim answers.
func TestHostHeartbeatsAsDense(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 11))
		cfg := Config{
			HeartbeatInterval: time.Duration(5+rng.IntN(60)) * time.Millisecond,
			FailureTimeout:    time.Duration(20+rng.IntN(600)) * time.Millisecond,
			ClaimRetry:        time.Duration(1+rng.IntN(100)) * time.Millisecond,
			GoneTimeout:       time.Duration(rng.IntN(300)) * time.Millisecond,
			CloneRetry:        time.Duration(1+rng.IntN(500)) * time.Millisecond,
			HostHeartbeats:    true,
		}
		role := Primary
		if rng.IntN(2) == 0 {
			role = Backup
		}
		start := time.Unix(1000, 0)
		type event struct {
			at time.Duration
			ev Event
		}
		var evs []event
		at := time.Duration(0)
		for range 300 {
			at += time.Duration(rng.IntN(40)) * time.Millisecond
			if rng.IntN(25) == 0 {
				at += cfg.FailureTimeout
			}
			var ev Event
			switch r := rng.IntN(20); {
			case r < 12:
				ev = Event{Kind: EvHeartbeat}
			case r < 14:
				ev = Event{Kind: EvLogTraffic}
			case r == 14:
				ev = Event{Kind: EvPeerGone}
			case r == 15:
				ev = Event{Kind: EvClaimFailed, Gen: 2}
			case r == 16:
				ev = Event{Kind: EvClaimed, Gen: 2, Won: rng.IntN(3) > 0}
			case r == 17:
				ev = Event{Kind: EvCloneFailed, Gen: 3}
			case r == 18:
				ev = Event{Kind: EvCloneDone, Gen: 3, Peer: "C"}
			default:
				ev = Event{Kind: EvLive}
			}
			evs = append(evs, event{at, ev})
		}
		end := at + time.Second

		run := func(dense bool) (out []string) {
			n := NewNode(cfg, role, 1, "B", start)
			record := func(now time.Time) {
				rd := n.Ready()
				for _, a := range rd.Actions {
					if a.Kind == ActSendHeartbeat {
						t.Fatalf("seed %d: a node whose host sends heartbeats asked to send one", seed)
					}
					out = append(out, fmt.Sprintf("%v %v %d %s", now.Sub(start), a.Kind, a.Gen, a.Reason))
				}
				if rd.SoftState != nil {
					out = append(out, fmt.Sprintf("%v %+v", now.Sub(start), *rd.SoftState))
				}
			}
			// What the host noted, and told the node; when it last ran it.
			var heardAt, told, ran time.Time
			wake := func(now time.Time) {
				if heardAt.After(told) {
					n.Step(Event{Kind: EvHeartbeat, At: heardAt})
					told = heardAt
				}
				if !now.Equal(ran) { // once a millisecond, as the dense run
					n.Tick(now)
					ran = now
				}
				record(now)
			}
			i := 0
			for ms := time.Duration(0); ms <= end; ms += time.Millisecond {
				now := start.Add(ms)
				switch next := n.Next(); {
				case dense:
					n.Tick(now)
					record(now)
				case next.IsZero() || now.Before(next):
				default:
					if d, ok := n.SilenceTimeout(); !ok || now.Sub(heardAt) >= d {
						wake(now)
					}
				}
				for ; i < len(evs) && evs[i].at == ms; i++ {
					ev := evs[i].ev
					switch {
					case dense:
						n.Step(ev)
					case ev.Kind == EvHeartbeat && lazy(n):
						heardAt = now // noted, not told
						continue
					default:
						wake(now)
						n.Step(ev)
					}
					record(now)
				}
			}
			return out
		}
		if d, s := run(true), run(false); !slices.Equal(d, s) {
			t.Fatalf("seed %d, %+v, %v: told at once and ticked every ms gave\n%v\nrun lazily gave\n%v", seed, cfg, role, d, s)
		}
	}
}

// lazy reports whether a host may note the peer's heartbeats without
// telling n at once.
func lazy(n *Node) bool {
	_, ok := n.SilenceTimeout()
	return ok
}
