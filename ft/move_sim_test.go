package ft

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// The move simulator is the cluster simulator (clone_sim_test.go) with an
// operator: schedules of planned moves of the backup, switchovers (moves
// of the primary) and drains, as ftvm move and ftvm drain ask for them,
// with faults at every phase of each. It models what the hosts do around
// their nodes (host/move.go, moveadmin.go, and clone.go's commit):
//
//   - The operator (host.MoveVM, moveVM) reads the VM's state from the
//     storage (the latest owner record and its primary's status), refuses
//     a bad request (a target that is down, draining, already the primary
//     or the backup; a VM that is not running), asks the primary's host,
//     whose answer it waits for up to mControlTimeout (a frozen host
//     answers once it thaws, after the operator gave up, and then carries
//     the move out all the same), and follows the VM until the backup is
//     on the target in a later generation and connected, or the target is
//     the primary (then until protected, or mProtectedWait); a failure a
//     host reports, a failover elsewhere, or mMoveWait end it as failed.
//   - The primary's host (host.move, moveTo) refuses unless its node is
//     primary or alone, the target is not itself, not its backup (a backup
//     move) and not draining, and no move runs. Moving the backup waits
//     until the node can move it (CanMoveBackup, up to mAcceptWait), steps
//     EvMoveBackup, and waits for the planned clone, which the cluster
//     simulator runs as any clone; at its commit the old backup is told to
//     leave (a goodbye "moved" on its channel, which it acts on only if it
//     is still that pair's backup). Moving the primary moves the backup
//     to the target first if it is elsewhere, waits for the new pair (up
//     to mPairWait), then hands over (handOver): the guest pauses (no
//     entries, no outputs) until the backup acknowledged every entry,
//     every held output left, and the backup acknowledged hearing the
//     outputs written (replog.Ack.Out), up to mHandoverTimeout; then, if
//     the channel is up and the node can hand over (CanHandOver), the
//     node steps EvHandedOver (HandingOver), the side says goodbye
//     "handover" and stays paused (nothing leaves it), watching the
//     storage at every step: the backup's claim there, which names it the
//     backup, makes it follow (EvFollow, ActFollow: its VM replays from
//     its paused state, and it dials the new primary, which takes the
//     channel once live; the move is done), another claim halts it; a
//     backup silent for the failure timeout makes it claim (a claim that
//     loses to the backup's, naming it, makes it follow too), and going
//     on alone after a won claim fails the move. A backup that hears the
//     goodbye steps EvHandover, claims at once naming the old primary its
//     backup, and goes live at the end of its log, paired with it.
//   - A drain (DrainVMs) refuses a host that is down, the last live one,
//     or one whose VM has nowhere to go; marks the host draining in the
//     registry (clones avoid it: pickSpare; it loses the mark when it
//     starts again); then, while the VM runs on it, moves its backup to
//     the least loaded other host, or its primary to its backup (or, alone,
//     to such a host); it is done only once the host receives no clone
//     (a draining host refuses a clone at its hello and at its final
//     state) and no latest owner record is on it with the VM's state
//     unknown (drainWait). The operator retries a drain that failed, up
//     to mDrainAttempts times.
//
// Faults, one at a time as in the cluster simulator: at a time, or at a
// phase of a planned move (its clone's phases, as the cluster simulator's,
// and just after its commit) or of a switchover (the guest paused for it;
// the primary handed over, the goodbye in flight; the backup heard it and
// claims; the backup won and goes live or runs alone), against the old
// primary P, the backup B or the move's target S, or the links between
// them: a crash (silent or not), a freeze, a storage outage, a cut link,
// the connections ending, the goodbye lost (the connection reset, or
// silently), the answer of the next claim lost after the claim happened.
// TestMoveSchedules checks that every phase met each of its targets.
//
// Invariants, besides the cluster simulator's (at most one node releasing
// outputs on its own authority, roles only in generations the storage
// gives, nothing a client saw contradicted, the failure detector's rule,
// liveness):
//
//   - a switchover: the primary hands over only with every entry
//     acknowledged and every output written and reported; it emits nothing
//     after; the backup claims for a switchover only once handed the VM in
//     its generation; when it goes live, its log is exactly the one the
//     primary handed over and its replay reaches the outputs the clients
//     saw, no fewer (lost) and none it would write again (repeated);
//   - a VM is never lost by a planned move: its memory goes only when
//     every host holding it crashed, never when a primary handed it over
//     to a backup that did not win its claim, nor when the last host that
//     could go on with it (it holds every entry a client saw an output
//     of) halts;
//   - an operation reported done did what it says (the backup, or the
//     primary, is on the target in the latest generation); one whose
//     target crashed before the point of no return (the storage naming it
//     the backup, or for a switchover the primary) is reported failed, and when
//     only the target was hit it leaves the VM running; every operation
//     ends, and a drain tried again with every fault over succeeds;
//   - a drain reported done leaves the latest generation off its host, and
//     once the schedule settled, its host holds nothing while it is still
//     draining;
//   - liveness: once the last fault healed and the last operation ended,
//     the VM is protected again within cLivenessBound, unless every host
//     holding its memory crashed.
//
// The switchover's wait for the backup's acknowledgements matters only
// when the channel fails at that moment (an ordered channel delivers the
// entries before the goodbye): TestSwitchoverWaitsForTheBackup sets that
// up, which the random schedules hardly do.
//
// A failure prints its seed, the state of every host and the trace;
// -move-seed=N runs one seed alone.

var moveSeedFlag = flag.Uint64("move-seed", 0, "run only this seed of TestMoveSchedules, and print its trace")

// The goodbyes and the claim reason of planned moves, as host/move.go and
// node.go spell them.
const (
	byeMoved         = "moved"
	byeHandover      = "handover"
	reasonSwitchover = "switchover"
	// byeRefused stands for any refusal of a logging channel (host:
	// serveConn's goodbye with its reason).
	byeRefused = "refused"
)

// Timing of moves, scaled down from the hosts' as the clone timeouts are.
const (
	mControlTimeout  = 5 * time.Second // host: control requests (5 s)
	mAcceptWait      = 3 * time.Second // host: moveBackup's wait for the node (cloneTimeout, 2 min)
	mPairWait        = 2 * time.Second // host: moveTo's wait for the new pair (5 s)
	mHandoverTimeout = 2 * time.Second // host: handoverTimeout
	mProtectedWait   = 5 * time.Second // host: protectedWait (20 s)
	mMoveWait        = 20 * time.Second
	mDrainRetry      = time.Second
	mDrainAttempts   = 6
	mDrainWait       = 10 * time.Second // host: drainWait's bound (moveWait)
)

type opKind uint8

const (
	opMoveBackup opKind = iota
	opMovePrimary
	opDrain
	nOpKinds
)

func (k opKind) String() string { return [...]string{"move backup", "move primary", "drain"}[k] }

// opTo names an operation's host by its role when it is issued.
type opTo uint8

