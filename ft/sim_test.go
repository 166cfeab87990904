package ft

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// The simulator runs a primary and a backup Node against a simulated
// clock, network and shared storage, driven by one seed: the guest's
// inputs, the log traffic and acks, outputs and their release, and the
// faults (crash, pause, link cut, storage outage, a claim whose answer is
// lost after the claim happened). Invariants are checked at every step:
//
//   - no split brain: never two nodes live (Alone) at once, and a node is
//     live only in the generation it owns on the storage;
//   - nothing a client saw is contradicted: when a backup goes live, every
//     output released so far depends only on entries it has; afterwards the
//     old primary releases nothing beyond them;
//   - a halted node emits nothing;
//   - liveness: after a single crash with storage reachable, the survivor
//     is live within the failure timeout plus a bound; within the gone
//     timeout plus a bound when the crash closed the logging channel (a
//     process crash: the kernel ends its connections), as in most crashes
//     here; and a channel that breaks between two live nodes fails over
//     nothing.
//
// A failure prints its seed and the event trace.

const simStep = 10 * time.Millisecond

type msg struct {
	at   time.Time
	kind EventKind
}

type simNode struct {
	name    string
	n       *Node
	crashed bool
	paused  bool
	inbox   []msg // delivered when due, and not while paused

	// The guest's state as log positions.
	seq       uint64 // primary: entries produced; backup: entries received
	acked     uint64 // primary: highest ack received
	released  uint64 // highest output tag released
	held      []uint64
	live      bool // went live (Alone and, for a backup, replayed)
	liveAt    time.Time
	storageUp bool

	claimDue  time.Time
	claimGen  uint64
	claimLost bool // the claim happens but its answer is lost
}

type sim struct {
	t       *testing.T
	seed    uint64
	rng     *rand.Rand
	now     time.Time
	cfg     Config
	nodes   [2]*simNode
	linkUp  [2][2]bool // linkUp[from][to]
	owners  map[uint64]string
	trace   []string
	visible uint64 // the highest output tag any client saw
	// liveSeq is the state a live backup took over with; the old primary
	// may release nothing beyond it afterwards.
	liveSeq    uint64
	backupLive bool
}

func newSim(t *testing.T, seed uint64) *sim {
	s := &sim{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		now: time.Unix(1_700_000_000, 0), owners: map[uint64]string{1: "A"}}
	s.cfg = Config{HeartbeatInterval: 50 * time.Millisecond, FailureTimeout: 500 * time.Millisecond, ClaimRetry: 100 * time.Millisecond}
	s.nodes[0] = &simNode{name: "A", n: NewNode(s.cfg, Primary, 1, "B", s.now), storageUp: true}
	s.nodes[1] = &simNode{name: "B", n: NewNode(s.cfg, Backup, 1, "A", s.now), storageUp: true}
	s.linkUp = [2][2]bool{{true, true}, {true, true}}
	return s
}

func (s *sim) logf(format string, args ...any) {
	s.trace = append(s.trace, fmt.Sprintf("%8s ", s.now.Sub(time.Unix(1_700_000_000, 0)).Truncate(time.Millisecond))+fmt.Sprintf(format, args...))
}

func (s *sim) fail(format string, args ...any) {
	s.t.Helper()
	tail := s.trace
	if len(tail) > 60 {
		tail = tail[len(tail)-60:]
	}
	s.t.Fatalf("seed %d: %s\ntrace (last events):\n%s", s.seed, fmt.Sprintf(format, args...), strings.Join(tail, "\n"))
}

func (s *sim) send(from int, kind EventKind) {
	to := 1 - from
	if !s.linkUp[from][to] || s.nodes[from].crashed {
		return
	}
	delay := time.Duration(1+s.rng.IntN(3)) * simStep
	at := s.now.Add(delay)
	if kind == EvPeerGone {
		// The end of a TCP stream comes after the stream's data.
		for _, m := range s.nodes[to].inbox {
			if m.kind == EvLogTraffic && m.at.After(at) {
				at = m.at
			}
		}
	}
	s.nodes[to].inbox = append(s.nodes[to].inbox, msg{at: at, kind: kind})
}

