// Package storage is ftvm's shared storage: the place both hosts of a pair
// can reach, which decides who goes live. It holds the host registry, the
// VM specs, each guest's virtual disk, the cluster key, and the owner
// records of each VM's generations.
//
// The decisive operation is Claim, VMware FT's atomic test-and-set: the
// owner record of a VM's generation is created atomically, so of any number
// of hosts claiming the same generation exactly one wins; the others learn
// who did. A host that wants to go live (the backup when the primary
// failed, the primary when the backup failed) claims the next generation
// first; the loser halts.
//
// Store is the interface the hosts, the commands and the clients use.
// Dir, the directory backend, implements it: on one machine a local
// directory, across machines a shared file system (NFS, which makes
// link(2) atomic). Claim
// writes the record to a temporary file and links it into place; link
// fails if the name exists, on local file systems and NFS alike.
//
// Hosts follow the VMs' specs and owner records through Watcher, which
// both backends implement (Dir with the file system's notifications), so
// that they need not rescan every VM to notice a change.
//
// Every method may fail with an error wrapping ErrUnreachable when the
// storage cannot be reached; such a failure says nothing about whether the
// operation happened, so callers retry (Claim is safe to retry: a retry by
// the winner finds its own record and reports the win).
package storage

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnreachable marks a failure to reach the shared storage.
var ErrUnreachable = errors.New("shared storage unreachable")

// Owner is the record of who owns a VM in a generation.
type Owner struct {
	Generation uint64 `json:"generation"`
	Host       string `json:"host"`
	Role       string `json:"role"` // "primary" when it went live
	// Reason is why it claimed: "start", "primary failed", "backup
	// failed", "clone" (a primary running alone committed a new backup).
	Reason string `json:"reason"`
	// Backup is the backup the generation started with: the spec's at a
	// start, the clone's target at a clone, "" for a host alone.
	Backup string    `json:"backup,omitempty"`
	Time   time.Time `json:"time"`
	// FromCopy, at a start of a VM with a local disk, says that the
	// operator named the primary: it starts from its own copy of the disk,
	// whatever generation that copy is from (an empty one if it has none).
	FromCopy bool `json:"from_copy,omitempty"`
}

// HostInfo is a host daemon's entry in the registry.
type HostInfo struct {
	Name      string    `json:"name"`
	Addr      string    `json:"addr"`      // control and logging-channel address
	Heartbeat string    `json:"heartbeat"` // UDP heartbeat address
	PID       int       `json:"pid"`
	Started   time.Time `json:"started"`
	Seen      time.Time `json:"seen"` // refreshed while the host runs
	// PIDSpace names where PID means something: on Linux, the kernel's
	// boot ID and the PID namespace. Hosts with the same one see each
	// other's processes under these PIDs; "" for unknown.
	PIDSpace string `json:"pid_space,omitempty"`
	// Draining is set on a host being emptied for maintenance (ftvm
	// drain): no VM is placed or cloned onto it.
	Draining bool `json:"draining,omitempty"`
	// HTTP is the address of the host's HTTP server (metrics, dashboard),
	// if it serves one.
	HTTP string `json:"http,omitempty"`
	// Sessions is the TCP address where the host serves sessions (package
	// session) with the guests of the VMs it runs.
	Sessions string `json:"sessions,omitempty"`
	// Data is set on a host with a data directory of its own (ftvm host
	// --data), which can hold copies of local disks.
	Data bool `json:"data,omitempty"`
	// Engine is the engine tier the host runs its VMs on ("interp" or
	// "compiler"); "" from hosts before the field.
	Engine string `json:"engine,omitempty"`
	// VMs and Primaries count the VMs the host runs, and of them those it
	// is the primary of (or runs alone), as of Seen: its load, which
	// placement reads here rather than from every VM's records.
	VMs       int `json:"vms,omitempty"`
	Primaries int `json:"primaries,omitempty"`
	// Counted is the creation time of the newest VM spec counted in VMs
	// (or the host's start): a VM created after it is not counted yet.
	Counted time.Time `json:"counted,omitzero"`
	// Runs names the VMs counted in VMs, so that a start need not read
	// the records of the VMs both of whose hosts count them.
	Runs []string `json:"runs,omitempty"`
}

// Dir is shared storage in a directory.
type Dir struct {
	root string
	// reachable, if set, is consulted before every operation; fault
	// injection uses it to cut one host off the storage.
	reachable func() bool
	claims    claimQueue
}

