package ft

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// The cluster simulator runs one VM on three or four simulated hosts (a
// primary, a backup and spares; or a primary alone and spares), each with
// at most one Node, against a simulated clock, network, shared storage and
// guest, driven by one seed, with live clones that restore redundancy. It
// models what the hosts do around their nodes (host/runner.go, clone.go,
// clonetarget.go, restart.go's superseded check), and checks invariants at
// every step of 10 ms. TestCloneSchedules runs 10,000 seeds (1,000 with
// -short); the scenario tests below it spell out single cases.
//
// The network: heartbeats are datagrams (lost while a link is down);
// everything else travels on connections, in order per link, held while a
// link is down and delivered once it heals (TCP retransmits). A host whose
// process crashed ends its connections after the data in flight (the
// kernel's FIN or RST), unless the whole machine went (a silent crash); a
// connection attempt to a crashed process is refused; data that reaches a
// host that no longer knows its connection (it crashed and started again)
// is answered with a reset. A frozen host processes nothing and its inbox
// waits for it. The storage holds the owner records (generation -> owner,
// backup) with an atomic claim; a host cut off from it cannot claim (the
// outcome is unknown), and, while the schedule's faults last, a claim's
// answer may be lost after the claim happened.
// The registry says a host is alive if it refreshed its entry (every second,
// when it reaches the storage) within the alive window.
//
// The guest: entries are unique ids; a host's log is the list of entries
// its guest's state depends on (a backup's is a prefix of its primary's,
// a clone's starts as the primary's at the clone point). Outputs are tagged
// with the position of the last entry when produced and leave by the
// Output Rule (MayRelease): at once when the gate is open (running alone),
// else once the backup acknowledged the tag. Clients see the outputs that
// leave, each of which asserts the log prefix through its tag.
//
// A clone (ActClone, generation G): the primary P picks a spare S as the
// host does (alive in the registry and not draining, not itself, those
// that failed a clone in the last 10 s last, the least loaded, then by
// name), or takes the one a planned move names; dials it with a
// hello (S refuses if it runs the VM, cannot read the storage, or P does
// not own the generation before G); pre-copies for a time proportional to
// the VM's memory (one chunk a step while the link carries it; a write
// that makes no progress for the step timeout fails); pauses the guest (no
// entries, no outputs) and sends the final state, the log through the clone
// point; S restores it (1 to 3 steps) and says so within the final timeout;
// P claims G on storage (owner P, backup S; it may fail, find G taken, or
// lose its answer); then sends the commit, re-arms its gate at the clone
// point and steps EvCloneDone. From the restored on, P reads the clone's
// connection no more (host/clone.go ignores an error writing the commit):
// an end of it is found by the pair's channel after the commit. S creates
// its node (NewNode(Backup, G, P), then EvLogTraffic) only when the commit
// arrives; it discards the clone when the connection ends, or when no
// frame came for the step timeout. A clone that fails closes the
// connection and steps EvCloneFailed.
//
// Faults, one at a time, each healed before the next: a host crashes
// (ending its connections, or silently) and starts again as an empty spare;
// a host freezes and thaws; a link is cut both ways or one way, then heals;
// a host loses the storage, then gets it back; the connections between
// two hosts end. Each fault is triggered at a time, or at a phase of a
// clone (before it starts, during pre-copy, after the final state was
// sent, before the claim, after the claim and before the commit, just
// after the commit) against the clone's primary, its spare or the link
// between them; TestCloneSchedules checks that every phase met every
// target.
//
// Invariants, at every step (check, release, act, liveStep, commitAt,
// checkDetector):
//
//   - at most one node releases outputs on its own authority: Alone, or
//     Primary in the latest generation on storage;
//   - a node is Alone or Primary only in a generation it owns on storage,
//     and Backup only in a generation its peer owns and committed with
//     it as the backup: the initial pair or a completed clone, never a
//     half-cloned spare (a commit reaches the spare only after the claim
//     won; the owner record names the backup, except after a clone retried
//     once its claim's answer was lost, see TestCloneRetryAfterLostClaimAnswer);
//     a backup goes live only so; a node halts only for a generation another
//     host owns; every claim is for the generation after its own; no node
//     running alone is superseded (only a restart, not modelled, may);
//   - the host's gate agrees with its node: open exactly when Alone,
//     armed when Primary; a halted node holds and emits nothing;
//   - the failure detector follows rule 1 against what the host delivered:
//     a node claims once its peer was silent for the failure timeout (the
//     start timeout until first heard; the gone timeout once its channel
//     ended), never sooner, and no later than its next tick;
//   - nothing a client saw is contradicted: every released output's prefix
//     extends or is extended by every other (one history), is held by the
//     releasing primary's backup, and by every node of a later generation;
//     when a backup goes live, and when a clone's backup starts, it holds
//     every entry any client saw an output of;
//   - liveness: once the last fault has healed, the VM is protected again
//     (a Primary and a Backup paired in the latest generation, which the
//     primary owns, each hearing the other within two heartbeats, outputs
//     leaving on acks; no clone, reception or claim under way; every other
//     host a clean spare) and stays so for cStable, all within
//     cLivenessBound; unless every replica of its memory was lost (the
//     primary crashed while it ran alone, before a clone completed), which
//     the hosts answer by restarting it from disk (host/restart.go, not
//     modelled here): then nothing may come back.
//
// A failure prints its seed, the reason, the state of every host and the
// trace; -clone-seed=N runs one seed alone.

var (
	cloneSeedFlag = flag.Uint64("clone-seed", 0, "run only this seed of TestCloneSchedules, and print its trace")
)

// Timing of the hosts around the nodes. The clone timeouts are host/clone.go's
// scaled down (15 s per exchange, 1 s for the final one) to keep schedules
// short; they stay longer than the failure timeout and a clone's exchanges.
const (
	cStep            = 10 * time.Millisecond
	cStepTimeout     = time.Second            // host: cloneStepTimeout (15 s)
	cFinalTimeout    = 500 * time.Millisecond // host: finalTimeout (1 s)
	cCloneAvoid      = 10 * time.Second       // host: cloneAvoid
	cAliveWindow     = 3 * time.Second        // host: AliveWindow
	cRegistryRefresh = time.Second
	cScanInterval    = 200 * time.Millisecond
	cStable          = 300 * time.Millisecond // how long protection must hold to count
)

// cConfig is the nodes' configuration: the defaults, spelled out as in the
// two-node simulator (the gone and start timeouts too: 200 ms and 5 s).
var cConfig = Config{HeartbeatInterval: 50 * time.Millisecond, FailureTimeout: 500 * time.Millisecond,
	ClaimRetry: 100 * time.Millisecond, CloneRetry: DefaultCloneRetry}

// cMaxPrecopy is the longest pre-copy: 64 MiB at 100 MiB/s, and the pages
// the guest dirtied meanwhile (a quarter, then a sixteenth).
const cMaxPrecopy = (64 + 16 + 4) * cStep

// cMaxClone bounds a clone that nothing disturbs: the hello and the ready
// (up to 3 steps each way), the pre-copy, the final state and the restored
// (3 + 3 + 3), the claim (up to 4), the commit (3), and a step per phase
// change.
const cMaxClone = cMaxPrecopy + 30*cStep

// cLivenessBound bounds the time from the last fault's healing to the VM
// being protected again, the pair quiet for cStable: a clone under way
// when the fault healed may still wait out its step timeout (a dial to a
// spare that had crashed silently), then the clone retry; the next attempt
// may be refused by a host whose stale node has not halted yet (it does
// within a failure timeout and a claim); after another clone retry a clone
// completes. The primary of a committed pair whose spare never heard the
// commit waits a failure timeout, claims, then clones (shorter).
const cLivenessBound = cStepTimeout + 2*DefaultCloneRetry + cMaxClone + 2*cStep + cStable + 500*time.Millisecond

type ckind uint8

const (
	kHeartbeat ckind = iota // a datagram: gen
	kLog                    // entries of the pair's channel conn, gen: the sender's log through its end
	kAck                    // conn, gen, seq: the backup has every entry through seq
	kEnd                    // the pair's channel conn ended under the receiver (FIN or RST)
	kHello                  // a clone's connection conn, for generation gen
	kReady
	kChunk
	kFinal // entries: the log through the clone point
	kRestored
	kCommit
	kCloneEnd // the clone connection conn ended; rst: a reset or a crash rather than a close
	kBye      // a goodbye on the pair's channel conn, gen: bye says why (a planned move's)
	kJoin     // a backup dials its primary for the pair's channel conn of generation gen (after a switchover)
)

func (k ckind) String() string {
	return [...]string{"heartbeat", "log", "ack", "end", "hello", "ready", "chunk", "final", "restored", "commit", "clone-end", "bye", "join"}[k]
}

type cmsg struct {
	at      time.Time
	kind    ckind
	from    int
	conn    uint64
	gen     uint64
	seq     int
	entries []uint64
	rst     bool
	// A kLog carries, as a replog.Batch does, how many of the guest's
	// outputs were written (out) and how many the guest had produced at
	// the sender's position (prod), which the backup's replay reaches.
	out, prod int
	bye       string
}

type vmState uint8

const (
	vmNone    vmState = iota // no VM: a spare
	vmReplay                 // a backup's replaying VM
	vmLive                   // the guest runs for real
	vmStopped                // halted
)

func (v vmState) String() string { return [...]string{"none", "replay", "live", "stopped"}[v] }

type jobPhase uint8

const (
	jStart    jobPhase = iota // spare picked, the hello not sent yet
	jDial                     // hello sent, waiting for ready
	jPrecopy                  // pages go
	jFinal                    // guest paused, final state sent, waiting for restored
	jRestored                 // restored; the claim is next
	jClaim                    // the claim is in flight
	jUnknown                  // the claim's outcome is unknown: the owner record is read again
	jClaimed                  // the pair owns the generation; the commit is next
)

func (p jobPhase) String() string {
	return [...]string{"start", "dial", "pre-copy", "final", "restored", "claim", "unknown", "claimed"}[p]
}

// cjob is a clone in progress on its primary's host.
type cjob struct {
	id       uint64
	gen      uint64
	target   int
	phase    jobPhase
	since    time.Time // when it entered its phase
	deadline time.Time
	sent     int // pre-copy chunks sent
	need     int
	progress time.Time // when the last chunk left
	point    int       // the clone point: entries in the final state
	claimAt  time.Time
	lostAns  bool
	won      bool // the claim's outcome, while unknown to the host (jUnknown)
	planned  bool // a planned move's (ActClone with a Peer)
	// connEnded: the connection ended after the spare said restored.
	connEnded bool
}

// crecv is a clone being received on a spare's host: no node until the
// commit.
type crecv struct {
	id        uint64
	gen       uint64
	from      int
	lastFrame time.Time
	restoreAt time.Time // zero unless restoring
	restored  bool
	entries   []uint64
	out, prod int // the output counts in the final state
	// namedSince: since when the storage has named this host the backup
	// of the clone's generation, the commit not heard (zero: not named).
	namedSince time.Time
}

type avoidEntry struct {
	host  int
	until time.Time
}

