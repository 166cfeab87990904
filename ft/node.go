// Package ft holds the decisions of a fault-tolerant pair: who is primary
// and who is backup, when the peer has failed, when to claim the next
// generation on shared storage, and what to do with the answer. It follows
// VMware FT (Scales et al., 2010), section 2.3 (detecting and responding to
// failure) and 2.2 (the Output Rule).
//
// A Node is a state machine in the style of etcd's raft: it does no I/O and
// reads no clock. The host that runs it feeds it events (Step) and the time
// (Tick), and carries out the actions it returns (Ready): send a heartbeat,
// claim a generation, go live, halt. The same Node runs under a simulated
// clock, network and storage in the tests, where thousands of failure
// schedules run in seconds, and under real sockets and timers in a host.
//
// The rules, as the paper states them:
//
//  1. A peer has failed when neither its heartbeats nor log traffic (log
//     entries for the backup, acks for the primary) have arrived for the
//     failure timeout. Sooner, when its logging channel was closed under
//     this node (the end of the stream, a reset, a refused connection:
//     what a peer whose process died leaves behind) and it has been silent
//     for the shorter gone timeout since it was last heard: a live peer's
//     heartbeats keep coming whatever happens to the channel, so a peer
//     process that crashed is found in a few heartbeat intervals, while a
//     silent peer (frozen, or cut off by the network, which closes
//     nothing) still gets the whole failure timeout. Silence while this
//     host itself did not run (a tick that came well after the time the
//     node asked for: CPU starvation, a pause) is no evidence: the peer's
//     heartbeats may be waiting unread, and they get two heartbeat
//     intervals to be heard first.
//  2. Whoever wants to go live (the backup when the primary failed, the
//     primary when the backup failed) first claims the VM's next
//     generation on shared storage, an atomic test-and-set. The winner goes
//     live; the loser halts and emits nothing more. A node that cannot
//     reach the storage does not go live: it keeps trying.
//  3. A backup goes live only after replaying every entry it received; a
//     primary that won goes on alone and releases the outputs it held.
//  4. A claim that fails is retried at the retry interval; a halted node
//     stays halted.
//  5. A node that runs alone (its peer failed) restores redundancy: it asks
//     its host to clone the VM onto a spare host (VMware FT starts a new
//     backup through FT VMotion), and the clone is committed by claiming
//     the next generation for the new pair. Until then it runs alone; a
//     clone that fails is tried again after the clone retry interval. The
//     new backup's own node starts only once the clone is complete, so a
//     half-cloned backup never takes part in failure detection or claims.
//  6. A planned switchover swaps the roles of the pair: the primary, once
//     the backup has every entry and every output is out, hands over
//     (EvHandedOver) and waits, its guest paused and silent (HandingOver);
//     the backup claims the next generation at once (EvHandover), naming
//     the old primary its backup. The test-and-set decides as in rule 2:
//     the winner's node goes live paired with the old primary, whose
//     state at the pause is the new primary's at the end of the log, so
//     the VM is never unprotected; the old primary, once the storage shows
//     the claim naming it (EvFollow), becomes the backup in that
//     generation (ActFollow: its host turns the paused VM into a replaying
//     one). A backup silent for the failure timeout instead makes the old
//     primary claim that generation itself, and go on where it paused if
//     it wins. A handover to a backup that dies never loses the VM.
package ft

import (
	"fmt"
	"time"
)

// Role is what a node is doing for its VM.
type Role int

// Roles.
const (
	// Primary: runs the guest, sends the log, releases outputs on acks.
	Primary Role = iota + 1
	// Backup: replays the log, acks it, drops outputs.
	Backup
	// Alone: a primary without a backup (it won a generation after its
	// peer failed): outputs leave at once.
	Alone
	// Halted: lost a claim; emits nothing more.
	Halted
	// HandingOver: a primary that handed the VM over to its backup (a
	// planned switchover, EvHandedOver). Its guest stays paused where it
	// handed over and it emits nothing, not even heartbeats, until the
	// storage shows the backup's claim of the next generation
	// (EvFollow: it becomes the backup; EvSuperseded: it halts) or the backup falls silent for the failure
	// timeout: then it claims that generation itself, and, won, goes on
	// alone where it paused (the backup never went live), lost, halts.
	// So a handover to a backup that crashes, or never hears it, does not
	// lose the VM. A claim that names it the backup of the generation
	// (EvFollow) makes it that backup.
	HandingOver
)