// Open returns the storage in root, creating its layout if needed.
func Open(root string) (*Dir, error) {
	for _, d := range []string{"hosts", "vms"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, fmt.Errorf("storage: %w: %v", ErrUnreachable, err)
		}
	}
	return &Dir{root: root}, nil
}

// OpenExisting opens shared storage at root without creating anything:
// for the commands that only read it or act on what it holds, so that a
// mistyped path is an error rather than a new, empty storage.
func OpenExisting(root string) (*Dir, error) {
	fi, err := os.Stat(root)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("shared storage %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("shared storage %s: not a directory", root)
	}
	return &Dir{root: root}, nil
}

// SetReachable installs a check made before every operation; while it
// returns false every operation fails with ErrUnreachable.
func (d *Dir) SetReachable(f func() bool) { d.reachable = f }

// Root returns the storage directory.
func (d *Dir) Root() string { return d.root }

func (d *Dir) check() error {
	if d.reachable != nil && !d.reachable() {
		return fmt.Errorf("storage %s: %w (fault injected)", d.root, ErrUnreachable)
	}
	return nil
}

// wrap classifies an I/O error: missing files are reported as such, any
// other failure as unreachable storage.
func (d *Dir) wrap(op string, err error) error {
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return fmt.Errorf("storage %s: %s: %w: %v", d.root, op, ErrUnreachable, err)
}

// validName keeps names usable as single path elements.
// maxName is the longest name of a VM or host, in bytes: a file name
// holds it and a suffix or two.
const maxName = 128

func validName(kind, name string) error {
	if len(name) > maxName {
		return fmt.Errorf("storage: invalid %s name %.40q...: %d bytes long, at most %d", kind, name, len(name), maxName)
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("storage: invalid %s name %q", kind, name)
	}
	// Control characters (a tab, a newline) would break every table
	// and log line that shows the name.
	if strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("storage: invalid %s name %q: it holds a control character", kind, name)
	}
	return nil
}

