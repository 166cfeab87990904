package host

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Failpoints are the faults a test can inject into a running host, set by
// the FTVM_FAILPOINTS environment variable at start or by `ftvm failpoint`
// at any time (a new set replaces the old). The spec is a comma-separated
// list of:
//
//	cut=PEER            cut both the logging channel and heartbeats with PEER
//	cut-log=PEER        cut only the logging channel with PEER
//	cut-heartbeat=PEER  cut only the heartbeats with PEER
//	storage=unreachable every shared-storage operation fails
//	fence=off           going live, do not fence the old primary's process
//	                    (as when it runs on another machine; see fencePeer)
//	crash-before-effect=M  kill this host (SIGKILL) when a primary VM on it
//	                    is about to perform an effect of Host method M (Open,
//	                    Pwrite, SetSize, SetTimes, Sync, Allocate, Mkdir,
//	                    Rmdir, Unlink, Rename, Link, Symlink, PathSetTimes,
//	                    or any): the backup has every entry the effect
//	                    depends on, and the effect has not happened
//	crash-after-effect=M   kill it just after such an effect, before the
//	                    entry with its result is sent to the backup
//	crash-after-send=M     kill it just after the entry with such an
//	                    effect's result was written to the logging channel,
//	                    before its acknowledgement is read
//	crash-on=handover   kill this host when, as a backup, it hears that its
//	                    primary handed the VM over (a switchover), before
//	                    it claims the next generation
//	crash-on=clone-commit  kill it when, as a primary, its clone's claim of
//	                    the new pair's generation won, before it tells the
//	                    new backup (the commit)
//	crash-on=switched   kill it when, as a backup handed the VM over, it
//	                    won the switchover's claim and went live, before
//	                    its first heartbeat as the new primary
//	stall=VM            hold the runner of VM (its node) still, from now on,
//	                    as a runner stuck in a bug would be: this host stops
//	                    vouching for VM in its heartbeats, and its peer
//	                    takes VM over, while the host's other VMs go on; the
//	                    guest runs on, its outputs held (no acknowledgement
//	                    comes), until the failpoint is cleared and the node
//	                    finds it lost
//	output-rule=off     break the Output Rule on purpose: a primary on this
//	                    host lets each output out at once, without waiting
//	                    for the backup's acknowledgement of the entries it
//	                    depends on (the linearizability test shows that its
//	                    checker catches this; never for real use)
//
// A cut works in both directions at this host: its heartbeats to PEER are
// not sent and PEER's are dropped on arrival; its logging channels with PEER
// are closed and new ones refused. Setting it on one host of a pair cuts
// the link. An empty spec clears every failpoint. Pausing a host needs no
// failpoint: SIGSTOP and SIGCONT do it.
type Failpoints struct {
	mu      sync.Mutex
	cutLog  []string
	cutBeat []string
	noStore bool
	noFence bool
	crash   [crashPoints]string // the effect method each crash point waits for, or ""
	crashOn string              // the moment crash-on waits for, or ""
	stall   []string            // VMs whose runners stand still
	onCut   func(peer string)   // closes channels with peer when it is cut
	onStall func(vm string)     // wakes vm's runner, so that it stalls now
	// crashing is set while any crash point is: every effect looks at it.
	crashing atomic.Bool
	// noOutputRule is output-rule=off: every output a primary produces
	// looks at it, so it is an atomic rather than under mu.
	noOutputRule atomic.Bool
}

// The points in an effect's life where a crash failpoint kills the host.
const (
	crashBeforeEffect = iota
	crashAfterEffect
	crashAfterSend
	crashPoints
)

var crashNames = [crashPoints]string{"crash-before-effect", "crash-after-effect", "crash-after-send"}

// effectMethods are the Host methods a crash failpoint may name.
var effectMethods = []string{"Open", "Pwrite", "SetSize", "SetTimes", "Sync", "Allocate", "Mkdir",
	"Rmdir", "Unlink", "Rename", "Link", "Symlink", "PathSetTimes", "any"}

// EnvFailpoints is the environment variable read at host start.
const EnvFailpoints = "FTVM_FAILPOINTS"