type chost struct {
	name      string
	i         int
	crashed   bool
	silent    bool // the crash took the machine: nothing answers
	frozen    bool
	storageUp bool
	regSeen   time.Time
	draining  bool // marked draining in the registry (until it starts again)

	node     *Node
	origin   string // how the node came: the initial pair, or a commit
	pairConn uint64 // the pair's logging channel, 0 if none
	// backupHeard: an acknowledgement came on the pair's channel (after
	// a clone's commit, from the new backup): only then is a primary
	// protected (host/logbuf.go's heard).
	backupHeard bool
	known       []uint64
	vm          vmState
	log         []uint64
	open        bool   // the gate lets outputs out at once
	acked       uint64 // the gate's acknowledged entry
	held        []uint64
	sentSeq     int
	lastSend    time.Time
	// Outputs: produced by the guest, written (released), and written as
	// the backup acknowledged hearing it (replog.Ack.Out); at a backup,
	// what the last batch received said of both.
	produced, written, ackedOut int
	heardOut, heardProd         int

	// What the host delivered to its node about the peer, for the
	// failure detector's rule (checkDetector): when it last heard it
	// (heartbeat or log traffic), whether ever, and whether the channel
	// ended under it since its last log traffic.
	heardAt   time.Time
	heardEver bool
	ended     bool
	endedAt   time.Time
	// watchFrom is when a primary's node watches its backup again after a
	// planned clone failed (it does not while cloning).
	watchFrom time.Time

	goingLive bool
	liveAt    time.Time
	claimGen  uint64
	claimAt   time.Time
	claimLost bool
	// claimNames is the backup the claim in flight names (a
	// switchover's: the old primary), "" for none; livePeer, the one a
	// node going live pairs with (ActGoLive's Peer).
	claimNames, livePeer string
	// joinAt, if set, is when a node that became the backup after a
	// switchover (ActFollow) dials its new primary for the channel.
	joinAt time.Time
	// loseAnswer loses the answer of this host's next claim (a fault).
	loseAnswer bool

	job   *cjob
	recvs []*crecv
	avoid []avoidEntry
	inbox []cmsg

	// A planned move this host's runner carries out (move_sim_test.go),
	// the operator's requests waiting for it (while it is frozen), and
	// the generation in which its backup was handed the VM over.
	move     *hostMove
	requests []*moveOp
	handedIn uint64
	status   vmStatus // as last written to the storage; it outlives a crash
}

func (h *chost) running() bool { return !h.crashed && !h.frozen }

func (h *chost) knows(conn uint64) bool {
	for _, c := range h.known {
		if c == conn {
			return true
		}
	}
	return false
}

func (h *chost) recv(conn uint64) *crecv {
	for _, r := range h.recvs {
		if r.id == conn {
			return r
		}
	}
	return nil
}

// live reports whether the host's node is not halted (it holds the VM).
func (h *chost) holds() bool { return !h.crashed && h.node != nil && h.node.Role() != Halted }

type cowner struct {
	host, backup int // -1: none
}

type traceEntry struct {
	at     time.Duration
	format string
	args   []any
}

// Fault kinds and the targets of faults triggered at a clone's phases.
type fkind uint8

const (
	fCrash fkind = iota
	fFreeze
	fStorage
	fPartition
	fCut
	fBreak
	nFaultKinds // the kinds a fault at a time is drawn from
	// Faults at a planned move's phases only (move_sim_test.go).
	fLoseBye   // a goodbye in flight is lost
	fLoseClaim // the answer of a host's next claim is lost, after the claim
)

func (k fkind) String() string {
	return [...]string{"crash", "freeze", "storage outage", "partition", "one-way cut", "connections end", "", "goodbye lost", "claim answer lost"}[k]
}

type cphase uint8

const (
	phTime      cphase = iota // not a phase: at a time
	phStart                   // the clone is about to start (spare picked)
	phPrecopy                 // during pre-copy
	phFinal                   // final state sent, before the spare said restored
	phClaim                   // restored, before the claim
	phClaimed                 // claimed, before the commit was sent
	phCommitted               // just after the commit was sent
	nPhases
)

func (p cphase) String() string {
	return [...]string{"time", "before start", "pre-copy", "final sent", "before claim", "after claim", "after commit"}[p]
}

type ctarget uint8

const (
	tCrashP ctarget = iota
	tFreezeP
	tStorageP
	tCrashS
	tFreezeS
	tStorageS
	tPartitionPS
	tCutPS
	tCutSP
	tBreakPS
	nTargets
)

func (t ctarget) String() string {
	return [...]string{"crash P", "freeze P", "storage P", "crash S", "freeze S", "storage S", "partition P-S", "cut P->S", "cut S->P", "P-S connections end"}[t]
}

type cfault struct {
	phase   cphase
	target  ctarget // for a phase fault
	kind    fkind   // for a time fault
	a, b    int     // hosts, for a time fault (b: the link's other end)
	silent  bool
	after   time.Duration // time fault: after arming
	offset  int           // phase fault: steps into the phase (pre-copy, after commit)
	dur     time.Duration
	armedAt time.Time
	// provoked: a fault was put before this one to make a clone happen.
	provoked bool
	// mp and mt, when mp is set, make it a fault at a phase of a planned
	// move or a switchover (move_sim_test.go) instead.
	mp mphase
	mt mtarget
	// once injected
	x, y int   // the hosts it hit
	k    fkind // what it did
}

type commitMark struct {
	at      time.Time
	p, s    int
	old     int // the backup a planned move replaced, -1 if none
	id      uint64
	planned bool
}

type cluster struct {
	t     testing.TB
	seed  uint64
	rng   *rand.Rand
	start time.Time
	now   time.Time
	cfg   Config
	steps int

	hosts   []*chost
	link    [][]bool
	lastAt  [][]time.Time
	stalled [][][]cmsg
	owners  []cowner // by generation, as on storage; owners[0] unused
	// pair is, by generation, the backup its owner paired with: the one
	// its record names, or, when a clone was retried after a claim whose
	// answer was lost, the spare of the retry (the record keeps the first
	// spare's name: storage.Claim reports a win to the same host whatever
	// the backup); -1 for none.
	pair []int

	due       []cmsg // deliver's scratch
	nextEntry uint64
	nextConn  uint64
	seen      []uint64 // the longest log prefix a client saw an output of
	precopy   int      // pre-copy length in steps
	lost      bool
	commit    commitMark

	faults []*cfault
	cur    int // the fault being armed or active
	active bool
	healAt time.Time
	// lastHeal is when the last fault healed (or was given up).
	lastHeal time.Time

	trace  []traceEntry
	stats  cloneStats
	failed bool
	rerun  string // how to run it again, for a failure's report

	// loseCloneAnswers loses the answers of that many clone claims (after
	// the claim happened), besides the random losses.
	loseCloneAnswers int
	// rereadFails makes the storage unreadable for this many reads right
	// after a lost answer,
	// so the host cannot read the owner record again.
	rereadFails int

	// mv holds the planned moves, switchovers and drains of a move
	// schedule (move_sim_test.go); nil in clone schedules.
	mv *moveSim
}

type cloneStats struct {
	schedules, lost, commits, cloneFails, refused, phaseFaults, timeFaults, adopted, givenUp, provoked int
	storageCommits                                                                                     int
	maxProtect                                                                                         time.Duration
	maxSeed                                                                                            uint64
	hit                                                                                                [nPhases][nTargets]int
}

func (s *cloneStats) add(o cloneStats) {
	s.schedules += o.schedules
	s.lost += o.lost
	s.commits += o.commits
	s.cloneFails += o.cloneFails
	s.refused += o.refused
	s.storageCommits += o.storageCommits
	s.phaseFaults += o.phaseFaults
	s.timeFaults += o.timeFaults
	s.adopted += o.adopted
	s.givenUp += o.givenUp
	s.provoked += o.provoked
	if o.maxProtect > s.maxProtect || o.maxProtect == s.maxProtect && o.maxSeed < s.maxSeed {
		s.maxProtect, s.maxSeed = o.maxProtect, o.maxSeed
	}
	for p := range s.hit {
		for t := range s.hit[p] {
			s.hit[p][t] += o.hit[p][t]
		}
	}
}

func hostName(i int) string {
	if i < 0 {
		return "none"
	}
	return string(rune('A' + i))
}

func hostIndex(name string) int {
	if name == "" {
		return -1
	}
	return int(name[0] - 'A')
}

// newCluster sets up a seed's cluster and draws its faults.
func newCluster(t testing.TB, seed uint64) *cluster {
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	n := 3 + rng.IntN(2)
	alone := rng.IntN(3) == 0
	c := newClusterOf(t, seed, rng, n, alone)
	c.drawFaults(alone)
	return c
}

// newClusterOf sets up n hosts: A primary and B backup in generation 1, or
// A alone; the others spares.
func newClusterOf(t testing.TB, seed uint64, rng *rand.Rand, n int, alone bool) *cluster {
	c := &cluster{t: t, seed: seed, rng: rng, start: time.Unix(1_700_000_000, 0), cfg: cConfig}
	c.now, c.lastHeal = c.start, c.start
	c.link = make([][]bool, n)
	c.lastAt = make([][]time.Time, n)
	c.stalled = make([][][]cmsg, n)
	for i := range n {
		c.hosts = append(c.hosts, &chost{name: hostName(i), i: i, storageUp: true, regSeen: c.now})
		c.link[i] = make([]bool, n)
		for j := range n {
			c.link[i][j] = true
		}
		c.lastAt[i] = make([]time.Time, n)
		c.stalled[i] = make([][]cmsg, n)
	}
	mem := 8 + c.rng.IntN(57) // MiB, pre-copied at 100 MiB/s, one step a MiB
	c.precopy = mem + mem/4 + c.rng.IntN(mem/16+1)
	a, b := c.hosts[0], c.hosts[1]
	a.vm, a.log, a.origin = vmLive, []uint64{}, "initial"
	c.owners, c.pair = []cowner{{-1, -1}}, []int{-1}
	if alone {
		a.node = NewNode(c.cfg, Alone, 1, "", c.now)
		a.open = true
		c.owners, c.pair = append(c.owners, cowner{0, -1}), append(c.pair, -1)
	} else {
		c.nextConn++
		a.node = NewNode(c.cfg, Primary, 1, "B", c.now)
		b.node = NewNode(c.cfg, Backup, 1, "A", c.now)
		b.vm, b.log, b.origin = vmReplay, []uint64{}, "initial"
		a.pairConn, b.pairConn = c.nextConn, c.nextConn
		a.backupHeard = true
		a.heardAt, b.heardAt = c.now, c.now
		a.known, b.known = []uint64{c.nextConn}, []uint64{c.nextConn}
		c.owners, c.pair = append(c.owners, cowner{0, 1}), append(c.pair, 1)
	}
	start := "A primary, B backup in generation 1"
	if alone {
		start = "A alone in generation 1"
	}
	c.logf("%d hosts; %s; pre-copy %v", n, start, time.Duration(c.precopy)*cStep)
	return c
}