func (r Role) String() string {
	switch r {
	case Primary:
		return "primary"
	case Backup:
		return "backup"
	case Alone:
		return "alone"
	case Halted:
		return "halted"
	case HandingOver:
		return "handing over"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// Config tunes a Node.
type Config struct {
	// HeartbeatInterval is how often the node sends a heartbeat.
	HeartbeatInterval time.Duration
	// FailureTimeout is how long the peer may be silent (no heartbeat, no
	// log traffic) before it is declared failed.
	FailureTimeout time.Duration
	// GoneTimeout is how long the peer may be silent, counted from when
	// it was last heard, once its logging channel was closed under this
	// node (EvPeerGone) and before log traffic flows again. Zero means
	// DefaultGoneHeartbeats heartbeat intervals; it is never more than
	// FailureTimeout.
	GoneTimeout time.Duration
	// ClaimRetry is how long to wait before retrying a claim whose
	// outcome could not be learned (storage unreachable).
	ClaimRetry time.Duration
	// CloneRetry is how long a node running alone waits, after a clone
	// that failed (or found no spare host), before it tries again.
	CloneRetry time.Duration
	// StartTimeout replaces the failure timeout until the peer is first
	// heard from: a peer's host may take a while to start the VM (to
	// compile its module) before it says anything.
	StartTimeout time.Duration
	// HostHeartbeats says that the host sends the heartbeats, one stream
	// per peer host for all the VMs they share, rather than each node its
	// own: the node then asks for none (no ActSendHeartbeat) and needs no
	// tick for them, so an idle node needs a tick only at its peer's
	// timeout, which a host that notes when it heard the peer may skip
	// (see SilenceTimeout).
	HostHeartbeats bool
}

// Default timing suits one machine and a LAN: a heartbeat every 50 ms,
// failure after 500 ms of silence (ten missed heartbeats, so a busy
// machine's scheduling hiccups do not trigger a failover, while a failover
// stays well under a second), claims retried every 100 ms.
const (
	DefaultHeartbeatInterval = 50 * time.Millisecond
	DefaultFailureTimeout    = 500 * time.Millisecond
	DefaultClaimRetry        = 100 * time.Millisecond
	DefaultCloneRetry        = time.Second
	DefaultStartTimeout      = 5 * time.Second
	// DefaultGoneHeartbeats is the default gone timeout in heartbeat
	// intervals: a live peer whose channel broke misses no heartbeat, and
	// four missed ones leave a busy machine's scheduling delays room.
	DefaultGoneHeartbeats = 4
)

func (c Config) withDefaults() Config {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.FailureTimeout <= 0 {
		c.FailureTimeout = DefaultFailureTimeout
	}
	if c.ClaimRetry <= 0 {
		c.ClaimRetry = DefaultClaimRetry
	}
	if c.CloneRetry <= 0 {
		c.CloneRetry = DefaultCloneRetry
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	c.StartTimeout = max(c.StartTimeout, c.FailureTimeout)
	if c.GoneTimeout <= 0 {
		c.GoneTimeout = DefaultGoneHeartbeats * c.HeartbeatInterval
	}
	c.GoneTimeout = min(c.GoneTimeout, c.FailureTimeout)
	return c
}

// EventKind says what happened.
type EventKind int

// Events a host feeds its node.
const (
	// EvHeartbeat: a heartbeat from the peer arrived.
	EvHeartbeat EventKind = iota + 1
	// EvLogTraffic: log traffic from the peer arrived (entries at the
	// backup, an ack at the primary).
	EvLogTraffic
	// EvClaimed: the claim of generation Gen completed; Won says whether
	// this node won it.
	EvClaimed
	// EvClaimFailed: the claim of generation Gen could not complete (the
	// storage is unreachable); its outcome is unknown.
	EvClaimFailed
	// EvLive: the node finished going live (a backup replayed everything
	// it had and now runs the guest for real).
	EvLive
	// EvPeerGone: the logging channel with the peer was closed under this
	// node without a word from the peer (the end of the stream or a
	// reset), or the peer's host refused a connection: what the kernel
	// leaves when the peer's process dies; or the peer's host said it is
	// shutting down. The peer is declared failed once silent for the gone
	// timeout, unless log traffic flows again first.
	EvPeerGone
	// EvCloneDone: the clone asked for (ActClone) is complete and the new
	// pair owns generation Gen, with Peer as its backup.
	EvCloneDone
	// EvCloneFailed: the clone asked for did not complete (no spare host,
	// the spare failed or refused, it did not converge); Lost says that
	// generation Gen was found owned by another host, so this node lost;
	// Owned, that generation Gen was found owned by this host with no
	// backup that joined (an earlier attempt's claim happened but its
	// answer was lost): the node serves in Gen alone, and clones for the
	// generation after it.
	EvCloneFailed
	// EvSuperseded: the storage shows generation Gen, past this node's,
	// owned by another host (the VM was taken for lost and started
	// again): this node lost, and halts.
	EvSuperseded
	// EvHandover: the primary handed the VM over to this backup (a planned
	// switchover): it stopped its guest once this backup had every entry,
	// and emits nothing more. The backup claims the next generation at
	// once, without waiting for a timeout.
	EvHandover
	// EvHandedOver: this primary handed the VM over to its backup (see
	// EvHandover); it emits nothing more and waits, HandingOver, for the
	// backup's claim. Ignored unless the node is a primary that is neither
	// claiming nor cloning (check CanHandOver first).
	EvHandedOver
	// EvFollow: the storage shows generation Gen claimed by Peer, this
	// node's backup, with this node named as its backup: the switchover
	// this node handed over (HandingOver) took place. The node becomes
	// Peer's backup in Gen (ActFollow). Also taken while its own claim of
	// Gen is in flight, which then lost to Peer's.
	EvFollow
	// EvMoveBackup: an operator moves the backup to host Peer. A primary
	// that is neither claiming nor cloning, or a node alone that is not
	// cloning, clones the VM onto Peer (ActClone with Peer). Until the
	// clone ends, a primary does not declare its old backup failed: the
	// clone's claim of the next generation shuts the old backup out as
	// its own would, and outputs wait meanwhile.
	EvMoveBackup
)

// Event is one input of a Node.
type Event struct {
	Kind  EventKind
	Gen   uint64
	Won   bool
	Lost  bool
	Owned bool
	Peer  string
	// At, for EvHeartbeat, is when the peer was heard, if not at the
	// node's last tick: a host that notes heartbeats as they arrive and
	// tells the node only when it next runs it. The node keeps the
	// latest time it heard the peer.
	At time.Time
}

// ActionKind says what the host must do.
type ActionKind int

// Actions a Node asks of its host.
const (
	// ActSendHeartbeat: send a heartbeat to the peer.
	ActSendHeartbeat ActionKind = iota + 1
	// ActClaim: claim generation Gen on shared storage, then report
	// EvClaimed or EvClaimFailed.
	ActClaim
	// ActGoLive: this node won generation Gen. A backup replays what it
	// has and goes live (then reports EvLive); a primary releases its held
	// outputs and goes on alone.
	ActGoLive
	// ActHalt: this node lost generation Gen to another host: stop the
	// guest, drop held outputs, emit nothing more.
	ActHalt
	// ActClone: clone the VM onto a spare host (onto Peer, if set) and
	// commit the new pair by claiming generation Gen for it, then report
	// EvCloneDone or EvCloneFailed. The guest runs on meanwhile.
	ActClone
	// ActFollow: this node, which handed the VM over, is now the backup of
	// Peer in generation Gen: the host turns its paused VM, whose state is
	// the new primary's at the start of Gen, into one that replays Peer's
	// log from there.
	ActFollow
)

func (k ActionKind) String() string {
	switch k {
	case ActSendHeartbeat:
		return "send-heartbeat"
	case ActClaim:
		return "claim"
	case ActGoLive:
		return "go-live"
	case ActHalt:
		return "halt"
	case ActClone:
		return "clone"
	case ActFollow:
		return "follow"
	}
	return fmt.Sprintf("action(%d)", int(k))
}

// Action is one output of a Node.
type Action struct {
	Kind   ActionKind
	Gen    uint64
	Reason string
	// Peer is the host to clone onto (ActClone), "" for any spare; the
	// backup a claim names (ActClaim of a switchover: the old primary),
	// and that a winner goes live paired with (ActGoLive); the new
	// primary (ActFollow).
	Peer string
}

// SoftState is what a node is: its role, the generation it serves in, and
// its peer ("" when it has none). Ready reports it when it changed, so
// that a host keeps one copy of it (etcd raft's SoftState).
type SoftState struct {
	Role Role
	Gen  uint64
	Peer string
}

// Ready is what a node asks of its host since the last call of Node.Ready.
type Ready struct {
	Actions []Action
	// SoftState is set when the node's role, generation or peer changed.
	SoftState *SoftState
}

// Node is one host's part in a VM's pair, for one VM.
type Node struct {
	cfg  Config
	role Role
	gen  uint64 // the generation this node serves in
	peer string

	now        time.Time
	lastHeard  time.Time
	lastBeat   time.Time
	claiming   bool   // a claim is in flight or due
	claimGen   uint64 // the generation being claimed
	claimAt    time.Time
	claimInFly bool
	goingLive  bool // won; a backup is replaying the rest
	// swap: the claim in flight or due is a switchover's, which names
	// the peer (the old primary) the backup of the next generation; the
	// node goes live paired with it.
	swap    bool
	gone    bool // the channel closed under this node since its last log traffic
	heard   bool // the peer was heard from at least once
	reason  string
	cloning bool      // a clone is in flight
	cloneAt time.Time // when a node running alone next tries to clone
	// expect is when the node last asked to be ticked (Next after its
	// last input), zero if only an event moves it on; graceUntil, until
	// when silence is no evidence, after a tick that came late (a stall).
	expect, graceUntil time.Time

	ready []Action
	soft  SoftState // as last reported
}

// NewNode returns a node in role (Primary or Backup) for generation gen,
// paired with peer, starting at now; the peer counts as heard from at now.
// A node may also start Alone (no peer): it then asks for a clone at once.
func NewNode(cfg Config, role Role, gen uint64, peer string, now time.Time) *Node {
	n := &Node{cfg: cfg.withDefaults(), role: role, gen: gen, peer: peer, now: now, lastHeard: now, lastBeat: now.Add(-time.Hour)}
	if role == Alone {
		n.peer, n.cloneAt = "", now
	}
	n.soft = n.softState()
	return n
}

func (n *Node) softState() SoftState { return SoftState{Role: n.role, Gen: n.gen, Peer: n.peer} }

// SoftState returns the node's role, generation and peer.
func (n *Node) SoftState() SoftState { return n.softState() }

// Role returns the node's role.
func (n *Node) Role() Role { return n.role }

// Peer returns the node's peer, "" when it has none.
func (n *Node) Peer() string { return n.peer }

// Cloning reports whether the node waits for a clone it asked for.
func (n *Node) Cloning() bool { return n.cloning }

// Generation returns the generation the node serves in (after a won
// claim, the new one).
func (n *Node) Generation() uint64 { return n.gen }

// Claiming reports whether the node has declared its peer failed and is
// claiming the next generation.
func (n *Node) Claiming() bool { return n.claiming }

// CanHandOver reports whether the node would take EvHandedOver: it is a
// primary that is neither claiming nor cloning.
func (n *Node) CanHandOver() bool { return n.role == Primary && !n.claiming && !n.cloning }

// CanMoveBackup reports whether the node would take EvMoveBackup.
func (n *Node) CanMoveBackup() bool {
	return (n.role == Primary || n.role == Alone) && !n.claiming && !n.cloning
}

// PeerSilence returns how long the peer has been silent.
func (n *Node) PeerSilence() time.Duration { return n.now.Sub(n.lastHeard) }

// PeerGone reports whether the peer's logging channel closed under this
// node since its last log traffic (see EvPeerGone).
func (n *Node) PeerGone() bool { return n.gone }

// watchesPeer reports whether the node declares its peer failed when it
// is silent: a backup, a primary that handed over, and a primary unless
// it moves its backup (the clone's claim shuts the old one out).
func (n *Node) watchesPeer() bool {
	return n.role == Primary && !n.cloning || n.role == Backup || n.role == HandingOver
}

// timeout is how long the peer may be silent now.
func (n *Node) timeout() time.Duration {
	switch {
	case n.gone:
		return n.cfg.GoneTimeout
	case !n.heard:
		return n.cfg.StartTimeout
	}
	return n.cfg.FailureTimeout
}

// Paired reports whether outputs must wait for the backup's acks: the node
// is a primary with a backup (including while it claims: until it wins,
// outputs stay held).
func (n *Node) Paired() bool { return n.role == Primary }

// Ready returns the actions accumulated since the last call, and the
// node's soft state if it changed.
func (n *Node) Ready() Ready {
	r := Ready{Actions: n.ready}
	n.ready = nil
	if cur := n.softState(); cur != n.soft {
		n.soft = cur
		r.SoftState = &cur
	}
	return r
}

// goAlone makes the node run alone: it has no peer, and tries to clone a
// new backup at once.
func (n *Node) goAlone() {
	n.role, n.peer = Alone, ""
	n.claiming = false
	n.cloneAt = n.now
}

func (n *Node) act(a Action) { n.ready = append(n.ready, a) }

// Stalls: a tick that comes more than stallAfter heartbeat intervals
// after the time the node asked for (Next) means this host did not run
// meanwhile (CPU starvation, a pause): the peer's heartbeats may be
// waiting unread in its socket, so for stallGrace heartbeat intervals
// silence is no evidence that the peer failed. A host starved for longer
// than the failure timeout would otherwise fail over a live peer.
const (
	stallAfter = 2
	stallGrace = 2
)

// Tick advances the node's clock to now.
func (n *Node) Tick(now time.Time) {
	if now.Before(n.now) {
		return
	}
	defer n.expectNext()
	n.now = now
	if n.role == Halted {
		return
	}
	if !n.expect.IsZero() && now.Sub(n.expect) > stallAfter*n.cfg.HeartbeatInterval {
		n.graceUntil = now.Add(stallGrace * n.cfg.HeartbeatInterval)
	}
	if (n.role == Primary || n.role == Backup) && !n.claiming && !n.cfg.HostHeartbeats && now.Sub(n.lastBeat) >= n.cfg.HeartbeatInterval {
		n.lastBeat = now
		n.act(Action{Kind: ActSendHeartbeat})
	}
	if n.watchesPeer() && !n.claiming && now.Sub(n.lastHeard) >= n.timeout() && !now.Before(n.graceUntil) {
		n.claiming = true
		n.claimGen = n.gen + 1
		n.claimAt = now
		switch n.role {
		case Primary:
			n.reason = "backup failed"
		case HandingOver:
			n.reason = "the backup did not take over"
		default:
			n.reason = "primary failed"
		}
	}
	if n.claiming && !n.claimInFly && !n.goingLive && !now.Before(n.claimAt) {
		n.claimInFly = true
		a := Action{Kind: ActClaim, Gen: n.claimGen, Reason: n.reason}
		if n.swap {
			a.Peer = n.peer
		}
		n.act(a)
	}
	if n.role == Alone && !n.cloning && !now.Before(n.cloneAt) {
		n.cloning = true
		n.act(Action{Kind: ActClone, Gen: n.gen + 1, Reason: "restore redundancy"})
	}
}

// Next returns when the node next needs a Tick: the earliest time at which
// Tick would do anything, given no event before then. It is the zero time
// when only an event can move the node on (a claim in flight, a backup
// going live, a node running alone or halted). A host may tick only then,
// and at every event (Tick before Step, so the node hears at the right
// time), instead of ticking on a fixed period.
func (n *Node) Next() time.Time {
	if n.role == Alone && !n.cloning {
		return n.cloneAt
	}
	if n.role != Primary && n.role != Backup && n.role != HandingOver {
		return time.Time{}
	}
	if !n.claiming {
		timeout := n.lastHeard.Add(n.timeout())
		if timeout.Before(n.graceUntil) {
			timeout = n.graceUntil
		}
		if n.role == HandingOver {
			return timeout
		}
		if n.cfg.HostHeartbeats {
			if n.watchesPeer() {
				return timeout
			}
			return time.Time{}
		}
		beat := n.lastBeat.Add(n.cfg.HeartbeatInterval)
		if timeout.Before(beat) && n.watchesPeer() {
			return timeout
		}
		return beat
	}
	if !n.claimInFly && !n.goingLive {
		return n.claimAt
	}
	return time.Time{}
}

// SilenceTimeout reports how long the peer may stay silent, when the only
// thing Next waits for is the peer's failure timeout (the peer last heard
// plus that long) and a heartbeat would change nothing else: a host that
// heard the peer within it since may skip the tick at Next, and tell the
// node what it heard (EvHeartbeat with At) when it next runs it. ok is
// false otherwise (the peer never heard yet, its channel closed, a stall's
// grace, anything else due): the host then tells the node of every
// heartbeat at once and ticks it at Next.
func (n *Node) SilenceTimeout() (d time.Duration, ok bool) {
	if !n.cfg.HostHeartbeats || n.claiming || !n.watchesPeer() || !n.heard || n.gone {
		return 0, false
	}
	if n.role != Primary && n.role != Backup && n.role != HandingOver {
		return 0, false
	}
	if n.graceUntil.After(n.lastHeard.Add(n.timeout())) {
		return 0, false
	}
	return n.timeout(), true
}

// expectNext notes when the node asks to be ticked next: at Next, or at
// once if that is past.
func (n *Node) expectNext() {
	n.expect = n.Next()
	if !n.expect.IsZero() && n.expect.Before(n.now) {
		n.expect = n.now
	}
}

// Step feeds the node an event.
func (n *Node) Step(ev Event) {
	if n.role == Halted {
		return
	}
	defer n.expectNext()
	switch ev.Kind {
	case EvHeartbeat, EvLogTraffic:
		// Once a node has decided its peer failed, hearing from it again
		// changes nothing: the claim decides. (A paused peer that resumes
		// will find it lost.)
		if !n.claiming {
			at := n.now
			if ev.Kind == EvHeartbeat && !ev.At.IsZero() {
				at = ev.At
			}
			if at.After(n.lastHeard) {
				n.lastHeard = at
			}
			n.heard = true
			if ev.Kind == EvLogTraffic {
				// The channel is up again. A heartbeat does not say so:
				// one sent just before the peer died may arrive after the
				// channel's end. A live peer's heartbeats keep it heard
				// from all the same.
				n.gone = false
			}
		}
	case EvPeerGone:
		if !n.claiming {
			n.gone = true
		}
	case EvClaimed:
		if !n.claimInFly || ev.Gen != n.claimGen {
			return
		}
		n.claimInFly = false
		if !ev.Won {
			n.role = Halted
			n.act(Action{Kind: ActHalt, Gen: ev.Gen, Reason: "lost generation to another host"})
			return
		}
		n.gen = ev.Gen
		if n.role == Primary || n.role == HandingOver {
			n.goAlone()
			n.act(Action{Kind: ActGoLive, Gen: ev.Gen, Reason: n.reason})
			return
		}
		n.goingLive = true
		a := Action{Kind: ActGoLive, Gen: ev.Gen, Reason: n.reason}
		if n.swap {
			a.Peer = n.peer
		}
		n.act(a)
	case EvClaimFailed:
		if !n.claimInFly || ev.Gen != n.claimGen {
			return
		}
		n.claimInFly = false
		n.claimAt = n.now.Add(n.cfg.ClaimRetry)
	case EvLive:
		if !n.goingLive {
			return
		}
		n.goingLive = false
		if !n.swap {
			n.goAlone()
			return
		}
		// A switchover: paired with the old primary, which follows as
		// soon as it reads the claim. It counts as heard from now.
		n.swap, n.claiming = false, false
		n.role = Primary
		n.lastHeard, n.lastBeat, n.gone, n.heard = n.now, n.now.Add(-time.Hour), false, true
	case EvHandover:
		if n.role == Backup && !n.claiming {
			n.claiming, n.claimGen, n.claimAt, n.reason = true, n.gen+1, n.now, "switchover"
			n.swap = true
		}
	case EvFollow:
		if n.role != HandingOver || ev.Gen != n.gen+1 || ev.Peer != n.peer || n.claiming && n.claimGen != ev.Gen {
			return
		}
		// Its own claim, if one is in flight, lost to the peer's: its
		// answer is ignored from now on.
		n.claiming, n.claimInFly = false, false
		n.role, n.gen = Backup, ev.Gen
		n.lastHeard, n.lastBeat, n.gone, n.heard = n.now, n.now.Add(-time.Hour), false, true
		n.act(Action{Kind: ActFollow, Gen: ev.Gen, Peer: ev.Peer})
	case EvHandedOver:
		if n.CanHandOver() {
			n.role = HandingOver
		}
	case EvMoveBackup:
		if n.CanMoveBackup() && ev.Peer != "" && ev.Peer != n.peer {
			n.cloning = true
			n.act(Action{Kind: ActClone, Gen: n.gen + 1, Reason: "move the backup", Peer: ev.Peer})
		}
	case EvCloneDone:
		if !n.cloning || ev.Gen != n.gen+1 || ev.Peer == "" {
			return
		}
		// Paired again: the new backup counts as heard from now, and
		// hears a heartbeat at once.
		n.cloning = false
		n.role, n.gen, n.peer = Primary, ev.Gen, ev.Peer
		n.lastHeard, n.lastBeat, n.gone, n.heard = n.now, n.now.Add(-time.Hour), false, true
	case EvSuperseded:
		if ev.Gen > n.gen {
			n.role = Halted
			n.act(Action{Kind: ActHalt, Gen: ev.Gen, Reason: "a later generation was claimed by another host"})
		}
	case EvCloneFailed:
		if !n.cloning || ev.Gen != n.gen+1 {
			return
		}
		n.cloning = false
		if ev.Lost {
			n.role = Halted
			n.act(Action{Kind: ActHalt, Gen: ev.Gen, Reason: "lost generation to another host"})
			return
		}
		if ev.Owned {
			// Generation Gen is this host's, with no backup in it: a
			// backup of the generation before would lose its claim, so
			// a primary goes on alone, as after its backup failed.
			n.gen = ev.Gen
			if n.role == Primary {
				n.goAlone()
				n.act(Action{Kind: ActGoLive, Gen: ev.Gen, Reason: "claimed for a clone that did not join"})
			}
		}
		// A node alone tries again; a primary that failed to move its
		// backup keeps the one it has (and watches it again).
		n.cloneAt = n.now.Add(n.cfg.CloneRetry)
	}
}