// ClusterKey returns the key that authenticates hosts to each other,
// creating it (readable by its owner only) on first use.
func (d *Dir) ClusterKey() ([]byte, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	p := filepath.Join(d.root, "cluster.key")
	if key, err := os.ReadFile(p); err == nil {
		if len(key) < 32 {
			return nil, fmt.Errorf("storage: cluster key %s is too short", p)
		}
		return key, nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	// A temporary name of its own: other hosts, in this process or not,
	// may be creating the key at the same moment.
	f, err := os.CreateTemp(d.root, "cluster.key.tmp.*")
	if err != nil {
		return nil, d.wrap("create cluster key", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, d.wrap("create cluster key", err)
	}
	if err := f.Close(); err != nil {
		return nil, d.wrap("create cluster key", err)
	}
	// Link, not rename: if another host created the key meanwhile, theirs
	// stays and both use it.
	if err := os.Link(tmp, p); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, d.wrap("create cluster key", err)
	}
	key, err = os.ReadFile(p)
	return key, d.wrap("read cluster key", err)
}

func (d *Dir) vmDir(vm string) string { return filepath.Join(d.root, "vms", vm) }

func genName(gen uint64) string { return fmt.Sprintf("%020d", gen) }

// Claim atomically creates the owner record of generation o.Generation of
// vm. It reports whether this caller won; either way it returns the
// record that is now in place. Claiming again a generation one already
// owns reports a win, so a claim is safe to retry after ErrUnreachable.
func (d *Dir) Claim(vm string, o Owner) (won bool, current Owner, err error) {
	if err := validName("vm", vm); err != nil {
		return false, Owner{}, err
	}
	if err := d.check(); err != nil {
		return false, Owner{}, err
	}
	if o.Time.IsZero() {
		o.Time = time.Now().UTC()
	}
	b, err := json.Marshal(o)
	if err != nil {
		return false, Owner{}, err
	}
	req := &claimReq{vm: vm, o: o, b: b, done: make(chan struct{})}
	d.claims.run(d, req)
	<-req.done
	return req.won, req.cur, req.err
}

// claimQueue commits claims in groups. Each claim's record must be on
// disk before it becomes visible (its temp file synced before it is
// linked into place), and a sync is a journal commit: a thousand claims
// of a mass failover, arriving over a second, each with a commit of its
// own, waited in line for the disk one after another. So the claims that
// arrive while a group commits form the next group: its records are
// written, then synced at once (syncAll), then linked. The caller that finds no group committing
// commits the groups until none waits.
type claimQueue struct {
	mu      sync.Mutex
	pending []*claimReq
	running bool
}

type claimReq struct {
	vm   string
	o    Owner
	b    []byte
	done chan struct{}
	won  bool
	cur  Owner
	err  error
}

// run queues req and, unless a caller already does, commits the groups.
func (q *claimQueue) run(d *Dir, req *claimReq) {
	q.mu.Lock()
	q.pending = append(q.pending, req)
	if q.running {
		q.mu.Unlock()
		return
	}
	q.running = true
	for len(q.pending) > 0 {
		group := q.pending
		q.pending = nil
		q.mu.Unlock()
		d.claimGroup(group)
		q.mu.Lock()
	}
	q.running = false
	q.mu.Unlock()
}

// claimGroup performs a group of claims: every record written, then
// synced, then linked into place; each request is done at the end.
func (d *Dir) claimGroup(group []*claimReq) {
	tmps := make([]*os.File, len(group))
	defer func() {
		for i, f := range tmps {
			if f != nil {
				f.Close()
				os.Remove(f.Name())
			}
			close(group[i].done)
		}
	}()
	inParallel(len(group), func(i int) {
		r := group[i]
		dir := filepath.Join(d.vmDir(r.vm), "owners")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			r.err = d.wrap("claim", err)
			return
		}
		// A name of its own: two claims by one process (two starts at
		// once) must not share, and remove, each other's.
		f, err := os.CreateTemp(dir, fmt.Sprintf("%s.%s.*.tmp", genName(r.o.Generation), r.o.Host))
		if err != nil {
			r.err = d.wrap("claim", err)
			return
		}
		tmps[i] = f
		if _, err := f.Write(r.b); err != nil {
			r.err = d.wrap("claim", err)
		}
	})
	if err := syncAll(tmps); err != nil {
		for _, r := range group {
			if r.err == nil {
				r.err = d.wrap("claim", err)
			}
		}
	}
	inParallel(len(group), func(i int) {
		r := group[i]
		if r.err != nil {
			return
		}
		final := filepath.Join(d.vmDir(r.vm), "owners", genName(r.o.Generation))
		if err := os.Link(tmps[i].Name(), final); err != nil && !errors.Is(err, fs.ErrExist) {
			r.err = d.wrap("claim", err)
			return
		}
		cur, ok, err := d.Owner(r.vm, r.o.Generation)
		switch {
		case err != nil:
			r.err = err
		case !ok:
			r.err = fmt.Errorf("storage %s: claim of %s generation %d vanished: %w", d.root, r.vm, r.o.Generation, ErrUnreachable)
		default:
			r.won, r.cur = cur.Host == r.o.Host, cur
		}
	})
}