// drawFaults draws one to three faults: the first at a time if the VM
// starts protected, then mostly at clone phases.
func (c *cluster) drawFaults(alone bool) {
	n := len(c.hosts)
	nf := 1 + c.rng.IntN(3)
	for i := range nf {
		f := &cfault{dur: time.Duration(5+c.rng.IntN(196)) * cStep, silent: c.rng.IntN(4) == 0}
		if (i == 0 && !alone) || c.rng.IntN(4) == 0 {
			f.phase = phTime
			f.after = time.Duration(10+c.rng.IntN(140)) * cStep
			f.kind = fkind(c.rng.IntN(int(nFaultKinds)))
			if i == 0 && c.rng.IntN(3) > 0 {
				f.a = c.rng.IntN(2) // the pair, mostly, so that a clone follows
			} else {
				f.a = c.rng.IntN(n)
			}
			f.b = (f.a + 1 + c.rng.IntN(n-1)) % n
		} else {
			f.phase = cphase(1 + c.rng.IntN(int(nPhases)-1))
			f.target = ctarget(c.rng.IntN(int(nTargets)))
			f.offset = c.rng.IntN(90)
			if f.phase == phCommitted {
				f.offset = c.rng.IntN(10)
			}
		}
		c.faults = append(c.faults, f)
	}
}

func (c *cluster) logf(format string, args ...any) {
	c.trace = append(c.trace, traceEntry{at: c.now.Sub(c.start), format: format, args: args})
}

func (c *cluster) fail(format string, args ...any) {
	c.t.Helper()
	c.failed = true
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %s\n", c.seed, fmt.Sprintf(format, args...))
	if c.rerun == "" {
		c.rerun = fmt.Sprintf("go test ./ft -run TestCloneSchedules -clone-seed=%d -v", c.seed)
	}
	fmt.Fprintf(&b, "rerun: %s\n", c.rerun)
	fmt.Fprintf(&b, "at %v; storage: ", c.now.Sub(c.start))
	for g := 1; g < len(c.owners); g++ {
		o := c.owners[g]
		fmt.Fprintf(&b, "gen %d=%s", g, hostName(o.host))
		if o.backup >= 0 {
			fmt.Fprintf(&b, "+%s", hostName(o.backup))
		}
		b.WriteString(" ")
	}
	b.WriteString("\nhosts:\n")
	for _, h := range c.hosts {
		fmt.Fprintf(&b, "  %s\n", c.describe(h))
	}
	tail := c.trace
	if len(tail) > 120 {
		tail = tail[len(tail)-120:]
		b.WriteString("trace (last 120 events):\n")
	} else {
		b.WriteString("trace:\n")
	}
	for _, e := range tail {
		fmt.Fprintf(&b, "%8s %s\n", e.at.Truncate(time.Millisecond), fmt.Sprintf(e.format, e.args...))
	}
	c.t.Fatal(b.String())
}

func (c *cluster) describe(h *chost) string {
	var b strings.Builder
	b.WriteString(h.name + ":")
	switch {
	case h.crashed:
		b.WriteString(" crashed")
	case h.frozen:
		b.WriteString(" frozen")
	}
	if !h.storageUp {
		b.WriteString(" no-storage")
	}
	if h.node != nil {
		st := h.node.SoftState()
		fmt.Fprintf(&b, " node %v gen %d peer %q claiming=%v cloning=%v silence=%v (%s)", st.Role, st.Gen, st.Peer,
			h.node.Claiming(), h.node.Cloning(), h.node.PeerSilence(), h.origin)
	} else {
		b.WriteString(" no node")
	}
	fmt.Fprintf(&b, "; vm %v, %d entries, gate open=%v acked=%d, %d held", h.vm, len(h.log), h.open, h.acked, len(h.held))
	if j := h.job; j != nil {
		fmt.Fprintf(&b, "; cloning #%d to %s for gen %d: %v", j.id, hostName(j.target), j.gen, j.phase)
	}
	for _, r := range h.recvs {
		fmt.Fprintf(&b, "; receiving #%d from %s for gen %d (restored=%v)", r.id, hostName(r.from), r.gen, r.restored)
	}
	if h.draining {
		b.WriteString("; draining")
	}
	if m := h.move; m != nil {
		fmt.Fprintf(&b, "; %v", m)
	}
	return b.String()
}

// flaky reports whether the storage may lose a claim's answer now: while
// the schedule's faults are not over (after them, liveness is checked).
func (c *cluster) flaky() bool { return c.cur < len(c.faults) }

func (c *cluster) latest() uint64 { return uint64(len(c.owners) - 1) }

// owner returns generation g's owner record and the backup its owner
// paired with; no one for a generation not on storage.
func (c *cluster) owner(g uint64) (o cowner, paired int) {
	if g == 0 || g > c.latest() {
		return cowner{-1, -1}, -1
	}
	return c.owners[g], c.pair[g]
}

// send puts m on the link from -> to.
func (c *cluster) send(from, to int, m cmsg) {
	m.from = from
	if to < 0 {
		c.fail("%s sends a %v to no host", hostName(from), m.kind)
		return
	}
	dst := c.hosts[to]
	if dst.crashed {
		if m.kind == kHello && !dst.silent {
			// The crashed process's port refuses the connection.
			c.send(to, from, cmsg{kind: kCloneEnd, conn: m.conn, gen: m.gen, rst: true})
		}
		if m.kind == kJoin && !dst.silent {
			c.send(to, from, cmsg{kind: kEnd, conn: m.conn, gen: m.gen, rst: true})
		}
		return
	}
	if !c.link[from][to] {
		if m.kind != kHeartbeat {
			c.stalled[from][to] = append(c.stalled[from][to], m)
		}
		return
	}
	at := c.now.Add(time.Duration(1+c.rng.IntN(3)) * cStep)
	if at.Before(c.lastAt[from][to]) {
		at = c.lastAt[from][to]
	}
	c.lastAt[from][to] = at
	m.at = at
	dst.inbox = append(dst.inbox, m)
}

// setLink sets a link up or down; a link that heals delivers what waited.
func (c *cluster) setLink(from, to int, up bool) {
	c.link[from][to] = up
	if up {
		held := c.stalled[from][to]
		c.stalled[from][to] = nil
		for _, m := range held {
			if !c.hosts[from].crashed {
				c.send(from, to, m)
			}
		}
	}
}

// step advances the simulation by one step.
func (c *cluster) step() {
	c.now = c.now.Add(cStep)
	c.steps++
	c.faultStep()
	if c.mv != nil {
		c.operatorStep()
	}
	for _, h := range c.hosts {
		if h.running() {
			c.hostStep(h)
		}
	}
	c.check()
}

func (c *cluster) hostStep(h *chost) {
	if h.node != nil {
		h.node.Tick(c.now)
		c.ready(h)
	}
	c.deliver(h)
	c.claimStep(h)
	c.liveStep(h)
	c.joinStep(h)
	c.jobStep(h)
	if h.move != nil || len(h.requests) > 0 {
		c.moveStep(h)
	}
	if c.mv != nil {
		c.writeStatus(h)
	}
	c.recvStep(h)
	c.guest(h)
	c.scan(h)
}

// ready carries out what the node asks, as a host's runner does.
func (c *cluster) ready(h *chost) {
	rd := h.node.Ready()
	if rd.SoftState != nil {
		c.logf("%s is %v in generation %d (peer %q)", h.name, rd.SoftState.Role, rd.SoftState.Gen, rd.SoftState.Peer)
	}
	for _, a := range rd.Actions {
		c.act(h, a)
	}
}

func (c *cluster) step1(h *chost, ev Event) {
	if !h.node.Claiming() {
		// Once claiming, a node hears nothing more of its peer.
		switch ev.Kind {
		case EvHeartbeat:
			h.heardAt, h.heardEver = c.now, true
		case EvLogTraffic:
			h.heardAt, h.heardEver, h.ended = c.now, true, false
		case EvPeerGone:
			if !h.ended {
				h.ended, h.endedAt = true, c.now
			}
		}
	}
	h.node.Step(ev)
	c.ready(h)
}

// checkDetector checks the failure detector's rule (rule 1 of node.go's
// doc) against what the host delivered: a node declares its peer failed
// (claims) once the peer has been silent for the failure timeout (the
// start timeout until first heard; the gone timeout once the channel
// ended under it and no log traffic came since), never sooner, and by its
// first tick after that (its tick comes before the step's deliveries, so
// the end of a channel already silent for the gone timeout is acted on at
// the next step).
func (c *cluster) checkDetector(h *chost, claiming bool) {
	cfg := c.cfg.withDefaults()
	need := cfg.FailureTimeout
	switch {
	case h.ended:
		need = cfg.GoneTimeout
	case !h.heardEver:
		need = cfg.StartTimeout
	}
	silence := c.now.Sub(h.heardAt)
	if claiming && silence < need {
		c.fail("%s declared its peer failed after %v of silence (channel ended: %v); the rule asks %v", h.name, silence, h.ended, need)
	}
	due := h.heardAt.Add(need)
	if h.ended && h.endedAt.After(due) {
		due = h.endedAt
	}
	if h.watchFrom.After(due) {
		due = h.watchFrom
	}
	// A host that did not run for a while (frozen) gives its peer's
	// heartbeats time to be read first (see Node.Tick's stalls).
	if g := h.node.graceUntil; g.After(due) {
		due = g
	}
	if !claiming && !c.now.Before(due.Add(cStep)) {
		c.fail("%s has not declared its peer failed after %v of silence (channel ended: %v); the rule asks %v", h.name, silence, h.ended, need)
	}
}