const (
	toSpare opTo = iota
	toBackup
	toPrimary
	toAny
)

type drainStage uint8

const (
	dMark  drainStage = iota // the mark is asked for
	dNext                    // the next move off the host
	dMove                    // a move is followed
	dRetry                   // waiting to try again
)

// moveOp is an operator's request: a move (the top-level operation, or a
// drain's) or a drain.
type moveOp struct {
	kind  opKind
	to    opTo
	delay time.Duration // after the operation before it ended (the first's: after the start)

	n        int // its number in the schedule
	target   int // the host it moves to, or drains
	primary  bool
	issuedAt time.Time
	result   string // "" while it runs
	done     bool

	// Following a move: the VM as it was, the host's answer and report.
	vsPrimary  int
	vsGen      uint64
	answered   bool
	answerBy   time.Time
	hostErr    string
	switched   time.Time
	targetDied bool // the target crashed before that
	hitOther   bool // a fault hit a host other than the target, or a link

	// A drain's attempts, and the move it follows.
	stage    drainStage
	attempts int
	retryAt  time.Time
	// waitUntil bounds a drain's wait for a clone the host receives, or
	// for the state of a VM whose latest generation is on it.
	waitUntil time.Time
	sub       *moveOp
	settled   bool // its last attempt began with every fault over
}

type mstage uint8

const (
	msAccept     mstage = iota // waiting for the node to take the move
	msClone                    // the planned clone runs
	msPair                     // waiting for the new pair
	msHandOver                 // the guest paused: waiting to hand over
	msHandedOver               // handed over: waiting for the backup's claim
)

// hostMove is a planned move a primary's host carries out (runner.moveTo).
type hostMove struct {
	op      *moveOp
	to      int
	primary bool
	stage   mstage
	since   time.Time
	until   time.Time
}

func (m *hostMove) String() string {
	what := "backup"
	if m.primary {
		what = "primary"
	}
	return fmt.Sprintf("moving the %s to %s (%v)", what, hostName(m.to), [...]string{"waiting for the node", "cloning", "waiting for the pair", "handing over", "handed over"}[m.stage])
}

// handoverRec is a switchover as it happened: what the primary handed over.
type handoverRec struct {
	from, to          int
	gen               uint64
	at                time.Time
	log               []uint64
	written, produced int
	received          bool
}

// The phases of planned moves and switchovers at which faults strike, and
// their targets.
type mphase uint8

const (
	mpNone mphase = iota
	mpMoveStart
	mpMovePrecopy
	mpMoveFinal
	mpMoveClaim
	mpMoveClaimed
	mpMoveCommitted
	mpHandPause
	mpHandSent
	mpHandRecv
	mpHandLive
	nMPhases
)

func (p mphase) String() string {
	return [...]string{"none", "move: start", "move: pre-copy", "move: final sent", "move: before claim", "move: after claim", "move: after commit",
		"switch: paused", "switch: handed over", "switch: heard", "switch: won"}[p]
}

type mtarget uint8

const (
	mtCrashP mtarget = iota
	mtFreezeP
	mtStorageP
	mtCrashB
	mtFreezeB
	mtStorageB
	mtCrashS
	mtFreezeS
	mtPartitionPB
	mtCutPB
	mtCutBP
	mtPartitionPS
	mtBreakPB
	mtLoseBye
	mtLoseClaim
	nMTargets
)

func (t mtarget) String() string {
	return [...]string{"crash P", "freeze P", "storage P", "crash B", "freeze B", "storage B", "crash S", "freeze S",
		"partition P-B", "cut P->B", "cut B->P", "partition P-S", "P-B connections end", "goodbye lost", "claim answer lost"}[t]
}

// validTargets lists the targets phase p is hit with.
func validTargets(p mphase) []mtarget {
	move := []mtarget{mtCrashP, mtFreezeP, mtStorageP, mtCrashB, mtFreezeB, mtCrashS, mtFreezeS, mtPartitionPB, mtCutPB, mtPartitionPS, mtBreakPB}
	switch p {
	case mpMoveStart, mpMovePrecopy, mpMoveFinal, mpMoveClaimed:
		return move
	case mpMoveClaim:
		return append(move, mtLoseClaim)
	case mpMoveCommitted:
		return append(move, mtLoseBye)
	case mpHandPause:
		return []mtarget{mtCrashP, mtFreezeP, mtStorageP, mtCrashB, mtFreezeB, mtStorageB, mtPartitionPB, mtCutPB, mtCutBP, mtBreakPB}
	case mpHandSent:
		return []mtarget{mtCrashP, mtFreezeP, mtCrashB, mtFreezeB, mtStorageB, mtPartitionPB, mtCutPB, mtBreakPB, mtLoseBye}
	case mpHandRecv:
		return []mtarget{mtCrashB, mtFreezeB, mtStorageB, mtLoseClaim}
	case mpHandLive:
		return []mtarget{mtCrashB, mtFreezeB, mtStorageB}
	}
	return nil
}

// moveSim is a move schedule's operator and what it saw.
type moveSim struct {
	ops       []*moveOp
	cur       int
	nextAt    time.Time
	endedAt   time.Time // when the last operation ended
	handovers []*handoverRec
	stats     moveStats
}

func (m *moveSim) over() bool { return m.cur >= len(m.ops) }

// moveStats adds to a move schedule's cloneStats.
type moveStats struct {
	handovers int
	follows   int              // old primaries that became their new primary's backup
	results   [nOpKinds][2]int // failed, done
	hit       [nMPhases][nMTargets]int
}

func (s *moveStats) add(o moveStats) {
	s.handovers += o.handovers
	s.follows += o.follows
	for k := range s.results {
		for d := range s.results[k] {
			s.results[k][d] += o.results[k][d]
		}
	}
	for p := range s.hit {
		for t := range s.hit[p] {
			s.hit[p][t] += o.hit[p][t]
		}
	}
}

