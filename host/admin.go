package host

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"ftvm/internal/listeners"
	"ftvm/storage"
)

// This file holds what the ftvm start, stop and status commands do: they
// work on shared storage alone, and the hosts act on what they find there.

// HostState is a registered host and whether it is alive.
type HostState struct {
	storage.HostInfo
	Alive bool `json:"alive"`
}

// Hosts returns the registered hosts; a host is alive if it refreshed its
// entry within AliveWindow.
func Hosts(dir storage.Store, now time.Time) ([]HostState, error) {
	hs, err := dir.Hosts()
	if err != nil {
		return nil, err
	}
	out := make([]HostState, len(hs))
	for i, h := range hs {
		out[i] = HostState{HostInfo: h, Alive: now.Sub(h.Seen) <= AliveWindow && !gone(h)}
	}
	return out, nil
}

// gone reports whether a host on this machine (a loopback address) has no
// process any more, which tells a killed host at once rather than after
// AliveWindow. Elsewhere its pid means nothing here.
func gone(h storage.HostInfo) bool {
	ap, err := netip.ParseAddrPort(h.Addr)
	if err != nil || !ap.Addr().IsLoopback() || h.PID <= 0 {
		return false
	}
	return errors.Is(syscall.Kill(h.PID, 0), syscall.ESRCH)
}

// VMState is a VM as ftvm status shows it.
type VMState struct {
	Name       string `json:"name"`
	Generation uint64 `json:"generation"`
	Primary    string `json:"primary"`
	Backup     string `json:"backup"`
	State      string `json:"state"`
	// Detail says why a VM ended or failed (its exit status, its trap, the
	// error); ExitCode is the exit status of a guest that ended.
	Detail    string   `json:"detail,omitempty"`
	ExitCode  *int     `json:"exit_code,omitempty"`
	Listeners []string `json:"listeners"`
	// Served is where clients reach the listeners now, at the primary
	// (see Where).
	Served []string `json:"served,omitempty"`
	// Disk is the kind of the VM's virtual disk: "shared", "local" (a
	// copy on each replica's host), or "" (none).
	Disk       string  `json:"disk,omitempty"`
	LagEntries uint64  `json:"lag_entries"`
	LagBytes   uint64  `json:"lag_bytes"`
	LagMillis  float64 `json:"lag_ms"`
	HeldOut    int     `json:"held_outputs"`
	HeldBytes  int     `json:"held_bytes"`
	// Sessions counts the client sessions the primary serves.
	Sessions int `json:"sessions,omitempty"`
	// Protected: the primary's backup (one that started with it or
	// completed its clone) is connected. Protection says why not
	// otherwise, and how restoring redundancy goes; LastClone describes
	// the last clone that completed.
	Protected  bool   `json:"protected"`
	Protection string `json:"protection,omitempty"`
	LastClone  string `json:"last_clone,omitempty"`
	Restarted  string `json:"restarted,omitempty"`
	storage.OutputDelays
	Hosts []storage.VMStatus `json:"hosts"`
}

// VMs returns the state of every VM.
func VMs(dir storage.Store, now time.Time) ([]VMState, error) {
	hosts, err := Hosts(dir, now)
	if err != nil {
		return nil, err
	}
	return vmStates(dir, now, hosts)
}

// vmStates is VMs with the hosts already read.
func vmStates(dir storage.Store, now time.Time, hosts []HostState) ([]VMState, error) {
	names, err := dir.VMs()
	if err != nil {
		return nil, err
	}
	return vmStatesOf(dir, now, hosts, names)
}