func (c *cluster) act(h *chost, a Action) {
	n := h.node
	switch a.Kind {
	case ActSendHeartbeat:
		if p := hostIndex(n.Peer()); p >= 0 {
			c.send(h.i, p, cmsg{kind: kHeartbeat, gen: n.Generation()})
		}
	case ActClaim:
		c.logf("%s claims generation %d (%s)", h.name, a.Gen, a.Reason)
		if r := n.Role(); r != Primary && r != Backup && r != HandingOver {
			c.fail("%s claims generation %d as %v", h.name, a.Gen, r)
		}
		if g := n.Generation(); a.Gen != g+1 {
			c.fail("%s in generation %d claims generation %d", h.name, g, a.Gen)
		} else if o, b := c.owner(g); o.host != h.i && b != h.i {
			c.fail("%s claims generation %d from generation %d, which %s owns paired with %s", h.name, a.Gen, g, hostName(o.host), hostName(b))
		}
		if a.Reason == reasonSwitchover {
			// Not the failure detector: the primary handed the VM over.
			c.checkSwitchoverClaim(h, a.Gen)
		} else {
			c.checkDetector(h, true)
		}
		if h.claimGen != 0 {
			c.fail("%s claims generation %d with a claim of %d in flight", h.name, a.Gen, h.claimGen)
		}
		at := c.now.Add(time.Duration(1+c.rng.IntN(4)) * cStep)
		lost := c.flaky() && c.rng.IntN(10) == 0
		h.claimGen, h.claimAt, h.claimLost, h.loseAnswer = a.Gen, at, lost || h.loseAnswer, false
		h.claimNames = a.Peer
		if a.Peer != "" && (a.Reason != reasonSwitchover || a.Peer != n.Peer()) {
			c.fail("%s's claim of generation %d (%s) names %q its backup; only a switchover names one, its old primary %q", h.name, a.Gen, a.Reason, a.Peer, n.Peer())
		}
	case ActGoLive:
		c.logf("%s won generation %d (%s)", h.name, a.Gen, a.Reason)
		if o, _ := c.owner(a.Gen); o.host != h.i {
			c.fail("%s goes live in generation %d owned by %s", h.name, a.Gen, hostName(o.host))
		}
		switch h.vm {
		case vmLive:
			// A primary that won: held outputs leave, the log is no
			// longer kept (the log buffer counts it all acknowledged).
			h.open, h.pairConn, h.acked = true, 0, uint64(len(h.log))
		case vmReplay:
			// A backup: it must have been one, from the initial pair or
			// a completed clone; it replays what it has, then is live.
			if o, b := c.owner(a.Gen - 1); b != h.i || o.host != hostIndex(n.Peer()) {
				c.fail("%s (%s) goes live as the backup of %q in generation %d, which %s owns paired with %s", h.name, h.origin, n.Peer(), a.Gen-1, hostName(o.host), hostName(b))
			}
			h.goingLive, h.liveAt = true, c.now.Add(time.Duration(c.rng.IntN(4))*cStep)
			h.pairConn, h.livePeer = 0, a.Peer
			if a.Peer != "" && c.pair[a.Gen] != hostIndex(a.Peer) {
				c.fail("%s goes live paired with %s in generation %d, which names %s the backup", h.name, a.Peer, a.Gen, hostName(c.pair[a.Gen]))
			}
		default:
			c.fail("%s goes live with its vm %v", h.name, h.vm)
		}
	case ActHalt:
		c.logf("%s halts (%s, generation %d)", h.name, a.Reason, a.Gen)
		if o, _ := c.owner(a.Gen); o.host < 0 || o.host == h.i {
			c.fail("%s halts for generation %d, which no other host owns", h.name, a.Gen)
		}
		if c.mv != nil {
			c.haltLoses(h, a.Gen)
		}
		h.vm, h.held, h.open, h.pairConn, h.goingLive = vmStopped, nil, false, 0, false
		if j := h.job; j != nil {
			// The runner ends: its clone's connection closes.
			if j.phase >= jDial {
				c.send(h.i, j.target, cmsg{kind: kCloneEnd, conn: j.id, gen: j.gen})
			}
			h.job = nil
		}
	case ActFollow:
		c.follow(h, a)
	case ActClone:
		if h.job != nil {
			c.fail("%s asked for a clone with one in flight", h.name)
		}
		// A node alone restores redundancy; a primary clones only to
		// move its backup (onto the host named).
		if n.Role() != Alone && (n.Role() != Primary || a.Peer == "") || h.vm != vmLive {
			c.fail("%s asked for a clone as %v (onto %q) with its vm %v", h.name, n.Role(), a.Peer, h.vm)
		}
		c.startClone(h, a.Gen, hostIndex(a.Peer))
	}
}

// pickSpare chooses a clone's target as host.pickSpare does.
func (c *cluster) pickSpare(h *chost) int {
	best, bestKey := -1, 0
	o := c.owners[c.latest()]
	for _, x := range c.hosts {
		if x.i == h.i || x.draining || c.now.Sub(x.regSeen) > cAliveWindow {
			continue
		}
		key := x.i
		if x.i == o.host || x.i == o.backup {
			key += 10 // loaded
		}
		for _, av := range h.avoid {
			if av.host == x.i && c.now.Before(av.until) {
				key += 100
			}
		}
		if best < 0 || key < bestKey {
			best, bestKey = x.i, key
		}
	}
	return best
}

// startClone starts a clone for generation gen onto target, or onto a
// spare it picks if target is -1.
func (c *cluster) startClone(h *chost, gen uint64, target int) {
	// As host/clone.go: an earlier attempt's claim of gen that happened
	// with its answer lost makes gen this node's, alone.
	if h.storageUp && c.latest() == gen && c.owners[gen].host == h.i {
		c.logf("%s finds generation %d its own (an earlier claim's answer was lost): alone in it", h.name, gen)
		c.stats.adopted++
		if target >= 0 {
			c.plannedDone(h, false, fmt.Sprintf("generation %d was claimed by an earlier clone that did not join", gen))
		}
		c.step1(h, Event{Kind: EvCloneFailed, Gen: gen, Owned: true})
		return
	}
	s := target
	if s < 0 {
		if s = c.pickSpare(h); s < 0 {
			c.logf("%s: no spare to clone onto", h.name)
			c.stats.cloneFails++
			c.step1(h, Event{Kind: EvCloneFailed, Gen: gen})
			return
		}
	}
	c.nextConn++
	h.job = &cjob{id: c.nextConn, gen: gen, target: s, phase: jStart, since: c.now, need: c.precopy, planned: target >= 0}
	h.known = append(h.known, c.nextConn)
	if target >= 0 {
		c.logf("%s moves its backup: clones onto %s for generation %d (#%d)", h.name, hostName(s), gen, c.nextConn)
		return
	}
	c.logf("%s clones onto %s for generation %d (#%d)", h.name, hostName(s), gen, c.nextConn)
}

func (c *cluster) setPhase(j *cjob, p jobPhase) {
	j.phase, j.since = p, c.now
}

// jobStep moves a clone on at its primary.
func (c *cluster) jobStep(h *chost) {
	j := h.job
	if j == nil {
		return
	}
	switch j.phase {
	case jStart:
		if j.since.Equal(c.now) {
			return
		}
		c.send(h.i, j.target, cmsg{kind: kHello, conn: j.id, gen: j.gen})
		c.setPhase(j, jDial)
		j.deadline = c.now.Add(cStepTimeout)
	case jDial:
		if c.now.After(j.deadline) {
			c.cloneFailed(h, false, "the spare did not say ready")
		}
	case jPrecopy:
		if h.move != nil && h.move.stage == msHandOver {
			// The guest is held for a switchover: no pause copies pages.
			return
		}
		if c.link[h.i][j.target] {
			c.send(h.i, j.target, cmsg{kind: kChunk, conn: j.id})
			j.sent++
			j.progress = c.now
		} else if c.now.Sub(j.progress) > cStepTimeout {
			c.cloneFailed(h, false, "pre-copy made no progress")
			return
		}
		if j.sent >= j.need {
			j.point = len(h.log)
			c.send(h.i, j.target, cmsg{kind: kFinal, conn: j.id, entries: h.log[:j.point:j.point], out: h.written, prod: h.produced})
			c.setPhase(j, jFinal)
			j.deadline = c.now.Add(cFinalTimeout)
			c.logf("%s pauses its guest and sends the final state of #%d (entries through %d)", h.name, j.id, j.point)
		}
	case jFinal:
		if c.now.After(j.deadline) {
			c.cloneFailed(h, false, "the spare did not restore in time")
		}
	case jRestored:
		if j.since.Equal(c.now) {
			return
		}
		c.setPhase(j, jClaim)
		j.claimAt, j.lostAns = c.now.Add(time.Duration(1+c.rng.IntN(4))*cStep), c.flaky() && c.rng.IntN(8) == 0
		c.logf("%s claims generation %d for the pair with %s", h.name, j.gen, hostName(j.target))
	case jClaim:
		if c.now.Before(j.claimAt) {
			return
		}
		if !h.storageUp {
			c.cloneFailed(h, false, "claim: storage unreachable")
			return
		}
		won := c.claim(j.gen, h.i, j.target)
		if c.loseCloneAnswers > 0 {
			c.loseCloneAnswers--
			j.lostAns = true
		}
		if j.lostAns {
			// As cloneOnce: the owner record, read again, says; until it
			// can be read, the guest stays paused.
			c.logf("%s claim %d: happened (won=%v) but the answer was lost; it reads the owner record", h.name, j.gen, won)
			j.won, j.claimAt = won, c.now
			c.setPhase(j, jUnknown)
			return
		}
		c.claimOutcome(h, j, won)
	case jUnknown:
		if c.now.Before(j.claimAt) {
			return
		}
		if !h.storageUp || c.rereadFails > 0 {
			if c.rereadFails > 0 {
				c.rereadFails--
			}
			c.logf("%s cannot read the owner record of generation %d: reads it again", h.name, j.gen)
			j.claimAt = c.now.Add(c.cfg.withDefaults().ClaimRetry)
			return
		}
		c.claimOutcome(h, j, j.won)
	case jClaimed:
		if j.since.Equal(c.now) {
			return
		}
		// The commit, then the guest resumes with its log kept from the
		// clone point and its gate armed again. A backup the clone
		// replaces (a planned move) is told to leave, on its channel.
		c.send(h.i, j.target, cmsg{kind: kCommit, conn: j.id, gen: j.gen})
		h.job = nil
		old := -1
		if h.pairConn != 0 {
			old = hostIndex(h.node.Peer())
			c.send(h.i, old, cmsg{kind: kBye, conn: h.pairConn, gen: h.node.Generation(), bye: byeMoved})
		}
		h.open, h.acked = false, max(h.acked, uint64(j.point))
		// The new backup has acknowledged nothing yet.
		h.pairConn, h.sentSeq, h.ackedOut, h.backupHeard = j.id, j.point, 0, false
		c.commit = commitMark{at: c.now, p: h.i, s: j.target, old: old, id: j.id, planned: j.planned}
		if c.pair[j.gen] = j.target; c.owners[j.gen].backup != j.target {
			c.fail("the owner record of generation %d names %s as the backup, the clone committed %s", j.gen, hostName(c.owners[j.gen].backup), hostName(j.target))
		}
		c.stats.commits++
		// The new backup counts as heard from now (it just said restored).
		h.heardAt, h.heardEver, h.ended = c.now, true, false
		c.logf("%s commits #%d: generation %d is %s+%s", h.name, j.id, j.gen, h.name, hostName(j.target))
		if j.planned {
			c.plannedDone(h, true, "")
		}
		c.step1(h, Event{Kind: EvCloneDone, Gen: j.gen, Peer: hostName(j.target)})
		if j.connEnded {
			c.step1(h, Event{Kind: EvPeerGone})
		}
	}
}

// claim is the storage's test-and-set.
func (c *cluster) claim(gen uint64, host, backup int) bool {
	switch {
	case gen == 0 || gen > c.latest()+1:
		c.fail("%s claims generation %d; the latest is %d", hostName(host), gen, c.latest())
	case gen == c.latest()+1:
		c.owners, c.pair = append(c.owners, cowner{host, backup}), append(c.pair, backup)
	}
	return c.owners[gen].host == host
}

func (c *cluster) cloneFailed(h *chost, lost bool, why string) {
	j := h.job
	c.logf("%s: clone #%d to %s failed: %s", h.name, j.id, hostName(j.target), why)
	c.stats.cloneFails++
	if j.phase >= jDial {
		c.send(h.i, j.target, cmsg{kind: kCloneEnd, conn: j.id, gen: j.gen})
	}
	if !lost {
		keep := h.avoid[:0]
		for _, av := range h.avoid {
			if av.host != j.target && c.now.Before(av.until) {
				keep = append(keep, av)
			}
		}
		h.avoid = append(keep, avoidEntry{j.target, c.now.Add(cCloneAvoid)})
	}
	h.job = nil
	if j.planned {
		c.plannedDone(h, false, why)
		h.watchFrom = c.now
	}
	c.step1(h, Event{Kind: EvCloneFailed, Gen: j.gen, Lost: lost})
}