// step advances the simulation by one tick.
func (s *sim) step() {
	s.now = s.now.Add(simStep)
	for i, sn := range s.nodes {
		if sn.crashed || sn.paused {
			continue
		}
		// Deliver due messages.
		keep := sn.inbox[:0]
		for _, m := range sn.inbox {
			if m.at.After(s.now) {
				keep = append(keep, m)
				continue
			}
			sn.n.Step(Event{Kind: m.kind})
			s.onTraffic(i, m.kind)
		}
		sn.inbox = keep
		sn.n.Tick(s.now)
		// Storage answers.
		if sn.claimGen != 0 && !s.now.Before(sn.claimDue) {
			gen := sn.claimGen
			sn.claimGen = 0
			if !sn.storageUp {
				s.logf("%s claim %d: storage unreachable", sn.name, gen)
				sn.n.Step(Event{Kind: EvClaimFailed, Gen: gen})
			} else {
				if _, taken := s.owners[gen]; !taken {
					s.owners[gen] = sn.name
				}
				won := s.owners[gen] == sn.name
				if sn.claimLost {
					sn.claimLost = false
					s.logf("%s claim %d: happened (won=%v) but the answer was lost", sn.name, gen, won)
					sn.n.Step(Event{Kind: EvClaimFailed, Gen: gen})
				} else {
					s.logf("%s claim %d: won=%v", sn.name, gen, won)
					sn.n.Step(Event{Kind: EvClaimed, Gen: gen, Won: won})
				}
			}
		}
		for _, a := range sn.n.Ready().Actions {
			s.do(i, a)
		}
		s.guest(i)
	}
	s.check()
}

// onTraffic models what log traffic carries: entries to the backup, acks
// to the primary.
func (s *sim) onTraffic(i int, kind EventKind) {
	sn := s.nodes[i]
	if kind != EvLogTraffic {
		return
	}
	peer := s.nodes[1-i]
	switch sn.n.Role() {
	case Backup:
		// An entry batch: the backup now has everything the primary had
		// produced when it sent (modelled as the primary's seq at delivery,
		// bounded by what was in flight: conservative enough because the
		// primary only releases on acks of what the backup reports).
		if !sn.live && peer.seq > sn.seq {
			sn.seq = peer.seq
		}
		s.send(i, EvLogTraffic) // ack
	case Primary:
		// An ack: everything the backup reports received.
		if peer.seq > sn.acked && peer.n.Role() == Backup && !peer.n.Claiming() {
			sn.acked = min(peer.seq, sn.seq)
		}
	}
}

func (s *sim) do(i int, a Action) {
	sn := s.nodes[i]
	switch a.Kind {
	case ActSendHeartbeat:
		s.send(i, EvHeartbeat)
	case ActClaim:
		s.logf("%s claims generation %d (%s)", sn.name, a.Gen, a.Reason)
		sn.claimGen = a.Gen
		sn.claimDue = s.now.Add(time.Duration(1+s.rng.IntN(4)) * simStep)
		if s.rng.IntN(10) == 0 {
			sn.claimLost = true
		}
	case ActGoLive:
		s.logf("%s goes live in generation %d (was %v)", sn.name, a.Gen, sn.n.Role())
		if s.owners[a.Gen] != sn.name {
			s.fail("%s goes live in generation %d owned by %q", sn.name, a.Gen, s.owners[a.Gen])
		}
		if i == 1 {
			// The backup replays everything it received, then is live.
			if s.visible > sn.seq {
				s.fail("contradiction: clients saw output of entry %d, the new primary has only %d", s.visible, sn.seq)
			}
			s.liveSeq = sn.seq
			s.backupLive = true
			sn.n.Step(Event{Kind: EvLive})
		}
		sn.live = true
		sn.liveAt = s.now
	case ActHalt:
		s.logf("%s halts (%s)", sn.name, a.Reason)
		sn.held = nil
	case ActClone:
		// Two hosts: no spare to clone onto.
		sn.n.Step(Event{Kind: EvCloneFailed, Gen: a.Gen})
	}
}

// guest models the guest on node i: the primary (or a live node) takes
// inputs and produces outputs; outputs are released per the Output Rule.
func (s *sim) guest(i int) {
	sn := s.nodes[i]
	role := sn.n.Role()
	if role == Halted {
		return
	}
	if role == Primary || role == Alone {
		if s.rng.IntN(3) == 0 {
			sn.seq++ // an input, logged
			if role == Primary {
				s.send(i, EvLogTraffic)
			}
		}
		if s.rng.IntN(2) == 0 {
			sn.held = append(sn.held, sn.seq) // an output depending on everything so far
		}
	}
	// Release: a primary's outputs wait for the backup's acks, a node
	// running alone lets them out at once (its gate is open).
	keep := sn.held[:0]
	for _, tag := range sn.held {
		ok := (role == Alone || role == Primary) && MayRelease(role == Alone, sn.acked, tag)
		if !ok {
			keep = append(keep, tag)
			continue
		}
		s.release(i, tag)
	}
	sn.held = keep
	if role == Primary && s.rng.IntN(5) == 0 {
		s.send(i, EvLogTraffic) // keep the channel busy even without inputs
	}
}

