package ft

import (
	"testing"
	"time"
)

// advance ticks n every 10 ms up to to, as a live host does (a single
// late tick would be a stall: see Tick).
func advance(n *Node, to time.Time) {
	for at := n.now.Add(10 * time.Millisecond); at.Before(to); at = at.Add(10 * time.Millisecond) {
		n.Tick(at)
	}
	n.Tick(to)
}

func kinds(as []Action) []ActionKind {
	var ks []ActionKind
	for _, a := range as {
		if a.Kind != ActSendHeartbeat {
			ks = append(ks, a.Kind)
		}
	}
	return ks
}

// TestMoveBackup: an operator's move makes a paired primary clone onto the
// named host; until the clone ends it does not declare its old backup
// failed (the clone's claim shuts it out), and the clone's outcome pairs it
// with the new backup, or leaves it with the old one.
func TestMoveBackup(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cfg := Config{HeartbeatInterval: 50 * time.Millisecond, FailureTimeout: 500 * time.Millisecond}
	n := NewNode(cfg, Primary, 4, "B", t0)
	n.Step(Event{Kind: EvHeartbeat})
	n.Step(Event{Kind: EvMoveBackup, Peer: "B"}) // already the backup
	if n.Cloning() || len(kinds(n.Ready().Actions)) != 0 {
		t.Fatal("a move to the current backup started a clone")
	}
	n.Step(Event{Kind: EvMoveBackup, Peer: "C"})
	rd := n.Ready()
	if a := rd.Actions; len(a) != 1 || a[0].Kind != ActClone || a[0].Gen != 5 || a[0].Peer != "C" || !n.Cloning() {
		t.Fatalf("move: actions %+v; want a clone onto C for generation 5", a)
	}
	if n.CanMoveBackup() || n.CanHandOver() {
		t.Fatal("a second move or a handover accepted while cloning")
	}
	// The old backup falls silent: no claim while the clone runs.
	advance(n, t0.Add(2*time.Second))
	if n.Claiming() || !n.Next().After(t0.Add(2*time.Second)) {
		t.Fatalf("claiming %v, next %v while moving the backup", n.Claiming(), n.Next())
	}
	// The clone fails: the node watches its old backup again, found silent.
	n.Step(Event{Kind: EvCloneFailed, Gen: 5})
	n.Tick(t0.Add(2*time.Second + time.Millisecond))
	if !n.Claiming() || n.Generation() != 4 {
		t.Fatalf("after a failed move: claiming %v, generation %d; want a claim of 5", n.Claiming(), n.Generation())
	}

	n = NewNode(cfg, Primary, 4, "B", t0)
	n.Step(Event{Kind: EvMoveBackup, Peer: "C"})
	n.Ready()
	n.Step(Event{Kind: EvCloneDone, Gen: 5, Peer: "C"})
	if st := n.SoftState(); st != (SoftState{Role: Primary, Gen: 5, Peer: "C"}) || n.Cloning() {
		t.Fatalf("after the move: %+v", st)
	}
}