// claimOutcome goes on with clone j once its claim's outcome is known: the
// commit is next, or the generation is another host's.
func (c *cluster) claimOutcome(h *chost, j *cjob, won bool) {
	if !won {
		c.cloneFailed(h, true, fmt.Sprintf("generation %d is owned by %s", j.gen, hostName(c.owners[j.gen].host)))
		return
	}
	c.setPhase(j, jClaimed)
}

// recvStep moves the clones a spare receives on.
func (c *cluster) recvStep(h *chost) {
	for i := 0; i < len(h.recvs); i++ {
		r := h.recvs[i]
		if !r.restoreAt.IsZero() && !c.now.Before(r.restoreAt) {
			r.restoreAt, r.restored, r.lastFrame = time.Time{}, true, c.now
			c.send(h.i, r.from, cmsg{kind: kRestored, conn: r.id})
		}
		if r.restored && h.storageUp {
			// host/clonetarget.go's awaitCommit: the commit is the claim.
			if !c.namesBackup(h, r) {
				r.namedSince = time.Time{}
			} else if r.namedSince.IsZero() {
				r.namedSince = c.now
			} else if c.now.Sub(r.namedSince) >= c.cfg.withDefaults().FailureTimeout {
				c.commitFromStorage(h, r, "no commit within the failure timeout")
				i--
				continue
			}
		}
		if r.restoreAt.IsZero() && c.now.Sub(r.lastFrame) > cStepTimeout {
			if c.commitFromStorage(h, r, "no frame within the step timeout") {
				i--
				continue
			}
			c.discard(h, r, "no frame within the step timeout")
			c.send(h.i, r.from, cmsg{kind: kCloneEnd, conn: r.id, gen: r.gen})
			i--
		}
	}
}

// namesBackup reports whether the storage gives clone r's generation to
// its primary paired with h: the clone's commit happened.
func (c *cluster) namesBackup(h *chost, r *crecv) bool {
	return c.latest() >= r.gen && c.owners[r.gen].host == r.from && c.pair[r.gen] == h.i
}

// commitFromStorage is a restored clone whose commit did not come (the
// connection ended, or nothing came), taken as committed if the storage
// names h the backup (host/clonetarget.go's awaitCommit): its node starts.
// The host closes the connection and dials its primary again; the model
// keeps the connection's id for the channel it dials, as the primary's
// host takes the new one for the pair's.
func (c *cluster) commitFromStorage(h *chost, r *crecv, why string) bool {
	if !r.restored || !h.storageUp || !c.namesBackup(h, r) {
		return false
	}
	c.logf("%s takes clone #%d as committed: %s, and the storage names it the backup of generation %d", h.name, r.id, why, r.gen)
	c.stats.storageCommits++
	c.commitAt(h, r)
	return true
}

func (c *cluster) discard(h *chost, r *crecv, why string) {
	c.logf("%s discards clone #%d from %s: %s", h.name, r.id, hostName(r.from), why)
	c.drop(h, r)
}

func (c *cluster) drop(h *chost, r *crecv) {
	for i, x := range h.recvs {
		if x == r {
			h.recvs = append(h.recvs[:i], h.recvs[i+1:]...)
			return
		}
	}
}

// deliver hands h the messages that are due, in the order they came.
func (c *cluster) deliver(h *chost) {
	some := false
	for i := range h.inbox {
		if !h.inbox[i].at.After(c.now) {
			some = true
			break
		}
	}
	if !some {
		return
	}
	due := c.due[:0]
	keep := h.inbox[:0]
	for _, m := range h.inbox {
		if m.at.After(c.now) {
			keep = append(keep, m)
		} else {
			due = append(due, m)
		}
	}
	h.inbox = keep
	c.due = due
	// handle never delivers, so nothing reuses due before the loop ends.
	for _, m := range due {
		c.handle(h, m)
	}
}

// pairs reports whether h's node is in role with peer from in generation gen
// on connection conn.
func (h *chost) pairs(role Role, from int, gen, conn uint64) bool {
	n := h.node
	return n != nil && n.Role() == role && hostIndex(n.Peer()) == from && n.Generation() == gen && h.pairConn == conn
}

func (c *cluster) handle(h *chost, m cmsg) {
	n := h.node
	switch m.kind {
	case kHeartbeat:
		if n != nil && hostIndex(n.Peer()) == m.from && n.Generation() == m.gen {
			c.step1(h, Event{Kind: EvHeartbeat})
		}
	case kLog:
		switch {
		case !h.knows(m.conn):
			c.send(h.i, m.from, cmsg{kind: kEnd, conn: m.conn, gen: m.gen})
		case h.pairs(Backup, m.from, m.gen, m.conn) && h.vm == vmReplay:
			if !isPrefix(h.log, m.entries) && !isPrefix(m.entries, h.log) {
				c.fail("%s's log (%d entries) is not a prefix of its primary %s's (%d)", h.name, len(h.log), hostName(m.from), len(m.entries))
			}
			if len(m.entries) > len(h.log) {
				h.log = append(h.log, m.entries[len(h.log):]...)
			}
			h.heardOut, h.heardProd = m.out, m.prod
			c.send(h.i, m.from, cmsg{kind: kAck, conn: m.conn, gen: m.gen, seq: len(h.log), out: h.heardOut})
			c.step1(h, Event{Kind: EvLogTraffic})
		}
	case kAck:
		switch {
		case !h.knows(m.conn):
			c.send(h.i, m.from, cmsg{kind: kEnd, conn: m.conn, gen: m.gen})
		case h.pairs(Primary, m.from, m.gen, m.conn):
			h.acked = max(h.acked, uint64(min(m.seq, len(h.log))))
			h.ackedOut = m.out
			h.backupHeard = true
			c.step1(h, Event{Kind: EvLogTraffic})
		}
	case kEnd:
		if h.pairs(Primary, m.from, m.gen, m.conn) || h.pairs(Backup, m.from, m.gen, m.conn) {
			c.step1(h, Event{Kind: EvPeerGone})
		}
	case kHello:
		h.known = append(h.known, m.conn)
		refuse := ""
		o := c.owners[c.latest()]
		switch {
		case h.holds():
			refuse = "this host already runs the VM"
		case h.draining:
			refuse = "this host is draining"
		case !h.storageUp:
			refuse = "storage unreachable"
		case o.host != m.from:
			refuse = fmt.Sprintf("%s does not own the latest generation %d", hostName(m.from), c.latest())
		case c.latest()+1 != m.gen:
			// As host/clonetarget.go: the latest generation must be the
			// one before the clone's.
			refuse = fmt.Sprintf("%s does not own generation %d", hostName(m.from), m.gen-1)
		}
		if refuse != "" {
			c.logf("%s refuses clone #%d: %s", h.name, m.conn, refuse)
			c.stats.refused++
			c.send(h.i, m.from, cmsg{kind: kCloneEnd, conn: m.conn, gen: m.gen})
			return
		}
		h.recvs = append(h.recvs, &crecv{id: m.conn, gen: m.gen, from: m.from, lastFrame: c.now})
		c.send(h.i, m.from, cmsg{kind: kReady, conn: m.conn})
	case kReady:
		if j := h.job; j != nil && j.id == m.conn && j.phase == jDial {
			c.setPhase(j, jPrecopy)
			j.progress = c.now
			c.logf("%s pre-copies #%d to %s", h.name, j.id, hostName(j.target))
		} else if !h.knows(m.conn) {
			c.send(h.i, m.from, cmsg{kind: kCloneEnd, conn: m.conn, rst: true})
		}
	case kChunk, kFinal, kCommit:
		r := h.recv(m.conn)
		if r == nil {
			if !h.knows(m.conn) {
				c.send(h.i, m.from, cmsg{kind: kCloneEnd, conn: m.conn, gen: m.gen, rst: true})
			}
			return
		}
		r.lastFrame = c.now
		switch m.kind {
		case kFinal:
			if h.draining {
				// As host/clonetarget.go: marked draining since the
				// clone began, it takes no VM.
				c.discard(h, r, "this host is draining")
				c.send(h.i, m.from, cmsg{kind: kCloneEnd, conn: m.conn, gen: m.gen})
				return
			}
			r.entries = append([]uint64(nil), m.entries...)
			r.out, r.prod = m.out, m.prod
			r.restoreAt = c.now.Add(time.Duration(1+c.rng.IntN(3)) * cStep)
		case kCommit:
			c.commitAt(h, r)
		}
	case kRestored:
		if j := h.job; j != nil && j.id == m.conn && j.phase == jFinal {
			c.setPhase(j, jRestored)
		} else if !h.knows(m.conn) {
			c.send(h.i, m.from, cmsg{kind: kCloneEnd, conn: m.conn, rst: true})
		}
	case kBye:
		c.handleBye(h, m)
	case kJoin:
		// As host.serveConn: a primary of that generation with that
		// backup takes the channel; anything else refuses it with a
		// goodbye (the backup dials again; a refusal is no evidence).
		if n != nil && n.Role() == Primary && n.Generation() == m.gen && hostIndex(n.Peer()) == m.from && h.vm == vmLive && h.pairConn == 0 {
			h.known = append(h.known, m.conn)
			h.pairConn, h.sentSeq, h.backupHeard = m.conn, m.seq, false
			c.logf("%s: %s joins as its backup (#%d, entries through %d)", h.name, hostName(m.from), m.conn, m.seq)
			return
		}
		c.send(h.i, m.from, cmsg{kind: kBye, conn: m.conn, gen: m.gen, bye: byeRefused})
	case kCloneEnd:
		if j := h.job; j != nil && j.id == m.conn && j.phase >= jRestored {
			// Once the spare said restored, host/clone.go reads the
			// connection no more: it claims, then writes the commit
			// (ignoring an error); the channel finds the end after.
			j.connEnded = true
		} else if j != nil && j.id == m.conn {
			c.cloneFailed(h, false, "the spare refused or the connection ended")
		} else if r := h.recv(m.conn); r != nil {
			if !c.commitFromStorage(h, r, "the connection ended") {
				c.discard(h, r, "the connection ended")
			}
		} else if m.rst && (h.pairs(Primary, m.from, m.gen, m.conn) || h.pairs(Backup, m.from, m.gen, m.conn)) {
			// The clone's connection became the pair's channel.
			c.step1(h, Event{Kind: EvPeerGone})
		}
	}
}