// vmStatesOf is vmStates of the VMs named, leaving out those that are not
// there.
func vmStatesOf(dir storage.Store, now time.Time, hosts []HostState, names []string) ([]VMState, error) {
	alive := map[string]bool{}
	addrs := map[string]string{}
	// A host whose process runs but which stopped refreshing its registry
	// entry (frozen, or cut off from the store) is silent: its statuses,
	// written only when they change, say nothing of that.
	silent := map[string]bool{}
	for _, h := range hosts {
		alive[h.Name], addrs[h.Name] = h.Alive, h.Addr
		silent[h.Name] = now.Sub(h.Seen) > AliveWindow
	}
	var out []VMState
	for _, name := range names {
		spec, err := dir.VM(name)
		if err != nil {
			continue // being created
		}
		vs := VMState{Name: name, Listeners: spec.Listeners, State: "starting"}
		switch {
		case spec.LocalDisk():
			vs.Disk = "local"
		case spec.Disk:
			vs.Disk = "shared"
		}
		owner, ok, err := dir.Latest(name)
		if err != nil {
			return nil, err
		}
		if ok {
			vs.Generation, vs.Primary, vs.Backup = owner.Generation, owner.Host, owner.Backup
			vs.Served = servedAt(spec.Listeners, addrs[owner.Host])
			if owner.Reason == reasonStart && vs.Backup == "" {
				vs.Backup = spec.Backup // a record from before owners named it
			}
		}
		if vs.Hosts, err = dir.Statuses(name); err != nil {
			return nil, err
		}
		if ok && owner.Generation > 1 && !slices.ContainsFunc(vs.Hosts, func(st storage.VMStatus) bool {
			return st.Host == owner.Host && st.Generation == owner.Generation
		}) && slices.ContainsFunc(vs.Hosts, func(st storage.VMStatus) bool {
			return st.Host == owner.Host && st.Generation == owner.Generation-1 && st.Role == "backup" && st.State == "running"
		}) {
			// Its backup won the generation and has not written its
			// status as the primary yet: a host taking VMs over writes
			// statuses last (see takingOver).
			vs.State = "going live"
		}
		for _, st := range vs.Hosts {
			if st.Host != vs.Primary || st.Generation != vs.Generation {
				continue
			}
			vs.State, vs.Detail, vs.ExitCode = st.State, st.Detail, st.ExitCode
			switch {
			case st.Role == "alone" && st.State == "running":
				vs.State = "running alone"
			case st.Role == "backup" && st.State == "running":
				// It won the generation and replays the rest of the log.
				vs.State = "going live"
			}
			if silent[st.Host] && st.State == "running" {
				vs.State = "primary's host silent"
			}
			vs.LagEntries, vs.LagBytes, vs.LagMillis = st.LagEntries, st.LagBytes, st.LagMillis
			vs.HeldOut, vs.HeldBytes = st.HeldOut, st.HeldBytes
			vs.Sessions = st.Sessions
			vs.OutputDelays = st.OutputDelays
			vs.Protected, vs.Protection, vs.LastClone, vs.Restarted = st.Protected, st.Protection, st.LastClone, st.Restarted
			if st.Role == "alone" {
				vs.Backup = ""
			}
		}
		if strings.HasPrefix(vs.State, "running") || vs.State == "primary's host silent" {
			if vs.Primary != "" && !alive[vs.Primary] {
				vs.State = "primary's host down"
			}
		}
		// A generation whose replicas all failed before either wrote a
		// status in it (a primary killed as its clone began) is lost too,
		// not starting for ever.
		if strings.HasPrefix(vs.State, "running") || slices.Contains([]string{"primary's host silent", "primary's host down", "starting", "going live"}, vs.State) {
			if ok && lost(owner, hosts, vs.Hosts) {
				vs.State = "lost: every replica failed, its memory with them"
				switch {
				case spec.Restart == storage.RestartNever:
				case slices.ContainsFunc(hosts, func(h HostState) bool { return h.Alive && !h.Draining }):
					vs.State += "; starting it again from its disk"
				default:
					vs.State += "; it starts again from its disk once a host is up"
				}
			}
		}
		if spec.Stopped {
			if vs.State != "stopped" && vs.State != "exited" && vs.Detail != "" {
				// How it stood when stopped (a failed start, say), not
				// what stopped it.
				vs.Detail = "was " + vs.State + " before: " + vs.Detail
			}
			vs.State = "stopped"
		}
		if vs.Protected && !strings.HasPrefix(vs.State, "running") {
			vs.Protected = false
		}
		switch {
		case vs.Protected:
		case !strings.HasPrefix(vs.State, "running"):
			// What the primary last said of its backup is stale.
			vs.Protection = vs.State
		case vs.Protection == "":
			vs.Protection = "backup not connected"
		}
		out = append(out, vs)
	}
	return out, nil
}