// Set replaces the failpoints with those of spec.
func (f *Failpoints) Set(spec string) error {
	var cutLog, cutBeat, stall []string
	var crash [crashPoints]string
	noStore, noFence, crashOn, noRule := false, false, "", false

	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		if !ok || v == "" {
			return fmt.Errorf("failpoint %q: want NAME=VALUE", item)
		}
		switch k {
		case "cut":
			cutLog, cutBeat = append(cutLog, v), append(cutBeat, v)
		case "cut-log":
			cutLog = append(cutLog, v)
		case "cut-heartbeat":
			cutBeat = append(cutBeat, v)
		case "stall":
			stall = append(stall, v)
		case "storage":
			if v != "unreachable" && v != "reachable" {
				return fmt.Errorf("failpoint %q: storage is reachable or unreachable", item)
			}
			noStore = v == "unreachable"
		case "fence":
			if v != "off" && v != "on" {
				return fmt.Errorf("failpoint %q: fence is on or off", item)
			}
			noFence = v == "off"
		case "crash-on":
			if v != "handover" && v != "clone-commit" && v != "switched" {
				return fmt.Errorf("failpoint %q: crash-on names a moment: handover, clone-commit or switched", item)
			}
			crashOn = v
		case "output-rule":
			if v != "off" && v != "on" {
				return fmt.Errorf("failpoint %q: output-rule is on or off", item)
			}
			noRule = v == "off"
		default:
			i := slices.Index(crashNames[:], k)
			if i < 0 {
				return fmt.Errorf("failpoint %q: unknown (want cut, cut-log, cut-heartbeat, stall, storage, fence, crash-on, output-rule, %s)", item, strings.Join(crashNames[:], ", "))
			}
			if !slices.Contains(effectMethods, v) {
				return fmt.Errorf("failpoint %q: %s names an effect: %s", item, k, strings.Join(effectMethods, ", "))
			}
			crash[i] = v
		}
	}
	f.mu.Lock()
	f.cutLog, f.cutBeat, f.noStore, f.noFence, f.crash, f.crashOn, f.stall = cutLog, cutBeat, noStore, noFence, crash, crashOn, stall
	f.crashing.Store(crash != [crashPoints]string{})
	f.noOutputRule.Store(noRule)
	onCut, onStall := f.onCut, f.onStall
	f.mu.Unlock()
	if onCut != nil {
		for _, p := range cutLog {
			onCut(p)
		}
	}
	if onStall != nil {
		for _, vm := range stall {
			onStall(vm)
		}
	}
	return nil
}

// String returns the failpoints in the syntax of Set.
func (f *Failpoints) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var items []string
	for _, p := range f.cutLog {
		if slices.Contains(f.cutBeat, p) {
			items = append(items, "cut="+p)
		} else {
			items = append(items, "cut-log="+p)
		}
	}
	for _, p := range f.cutBeat {
		if !slices.Contains(f.cutLog, p) {
			items = append(items, "cut-heartbeat="+p)
		}
	}
	for _, vm := range f.stall {
		items = append(items, "stall="+vm)
	}
	if f.noStore {
		items = append(items, "storage=unreachable")
	}
	if f.noFence {
		items = append(items, "fence=off")
	}
	for i, m := range f.crash {
		if m != "" {
			items = append(items, crashNames[i]+"="+m)
		}
	}
	if f.crashOn != "" {
		items = append(items, "crash-on="+f.crashOn)
	}
	if f.noOutputRule.Load() {
		items = append(items, "output-rule=off")
	}
	return strings.Join(items, ",")
}

// Stalled reports whether a stall failpoint holds vm's runner still.
func (f *Failpoints) Stalled(vm string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.stall, vm)
}

// CrashOn reports whether a crash-on failpoint waits for moment.
func (f *Failpoints) CrashOn(moment string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.crashOn == moment
}

// OutputRuleOff reports whether output-rule=off is set: a primary's
// outputs leave without waiting for its backup.
func (f *Failpoints) OutputRuleOff() bool { return f.noOutputRule.Load() }

// crashAt reports whether a crash failpoint waits at point for an effect
// of Host method m.
func (f *Failpoints) crashAt(point int, m string) bool {
	if !f.crashing.Load() {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.crash[point] == m || f.crash[point] == "any"
}

// LogCut reports whether the logging channel with peer is cut.
func (f *Failpoints) LogCut(peer string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.cutLog, peer)
}

// BeatCut reports whether heartbeats with peer are cut.
func (f *Failpoints) BeatCut(peer string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.cutBeat, peer)
}

// StorageReachable reports whether shared storage may be used.
func (f *Failpoints) StorageReachable() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.noStore
}

// Fence reports whether a backup going live fences its old primary.
func (f *Failpoints) Fence() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.noFence
}