// commitAt makes spare h the backup of the clone r it received: its node
// starts now.
func (c *cluster) commitAt(h *chost, r *crecv) {
	if h.holds() {
		c.discard(h, r, "this host already runs the VM")
		c.send(h.i, r.from, cmsg{kind: kCloneEnd, conn: r.id, gen: r.gen})
		return
	}
	c.drop(h, r)
	if !r.restored {
		c.fail("%s got the commit of clone #%d before it restored the state", h.name, r.id)
	}
	if r.gen > c.latest() || c.owners[r.gen].host != r.from || c.pair[r.gen] != h.i {
		c.fail("%s got the commit of clone #%d for generation %d, which storage does not give to %s+%s", h.name, r.id, r.gen, hostName(r.from), h.name)
	}
	// A commit held up (a cut link, a frozen spare) may arrive after the
	// primary has left the generation: its backup is stale and can only
	// lose its claim. Otherwise nothing a client saw lies beyond the clone
	// point: outputs after it wait for this backup's acks.
	if r.gen == c.latest() && !isPrefix(c.seen, r.entries) {
		c.fail("contradiction: clients saw output of entries through %d that the clone's state (%d entries) does not hold", len(c.seen), len(r.entries))
	}
	h.node = NewNode(c.cfg, Backup, r.gen, hostName(r.from), c.now)
	h.node.Step(Event{Kind: EvLogTraffic}) // it just heard the commit
	h.heardAt, h.heardEver, h.ended = c.now, true, false
	h.origin = fmt.Sprintf("clone #%d", r.id)
	h.vm, h.log, h.held, h.open, h.acked, h.pairConn, h.goingLive = vmReplay, r.entries, nil, false, 0, r.id, false
	h.heardOut, h.heardProd = r.out, r.prod
	c.logf("%s is the backup of %s in generation %d from clone #%d (entries through %d)", h.name, hostName(r.from), r.gen, r.id, len(r.entries))
	c.ready(h)
}

func (c *cluster) claimStep(h *chost) {
	if h.claimGen == 0 || c.now.Before(h.claimAt) {
		return
	}
	gen := h.claimGen
	h.claimGen = 0
	if !h.storageUp {
		c.logf("%s claim %d: storage unreachable", h.name, gen)
		c.step1(h, Event{Kind: EvClaimFailed, Gen: gen})
		return
	}
	won := c.claim(gen, h.i, hostIndex(h.claimNames))
	if !won && !h.claimLost && h.node.Role() == HandingOver && gen == c.latest() && c.owners[gen].host == hostIndex(h.node.Peer()) && c.pair[gen] == h.i {
		// As runner.claim: the answer shows the backup's switchover
		// claim, which names this host its backup, and nothing after it.
		c.logf("%s claim %d: lost to %s, which names it its backup", h.name, gen, h.node.Peer())
		c.step1(h, Event{Kind: EvFollow, Gen: gen, Peer: h.node.Peer()})
		return
	}
	if h.claimLost {
		c.logf("%s claim %d: happened (won=%v) but the answer was lost", h.name, gen, won)
		c.step1(h, Event{Kind: EvClaimFailed, Gen: gen})
		return
	}
	c.logf("%s claim %d: won=%v", h.name, gen, won)
	c.step1(h, Event{Kind: EvClaimed, Gen: gen, Won: won})
}

// liveStep ends a backup's go-live: it replayed what it had.
func (c *cluster) liveStep(h *chost) {
	if !h.goingLive || c.now.Before(h.liveAt) {
		return
	}
	h.goingLive = false
	// A switchover's go-live (livePeer) may come late (the node froze
	// while going live) after its old primary, which followed it, took
	// over again and went on: it goes live paired, and releases nothing
	// that its backup did not acknowledge (release checks those).
	if h.livePeer == "" && !isPrefix(c.seen, h.log) {
		c.fail("contradiction: clients saw output of entries through %d, %s goes live with %d that do not hold them", len(c.seen), h.name, len(h.log))
	}
	// Its replay produced the outputs through its position; it writes
	// those the primary did not report written (vmm/outtail.go).
	h.vm, h.open, h.produced, h.written = vmLive, true, h.heardProd, h.heardProd
	if c.mv != nil {
		c.checkContinuity(h)
	}
	c.logf("%s goes live with entries through %d", h.name, len(h.log))
	if h.livePeer != "" {
		// A switchover's: paired with the old primary, its gate armed
		// at the end of the log, its channel up once the old primary
		// follows and dials (host: promote with a peer).
		h.open, h.acked, h.pairConn, h.backupHeard = false, uint64(len(h.log)), 0, false
		h.heardAt, h.heardEver, h.ended = c.now, true, false
	}
	h.livePeer = ""
	c.step1(h, Event{Kind: EvLive})
}

// follow is ActFollow: a primary that handed its VM over becomes its new
// primary's backup (host: runner.follow). Its paused state is the new
// primary's at the start of the generation: it replays from there, and
// dials the new primary once the state is turned into a replaying VM.
func (c *cluster) follow(h *chost, a Action) {
	n := h.node
	if h.vm != vmLive || len(h.held) > 0 || h.produced != h.written {
		c.fail("%s follows %s with its vm %v, %d outputs held, %d produced, %d written", h.name, a.Peer, h.vm, len(h.held), h.produced, h.written)
	}
	if o, b := c.owner(a.Gen); o.host != hostIndex(a.Peer) || b != h.i || n.Role() != Backup || n.Generation() != a.Gen {
		c.fail("%s follows %s in generation %d as %v, which %s owns paired with %s", h.name, a.Peer, a.Gen, n.Role(), hostName(o.host), hostName(b))
	}
	if !isPrefix(c.seen, h.log) {
		c.fail("contradiction: %s follows with %d entries; clients saw output of entries through %d", h.name, len(h.log), len(c.seen))
	}
	c.logf("%s follows %s: its backup in generation %d, entries through %d", h.name, a.Peer, a.Gen, len(h.log))
	if c.mv != nil {
		c.mv.stats.follows++
	}
	h.origin = fmt.Sprintf("switchover to %s", a.Peer)
	h.vm, h.open, h.acked, h.pairConn, h.goingLive = vmReplay, false, 0, 0, false
	h.heardOut, h.heardProd = h.written, h.produced
	h.heardAt, h.heardEver, h.ended = c.now, true, false
	h.joinAt = c.now.Add(time.Duration(1+c.rng.IntN(3)) * cStep)
}

// joinStep dials the new primary of a node that followed (joinAt), and
// again after a refusal.
func (c *cluster) joinStep(h *chost) {
	if h.joinAt.IsZero() || c.now.Before(h.joinAt) {
		return
	}
	h.joinAt = time.Time{}
	n := h.node
	if n == nil || n.Role() != Backup || h.goingLive || h.pairConn != 0 {
		// A backup that won stops dialing (host: dialLoop ends with the
		// log).
		return
	}
	c.nextConn++
	h.known = append(h.known, c.nextConn)
	h.pairConn = c.nextConn
	c.send(h.i, hostIndex(n.Peer()), cmsg{kind: kJoin, conn: c.nextConn, gen: n.Generation(), seq: len(h.log)})
}

// guest runs the guest of a live VM: inputs become entries, outputs are
// held by the gate and leave by the Output Rule; a primary's host sends
// its backup the log.
func (c *cluster) guest(h *chost) {
	if h.vm != vmLive {
		return
	}
	// The guest pauses for a clone's final state, and from the pause
	// where a switchover begins until the backup takes over or the node,
	// having claimed, goes on alone.
	paused := h.job != nil && h.job.phase >= jFinal || h.move != nil && h.move.stage == msHandOver || h.node.Role() == HandingOver
	if !paused {
		if c.rng.IntN(3) == 0 {
			c.nextEntry++
			h.log = append(h.log, c.nextEntry)
		}
		if c.rng.IntN(2) == 0 {
			h.held = append(h.held, uint64(len(h.log)))
			h.produced++
		}
	}
	k := 0
	for k < len(h.held) && MayRelease(h.open, h.acked, h.held[k]) {
		c.release(h, h.held[k])
		k++
	}
	if k > 0 {
		h.held = append(h.held[:0], h.held[k:]...)
		h.written += k
	}
	if h.pairConn != 0 && !h.open && (len(h.log) > h.sentSeq || c.now.Sub(h.lastSend) >= 5*cStep) {
		n := h.node
		if p := hostIndex(n.Peer()); p >= 0 {
			c.send(h.i, p, cmsg{kind: kLog, conn: h.pairConn, gen: n.Generation(), entries: h.log[:len(h.log):len(h.log)], out: h.written, prod: h.produced})
			h.sentSeq, h.lastSend = len(h.log), c.now
		}
	}
}

// release lets an output tagged tag leave host h, and checks that no
// client is ever contradicted.
func (c *cluster) release(h *chost, tag uint64) {
	n := h.node
	if r := n.Role(); r != Primary && r != Alone {
		c.fail("%s released output of entry %d as %v", h.name, tag, r)
	}
	p := h.log[:tag:tag]
	if !compatible(p, c.seen) {
		c.fail("contradiction: %s released output of entry %d, which clients saw differently", h.name, tag)
	}
	if len(p) > len(c.seen) {
		c.seen = p
	}
	for _, x := range c.hosts {
		if x == h || !x.holds() || (x.vm != vmLive && x.vm != vmReplay) {
			continue
		}
		xn := x.node
		later := xn.Generation() > n.Generation()
		backup := xn.Generation() == n.Generation() && xn.Role() == Backup && xn.Peer() == h.name
		if (later || backup) && !isPrefix(p, x.log) {
			what := "its backup"
			if later {
				what = fmt.Sprintf("a node of the later generation %d (%v)", xn.Generation(), xn.Role())
			}
			c.fail("split brain: %s (%v, generation %d) released output of entry %d, which %s %s does not hold (it has %d entries)",
				h.name, n.Role(), n.Generation(), tag, what, x.name, len(x.log))
		}
	}
}

// scan is the host's periodic look at the storage: the registry refresh,
// and a node running alone learns that a later generation was claimed by
// another host (host.checkSuperseded).
func (c *cluster) scan(h *chost) {
	if !h.storageUp {
		return
	}
	if c.now.Sub(h.regSeen) >= cRegistryRefresh {
		h.regSeen = c.now
	}
	if h.node != nil && h.node.Role() == HandingOver {
		// A primary that handed the VM over watches the storage closely
		// for its backup's claim (runner.switchover).
		n := h.node
		if g, o := c.latest(), c.owners[c.latest()]; g > n.Generation() && o.host != h.i {
			c.logf("%s finds generation %d claimed by %s", h.name, g, hostName(o.host))
			if g == n.Generation()+1 && o.host == hostIndex(n.Peer()) && c.pair[g] == h.i {
				// Its backup's switchover claim, naming it the backup.
				c.step1(h, Event{Kind: EvFollow, Gen: g, Peer: n.Peer()})
			} else {
				c.step1(h, Event{Kind: EvSuperseded, Gen: g})
			}
		}
		return
	}
	if (c.steps+3*h.i)%int(cScanInterval/cStep) != 0 || h.node == nil || h.node.Role() != Alone {
		return
	}
	g, o := c.latest(), c.owners[c.latest()]
	if gen := h.node.Generation(); g > gen+1 || g == gen+1 && o.host != h.i {
		// Only a restart of a VM taken for lost claims past a node
		// running alone, and none is modelled: the model has two
		// histories.
		c.logf("%s finds generation %d claimed by %s", h.name, g, hostName(o.host))
		c.fail("%s runs alone in generation %d, superseded by generation %d of %s", h.name, gen, g, hostName(o.host))
		c.step1(h, Event{Kind: EvSuperseded, Gen: g})
	}
}

func isPrefix(p, l []uint64) bool {
	return len(p) <= len(l) && (len(p) == 0 || l[len(p)-1] == p[len(p)-1])
}

// compatible reports whether one of two logs is a prefix of the other.
// Entries are unique and a log only ever copies a prefix of another and
// appends new entries, so the entry at the shorter one's end decides.
func compatible(a, b []uint64) bool {
	n := min(len(a), len(b))
	return n == 0 || a[n-1] == b[n-1]
}