// vmOver reports whether VM name runs nowhere any more: its guest ended
// (exited, trapped, failed, halted) or every replica of it is lost. It may
// be started again without a stop.
func vmOver(dir storage.Store, now time.Time, name string) bool {
	hosts, err := Hosts(dir, now)
	if err != nil {
		return false
	}
	vms, err := vmStatesOf(dir, now, hosts, []string{name})
	if err != nil {
		return false
	}
	for _, v := range vms {
		if v.Name == name {
			switch {
			case strings.HasPrefix(v.State, "lost"), v.State == "exited", v.State == "failed", v.State == "halted":
				return true
			}
			return false
		}
	}
	return false
}

// checkListeners refuses spec if another VM that runs has one of its
// listeners. It reads the specs of the VMs the store indexes on one of
// spec's ports, and of no other.
func checkListeners(dir storage.Store, now time.Time, spec storage.VMSpec) error {
	// A pair's listeners share their port with the next copy of the same
	// VM, so a clash with another VM would not fail to bind: it is
	// refused here.
	for _, port := range storage.ListenerPorts(spec) {
		users, err := dir.VMsOnPort(port)
		if err != nil {
			return err
		}
		for _, name := range users {
			if name == spec.Name {
				continue
			}
			other, err := dir.VM(name)
			if err != nil || other.Stopped {
				continue // being created, or stopped
			}
			for _, a := range spec.Listeners {
				if slices.ContainsFunc(other.Listeners, func(b string) bool { return sameListener(a, b) }) && !vmOver(dir, now, name) {
					return fmt.Errorf("listener %s is vm %s's", a, name)
				}
			}
		}
	}
	return nil
}

// startLoad returns each host's load for placing VMs (leaving out those
// in skip, which are being started). A start in a cluster of a thousand
// VMs must not read each one's records: it reads the specs of the VMs that
// not both of their hosts say they run. A host's
// load is what it last said in the registry (what it runs, after
// failovers and clones), plus the VMs placed on it that it had not counted
// then (created after the newest it had) and that did not end since. A VM
// whose spec is not stopped but that may have ended is looked at closely
// only then.
func startLoad(dir storage.Store, now time.Time, hosts []HostState, skip map[string]bool) (map[string]hostLoad, error) {
	load := map[string]hostLoad{}
	counted := map[string]time.Time{}
	listed := map[string]int{} // VM: how many live hosts say they run it
	for _, h := range hosts {
		load[h.Name] = hostLoad{vms: h.VMs, primaries: h.Primaries}
		counted[h.Name] = h.Counted
		if h.Alive {
			for _, vm := range h.Runs {
				listed[vm]++
			}
		}
	}
	names, err := dir.VMs()
	if err != nil {
		return nil, err
	}
	var recent []storage.VMSpec
	for _, name := range names {
		if skip[name] || listed[name] >= 2 {
			continue // being started, or both its hosts counted it
		}
		other, err := dir.VM(name)
		if err != nil || other.Stopped {
			continue // being created, or stopped
		}
		cp, okp := counted[other.Primary]
		cb, okb := counted[other.Backup]
		if okp && other.Created.After(cp) || okb && other.Created.After(cb) {
			recent = append(recent, other)
		}
	}
	// Those not counted yet, unless they ended already.
	var rnames []string
	for _, r := range recent {
		rnames = append(rnames, r.Name)
	}
	states, err := vmStatesOf(dir, now, hosts, rnames)
	if err != nil {
		return nil, err
	}
	ended := map[string]bool{}
	for _, v := range states {
		ended[v.Name] = VMEnded(v.State)
	}
	for _, other := range recent {
		if ended[other.Name] {
			continue
		}
		if c, ok := counted[other.Primary]; ok && other.Created.After(c) {
			l := load[other.Primary]
			l.vms++
			l.primaries++
			load[other.Primary] = l
		}
		if c, ok := counted[other.Backup]; ok && other.Created.After(c) {
			l := load[other.Backup]
			l.vms++
			load[other.Backup] = l
		}
	}
	return load, nil
}