// inParallel runs f(0) to f(n-1), a few at a time: a group's file
// operations are system calls that wait on the file system, not on the
// CPU.
func inParallel(n int, f func(int)) {
	const workers = 8
	if n == 1 {
		f(0)
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// Owner returns the owner record of generation gen of vm, if there is one.
func (d *Dir) Owner(vm string, gen uint64) (Owner, bool, error) {
	if err := d.check(); err != nil {
		return Owner{}, false, err
	}
	b, err := os.ReadFile(filepath.Join(d.vmDir(vm), "owners", genName(gen)))
	if errors.Is(err, fs.ErrNotExist) {
		return Owner{}, false, nil
	}
	if err != nil {
		return Owner{}, false, d.wrap("read owner", err)
	}
	var o Owner
	if err := json.Unmarshal(b, &o); err != nil {
		return Owner{}, false, fmt.Errorf("storage: owner record %s/%d: %w", vm, gen, err)
	}
	return o, true, nil
}

// Latest returns the owner record of vm's newest generation (ok false if
// none has been claimed).
func (d *Dir) Latest(vm string) (Owner, bool, error) {
	if err := d.check(); err != nil {
		return Owner{}, false, err
	}
	ents, err := os.ReadDir(filepath.Join(d.vmDir(vm), "owners"))
	if errors.Is(err, fs.ErrNotExist) {
		return Owner{}, false, nil
	}
	if err != nil {
		return Owner{}, false, d.wrap("list owners", err)
	}
	var best uint64
	found := false
	for _, e := range ents {
		g, err := strconv.ParseUint(e.Name(), 10, 64)
		if err != nil || len(e.Name()) != 20 {
			continue // temporary files
		}
		if !found || g > best {
			best, found = g, true
		}
	}
	if !found {
		return Owner{}, false, nil
	}
	return d.Owner(vm, best)
}

// PutHost registers or refreshes a host.
func (d *Dir) PutHost(h HostInfo) error {
	if err := validName("host", h.Name); err != nil {
		return err
	}
	// Advisory, and refreshed while the host runs: not synced to stable
	// storage (a refresh lost in a crash belongs to a host that is gone).
	return d.putJSON(filepath.Join(d.root, "hosts", h.Name+".json"), h, false)
}

// Hosts returns the registered hosts, sorted by name.
func (d *Dir) Hosts() ([]HostInfo, error) {
	var hs []HostInfo
	err := d.listJSON(filepath.Join(d.root, "hosts"), func(b []byte) error {
		var h HostInfo
		if err := json.Unmarshal(b, &h); err != nil {
			return err
		}
		hs = append(hs, h)
		return nil
	})
	sort.Slice(hs, func(i, j int) bool { return hs[i].Name < hs[j].Name })
	return hs, err
}

// VMSpec describes a fault-tolerant VM.
type VMSpec struct {
	Name      string   `json:"name"`
	Args      []string `json:"args"` // Args[0] is the module's name
	Env       []string `json:"env"`
	Listeners []string `json:"listeners"`
	Disk      bool     `json:"disk"` // preopen the VM's disk directory as /disk
	// DiskKind is where the disk lives: "" (DiskShared), in the store's
	// shared directory, which both replicas use; or DiskLocal, a copy on
	// each replica's host (ftvm host --data), kept equal by the backup
	// performing the primary's writes as it replays them.
	DiskKind string `json:"disk_kind,omitempty"`
	// Primary and Backup are the hosts the VM was placed on at its last
	// start; who runs it now is the latest owner record's business.
	Primary string    `json:"primary"`
	Backup  string    `json:"backup"`
	Created time.Time `json:"created"`
	Stopped bool      `json:"stopped"`
	// Restart says what hosts do when every replica of the VM is lost:
	// "" (or "always") start it again from its disk, as vSphere HA
	// restarts a VM whose FT pair is gone; "never" leave it down.
	Restart string `json:"restart,omitempty"`
}

// Disk kinds (VMSpec.DiskKind).
const (
	DiskShared = ""
	DiskLocal  = "local"
)

// LocalDisk reports whether the VM has a disk kept on each replica's host.
func (s VMSpec) LocalDisk() bool { return s.Disk && s.DiskKind == DiskLocal }

// RestartNever is VMSpec.Restart for a VM that stays down when every
// replica is lost.
const RestartNever = "never"

// PutVM stores a VM's spec and module.
func (d *Dir) PutVM(spec VMSpec, module []byte) error {
	if err := validName("vm", spec.Name); err != nil {
		return err
	}
	if err := d.check(); err != nil {
		return err
	}
	dir := d.vmDir(spec.Name)
	if err := os.MkdirAll(filepath.Join(dir, "disk"), 0o755); err != nil {
		return d.wrap("create vm", err)
	}
	if module != nil {
		if err := atomicWrite(filepath.Join(dir, "module.wasm"), module, true); err != nil {
			return d.wrap("write module", err)
		}
	}
	if err := d.indexPorts(spec); err != nil {
		return d.wrap("index listener ports", err)
	}
	return d.putJSON(filepath.Join(dir, "spec.json"), spec, true)
}

// VM returns a VM's spec. It does not read the module, which may be
// megabytes: hosts read every spec at each scan of the registry.
func (d *Dir) VM(name string) (VMSpec, error) {
	if err := validName("vm", name); err != nil {
		return VMSpec{}, err
	}
	if err := d.check(); err != nil {
		return VMSpec{}, err
	}
	b, err := os.ReadFile(filepath.Join(d.vmDir(name), "spec.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return VMSpec{}, fmt.Errorf("storage %s: no vm %q: %w", d.root, name, fs.ErrNotExist)
	}
	if err != nil {
		return VMSpec{}, d.wrap("read vm spec", err)
	}
	var spec VMSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return VMSpec{}, fmt.Errorf("storage: vm %s spec: %w", name, err)
	}
	return spec, nil
}

// Module returns a VM's WebAssembly module.
func (d *Dir) Module(name string) ([]byte, error) {
	if err := validName("vm", name); err != nil {
		return nil, err
	}
	if err := d.check(); err != nil {
		return nil, err
	}
	mod, err := os.ReadFile(filepath.Join(d.vmDir(name), "module.wasm"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("storage %s: vm %q has no module: %w", d.root, name, fs.ErrNotExist)
	}
	if err != nil {
		return nil, d.wrap("read module", err)
	}
	return mod, nil
}

// VMs returns the names of the stored VMs, sorted.
func (d *Dir) VMs() ([]string, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(d.root, "vms"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // storage no VM was started in
	}
	if err != nil {
		return nil, d.wrap("list vms", err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// DiskDir returns the host path of a VM's virtual disk.
func (d *Dir) DiskDir(vm string) string { return filepath.Join(d.vmDir(vm), "disk") }

// putJSON replaces path with v in JSON, atomically; durable syncs it to
// stable storage first.
func (d *Dir) putJSON(path string, v any, durable bool) error {
	if err := d.check(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return d.wrap("write "+filepath.Base(path), atomicWrite(path, b, durable))
}

func atomicWrite(path string, b []byte, durable bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	f.Close()
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	write := os.WriteFile
	if durable {
		write = writeSync
	}
	if err := write(tmp, b, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func (d *Dir) listJSON(dir string, each func([]byte) error) error {
	if err := d.check(); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // nothing written there yet
	}
	if err != nil {
		return d.wrap("list", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return d.wrap("read", err)
		}
		// One unreadable entry (a torn or damaged file) must not hide the
		// others: it is skipped, and Unreadable reports it.
		_ = each(b)
	}
	return nil
}

// Unreadable returns the files of the storage's records that do not
// decode (damaged, or written by hand), each with the reason: the
// listings skip them, and ftvm status shows them.
func (d *Dir) Unreadable() ([]string, error) {
	var out []string
	check := func(path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			return // gone meanwhile
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			rel, _ := filepath.Rel(d.root, path)
			out = append(out, fmt.Sprintf("%s: %v", rel, err))
		}
	}
	hosts, _ := filepath.Glob(filepath.Join(d.root, "hosts", "*.json"))
	vms, err := d.VMs()
	if err != nil {
		return nil, err
	}
	files := hosts
	for _, vm := range vms {
		files = append(files, filepath.Join(d.vmDir(vm), "spec.json"))
		for _, sub := range []string{"owners", "status"} {
			m, _ := filepath.Glob(filepath.Join(d.vmDir(vm), sub, "*"))
			files = append(files, m...)
		}
	}
	for _, f := range files {
		if !strings.HasSuffix(f, ".tmp") {
			check(f)
		}
	}
	return out, nil
}

// OutputDelays is the Output Rule's cost over the last 10 seconds (on the
// primary, while paired): how long outputs waited between the guest
// producing them and their leaving, and the logging channel's round trip
// (a batch written to its acknowledgement read). Quantiles in
// milliseconds, within a quarter of the true value; 0 when nothing
// was measured.
type OutputDelays struct {
	OutputDelayP50 float64 `json:"output_delay_p50_ms,omitempty"`
	OutputDelayP99 float64 `json:"output_delay_p99_ms,omitempty"`
	AckRTTP50      float64 `json:"ack_rtt_p50_ms,omitempty"`
	AckRTTP99      float64 `json:"ack_rtt_p99_ms,omitempty"`
}

// VMStatus is what a host reports about its side of a VM, refreshed while
// it runs the VM. It is advisory (ftvm status shows it); decisions are made
// by owner records only.
type VMStatus struct {
	VM         string `json:"vm"`
	Host       string `json:"host"`
	Generation uint64 `json:"generation"`
	Role       string `json:"role"`  // primary, backup, alone, halted
	State      string `json:"state"` // starting, running, exited, halted, stopped, failed
	Detail     string `json:"detail,omitempty"`
	// ExitCode is the process exit status of a guest that ended (exited):
	// its exit code, or 134 for a trap, as ftvm exec exits.
	ExitCode   *int    `json:"exit_code,omitempty"`
	Peer       string  `json:"peer,omitempty"`
	Connected  bool    `json:"connected"` // the logging channel is up
	Seq        uint64  `json:"seq"`       // entries logged (primary) or received (backup)
	Pos        uint64  `json:"pos"`       // the guest's position
	Acked      uint64  `json:"acked"`     // entries the backup acknowledged (primary)
	LogBytes   uint64  `json:"log_bytes"` // bytes logged in all (primary)
	LagEntries uint64  `json:"lag_entries"`
	LagBytes   uint64  `json:"lag_bytes"`
	LagMillis  float64 `json:"lag_ms"`
	HeldOut    int     `json:"held_outputs"`
	HeldBytes  int     `json:"held_bytes"`
	// Sessions counts the guest's sessions: those a primary serves, or
	// those a backup keeps output of (SessionBytes in all) for their
	// clients.
	Sessions     int `json:"sessions,omitempty"`
	SessionBytes int `json:"session_bytes,omitempty"`
	// Protected is set on a primary whose backup (one that started with it
	// or completed its clone) is connected; Protection says otherwise why
	// not, or how restoring redundancy goes; LastClone describes the last
	// clone that completed.
	Protected  bool   `json:"protected"`
	Protection string `json:"protection,omitempty"`
	LastClone  string `json:"last_clone,omitempty"`
	// Restarted says when and why the VM was started again from its disk
	// after every replica was lost (its memory with them).
	Restarted string `json:"restarted,omitempty"`
	// Clone is the clone in progress from this primary, if any.
	Clone *CloneProgress `json:"clone,omitempty"`
	// Move says how a planned move (ftvm move, ftvm drain) goes, or went;
	// MoveID is the id its request gave it.
	Move   string `json:"move,omitempty"`
	MoveID string `json:"move_id,omitempty"`
	OutputDelays
	Updated time.Time `json:"updated"`
}

func (d *Dir) statusDir(vm string) string { return filepath.Join(d.vmDir(vm), "status") }

// PutStatus records a host's status of a VM. It is not synced to stable
// storage: a status lost in a crash is refreshed by the next.
func (d *Dir) PutStatus(st VMStatus) error {
	if err := validName("vm", st.VM); err != nil {
		return err
	}
	if err := validName("host", st.Host); err != nil {
		return err
	}
	if err := d.check(); err != nil {
		return err
	}
	dir := d.statusDir(st.VM)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return d.wrap("write status", err)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, st.Host+".json")
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return d.wrap("write status", err)
	}
	return d.wrap("write status", os.Rename(tmp, path))
}

// PutStatuses records several statuses: each as PutStatus does (files
// have no batch), all tried even after a failure. It returns the first
// failure, with the count of the others rather than each of them (while
// the storage is unreachable, they all say the same).
func (d *Dir) PutStatuses(sts []VMStatus) error {
	var first error
	failed := 0
	for _, st := range sts {
		if err := d.PutStatus(st); err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if failed > 1 {
		return fmt.Errorf("%w (and %d more statuses not written)", first, failed-1)
	}
	return first
}

// Statuses returns every host's status of vm, sorted by host.
func (d *Dir) Statuses(vm string) ([]VMStatus, error) {
	if err := validName("vm", vm); err != nil {
		return nil, err
	}
	var out []VMStatus
	err := d.listJSON(d.statusDir(vm), func(b []byte) error {
		var st VMStatus
		if err := json.Unmarshal(b, &st); err != nil {
			return err
		}
		out = append(out, st)
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out, err
}

// CloneProgress is how a live clone goes: its target, its pre-copy round,
// the bytes of memory sent and left, and the rate of the copy.
type CloneProgress struct {
	Target    string  `json:"target"`
	Round     int64   `json:"round"`
	SentBytes uint64  `json:"sent_bytes"`
	LeftBytes uint64  `json:"left_bytes"`
	Rate      float64 `json:"rate_bytes_per_s"`
}

// Percent is the share of the copy done.
func (c CloneProgress) Percent() uint64 { return 100 * c.SentBytes / max(c.SentBytes+c.LeftBytes, 1) }

// String says how the clone goes, as status shows it: "cloning to h3:
// 43 %, round 3, 12.0 MiB left".
func (c CloneProgress) String() string {
	return fmt.Sprintf("cloning to %s: %d %%, round %d, %s left", c.Target, c.Percent(), c.Round, Size(c.LeftBytes))
}

// Size shows a size in MiB, or in KiB below one.
func Size(n uint64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d KiB", (n+1023)>>10)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// CheckName reports whether name is a valid name of a kind ("vm", "host")
// in any backend: usable as one element of a path or key.
func CheckName(kind, name string) error { return validName(kind, name) }

func writeSync(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncEach fsyncs each file, at once: the file system may commit them
// together.
func syncEach(files []*os.File) error {
	errs := make([]error, len(files))
	inParallel(len(files), func(i int) {
		if files[i] != nil {
			errs[i] = files[i].Sync()
		}
	})
	return errors.Join(errs...)
}