// check verifies the invariants that hold between events.
func (c *cluster) check() {
	if c.failed {
		return
	}
	latest := c.latest()
	authority := ""
	holders := 0
	for _, h := range c.hosts {
		if h.crashed {
			continue
		}
		if h.holds() || len(h.recvs) > 0 {
			holders++
		}
		n := h.node
		if n == nil {
			if h.vm != vmNone || len(h.held) > 0 {
				c.fail("%s has no node but its vm is %v", h.name, h.vm)
			}
			continue
		}
		role, gen := n.Role(), n.Generation()
		switch role {
		case Alone, Primary:
			if o, _ := c.owner(gen); o.host != h.i {
				c.fail("%s is %v in generation %d, owned by %s", h.name, role, gen, hostName(o.host))
			}
			// A node alone whose clone's claim won has its guest paused
			// until the commit pairs it (its outputs then wait for the new
			// backup): meanwhile the new backup, told by the storage, may
			// take over a primary that froze there.
			if (role == Alone && (h.job == nil || h.job.phase < jClaim)) || gen == latest {
				if authority != "" {
					c.fail("two live primaries: %s and %s", authority, h.name)
				}
				authority = h.name
			}
			if role == Primary && !h.frozen && !n.Claiming() && !n.Cloning() {
				c.checkDetector(h, false)
			}
			if h.vm != vmLive || h.open != (role == Alone) {
				c.fail("%s is %v but its vm is %v with its gate open=%v", h.name, role, h.vm, h.open)
			}
		case Backup:
			if !h.frozen && !n.Claiming() {
				c.checkDetector(h, false)
			}
			if o, b := c.owner(gen); h.goingLive {
				// It won gen and replays what it has.
				if o.host != h.i {
					c.fail("%s goes live in generation %d, owned by %s", h.name, gen, hostName(o.host))
				}
			} else if b != h.i || o.host != hostIndex(n.Peer()) {
				c.fail("%s (%s) is the backup of %q in generation %d, which %s owns paired with %s", h.name, h.origin, n.Peer(), gen, hostName(o.host), hostName(b))
			}
			if h.vm != vmReplay {
				c.fail("%s is a backup but its vm is %v", h.name, h.vm)
			}
		case Halted:
			if h.vm != vmStopped || len(h.held) > 0 || h.open {
				c.fail("%s is halted but its vm is %v with %d outputs held", h.name, h.vm, len(h.held))
			}
		}
	}
	if holders == 0 && !c.lost {
		c.lost = true
		c.logf("the VM is lost: no host holds its memory")
		if c.mv != nil {
			c.lostBy()
		}
	}
}

// protected reports whether the VM is protected and quiet: a Primary and
// its Backup paired in the latest generation, the primary its owner, each
// hearing the other; every other host a clean spare (no node but a halted
// one, no clone, no claim).
func (c *cluster) protected() bool {
	latest := c.latest()
	p := c.hosts[c.owners[latest].host]
	if !p.running() || p.node == nil || p.node.Role() != Primary || p.node.Generation() != latest || p.node.Claiming() {
		return false
	}
	bi := hostIndex(p.node.Peer())
	b := c.hosts[bi]
	if !b.running() || !b.pairs(Backup, p.i, latest, p.pairConn) || b.node.Claiming() || b.goingLive {
		return false
	}
	if quiet := 2 * c.cfg.HeartbeatInterval; p.node.PeerSilence() > quiet || b.node.PeerSilence() > quiet {
		return false
	}
	// The Output Rule moves: outputs leave as the backup acknowledges.
	if len(p.held) > 0 && int(p.held[0])+30 < len(p.log) {
		return false
	}
	for _, h := range c.hosts {
		if h.job != nil || len(h.recvs) > 0 || h.claimGen != 0 {
			return false
		}
		if h != p && h != b && !h.crashed && h.holds() {
			return false
		}
	}
	return true
}

// faultStep injects and heals the schedule's faults, one at a time.
func (c *cluster) faultStep() {
	if c.cur >= len(c.faults) {
		return
	}
	f := c.faults[c.cur]
	if c.active {
		if !c.now.Before(c.healAt) {
			c.heal(f)
			c.active = false
			c.lastHeal = c.now
			c.cur++
			if c.cur < len(c.faults) {
				c.faults[c.cur].armedAt = c.now.Add(time.Duration(c.rng.IntN(100)) * cStep)
			}
		}
		return
	}
	if c.now.Before(f.armedAt) {
		return
	}
	if f.mp != 0 {
		c.moveFaultStep(f)
		return
	}
	if f.phase == phTime {
		if c.now.Before(f.armedAt.Add(f.after)) {
			return
		}
		c.stats.timeFaults++
		c.inject(f, f.kind, f.a, f.b)
		return
	}
	p, s, ok := c.phaseNow(f)
	if !ok && !f.provoked && !c.lost && c.now.Sub(f.armedAt) > time.Second && c.noClone() {
		// The VM is protected, so no clone will come: crash or freeze
		// its primary or its backup first.
		f.provoked = true
		c.stats.provoked++
		o := c.latest()
		pf := &cfault{phase: phTime, kind: fkind(c.rng.IntN(2)), a: c.owners[o].host, armedAt: c.now,
			dur: time.Duration(5+c.rng.IntN(196)) * cStep, silent: c.rng.IntN(4) == 0}
		if b := c.pair[o]; b >= 0 && c.rng.IntN(2) == 0 {
			pf.a = b
		}
		c.faults = append(c.faults[:c.cur], append([]*cfault{pf}, c.faults[c.cur:]...)...)
		return
	}
	if !ok {
		if c.lost || c.now.Sub(f.armedAt) > 4*time.Second {
			c.giveUp(fmt.Sprintf("no clone reached %v", f.phase))
		}
		return
	}
	c.stats.phaseFaults++
	c.stats.hit[f.phase][f.target]++
	c.logf("fault at clone phase %q: %v", f.phase, f.target)
	switch f.target {
	case tCrashP:
		c.inject(f, fCrash, p, s)
	case tFreezeP:
		c.inject(f, fFreeze, p, s)
	case tStorageP:
		c.inject(f, fStorage, p, s)
	case tCrashS:
		c.inject(f, fCrash, s, p)
	case tFreezeS:
		c.inject(f, fFreeze, s, p)
	case tStorageS:
		c.inject(f, fStorage, s, p)
	case tPartitionPS:
		c.inject(f, fPartition, p, s)
	case tCutPS:
		c.inject(f, fCut, p, s)
	case tCutSP:
		c.inject(f, fCut, s, p)
	case tBreakPS:
		c.inject(f, fBreak, p, s)
	}
}

// giveUp gives the current fault up: its phase did not come.
func (c *cluster) giveUp(why string) {
	c.logf("%s: fault given up", why)
	c.stats.givenUp++
	c.cur++
	c.lastHeal = c.now
	if c.cur < len(c.faults) {
		c.faults[c.cur].armedAt = c.now
	}
}

// noClone reports whether no clone is under way or due: no host clones,
// none receives one, no node runs alone.
func (c *cluster) noClone() bool {
	for _, h := range c.hosts {
		if h.job != nil || len(h.recvs) > 0 || h.holds() && h.node.Role() == Alone {
			return false
		}
	}
	return true
}

// phaseNow reports whether a clone is at fault f's phase now, and its
// primary and spare.
func (c *cluster) phaseNow(f *cfault) (p, s int, ok bool) {
	if f.phase == phCommitted {
		m := c.commit
		ok = m.id != 0 && !m.at.Before(f.armedAt) && !c.now.Before(m.at.Add(time.Duration(f.offset)*cStep))
		return m.p, m.s, ok
	}
	want := [...]jobPhase{phStart: jStart, phPrecopy: jPrecopy, phFinal: jFinal, phClaim: jRestored, phClaimed: jClaimed}[f.phase]
	for _, h := range c.hosts {
		j := h.job
		if h.crashed || j == nil || j.phase != want {
			continue
		}
		if want == jPrecopy && c.now.Before(j.since.Add(time.Duration(min(f.offset, j.need-1))*cStep)) {
			continue
		}
		return h.i, j.target, true
	}
	return 0, 0, false
}

func (c *cluster) inject(f *cfault, k fkind, x, y int) {
	f.k, f.x, f.y = k, x, y
	if c.mv != nil {
		c.faulted(k, x, y)
	}
	c.active = true
	c.healAt = c.now.Add(f.dur)
	hx := c.hosts[x]
	switch k {
	case fCrash:
		c.crash(hx, f.silent)
	case fFreeze:
		c.logf("%s freezes for %v", hx.name, f.dur)
		hx.frozen = true
	case fStorage:
		c.logf("%s loses the storage for %v", hx.name, f.dur)
		hx.storageUp = false
	case fPartition:
		c.logf("link %s-%s cut both ways for %v", hx.name, hostName(y), f.dur)
		c.setLink(x, y, false)
		c.setLink(y, x, false)
	case fCut:
		c.logf("link %s->%s cut for %v", hx.name, hostName(y), f.dur)
		c.setLink(x, y, false)
	case fBreak:
		c.logf("the connections between %s and %s end", hx.name, hostName(y))
		c.endConns(x, y, true)
		c.endConns(y, x, true)
		c.healAt = c.now
	case fLoseBye:
		c.loseBye(x, y, f.silent)
		c.healAt = c.now
	case fLoseClaim:
		c.logf("the answer of %s's next claim will be lost", hx.name)
		if hx.job != nil {
			c.loseCloneAnswers++
		} else {
			hx.loseAnswer = true
		}
		c.healAt = c.now
	}
}

func (c *cluster) heal(f *cfault) {
	h := c.hosts[f.x]
	switch f.k {
	case fCrash:
		c.logf("%s starts again, a spare", h.name)
		// Its first registry entry is a fresh one: not draining.
		h.crashed, h.silent, h.regSeen, h.draining = false, false, c.now, false
	case fFreeze:
		c.logf("%s thaws", h.name)
		h.frozen = false
	case fStorage:
		c.logf("%s reaches the storage again", h.name)
		h.storageUp = true
	case fPartition:
		c.logf("link %s-%s heals", h.name, hostName(f.y))
		c.setLink(f.x, f.y, true)
		c.setLink(f.y, f.x, true)
	case fCut:
		c.logf("link %s->%s heals", h.name, hostName(f.y))
		c.setLink(f.x, f.y, true)
	}
}

// endConns ends h's connections with peer: peer sees them end (after the
// data in flight).
func (c *cluster) endConns(hi, peer int, rst bool) {
	h := c.hosts[hi]
	if h.node != nil && h.pairConn != 0 && hostIndex(h.node.Peer()) == peer {
		c.send(hi, peer, cmsg{kind: kEnd, conn: h.pairConn, gen: h.node.Generation()})
	}
	if j := h.job; j != nil && j.target == peer && j.phase >= jDial {
		c.send(hi, peer, cmsg{kind: kCloneEnd, conn: j.id, gen: j.gen, rst: rst})
	}
	for _, r := range h.recvs {
		if r.from == peer {
			c.send(hi, peer, cmsg{kind: kCloneEnd, conn: r.id, gen: r.gen, rst: rst})
		}
	}
}