// startWrite bounds how long a start takes from its claim to its spec's
// write: a start that claimed longer ago and wrote nothing failed.
const startWrite = 10 * time.Second

// ErrRunning is returned by StartVM for a VM that runs.
var ErrRunning = errors.New("vm is running (stop it first)")

// StartVM places a VM on two live hosts (spec.Primary and spec.Backup if
// set, else the two least loaded), stores its spec and module, and claims
// its next generation for the primary with reason "start": the hosts see
// the record and start it. A VM that runs somewhere is refused; one that
// was stopped, ended, or lost every replica starts afresh (its disk kept).
func StartVM(dir storage.Store, spec storage.VMSpec, module []byte, now time.Time) (storage.VMSpec, storage.Owner, error) {
	r := StartVMs(dir, []Start{{Spec: spec, Module: module}}, now)[0]
	return r.Spec, r.Owner, r.Err
}

// Start is one VM for StartVMs to start: its spec and its module (nil:
// the one stored, for a VM started again).
type Start struct {
	Spec   storage.VMSpec
	Module []byte
}

// Started is the outcome of one Start: the spec as placed and the owner
// record claimed, or why it did not start.
type Started struct {
	Spec  storage.VMSpec
	Owner storage.Owner
	Err   error
}

// StartVMs starts VMs as StartVM does each, but reads the registry and the
// hosts' loads once and places each VM with those before it counted, then
// claims and writes them several at a time: a thousand starts take
// seconds. A VM that cannot start keeps no other from starting; two of the
// batch with the same name or a listener in common are refused as two
// separate starts would be.
func StartVMs(dir storage.Store, starts []Start, now time.Time) []Started {
	out := make([]Started, len(starts))
	fail := func(err error) []Started {
		for i := range out {
			out[i] = Started{Spec: starts[i].Spec, Err: err}
		}
		return out
	}
	hosts, err := Hosts(dir, now)
	if err != nil {
		return fail(err)
	}
	skip := map[string]bool{}
	for _, st := range starts {
		skip[st.Spec.Name] = true
	}
	load, err := startLoad(dir, now, hosts, skip)
	if err != nil {
		return fail(err)
	}
	placed := map[string]int{} // name: its index in starts
	for i, st := range starts {
		out[i].Spec, out[i].Err = st.Spec, batchClash(starts, placed, out, st.Spec)
		if out[i].Err != nil {
			continue
		}
		out[i].Spec, out[i].Owner, out[i].Err = placeVM(dir, now, hosts, load, st.Spec)
		if out[i].Err != nil {
			continue
		}
		placed[st.Spec.Name] = i
		p, b := out[i].Spec.Primary, out[i].Spec.Backup
		lp := load[p]
		lp.vms++
		lp.primaries++
		load[p] = lp
		if b != "" {
			lb := load[b]
			lb.vms++
			load[b] = lb
		}
	}
	sem := make(chan struct{}, startWorkers)
	var wg sync.WaitGroup
	for i := range out {
		if out[i].Err != nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i].Err = commitStart(dir, out[i].Spec, out[i].Owner, starts[i].Module)
		}()
	}
	wg.Wait()
	return out
}

// startWorkers is how many of a batch's starts claim and write at once:
// their claims commit together (see storage.Dir.Claim), and their writes
// wait on the disk, not on the CPU.
const startWorkers = 16