// TestHandover: a switchover. The primary that handed over sends nothing,
// not even heartbeats, and waits for its backup's claim: the storage
// showing it naming it the backup (EvFollow) makes it the backup, another
// claim (EvSuperseded) halts it; a backup that falls silent instead makes
// it claim the next generation itself, and go on alone if it wins. Its
// backup claims the next generation at once, with no timeout, naming it
// the backup, and goes live paired with it.
func TestHandover(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cfg := Config{HeartbeatInterval: 50 * time.Millisecond, FailureTimeout: 500 * time.Millisecond}
	handedOver := func() *Node {
		p := NewNode(cfg, Primary, 4, "B", t0)
		p.Step(Event{Kind: EvHeartbeat})
		if !p.CanHandOver() {
			t.Fatal("a paired primary refuses a handover")
		}
		p.Step(Event{Kind: EvHandedOver})
		if p.Role() != HandingOver || len(p.Ready().Actions) != 0 || p.CanHandOver() || p.CanMoveBackup() || p.Paired() {
			t.Fatalf("after handing over: role %v", p.Role())
		}
		return p
	}

	// The backup wins: the storage says so, and the old primary halts.
	p := handedOver()
	p.Tick(t0.Add(400 * time.Millisecond))
	if a := p.Ready().Actions; len(a) != 0 {
		t.Fatalf("a primary that handed over acts: %+v", a)
	}
	p.Step(Event{Kind: EvSuperseded, Gen: 5})
	if a := p.Ready().Actions; p.Role() != Halted || len(a) != 1 || a[0].Kind != ActHalt {
		t.Fatalf("superseded after handing over: role %v, actions %+v", p.Role(), a)
	}

	// The backup goes on heartbeating (it never heard the goodbye), then
	// falls silent: the old primary claims once it is silent for the
	// failure timeout, not before, and goes on alone if it wins.
	p = handedOver()
	p.Tick(t0.Add(300 * time.Millisecond))
	p.Step(Event{Kind: EvHeartbeat})
	if next := p.Next(); !next.Equal(t0.Add(800 * time.Millisecond)) {
		t.Fatalf("next tick at %v, want the failure timeout after the last heartbeat", next.Sub(t0))
	}
	p.Tick(t0.Add(799 * time.Millisecond))
	if p.Claiming() {
		t.Fatal("claimed before the failure timeout")
	}
	p.Tick(t0.Add(800 * time.Millisecond))
	a := p.Ready().Actions
	if len(a) != 1 || a[0].Kind != ActClaim || a[0].Gen != 5 || a[0].Reason != "the backup did not take over" {
		t.Fatalf("backup silent after a handover: actions %+v; want a claim of 5", a)
	}
	p.Step(Event{Kind: EvClaimed, Gen: 5, Won: true})
	if a := p.Ready().Actions; p.SoftState() != (SoftState{Role: Alone, Gen: 5}) || len(a) != 1 || a[0].Kind != ActGoLive {
		t.Fatalf("won after a handover: %+v, actions %+v; want alone in 5, going live", p.SoftState(), a)
	}

	// Its claim lost: the backup took over after all.
	p = handedOver()
	advance(p, t0.Add(time.Second))
	p.Ready()
	p.Step(Event{Kind: EvClaimed, Gen: 5, Won: false})
	if p.Role() != Halted {
		t.Fatalf("lost after a handover: role %v", p.Role())
	}

	b := NewNode(cfg, Backup, 4, "A", t0)
	b.Tick(t0.Add(10 * time.Millisecond))
	b.Ready()
	b.Step(Event{Kind: EvHandover})
	b.Tick(t0.Add(10 * time.Millisecond))
	if a := b.Ready().Actions; len(a) != 1 || a[0].Kind != ActClaim || a[0].Gen != 5 || a[0].Reason != "switchover" || a[0].Peer != "A" {
		t.Fatalf("backup told to take over: actions %+v; want a claim of 5 at once, naming A the backup", a)
	}
	// Won, it goes live paired with the old primary, which counts as
	// heard from as of then: its outputs wait for A's acknowledgements.
	b.Step(Event{Kind: EvClaimed, Gen: 5, Won: true})
	if a := b.Ready().Actions; len(a) != 1 || a[0].Kind != ActGoLive || a[0].Peer != "A" {
		t.Fatalf("switchover won: actions %+v; want to go live paired with A", a)
	}
	b.Tick(t0.Add(30 * time.Millisecond))
	b.Step(Event{Kind: EvLive})
	if st := b.SoftState(); st != (SoftState{Role: Primary, Gen: 5, Peer: "A"}) || !b.Paired() || b.Claiming() {
		t.Fatalf("live after a switchover: %+v, paired %v, claiming %v", st, b.Paired(), b.Claiming())
	}
	if next := b.Next(); next.After(t0.Add(30 * time.Millisecond)) {
		t.Fatalf("first heartbeat to the old primary at %v, want at once", next.Sub(t0))
	}
	advance(b, t0.Add(529*time.Millisecond))
	if b.Claiming() {
		t.Fatal("the new primary declared the old one failed before the failure timeout")
	}
	advance(b, t0.Add(530*time.Millisecond))
	if a := b.Ready().Actions; !b.Claiming() || len(kinds(a)) != 1 || kinds(a)[0] != ActClaim || a[len(a)-1].Gen != 6 || a[len(a)-1].Peer != "" {
		t.Fatalf("old primary silent: actions %+v; want a claim of 6 naming no backup", a)
	}

	// The old primary reads the claim naming it (EvFollow): it becomes
	// the backup in 5, heartbeats again, and watches its new primary.
	p = handedOver()
	p.Step(Event{Kind: EvFollow, Gen: 6, Peer: "B"}) // not the next generation
	p.Step(Event{Kind: EvFollow, Gen: 5, Peer: "C"}) // not its backup
	if p.Role() != HandingOver || len(p.Ready().Actions) != 0 {
		t.Fatalf("followed a claim that is not its backup's: role %v", p.Role())
	}
	p.Tick(t0.Add(100 * time.Millisecond))
	p.Step(Event{Kind: EvFollow, Gen: 5, Peer: "B"})
	a = p.Ready().Actions
	if st := p.SoftState(); st != (SoftState{Role: Backup, Gen: 5, Peer: "B"}) || len(a) != 1 || a[0].Kind != ActFollow || a[0].Gen != 5 || a[0].Peer != "B" {
		t.Fatalf("followed: %+v, actions %+v; want the backup of B in 5, following", st, a)
	}
	p.Tick(t0.Add(110 * time.Millisecond))
	if k := p.Ready().Actions; len(k) != 1 || k[0].Kind != ActSendHeartbeat {
		t.Fatalf("a follower's first tick: %+v; want a heartbeat", k)
	}
	advance(p, t0.Add(600*time.Millisecond))
	if !p.Claiming() {
		t.Fatal("a follower whose new primary is silent does not claim")
	}

	// Its own claim in flight lost to the backup's, which names it: it
	// follows, and the claim's answer changes nothing.
	p = handedOver()
	advance(p, t0.Add(time.Second))
	if !p.Claiming() {
		t.Fatal("no claim")
	}
	p.Ready()
	p.Step(Event{Kind: EvFollow, Gen: 5, Peer: "B"})
	p.Step(Event{Kind: EvClaimed, Gen: 5, Won: false})
	if st := p.SoftState(); st != (SoftState{Role: Backup, Gen: 5, Peer: "B"}) || p.Claiming() {
		t.Fatalf("followed with a claim in flight: %+v, claiming %v", st, p.Claiming())
	}

	// A primary already claiming refuses to hand over.
	c := NewNode(cfg, Primary, 4, "B", t0)
	c.Step(Event{Kind: EvHeartbeat})
	advance(c, t0.Add(time.Second))
	if !c.Claiming() || c.CanHandOver() {
		t.Fatalf("claiming %v, can hand over %v", c.Claiming(), c.CanHandOver())
	}
	c.Step(Event{Kind: EvHandedOver})
	if c.Role() != Primary {
		t.Fatal("a claiming primary took a handover")
	}
}