// crash kills host h's process (its connections end) or, silently, its
// machine; what it held is gone.
func (c *cluster) crash(h *chost, silent bool) {
	if silent {
		c.logf("%s crashes (silently)", h.name)
	} else {
		c.logf("%s crashes (its connections end)", h.name)
		for _, x := range c.hosts {
			if x != h {
				c.endConns(h.i, x.i, true)
			}
		}
	}
	for j := range c.hosts {
		c.stalled[h.i][j] = nil
	}
	// The registry keeps its entry (alive until it is stale, and draining)
	// until it starts again.
	*h = chost{name: h.name, i: h.i, crashed: true, silent: silent, storageUp: h.storageUp, regSeen: h.regSeen, draining: h.draining, status: h.status}
}

// run runs the schedule to its end and checks liveness.
func (c *cluster) run() {
	if len(c.faults) > 0 {
		c.faults[0].armedAt = c.now
	}
	protSince := time.Time{}
	limit := 60 * time.Second
	for !c.failed {
		c.step()
		if c.failed {
			return
		}
		if c.cur < len(c.faults) || c.mv != nil && !c.mv.over() {
			if c.now.Sub(c.start) > limit {
				c.fail("the schedule did not end within %v", limit)
			}
			continue
		}
		// Liveness counts from the last fault's end, or a move
		// schedule's last operation's if later.
		quiet := c.lastHeal
		if c.mv != nil && c.mv.endedAt.After(quiet) {
			quiet = c.mv.endedAt
		}
		if c.lost {
			// Safety only: nothing may come back to life.
			if c.now.Sub(quiet) > cStepTimeout+cStable {
				c.stats.lost++
				return
			}
			continue
		}
		if c.protected() {
			if protSince.IsZero() {
				protSince = c.now
			}
			if c.now.Sub(protSince) >= cStable {
				c.stats.maxProtect, c.stats.maxSeed = max(0, protSince.Sub(quiet)), c.seed
				if c.mv != nil {
					c.moveEnd()
				}
				return
			}
		} else {
			protSince = time.Time{}
		}
		if c.now.Sub(quiet) > cLivenessBound {
			c.fail("not protected again within %v of the last fault's end", cLivenessBound)
		}
	}
}

func runCloneSchedule(t testing.TB, seed uint64) cloneStats {
	c := newCluster(t, seed)
	c.run()
	c.stats.schedules = 1
	return c.stats
}

// TestCloneSchedules runs ten thousand seeded schedules of the cluster
// simulator (a thousand with -short), in parallel shards.
func TestCloneSchedules(t *testing.T) {
	if *cloneSeedFlag != 0 {
		c := newCluster(t, *cloneSeedFlag)
		c.run()
		logTrace(t, c)
		return
	}
	n := uint64(10000)
	if testing.Short() {
		n = 1000
	}
	total := runShards(t, n, runCloneSchedule)
	if t.Failed() {
		return
	}
	t.Logf("%d schedules: %d phase faults (%d given up; %d after a fault put before them to start a clone), %d time faults; %d clones committed, %d generations found claimed by an earlier attempt, %d taken as committed from the storage, %d failed (%d refused); VM lost in %d; protected again at most %v after the last fault (seed %d; bound %v)",
		total.schedules, total.phaseFaults, total.givenUp, total.provoked, total.timeFaults, total.commits, total.adopted, total.storageCommits, total.cloneFails, total.refused, total.lost, total.maxProtect, total.maxSeed, cLivenessBound)
	var phases, targets []string
	for ph := phStart; ph < nPhases; ph++ {
		phases = append(phases, ph.String())
	}
	for tg := range nTargets {
		targets = append(targets, tg.String())
	}
	t.Logf("faults at each clone phase:\n%s", faultTable(t, phases, targets, func(p, tg int) (int, bool) {
		return total.hit[phStart+cphase(p)][tg], true
	}))
}

// runShards runs the schedules of seeds 1 to n in eight parallel shards,
// and sums their statistics.
func runShards[S any, P interface {
	*S
	add(S)
}](t *testing.T, n uint64, run func(testing.TB, uint64) S) S {
	const shards = 8
	var (
		mu    sync.Mutex
		total S
	)
	t.Run("shards", func(t *testing.T) {
		for sh := range uint64(shards) {
			t.Run(fmt.Sprint(sh), func(t *testing.T) {
				t.Parallel()
				var st S
				for seed := 1 + sh; seed <= n; seed += shards {
					P(&st).add(run(t, seed))
				}
				mu.Lock()
				P(&total).add(st)
				mu.Unlock()
			})
		}
	})
	return total
}

// faultTable shows how many faults hit each phase (a row) with each
// target (a column), "-" where the target does not apply, and reports a
// phase that no fault hit with a target that applies (not with -short).
func faultTable(t *testing.T, phases, targets []string, hit func(phase, target int) (n int, applies bool)) string {
	w := 0
	for _, p := range phases {
		w = max(w, len(p)+1)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s", w, "")
	for _, tg := range targets {
		fmt.Fprintf(&b, " %6.6s", tg)
	}
	for p, name := range phases {
		fmt.Fprintf(&b, "\n%-*s", w, name)
		for tg := range targets {
			n, ok := hit(p, tg)
			switch {
			case !ok:
				fmt.Fprintf(&b, " %6s", "-")
				continue
			case n == 0 && !testing.Short():
				t.Errorf("no fault %v at %q", targets[tg], name)
			}
			fmt.Fprintf(&b, " %6d", n)
		}
	}
	return b.String()
}

// scenario runs a cluster of n hosts, A alone at first, with the given
// faults, and returns it once it is protected again (or lost, and quiet).
func scenario(t *testing.T, n int, faults ...*cfault) *cluster {
	t.Helper()
	c := newClusterOf(t, 1, rand.New(rand.NewPCG(1, 2)), n, true)
	c.rerun = fmt.Sprintf("go test ./ft -run '^%s$' -v", t.Name())
	c.faults = faults
	c.run()
	return c
}

// TestHalfClonedSpareNeverClaims: the clone's primary, running alone,
// crashes at each phase of a clone. Until the commit (the claim of the
// new pair's generation) the spare has no node: it discards what it
// received (at once when the crash ended the connection, after its step
// timeout when the machine went silently), claims nothing and never goes
// live; the VM's memory is lost. Once the claim won, the spare is the
// backup, whether the commit frame reached it or the storage told it: it
// takes over, and nothing is lost.
func TestHalfClonedSpareNeverClaims(t *testing.T) {
	for _, ph := range []cphase{phStart, phPrecopy, phFinal, phClaim, phClaimed, phCommitted} {
		for _, silent := range []bool{false, true} {
			c := scenario(t, 3, &cfault{phase: ph, target: tCrashP, offset: 20, silent: silent, dur: 300 * time.Millisecond})
			b := c.hosts[1]
			if ph == phClaimed || ph == phCommitted {
				if c.lost || c.owners[c.latest()].host != b.i {
					c.fail("crash at %q (silent %v): lost %v, latest generation owned by %s", ph, silent, c.lost, hostName(c.owners[c.latest()].host))
				}
				continue
			}
			for g := range c.owners {
				if c.owners[g].host == b.i {
					c.fail("crash at %q (silent %v): the half-cloned spare B claimed generation %d", ph, silent, g)
				}
			}
			if !c.lost || b.node != nil || len(b.recvs) > 0 {
				c.fail("crash at %q (silent %v): lost %v; B: %s", ph, silent, c.lost, c.describe(b))
			}
		}
	}
}

// TestCloneCommitLost: the link from the primary to its spare is cut
// right after the claim, so the commit waits in the network past the
// spare's step timeout. The spare discards the clone; the primary, paired
// on storage with a backup that has no node, finds it silent within the
// failure timeout, claims the next generation, runs alone and clones
// again; the commit that arrives at last finds the clone gone.
func TestCloneCommitLost(t *testing.T) {
	c := scenario(t, 3, &cfault{phase: phClaimed, target: tCutPS, dur: 1500 * time.Millisecond})
	if c.lost || c.latest() < 4 || !c.protected() {
		c.fail("after a lost commit: lost %v, latest generation %d, protected %v", c.lost, c.latest(), c.protected())
	}
}

// TestCloneRetryAfterLostClaimAnswer: a clone's claim happens but its
// answer is lost (storage.Claim linked the owner record, then could not
// read it back), and the host cannot read the record again for a while.
// The outcome unknown, the guest stays paused (going on alone would
// release outputs the spare, which the storage names the backup, does not
// hold) until the record can be read: then the clone commits.
func TestCloneRetryAfterLostClaimAnswer(t *testing.T) {
	c := newClusterOf(t, 1, rand.New(rand.NewPCG(1, 2)), 3, true)
	c.rerun = "go test ./ft -run '^TestCloneRetryAfterLostClaimAnswer$' -v"
	c.loseCloneAnswers, c.rereadFails = 1, 2
	c.run()
	if c.lost || c.latest() != 2 || c.stats.adopted != 0 || !c.protected() {
		c.fail("after a lost claim answer: lost %v, latest generation %d, adopted %d, protected %v", c.lost, c.latest(), c.stats.adopted, c.protected())
	}
	if o := c.owners[2]; o.host != 0 || c.pair[2] != o.backup {
		c.fail("owner record of generation 2 %s+%s, paired with %s", hostName(o.host), hostName(o.backup), hostName(c.pair[2]))
	}
}

// TestCloneClaimAnswerLostRecordRead: a clone's claim happens but its
// answer is lost; the host reads the owner record again, finds the pair
// its own, and commits the clone as if the answer had come.
func TestCloneClaimAnswerLostRecordRead(t *testing.T) {
	c := newClusterOf(t, 1, rand.New(rand.NewPCG(1, 2)), 3, true)
	c.rerun = "go test ./ft -run '^TestCloneClaimAnswerLostRecordRead$' -v"
	c.loseCloneAnswers = 1
	c.run()
	if c.lost || c.latest() != 2 || c.stats.adopted != 0 || !c.protected() {
		c.fail("after a lost claim answer: lost %v, latest generation %d, adopted %d, protected %v", c.lost, c.latest(), c.stats.adopted, c.protected())
	}
}

func logTrace(t *testing.T, c *cluster) {
	for _, e := range c.trace {
		t.Logf("%8s %s", e.at.Truncate(time.Millisecond), fmt.Sprintf(e.format, e.args...))
	}
}

func traceText(c *cluster) string {
	var b strings.Builder
	for _, e := range c.trace {
		fmt.Fprintf(&b, "%v %s\n", e.at, fmt.Sprintf(e.format, e.args...))
	}
	return b.String()
}

// TestCloneSchedulesDeterministic: a seed makes the same schedule, event
// for event, whatever else runs.
func TestCloneSchedulesDeterministic(t *testing.T) {
	traceOf := func(seed uint64) string {
		c := newCluster(t, seed)
		c.run()
		return traceText(c)
	}
	for seed := uint64(1); seed <= 20; seed++ {
		if a, b := traceOf(seed), traceOf(seed); a != b {
			t.Fatalf("seed %d: two runs differ:\n%s\n---\n%s", seed, a, b)
		}
	}
}