// batchClash refuses spec if an earlier VM of the batch, placed already,
// has its name or one of its listeners.
func batchClash(starts []Start, placed map[string]int, out []Started, spec storage.VMSpec) error {
	if _, dup := placed[spec.Name]; dup {
		return fmt.Errorf("%s: named twice in this batch; the first line of it is started", spec.Name)
	}
	for _, j := range placed {
		for _, a := range spec.Listeners {
			if slices.ContainsFunc(out[j].Spec.Listeners, func(b string) bool { return sameListener(a, b) }) {
				return fmt.Errorf("listener %s is vm %s's (started earlier in this batch)", a, out[j].Spec.Name)
			}
		}
	}
	return nil
}

// placeVM is a start's checks and placement, given the registry and the
// hosts' loads: spec completed with its hosts, and the owner record to
// claim. It writes nothing.
func placeVM(dir storage.Store, now time.Time, hosts []HostState, load map[string]hostLoad, spec storage.VMSpec) (storage.VMSpec, storage.Owner, error) {
	if old, err := dir.VM(spec.Name); err == nil && !old.Stopped && !vmOver(dir, now, spec.Name) {
		return spec, storage.Owner{}, fmt.Errorf("%s: %w", spec.Name, ErrRunning)
	}
	if spec.Disk && !spec.LocalDisk() && dir.DiskDir(spec.Name) == "" {
		return spec, storage.Owner{}, errors.New("a virtual disk needs a shared directory as the store (--shared DIR): this store has no shared file system")
	}
	for _, a := range spec.Listeners {
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			return spec, storage.Owner{}, fmt.Errorf("listener %q: %w", a, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return spec, storage.Owner{}, fmt.Errorf("listener %q: want a port number", a)
		} else if n == 0 {
			return spec, storage.Owner{}, fmt.Errorf("listener %q: a fault-tolerant VM needs a fixed port, which its backup takes over", a)
		}
	}
	if err := checkListeners(dir, now, spec); err != nil {
		return spec, storage.Owner{}, err
	}
	alive := map[string]bool{}
	for _, h := range hosts {
		alive[h.Name] = h.Alive
	}
	var cands []string
	draining := 0
	for _, h := range hosts {
		if h.Alive && h.Draining {
			draining++
		}
		if h.Alive && !h.Draining {
			cands = append(cands, h.Name)
		}
	}
	pick := func(want, other string, primary bool) (string, error) {
		if want != "" {
			if up, known := alive[want]; !known {
				return "", fmt.Errorf("no host %q in the registry", want)
			} else if !up {
				return "", fmt.Errorf("host %s is down", want)
			}
			return want, nil
		}
		byLoad(cands, load, primary)
		for _, c := range cands {
			if c != other {
				return c, nil
			}
		}
		if draining > 0 {
			return "", fmt.Errorf("need two live hosts that are not draining, have %d (%d more draining: ftvm drain --undo HOST, or run ftvm host on another)", len(cands), draining)
		}
		switch len(cands) {
		case 0:
			return "", errors.New("need two live hosts, have none: start ftvm host on two machines (or two on this one) with this shared storage")
		case 1:
			return "", fmt.Errorf("need two live hosts, have only %s: run ftvm host on another", cands[0])
		}
		return "", fmt.Errorf("need two live hosts, have %d (run ftvm host on another)", len(cands))
	}
	prev, hadPrev, err := dir.Latest(spec.Name)
	if err != nil {
		return spec, storage.Owner{}, err
	}
	if hadPrev && prev.Reason == reasonStart && now.Sub(prev.Time) < startWrite {
		// Another start claimed it lately: it may not have written its
		// spec yet, or have written it since the look above.
		old, err := dir.VM(spec.Name)
		if err != nil || old.Created.Before(prev.Time) {
			return spec, storage.Owner{}, fmt.Errorf("%s: %w (another ftvm start of it is under way)", spec.Name, ErrRunning)
		}
		if !old.Stopped && !vmOver(dir, now, spec.Name) {
			return spec, storage.Owner{}, fmt.Errorf("%s: %w", spec.Name, ErrRunning)
		}
	}
	fromCopy := false
	if spec.LocalDisk() {
		// Only hosts with a data directory hold local disks.
		data := map[string]bool{}
		for _, h := range hosts {
			data[h.Name] = h.Data
		}
		cands = slices.DeleteFunc(cands, func(c string) bool { return !data[c] })
		for _, want := range []string{spec.Primary, spec.Backup} {
			if want != "" && alive[want] && !data[want] {
				return spec, storage.Owner{}, fmt.Errorf("host %s has no data directory for local disks (ftvm host --data DIR)", want)
			}
		}
		switch {
		case !hadPrev:
		case spec.Primary != "" && spec.Primary != prev.Host:
			// The operator's choice: that host's copy, whatever it is.
			fromCopy = true
		case !alive[prev.Host]:
			return spec, storage.Owner{}, fmt.Errorf("%s: its local disk's latest copy is on host %s, which ran it last and is down: start that host first (or name another with --primary to start from that host's own copy)", spec.Name, prev.Host)
		default:
			// Its latest disk is the copy on the host that ran it last
			// (see localdisk.go): it starts there, alone, and a clone
			// gives it its backup.
			spec.Primary = prev.Host
		}
	}
	if spec.Primary, err = pick(spec.Primary, spec.Backup, true); err != nil {
		return spec, storage.Owner{}, err
	}
	if spec.Backup, err = pick(spec.Backup, spec.Primary, false); err != nil {
		return spec, storage.Owner{}, err
	}
	if spec.Primary == spec.Backup {
		return spec, storage.Owner{}, fmt.Errorf("primary and backup must be different hosts")
	}
	spec.Created, spec.Stopped = now.UTC(), false
	gen := uint64(1)
	if hadPrev {
		gen = prev.Generation + 1
	}
	owner := storage.Owner{Generation: gen, Host: spec.Primary, Role: "primary", Reason: reasonStart, Backup: spec.Backup, Time: now.UTC()}
	if spec.LocalDisk() {
		// Alone: its backup is a clone (spec.Backup is only where the
		// clone goes first).
		owner.Backup, owner.FromCopy = "", fromCopy
	}
	return spec, owner, nil
}