// newMoveCluster sets up a seed's move schedule: three or four hosts, A
// primary and B backup (or, one in six, A alone), one or two operations
// and up to two faults, mostly at the phases the first operation goes
// through.
func newMoveCluster(t testing.TB, seed uint64) *cluster {
	rng := rand.New(rand.NewPCG(seed, seed^0x2545f4914f6cdd1d))
	n := 3 + rng.IntN(2)
	alone := rng.IntN(6) == 0
	c := newClusterOf(t, seed, rng, n, alone)
	c.rerun = fmt.Sprintf("go test ./ft -run TestMoveSchedules -move-seed=%d -v", seed)
	c.mv = &moveSim{nextAt: c.now.Add(time.Duration(20+rng.IntN(100)) * cStep)}
	// One drain at most: with three hosts, a second would leave no spare.
	drained := false
	for i := range 1 + rng.IntN(3)/2 {
		op := &moveOp{delay: time.Duration(30+rng.IntN(150)) * cStep}
		switch r := rng.IntN(20); {
		case r < 7:
			op.kind, op.to = opMovePrimary, toBackup
		case r < 13:
			op.kind, op.to = opMoveBackup, toSpare
			if rng.IntN(8) == 0 {
				op.to = toAny // mostly refused
			}
		case r < 16:
			op.kind, op.to = opMovePrimary, toSpare
		default:
			op.kind = opDrain
			op.to = [...]opTo{toPrimary, toPrimary, toBackup, toBackup, toSpare}[rng.IntN(5)]
			if drained {
				op.kind, op.to = opMovePrimary, toBackup
			}
			drained = true
		}
		if i == 0 {
			op.delay = 0
		}
		c.mv.ops = append(c.mv.ops, op)
	}
	first := c.mv.ops[0]
	var phases []mphase
	switch {
	case first.kind == opMoveBackup || first.kind == opDrain && first.to != toPrimary:
		phases = []mphase{mpMoveStart, mpMovePrecopy, mpMoveFinal, mpMoveClaim, mpMoveClaimed, mpMoveCommitted}
	case first.kind == opMovePrimary && first.to == toBackup && !alone:
		phases = []mphase{mpHandPause, mpHandSent, mpHandRecv, mpHandLive}
	default:
		for p := mpMoveStart; p < nMPhases; p++ {
			phases = append(phases, p)
		}
	}
	for range rng.IntN(3) {
		f := &cfault{dur: time.Duration(5+rng.IntN(196)) * cStep, silent: rng.IntN(4) == 0}
		if rng.IntN(5) == 0 {
			f.phase = phTime
			f.after = time.Duration(10+rng.IntN(300)) * cStep
			f.kind = fkind(rng.IntN(int(nFaultKinds)))
			f.a = rng.IntN(n)
			f.b = (f.a + 1 + rng.IntN(n-1)) % n
		} else {
			f.mp = phases[rng.IntN(len(phases))]
			ts := validTargets(f.mp)
			f.mt = ts[rng.IntN(len(ts))]
			f.offset = rng.IntN(40)
			if f.mp == mpMoveCommitted || f.mp == mpHandLive {
				f.offset = rng.IntN(8)
			}
			if f.mt == mtLoseBye {
				f.offset = 0 // the goodbye is in flight for a step or three
			}
		}
		c.faults = append(c.faults, f)
	}
	var b strings.Builder
	for i, op := range c.mv.ops {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%v to the %v", op.kind, [...]string{"a spare", "backup", "primary", "any host"}[op.to])
	}
	c.logf("operations: %s", b.String())
	return c
}

func (c *cluster) alive(i int) bool { return c.now.Sub(c.hosts[i].regSeen) <= cAliveWindow }

// vmStatus is a host's status of the VM on the storage (runner.writeStatus):
// its node's role and generation, whether a backup is connected, and when
// it was written.
type vmStatus struct {
	role      Role
	gen       uint64
	protected bool
	at        time.Time
}

// writeStatus writes h's status, if it reaches the storage.
func (c *cluster) writeStatus(h *chost) {
	if n := h.node; n != nil && h.storageUp {
		h.status = vmStatus{role: n.Role(), gen: n.Generation(), protected: n.Role() == Primary && h.pairConn != 0 && h.backupHeard && !h.ended, at: c.now}
	}
}

// vmView is the VM as the operator reads it from the storage: the latest
// owner record, and its primary's status in that generation (host.VMState):
// a status that went stale, or a host whose registry entry did, is not
// running.
type vmView struct {
	gen                uint64
	primary, backup    int
	running, protected bool
}

func (c *cluster) view() vmView {
	g := c.latest()
	o := c.owners[g]
	v := vmView{gen: g, primary: o.host, backup: o.backup}
	st := c.hosts[o.host].status
	if st.gen != g || c.now.Sub(st.at) > cAliveWindow || !c.alive(o.host) {
		return v
	}
	switch st.role {
	case Primary:
		v.running, v.protected = true, st.protected
	case Alone:
		v.running, v.backup = true, -1
	}
	return v
}

// resolve names the host an operation goes to, by its role now.
func (c *cluster) resolve(to opTo, vs vmView) int {
	if to == toBackup && vs.backup >= 0 {
		return vs.backup
	}
	switch to {
	case toPrimary:
		return vs.primary
	case toAny:
		return c.rng.IntN(len(c.hosts))
	}
	var spares []int
	for _, h := range c.hosts {
		if c.alive(h.i) && !h.draining && h.i != vs.primary && h.i != vs.backup {
			spares = append(spares, h.i)
		}
	}
	if len(spares) == 0 {
		return (vs.primary + 1 + c.rng.IntN(len(c.hosts)-1)) % len(c.hosts)
	}
	return spares[c.rng.IntN(len(spares))]
}

// operatorStep issues the schedule's operations one after the other and
// follows each until it ends.
func (c *cluster) operatorStep() {
	m := c.mv
	if m.over() {
		return
	}
	op := m.ops[m.cur]
	switch {
	case op.issuedAt.IsZero():
		if c.now.Before(m.nextAt) {
			return
		}
		op.n, op.issuedAt = m.cur+1, c.now
		if op.kind == opDrain {
			vs := c.view()
			op.target = c.resolve(op.to, vs)
			c.logf("operator: drain %s (op %d)", hostName(op.target), op.n)
			c.drainAttempt(op)
		} else {
			c.issueMove(op)
		}
	case op.kind == opDrain:
		c.drainStep(op)
	default:
		c.followMove(op)
	}
	if op.result != "" {
		m.stats.results[op.kind][b2i(op.done)]++
		m.cur++
		m.endedAt = c.now
		if m.cur < len(m.ops) {
			m.nextAt = c.now.Add(m.ops[m.cur].delay)
		}
	}
}

// issueMove is host.MoveVM: the request's checks, then moveVM.
func (c *cluster) issueMove(op *moveOp) {
	vs := c.view()
	op.primary = op.kind == opMovePrimary
	op.target = c.resolve(op.to, vs)
	to := op.target
	what := "backup"
	if op.primary {
		what = "primary"
	}
	c.logf("operator: move the %s to %s (op %d)", what, hostName(to), op.n)
	switch {
	case !c.alive(to):
		c.endOp(op, false, "refused: the target is down")
	case c.hosts[to].draining:
		c.endOp(op, false, "refused: the target is draining")
	case !vs.running:
		c.endOp(op, false, "refused: the vm is not running")
	case op.primary && vs.primary == to:
		c.endOp(op, false, "refused: already the primary")
	case !op.primary && vs.primary == to:
		c.endOp(op, false, "refused: the target is the primary")
	case !op.primary && vs.backup == to:
		c.endOp(op, false, "refused: already the backup")
	default:
		c.moveVM(op, vs)
	}
}