// TestCloneOwnedGeneration: a clone whose earlier claim happened after all
// leaves the node serving in that generation alone (a primary goes live
// alone: its old backup would lose its claim), cloning for the next.
func TestCloneOwnedGeneration(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	cfg := Config{HeartbeatInterval: 50 * time.Millisecond, FailureTimeout: 500 * time.Millisecond}
	n := NewNode(cfg, Alone, 4, "", t0)
	n.Tick(t0)
	n.Ready()
	n.Step(Event{Kind: EvCloneFailed, Gen: 5, Owned: true})
	if st := n.SoftState(); st != (SoftState{Role: Alone, Gen: 5}) {
		t.Fatalf("alone: %+v, want alone in generation 5", st)
	}
	n.Tick(n.Next())
	if a := n.Ready().Actions; len(a) != 1 || a[0].Kind != ActClone || a[0].Gen != 6 {
		t.Fatalf("actions %+v, want a clone for generation 6", a)
	}

	p := NewNode(cfg, Primary, 4, "B", t0)
	p.Step(Event{Kind: EvMoveBackup, Peer: "C"})
	p.Ready()
	p.Step(Event{Kind: EvCloneFailed, Gen: 5, Owned: true})
	a := p.Ready().Actions
	if st := p.SoftState(); st != (SoftState{Role: Alone, Gen: 5}) || len(a) != 1 || a[0].Kind != ActGoLive || a[0].Gen != 5 {
		t.Fatalf("primary: %+v, actions %+v; want alone in 5, going live", st, a)
	}
}