// commitStart claims a placed VM's generation, then writes its spec and
// module.
func commitStart(dir storage.Store, spec storage.VMSpec, owner storage.Owner, module []byte) error {
	// The claim first, then the spec: of two starts of one VM at once,
	// only the one whose claim won writes its spec, and hosts run a
	// start's VM once its spec is the one the claim was made with (the
	// same creation time; see scanVM). A claim is this start's only if it
	// is the very record it wrote: another start may name the same host.
	won, cur, err := dir.Claim(spec.Name, owner)
	if err != nil {
		return err
	}
	if !won || !cur.Time.Equal(owner.Time) || cur.Backup != owner.Backup {
		return fmt.Errorf("%s: another start claimed generation %d at the same time (on %s)", spec.Name, owner.Generation, cur.Host)
	}
	return dir.PutVM(spec, module)
}

// StopVM marks a VM stopped; its hosts stop it within a scan.
func StopVM(dir storage.Store, name string) error {
	spec, err := dir.VM(name)
	if err != nil {
		return err
	}
	if spec.Stopped {
		return fmt.Errorf("vm %s: %w", name, ErrAlreadyStopped)
	}
	spec.Stopped = true
	return dir.PutVM(spec, nil)
}

// ErrAlreadyStopped is StopVM's error for a VM stopped before.
var ErrAlreadyStopped = errors.New("already stopped")

// sameListener reports whether two listen addresses would share
// connections (see listeners.Overlap); addresses that do not resolve are
// compared as written.
func sameListener(a, b string) bool {
	x, errx := net.ResolveTCPAddr("tcp", a)
	y, erry := net.ResolveTCPAddr("tcp", b)
	if errx != nil || erry != nil {
		return a == b
	}
	return listeners.Overlap(x.AddrPort(), y.AddrPort())
}