// moveVM asks the primary's host for the move.
func (c *cluster) moveVM(op *moveOp, vs vmView) {
	if !c.alive(vs.primary) {
		c.endOp(op, false, "the primary's host is down")
		return
	}
	op.vsPrimary, op.vsGen = vs.primary, vs.gen
	c.request(vs.primary, op)
}

// request sends a control request to host hi: refused by a crashed
// process; a frozen one reads it when it thaws.
func (c *cluster) request(hi int, op *moveOp) {
	h := c.hosts[hi]
	if h.crashed {
		c.endOrRetry(op, "control: connection refused")
		return
	}
	op.answered, op.hostErr, op.answerBy = false, "", c.now.Add(mControlTimeout)
	h.requests = append(h.requests, op)
}

// followMove follows a move as moveVM does, until it ends.
func (c *cluster) followMove(op *moveOp) {
	if !op.answered {
		if c.now.After(op.answerBy) {
			c.endOp(op, false, "control: no answer")
		}
		return
	}
	if op.hostErr != "" {
		c.endOp(op, false, op.hostErr)
		return
	}
	vs := c.view()
	switch {
	case c.lost:
		c.endOp(op, false, "the vm was lost")
		return
	case vs.primary != op.vsPrimary && vs.primary != op.target:
		c.endOp(op, false, fmt.Sprintf("failed over to %s during the move", hostName(vs.primary)))
		return
	case !op.primary && vs.backup == op.target && vs.gen > op.vsGen && vs.protected:
		c.endOp(op, true, "done")
		return
	case op.primary && vs.primary == op.target && vs.running:
		if op.switched.IsZero() {
			op.switched = c.now
		}
		if vs.protected {
			c.endOp(op, true, "done")
			return
		}
		if c.now.Sub(op.switched) > mProtectedWait {
			c.endOp(op, true, "done, running alone")
			return
		}
	}
	if c.now.Sub(op.issuedAt) > mMoveWait {
		c.endOp(op, false, "the move did not finish")
	}
}