func (s *sim) release(i int, tag uint64) {
	sn := s.nodes[i]
	if sn.n.Role() == Halted {
		s.fail("%s released output %d after halting", sn.name, tag)
	}
	if i == 0 && s.backupLive && tag > s.liveSeq {
		s.fail("split brain: old primary released output of entry %d after the backup went live with %d", tag, s.liveSeq)
	}
	if tag > sn.released {
		sn.released = tag
	}
	if tag > s.visible {
		s.visible = tag
	}
}

func (s *sim) check() {
	a, b := s.nodes[0], s.nodes[1]
	if a.n.Role() == Alone && b.n.Role() == Alone {
		s.fail("split brain: both nodes are live")
	}
	for _, sn := range s.nodes {
		if sn.n.Role() == Alone && s.owners[sn.n.Generation()] != sn.name {
			s.fail("%s is live in generation %d owned by %q", sn.name, sn.n.Generation(), s.owners[sn.n.Generation()])
		}
	}
}

type fault int

const (
	faultCrashPrimary fault = iota
	faultCrashBackup
	faultPausePrimary
	faultPauseBackup
	faultPartition
	faultCutOneWay
	faultStorageOutage
	faultChannelBreaks
	faultNone
)

// runSchedule runs one seeded schedule with one fault and checks liveness
// where the fault allows it.
func runSchedule(t *testing.T, seed uint64) {
	s := newSim(t, seed)
	f := fault(s.rng.IntN(int(faultNone) + 1))
	faultAt := s.now.Add(time.Duration(20+s.rng.IntN(200)) * simStep)
	dur := time.Duration(20+s.rng.IntN(150)) * simStep
	outageNode := s.rng.IntN(2)
	end := faultAt.Add(dur + 3*time.Second)
	injected, healed := false, false
	for s.now.Before(end) {
		if !injected && !s.now.Before(faultAt) {
			injected = true
			s.inject(f, outageNode, true)
		}
		if injected && !healed && !s.now.Before(faultAt.Add(dur)) {
			healed = true
			s.inject(f, outageNode, false)
		}
		s.step()
	}
	// Liveness: exactly one node serves at the end, except after a pure
	// storage outage or no fault, where the pair stays as it was.
	a, b := s.nodes[0], s.nodes[1]
	switch f {
	case faultCrashPrimary:
		if b.n.Role() != Alone {
			s.fail("primary crashed but the backup is %v", b.n.Role())
		}
	case faultCrashBackup:
		if a.n.Role() != Alone {
			s.fail("backup crashed but the primary is %v", a.n.Role())
		}
	case faultNone, faultChannelBreaks:
		if a.n.Role() != Primary || b.n.Role() != Backup {
			s.fail("fault %d, yet roles are %v/%v", f, a.n.Role(), b.n.Role())
		}
	default:
		serving := 0
		for _, sn := range s.nodes {
			if r := sn.n.Role(); r == Alone || r == Primary {
				serving++
			}
		}
		if serving != 1 && !(a.n.Role() == Primary && b.n.Role() == Backup) {
			s.fail("after fault %d: roles %v/%v", f, a.n.Role(), b.n.Role())
		}
	}
}

func (s *sim) inject(f fault, node int, on bool) {
	a, b := s.nodes[0], s.nodes[1]
	switch f {
	case faultCrashPrimary:
		if on {
			s.crash(0)
		}
	case faultCrashBackup:
		if on {
			s.crash(1)
		}
	case faultPausePrimary:
		s.logf("pause A: %v", on)
		a.paused = on
	case faultPauseBackup:
		s.logf("pause B: %v", on)
		b.paused = on
	case faultPartition:
		s.logf("partition: %v", on)
		s.linkUp = [2][2]bool{{true, !on}, {!on, true}}
	case faultCutOneWay:
		s.logf("cut link %d->%d: %v", node, 1-node, on)
		s.linkUp[node][1-node] = !on
	case faultStorageOutage:
		s.logf("storage outage for %s: %v", s.nodes[node].name, on)
		s.nodes[node].storageUp = !on
	case faultChannelBreaks:
		if on {
			// Both ends see the connection end; both hosts live on, and
			// the channel comes back with the next log traffic.
			s.logf("logging channel breaks")
			s.send(0, EvPeerGone)
			s.send(1, EvPeerGone)
		}
	}
}

// crash kills node i's process. Its connections end: the peer sees its
// logging channel close (EvPeerGone) unless the link is down, or, in one
// case in four, the crash is of the whole machine, which ends nothing.
func (s *sim) crash(i int) {
	sn := s.nodes[i]
	if s.rng.IntN(4) > 0 {
		s.logf("crash %s (its connections end)", sn.name)
		s.send(i, EvPeerGone)
	} else {
		s.logf("crash %s (silently)", sn.name)
	}
	sn.crashed = true
}

// TestSimulatedFailureSchedules runs thousands of seeded schedules.
func TestSimulatedFailureSchedules(t *testing.T) {
	n := uint64(3000)
	if testing.Short() {
		n = 300
	}
	for seed := uint64(1); seed <= n; seed++ {
		runSchedule(t, seed)
	}
}

// TestPrimaryCrashBackupGoesLive is the paper's basic case, spelled out.
func TestPrimaryCrashBackupGoesLive(t *testing.T) {
	s := newSim(t, 42)
	for range 50 {
		s.step()
	}
	s.nodes[0].crashed = true
	s.logf("crash A")
	start := s.now
	for s.nodes[1].n.Role() != Alone {
		s.step()
		if s.now.Sub(start) > 2*s.cfg.FailureTimeout {
			s.fail("backup did not go live within %v", 2*s.cfg.FailureTimeout)
		}
	}
	if s.owners[2] != "B" {
		s.fail("generation 2 owned by %q", s.owners[2])
	}
	if took := s.now.Sub(start); took < s.cfg.FailureTimeout-2*s.cfg.HeartbeatInterval {
		s.fail("a silent crash was taken for a failure after %v, before the failure timeout", took)
	}
}

// TestPrimaryProcessCrashFoundSooner: a crash that ends the primary's
// connections is found within the gone timeout (four heartbeats), not the
// failure timeout.
func TestPrimaryProcessCrashFoundSooner(t *testing.T) {
	for seed := range uint64(50) {
		s := newSim(t, seed)
		for range 30 + s.rng.IntN(50) {
			s.step()
		}
		s.send(0, EvPeerGone)
		s.nodes[0].crashed = true
		s.logf("crash A (its connections end)")
		start := s.now
		// The news takes up to three steps to arrive.
		bound := DefaultGoneHeartbeats*s.cfg.HeartbeatInterval + 3*simStep
		for !s.nodes[1].n.Claiming() {
			s.step()
			if s.now.Sub(start) > bound {
				s.fail("backup did not claim within %v of its primary's crash", bound)
			}
		}
		for s.nodes[1].n.Role() != Alone {
			s.step()
			if s.now.Sub(start) > 2*s.cfg.FailureTimeout {
				s.fail("backup did not go live")
			}
		}
	}
}

// TestStorageUnreachableDelaysGoLive: a survivor that cannot reach the
// storage does not go live until it can.
func TestStorageUnreachableDelaysGoLive(t *testing.T) {
	s := newSim(t, 7)
	for range 30 {
		s.step()
	}
	s.nodes[0].crashed = true
	s.nodes[1].storageUp = false
	for range 300 { // 3 s, far past the failure timeout
		s.step()
		if s.nodes[1].n.Role() != Backup {
			s.fail("backup became %v without storage", s.nodes[1].n.Role())
		}
	}
	s.nodes[1].storageUp = true
	for range 100 {
		s.step()
	}
	if s.nodes[1].n.Role() != Alone {
		s.fail("backup is %v after storage returned", s.nodes[1].n.Role())
	}
}

// TestPausedBackupLosesOnThaw: the primary's outputs wait while the
// backup is frozen; after the timeout the primary wins and releases them;
// the thawed backup finds it lost and halts.
func TestPausedBackupLosesOnThaw(t *testing.T) {
	s := newSim(t, 3)
	for range 30 {
		s.step()
	}
	a, b := s.nodes[0], s.nodes[1]
	b.paused = true
	backupHad := b.seq // acks in flight may still arrive, for no more than this
	for range 40 {     // 400 ms < timeout: outputs held
		s.step()
	}
	if a.released > backupHad {
		s.fail("primary released output %d beyond what the frozen backup had (%d)", a.released, backupHad)
	}
	heldDuring := len(a.held)
	for a.n.Role() != Alone {
		s.step()
	}
	if heldDuring == 0 {
		s.fail("no output was held while the backup was frozen")
	}
	if len(a.held) != 0 {
		s.fail("primary alone still holds %d outputs", len(a.held))
	}
	b.paused = false
	for range 200 {
		s.step()
	}
	if b.n.Role() != Halted {
		s.fail("thawed backup is %v, want halted", b.n.Role())
	}
}