// endOp ends an operation (a drain's move, or one of the schedule's) and
// checks that what it reports is so.
func (c *cluster) endOp(op *moveOp, done bool, result string) {
	op.done, op.result = done, result
	c.logf("operator: op %d (%v to %s) ends: %s", op.n, op.kind, hostName(op.target), result)
	if !done && op.kind != opDrain && op.targetDied && !op.hitOther {
		// Only the target was hit: the VM runs on where it was.
		if vs := c.view(); !vs.running {
			c.fail("op %d failed with only its target %s hit, and the vm is not running (primary %s, generation %d)", op.n, hostName(op.target), hostName(vs.primary), vs.gen)
		}
	}
	if !done {
		return
	}
	vs := c.view()
	t := c.hosts[op.target]
	switch op.kind {
	case opMoveBackup:
		// The primary's status says protected once the new backup
		// acknowledged something after the commit (a target that died
		// before then is protected only by a later clone onto it,
		// started again); it may have crashed since, and the status
		// may outlive its host by a little.
		p := c.hosts[vs.primary]
		if c.pair[vs.gen] != op.target || vs.gen <= op.vsGen || !p.crashed && (p.node.Role() != Primary || p.node.Peer() != t.name) {
			c.fail("op %d reported the backup moved to %s, which is not the backup of the latest generation %d: %s", op.n, t.name, vs.gen, c.describe(p))
		}
		if op.targetDied && !t.holds() {
			c.fail("op %d reported done, but its target %s crashed before the claim and holds nothing: %s", op.n, t.name, c.describe(t))
		}
	case opMovePrimary:
		if n := t.node; vs.primary != op.target || !t.crashed && (n == nil || n.Generation() != vs.gen || n.Role() != Primary && n.Role() != Alone) {
			c.fail("op %d reported the primary moved to %s, which does not run the latest generation %d: %s", op.n, t.name, vs.gen, c.describe(t))
		}
	case opDrain:
		// A stale node may stay until it learns it lost (moveEnd checks
		// the end); the latest generation must not be on the host.
		receiving := false
		for _, r := range t.recvs {
			receiving = receiving || r.gen == vs.gen
		}
		// Clones on their way to the host are refused there (it is
		// draining); one it receives must have ended.
		incoming := len(t.recvs) > 0
		o := c.owners[vs.gen]
		switch on := o.host == op.target && t.holds() || c.pair[vs.gen] == op.target && (t.holds() || receiving); {
		case incoming:
			c.fail("op %d reported %s drained, with a clone onto it under way: %s", op.n, t.name, c.describe(t))
		case on:
			c.fail("op %d reported %s drained, but it is in the latest generation %d: %s", op.n, t.name, vs.gen, c.describe(t))
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// endOrRetry ends a move, or fails a drain's attempt.
func (c *cluster) endOrRetry(op *moveOp, why string) {
	if op.kind == opDrain {
		c.drainFailed(op, why)
		return
	}
	c.endOp(op, false, why)
}

// drainAttempt starts one attempt of DrainVMs.
func (c *cluster) drainAttempt(op *moveOp) {
	op.attempts++
	op.settled = c.cur >= len(c.faults)
	x := op.target
	vs := c.view()
	others := 0
	for _, h := range c.hosts {
		if c.alive(h.i) && !h.draining && h.i != x {
			others++
		}
	}
	op.stage = dMark
	switch {
	case !c.alive(x):
		c.drainFailed(op, "refused: the host is down")
	case others == 0:
		c.drainFailed(op, "refused: the last live host")
	case vs.running && (vs.primary == x || vs.backup == x) && c.drainTarget(vs, x) < 0:
		c.drainFailed(op, "refused: the vm has nowhere to go")
	default:
		c.request(x, op)
	}
}

// drainTarget is host.drainTarget: where the VM goes off host x.
func (c *cluster) drainTarget(vs vmView, x int) int {
	if vs.primary == x && vs.backup >= 0 && c.alive(vs.backup) && !c.hosts[vs.backup].draining && vs.backup != x {
		return vs.backup
	}
	// The least loaded: with one VM, any host that is neither its primary
	// nor its backup; by name, as the sort is stable.
	for _, h := range c.hosts {
		if c.alive(h.i) && !h.draining && h.i != x && h.i != vs.primary && h.i != vs.backup {
			return h.i
		}
	}
	return -1
}

func (c *cluster) drainStep(op *moveOp) {
	switch op.stage {
	case dRetry:
		if !c.now.Before(op.retryAt) {
			c.drainAttempt(op)
		}
	case dMark:
		if !op.answered {
			if c.now.After(op.answerBy) {
				c.drainFailed(op, "control: no answer")
			}
			return
		}
		if op.hostErr != "" {
			c.drainFailed(op, op.hostErr)
			return
		}
		op.stage = dNext
		c.drainNext(op)
	case dNext:
		c.drainNext(op)
	case dMove:
		c.followMove(op.sub)
		if op.sub.result == "" {
			return
		}
		if !op.sub.done {
			c.drainFailed(op, op.sub.result)
			return
		}
		op.stage = dNext
	}
}

// drainNext moves the VM off the drained host if it runs there, or ends
// the drain.
func (c *cluster) drainNext(op *moveOp) {
	x := op.target
	vs := c.view()
	if !vs.running || vs.primary != x && vs.backup != x {
		// As host.drainWait: not while the host receives a clone, nor
		// while the latest owner record is on it and the VM's status
		// does not say how it runs.
		why := ""
		switch o := c.owners[vs.gen]; {
		case c.alive(x) && len(c.hosts[x].recvs) > 0:
			why = "it receives a clone"
		case !vs.running && !c.lost && (o.host == x || o.backup == x):
			why = "the latest generation is on it, its state not known"
		}
		if why != "" {
			if op.waitUntil.IsZero() {
				op.waitUntil = c.now.Add(mDrainWait)
			}
			if c.now.After(op.waitUntil) {
				c.drainFailed(op, "still "+why)
			}
			return
		}
		c.endOp(op, true, "drained")
		return
	}
	op.waitUntil = time.Time{}
	to := c.drainTarget(vs, x)
	if to < 0 {
		c.drainFailed(op, "no other live host")
		return
	}
	sub := &moveOp{kind: opMoveBackup, n: op.n, target: to, primary: vs.primary == x, issuedAt: c.now}
	if sub.primary {
		sub.kind = opMovePrimary
	}
	op.sub, op.stage = sub, dMove
	c.logf("operator: drain %s: move the %v to %s", hostName(x), sub.kind, hostName(to))
	c.moveVM(sub, vs)
}

func (c *cluster) drainFailed(op *moveOp, why string) {
	c.logf("operator: drain %s, attempt %d: %s", hostName(op.target), op.attempts, why)
	if op.attempts >= mDrainAttempts {
		if op.settled {
			c.fail("drain of %s failed with every fault over: %s", hostName(op.target), why)
		}
		c.endOp(op, false, why)
		return
	}
	op.stage, op.retryAt, op.sub = dRetry, c.now.Add(mDrainRetry), nil
}

// faulted notes what a fault hit, for the operations under way.
func (c *cluster) faulted(k fkind, x, y int) {
	m := c.mv
	if m.over() || m.ops[m.cur].issuedAt.IsZero() {
		return
	}
	for op := m.ops[m.cur]; op != nil; op = op.sub {
		if op.kind == opDrain {
			continue
		}
		// Past the point of no return: the storage names the target
		// the backup, or (a switchover) the primary.
		g := c.latest()
		committed := g > op.vsGen && (c.pair[g] == op.target || c.owners[g].host == op.target)
		if k == fCrash && x == op.target && !committed {
			op.targetDied = true
		}
		if x != op.target || k != fCrash && k != fFreeze && k != fStorage {
			op.hitOther = true
		}
	}
}

// moveStep is a host's part: the operator's requests, and the planned
// move its runner carries out.
func (c *cluster) moveStep(h *chost) {
	for len(h.requests) > 0 {
		op := h.requests[0]
		h.requests = h.requests[1:]
		c.serve(h, op)
	}
	if h.move != nil {
		c.hostMoveStep(h)
	}
}

// serve answers a control request: a drain's mark, or a move (host.move).
func (c *cluster) serve(h *chost, op *moveOp) {
	op.answered = true
	if op.kind == opDrain {
		if !h.storageUp {
			op.hostErr = "the registry entry could not be written"
			return
		}
		h.draining = true
		c.logf("%s is draining", h.name)
		return
	}
	n := h.node
	why := ""
	switch {
	case n == nil || n.Role() == Halted:
		why = "this host does not run the vm"
	case n.Role() != Primary && n.Role() != Alone:
		why = fmt.Sprintf("this host is the vm's %v", n.Role())
	case op.target == h.i:
		why = "the target is this host"
	case !op.primary && n.Role() == Primary && hostIndex(n.Peer()) == op.target:
		why = "already the backup"
	case c.hosts[op.target].draining:
		why = "the target is draining"
	case h.move != nil:
		why = "a move is in progress"
	}
	if why != "" {
		c.logf("%s refuses the move to %s: %s", h.name, hostName(op.target), why)
		op.hostErr = "refused: " + why
		return
	}
	h.move = &hostMove{op: op, to: op.target, primary: op.primary}
	if hostIndex(n.Peer()) != op.target {
		c.setStage(h.move, msAccept, mAcceptWait)
		return
	}
	c.switchover(h)
}

func (c *cluster) setStage(m *hostMove, s mstage, wait time.Duration) {
	m.stage, m.since, m.until = s, c.now, c.now.Add(wait)
}

func (c *cluster) hostMoveStep(h *chost) {
	m, n := h.move, h.node
	if m.stage == msHandedOver && n != nil {
		// As runner.switchover: the storage decides.
		switch n.Role() {
		case Halted:
			c.hostMoveDone(h, "handed the primary over")
		case Backup:
			c.hostMoveDone(h, "handed the primary over, and follows as its backup")
		case Alone:
			c.hostMoveFailed(h, fmt.Sprintf("%s did not take over: the vm goes on here", hostName(m.to)))
		}
		return
	}
	if n == nil || n.Role() == Halted {
		c.hostMoveFailed(h, "the runner ended")
		return
	}
	switch m.stage {
	case msAccept:
		if n.CanMoveBackup() {
			// As moveBackup: a backup already on the target (a clone
			// that restored redundancy picked it meanwhile) is the move
			// done; a move the node does not take fails.
			if n.Role() == Primary && hostIndex(n.Peer()) == m.to {
				c.plannedDoneAt(h, m)
				return
			}
			c.setStage(m, msClone, 0)
			c.step1(h, Event{Kind: EvMoveBackup, Peer: hostName(m.to)})
			if !n.Cloning() && h.move == m {
				c.hostMoveFailed(h, "the node did not take the move")
			}
		} else if c.now.After(m.until) {
			c.hostMoveFailed(h, "a move or a clone of this vm is in progress")
		}
	case msPair:
		if n.Role() == Primary && hostIndex(n.Peer()) == m.to {
			c.switchover(h)
		} else if c.now.After(m.until) {
			c.hostMoveFailed(h, "the new pair did not form")
		}
	case msHandOver:
		c.handOver(h)
	}
}

// plannedDoneAt is a move whose backup is on its target already.
func (c *cluster) plannedDoneAt(h *chost, m *hostMove) {
	if !m.primary {
		c.hostMoveDone(h, "the backup is on the target already")
		return
	}
	c.setStage(m, msPair, mPairWait)
}

// plannedDone is the outcome of the planned clone a move waits for.
func (c *cluster) plannedDone(h *chost, ok bool, why string) {
	m := h.move
	if m == nil || m.stage != msClone {
		return
	}
	switch {
	case !ok:
		c.hostMoveFailed(h, why)
	case !m.primary:
		c.hostMoveDone(h, "moved the backup")
	default:
		c.setStage(m, msPair, mPairWait)
	}
}

// switchover asks for the handover, at the guest's next pause: at once.
func (c *cluster) switchover(h *chost) {
	m, n := h.move, h.node
	if h.vm != vmLive || n.Role() != Primary || hostIndex(n.Peer()) != m.to {
		c.hostMoveFailed(h, fmt.Sprintf("%s is not the backup", hostName(m.to)))
		return
	}
	c.setStage(m, msHandOver, mHandoverTimeout)
	c.logf("%s pauses its guest to hand the vm over to %s", h.name, hostName(m.to))
}

// handOver is primarySide.handOver, at each step of the pause.
func (c *cluster) handOver(h *chost) {
	m, n := h.move, h.node
	if h.acked < uint64(len(h.log)) || len(h.held) > 0 || h.ackedOut != h.written {
		if c.now.After(m.until) {
			c.hostMoveFailed(h, fmt.Sprintf("not handed over within %v: entries acknowledged %d of %d, %d outputs held, written %d heard %d",
				mHandoverTimeout, h.acked, len(h.log), len(h.held), h.written, h.ackedOut))
		}
		return
	}
	if h.pairConn == 0 || h.ended {
		c.hostMoveFailed(h, "the logging channel is down")
		return
	}
	if !n.CanHandOver() {
		c.hostMoveFailed(h, "the pair is failing over or cloning")
		return
	}
	b, g := hostIndex(n.Peer()), n.Generation()
	c.step1(h, Event{Kind: EvHandedOver})
	if n.Role() != HandingOver {
		c.fail("%s handed over but its node is %v", h.name, n.Role())
	}
	rec := &handoverRec{from: h.i, to: b, gen: g, at: c.now, log: h.log[:len(h.log):len(h.log)], written: h.written, produced: h.produced}
	c.mv.handovers = append(c.mv.handovers, rec)
	c.mv.stats.handovers++
	if rec.written != rec.produced {
		c.fail("%s handed over with %d outputs produced, %d written", h.name, rec.produced, rec.written)
	}
	// Nothing more leaves this side, its guest paused, until the backup's
	// claim shows on the storage (it halts) or the backup falls silent
	// (it claims, and goes on alone if it wins); the backup hears the
	// goodbye.
	c.logf("%s hands the vm over to %s (entries through %d, %d outputs written)", h.name, hostName(b), len(h.log), h.written)
	c.send(h.i, b, cmsg{kind: kBye, conn: h.pairConn, gen: g, bye: byeHandover})
	h.pairConn = 0
	c.setStage(m, msHandedOver, 0)
}

func (c *cluster) hostMoveDone(h *chost, what string) {
	c.logf("%s: %s to %s", h.name, what, hostName(h.move.to))
	h.move = nil
}

func (c *cluster) hostMoveFailed(h *chost, why string) {
	m := h.move
	h.move = nil
	c.logf("%s: move to %s failed: %s", h.name, hostName(m.to), why)
	if m.op.result == "" {
		m.op.hostErr = fmt.Sprintf("move to %s failed: %s", hostName(m.to), why)
	}
}

// handleBye is a backup's reading of its primary's goodbye.
func (c *cluster) handleBye(h *chost, m cmsg) {
	if !h.pairs(Backup, m.from, m.gen, m.conn) {
		return
	}
	switch m.bye {
	case byeRefused:
		// Not (yet) the primary of that pair: it dials again.
		h.pairConn, h.joinAt = 0, c.now.Add(5*cStep)
	case byeMoved:
		// The primary sends it at a commit only: the storage gives the
		// next generation to it and another backup.
		if o, b := c.owner(m.gen + 1); o.host != m.from || b == h.i || b < 0 {
			c.fail("%s told to leave by %s, but generation %d is %s's, paired with %s", h.name, hostName(m.from), m.gen+1, hostName(o.host), hostName(b))
		}
		c.logf("%s leaves: a clone replaced it as %s's backup", h.name, hostName(m.from))
		h.node, h.origin = nil, ""
		h.vm, h.log, h.held, h.open, h.acked, h.pairConn, h.goingLive, h.claimGen = vmNone, nil, nil, false, 0, 0, false, 0
	case byeHandover:
		c.logf("%s hears that %s handed the vm over", h.name, hostName(m.from))
		h.handedIn = m.gen
		if r := c.handover(m.from, h.i, m.gen); r != nil {
			r.received = true
		}
		c.step1(h, Event{Kind: EvHandover})
	}
}

// lostBy checks, when the VM has just been lost (no host holds it), that
// no planned move lost it: every copy failed, rather than a primary gave
// its own up to a backup that never took over.
func (c *cluster) lostBy() {
	if n := len(c.mv.handovers); n > 0 {
		r := c.mv.handovers[n-1]
		if (c.latest() <= r.gen || c.owners[r.gen+1].host != r.to) && !c.hosts[r.from].crashed {
			c.fail("the vm is lost: %s handed it over to %s in generation %d, which did not win its claim, and %s has not crashed", hostName(r.from), hostName(r.to), r.gen, hostName(r.from))
		}
	}
}

// haltLoses checks a halt of h for generation gen: when h is the last
// host that holds the VM, and could have gone on with it (it holds every
// entry a client saw an output of), its halt loses the VM.
func (c *cluster) haltLoses(h *chost, gen uint64) {
	for _, x := range c.hosts {
		if x != h && !x.crashed && (x.holds() || len(x.recvs) > 0) {
			return
		}
	}
	if !isPrefix(c.seen, h.log) {
		return // stale: it could not have gone on
	}
	if r := c.handover(h.i, c.owners[gen].host, gen-1); r != nil {
		// It handed the VM over and its backup won: the VM is the new
		// primary's now, which may have emitted outputs past it.
		return
	}
	c.fail("the vm is lost: %s halts for generation %d, the last host holding it, though it holds every entry clients saw", h.name, gen)
}

// handover returns the switchover from -> to in generation gen, if any.
func (c *cluster) handover(from, to int, gen uint64) *handoverRec {
	if c.mv == nil {
		return nil
	}
	for _, r := range c.mv.handovers {
		if r.from == from && r.to == to && r.gen == gen {
			return r
		}
	}
	return nil
}

// checkSwitchoverClaim: a claim for a switchover comes only from a backup
// handed the VM over in its generation, for the next one.
func (c *cluster) checkSwitchoverClaim(h *chost, gen uint64) {
	g := h.node.Generation()
	if h.handedIn != g || gen != g+1 || c.handover(hostIndex(h.node.Peer()), h.i, g) == nil {
		c.fail("%s claims generation %d for a switchover, handed the vm over in generation %d (it is in %d)", h.name, gen, h.handedIn, g)
	}
}

// checkContinuity: a backup going live after its primary handed it over
// continues exactly where the primary stopped. With the same log its
// replay reaches the same outputs (the primary paused at a call without
// an entry, and the guest is deterministic); it writes again those beyond
// the counts it heard.
func (c *cluster) checkContinuity(h *chost) {
	g := h.node.Generation()
	for _, r := range c.mv.handovers {
		if r.to != h.i || r.gen+1 != g {
			continue
		}
		switch {
		case len(h.log) != len(r.log) || !isPrefix(r.log, h.log):
			c.fail("%s goes live after a switchover with %d entries; %s handed over with %d", h.name, len(h.log), hostName(r.from), len(r.log))
		case h.heardOut != r.written:
			c.fail("%s goes live after a switchover and writes outputs %d to %d again: clients saw them (it heard %d written)", h.name, h.heardOut+1, r.written, h.heardOut)
		}
		h.produced, h.written = r.produced, r.produced
	}
}

// loseBye loses a goodbye in flight from x to y: the connection resets
// under it, or (silent) it is just gone.
func (c *cluster) loseBye(x, y int, silent bool) {
	drop := func(ms []cmsg) ([]cmsg, *cmsg) {
		for i := range ms {
			if m := ms[i]; m.kind == kBye && m.from == x {
				return append(ms[:i], ms[i+1:]...), &m
			}
		}
		return ms, nil
	}
	var m *cmsg
	if c.hosts[y].inbox, m = drop(c.hosts[y].inbox); m == nil {
		c.stalled[x][y], m = drop(c.stalled[x][y])
	}
	if m == nil {
		c.logf("no goodbye from %s to %s in flight to lose", hostName(x), hostName(y))
		return
	}
	if silent {
		c.logf("the goodbye %q from %s to %s is lost", m.bye, hostName(x), hostName(y))
		return
	}
	c.logf("the goodbye %q from %s to %s is lost: the connection resets", m.bye, hostName(x), hostName(y))
	c.send(x, y, cmsg{kind: kEnd, conn: m.conn, gen: m.gen})
}

// moveFaultStep injects a fault at a move's or a switchover's phase.
func (c *cluster) moveFaultStep(f *cfault) {
	p, b, s, ok := c.movePhaseNow(f)
	if !ok {
		if c.lost || c.mv.over() || c.now.Sub(f.armedAt) > 10*time.Second {
			c.giveUp(fmt.Sprintf("no move reached %v with a %v", f.mp, f.mt))
		}
		return
	}
	c.stats.phaseFaults++
	c.mv.stats.hit[f.mp][f.mt]++
	c.logf("fault at %q: %v (P %s, B %s, S %s)", f.mp, f.mt, hostName(p), hostName(b), hostName(s))
	// What it does, and to whom: P, B or S, and the link's other end.
	k := [...]fkind{fCrash, fFreeze, fStorage, fCrash, fFreeze, fStorage, fCrash, fFreeze,
		fPartition, fCut, fCut, fPartition, fBreak, fLoseBye, fLoseClaim}[f.mt]
	x, y := p, b
	switch f.mt {
	case mtCrashB, mtFreezeB, mtStorageB, mtCutBP:
		x, y = b, p
	case mtCrashS, mtFreezeS:
		x, y = s, p
	case mtPartitionPS:
		y = s
	case mtLoseClaim:
		if f.mp == mpHandRecv {
			x, y = b, p
		}
	}
	c.inject(f, k, x, y)
}

// movePhaseNow reports whether a planned move or a switchover is at fault
// f's phase now, with its primary, backup and target (-1 if none).
func (c *cluster) movePhaseNow(f *cfault) (p, b, s int, ok bool) {
	p, b, s = -1, -1, -1
	switch f.mp {
	case mpMoveStart, mpMovePrecopy, mpMoveFinal, mpMoveClaim, mpMoveClaimed:
		want := [...]jobPhase{mpMoveStart: jStart, mpMovePrecopy: jPrecopy, mpMoveFinal: jFinal, mpMoveClaim: jRestored, mpMoveClaimed: jClaimed}[f.mp]
		for _, h := range c.hosts {
			j := h.job
			if h.crashed || j == nil || !j.planned || j.phase != want {
				continue
			}
			if want == jPrecopy && c.now.Before(j.since.Add(time.Duration(min(f.offset, j.need-1))*cStep)) {
				continue
			}
			p, s, ok = h.i, j.target, true
			if h.node.Role() == Primary {
				b = hostIndex(h.node.Peer())
			}
			break
		}
	case mpMoveCommitted:
		m := c.commit
		ok = m.planned && m.id != 0 && !m.at.Before(f.armedAt) && !c.now.Before(m.at.Add(time.Duration(f.offset)*cStep))
		p, b, s = m.p, m.old, m.s
	case mpHandPause:
		for _, h := range c.hosts {
			if m := h.move; !h.crashed && m != nil && m.stage == msHandOver && !c.now.Before(m.since.Add(time.Duration(f.offset%5)*cStep)) {
				p, b, ok = h.i, m.to, true
				break
			}
		}
	case mpHandSent, mpHandRecv, mpHandLive:
		if len(c.mv.handovers) == 0 {
			break
		}
		r := c.mv.handovers[len(c.mv.handovers)-1]
		bh := c.hosts[r.to]
		if r.at.Before(f.armedAt) || bh.crashed || bh.node == nil {
			break
		}
		p, b = r.from, r.to
		n := bh.node
		switch f.mp {
		case mpHandSent:
			ok = !r.received && r.at.Before(c.now) && !c.now.After(r.at.Add(3*cStep))
		case mpHandRecv:
			ok = r.received && n.Role() == Backup && n.Claiming() && n.Generation() == r.gen
		case mpHandLive:
			// Going live, or live before the old primary joined it (or,
			// had the old primary not followed, alone).
			ok = n.Generation() == r.gen+1 && (bh.goingLive || n.Role() == Alone || n.Role() == Primary && bh.pairConn == 0) && (bh.job == nil || bh.job.phase < jClaimed)
		}
	}
	if !ok {
		return p, b, s, false
	}
	switch f.mt {
	case mtCrashB, mtFreezeB, mtStorageB, mtPartitionPB, mtCutPB, mtCutBP, mtBreakPB, mtLoseBye:
		ok = b >= 0
	case mtCrashS, mtFreezeS, mtPartitionPS:
		ok = s >= 0
	}
	return p, b, s, ok
}

// moveEnd checks, once the schedule settled and the VM is protected
// again, that each drained host that still is draining holds nothing.
func (c *cluster) moveEnd() {
	for _, op := range c.mv.ops {
		if op.kind != opDrain || !op.done {
			continue
		}
		if h := c.hosts[op.target]; h.draining && (h.holds() || len(h.recvs) > 0) {
			c.fail("%s was drained and still is, but holds the vm: %s", h.name, c.describe(h))
		}
	}
}

// moveRun is a move schedule's statistics.
type moveRun struct {
	cl cloneStats
	mv moveStats
}

func (r *moveRun) add(o moveRun) {
	r.cl.add(o.cl)
	r.mv.add(o.mv)
}

func runMoveSchedule(t testing.TB, seed uint64) moveRun {
	c := newMoveCluster(t, seed)
	c.run()
	c.stats.schedules = 1
	return moveRun{c.stats, c.mv.stats}
}

// TestMoveSchedules runs eight thousand seeded move schedules (eight
// hundred with -short), in parallel shards.
func TestMoveSchedules(t *testing.T) {
	if *moveSeedFlag != 0 {
		c := newMoveCluster(t, *moveSeedFlag)
		c.run()
		logTrace(t, c)
		return
	}
	n := uint64(8000)
	if testing.Short() {
		n = 800
	}
	r := runShards(t, n, runMoveSchedule)
	if t.Failed() {
		return
	}
	total, cl := r.mv, r.cl
	var b strings.Builder
	for k := range nOpKinds {
		fmt.Fprintf(&b, "; %v: %d done, %d failed", k, total.results[k][1], total.results[k][0])
	}
	t.Logf("%d schedules: %d switchovers (%d old primaries followed as backups), %d clones committed (%d failed); %d phase faults (%d given up), %d time faults; VM lost in %d; protected again at most %v after the last fault or operation (seed %d)%s",
		cl.schedules, total.handovers, total.follows, cl.commits, cl.cloneFails, cl.phaseFaults, cl.givenUp, cl.timeFaults, cl.lost, cl.maxProtect, cl.maxSeed, b.String())
	var phases, targets []string
	for ph := mpMoveStart; ph < nMPhases; ph++ {
		phases = append(phases, ph.String())
	}
	for tg := range nMTargets {
		targets = append(targets, tg.String())
	}
	t.Logf("faults at each phase:\n%s", faultTable(t, phases, targets, func(p, tg int) (int, bool) {
		ph := mpMoveStart + mphase(p)
		return total.hit[ph][tg], slices.Contains(validTargets(ph), mtarget(tg))
	}))
}

// moveScenario runs a cluster of n hosts, A primary and B backup, with
// the given operations (the first at 200 ms and its delay) and faults, and
// returns it once it is protected again (or lost, and quiet).
func moveScenario(t *testing.T, n int, ops []*moveOp, faults ...*cfault) *cluster {
	t.Helper()
	c := newClusterOf(t, 1, rand.New(rand.NewPCG(1, 2)), n, false)
	c.rerun = fmt.Sprintf("go test ./ft -run '^%s$' -v", t.Name())
	c.mv = &moveSim{ops: ops, nextAt: c.now.Add(200*time.Millisecond + ops[0].delay)}
	c.faults = faults
	c.run()
	return c
}

// TestSwitchover: the primary hands the VM over to its backup, which goes
// live exactly where it stopped, paired with the old primary: the roles
// swap in one generation, with no clone.
func TestSwitchover(t *testing.T) {
	op := &moveOp{kind: opMovePrimary, to: toBackup}
	c := moveScenario(t, 3, []*moveOp{op})
	if o, b := c.owner(c.latest()); !op.done || c.mv.stats.handovers != 1 || c.mv.stats.follows != 1 || c.latest() != 2 || o.host != 1 || b != 0 || !c.protected() {
		c.fail("switchover: op %q, %d handovers, %d follows, latest generation %d owned by %s paired with %s, protected %v",
			op.result, c.mv.stats.handovers, c.mv.stats.follows, c.latest(), hostName(o.host), hostName(b), c.protected())
	}
}

// TestSwitchoverThenNewPrimaryDies: the new primary crashes right after
// the switchover, long before a clone could have completed. The old
// primary, its backup since the switchover, takes over: nothing is lost.
func TestSwitchoverThenNewPrimaryDies(t *testing.T) {
	op := &moveOp{kind: opMovePrimary, to: toBackup}
	crash := &cfault{phase: phTime, kind: fCrash, a: 1, after: 350 * time.Millisecond, dur: time.Second}
	c := moveScenario(t, 3, []*moveOp{op}, crash)
	if o, _ := c.owner(c.latest()); c.lost || c.mv.stats.follows != 1 || o.host != 0 || !c.protected() {
		c.fail("new primary crashed after a switchover: lost %v, %d follows, latest generation %d owned by %s, protected %v",
			c.lost, c.mv.stats.follows, c.latest(), hostName(o.host), c.protected())
	}
}

// TestSwitchoverWaitsForTheBackup: the link to the backup is cut just
// before the switchover, with entries the backup has not got. The primary
// does not hand over without them: the backup, cut off, takes over on its
// failure timeout (with the log it has) and the primary halts.
func TestSwitchoverWaitsForTheBackup(t *testing.T) {
	// The switchover begins at 270 ms, when the entry logged at 260 ms
	// (with no output yet) is held up by the cut.
	op := &moveOp{kind: opMovePrimary, to: toBackup, delay: 70 * time.Millisecond}
	cut := &cfault{phase: phTime, kind: fCut, a: 0, b: 1, after: 260 * time.Millisecond, dur: time.Second}
	c := moveScenario(t, 3, []*moveOp{op}, cut)
	if op.done && c.mv.stats.handovers > 0 || c.lost || !c.protected() {
		c.fail("switchover across a cut: op %q, %d handovers, lost %v, protected %v", op.result, c.mv.stats.handovers, c.lost, c.protected())
	}
}

// TestMoveTargetDies: the move's target crashes during the pre-copy. The
// move is reported failed, and the primary keeps its old backup.
func TestMoveTargetDies(t *testing.T) {
	op := &moveOp{kind: opMoveBackup, to: toSpare}
	c := moveScenario(t, 3, []*moveOp{op}, &cfault{mp: mpMovePrecopy, mt: mtCrashS, offset: 10, dur: time.Second})
	if op.done || !op.targetDied || c.lost || c.latest() != 1 || !c.protected() {
		c.fail("target died: op %q, lost %v, latest generation %d, protected %v", op.result, c.lost, c.latest(), c.protected())
	}
}

// TestDrainPrimary: draining the primary's host hands the VM over to the
// backup, whose new backup is not the drained host.
func TestDrainPrimary(t *testing.T) {
	op := &moveOp{kind: opDrain, to: toPrimary}
	c := moveScenario(t, 3, []*moveOp{op})
	if a := c.hosts[0]; !op.done || a.holds() || !a.draining || !c.protected() {
		c.fail("drain: op %q, A: %s, protected %v", op.result, c.describe(a), c.protected())
	}
}

// TestMoveSchedulesDeterministic: a seed makes the same schedule.
func TestMoveSchedulesDeterministic(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		a, b := newMoveCluster(t, seed), newMoveCluster(t, seed)
		a.run()
		b.run()
		if ta, tb := traceText(a), traceText(b); ta != tb {
			t.Fatalf("seed %d: two runs differ:\n%s\n---\n%s", seed, ta, tb)
		}
	}
}
