package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"ftvm/ft"
	"ftvm/replog"
	"ftvm/storage"
	"ftvm/storage/backend"
	"ftvm/vmm"
	"ftvm/wasm"
)

// Config describes a host daemon.
type Config struct {
	// Shared is where the cluster's store is: a directory (created if its
	// parent exists), or an etcd cluster's etcd:// URL (see
	// storage/backend); StoreOptions say how to reach etcd.
	Shared       string
	StoreOptions backend.Options
	// Data is this host's own directory, where it keeps its copies of
	// the local disks of the VMs it runs (see localdisk.go). "" means
	// Shared/local/Name with a directory store; with etcd, local disks
	// are refused.
	Data string
	// Name is the host's name in the registry, unique in the cluster.
	Name string
	// Addr is the TCP address of the logging channel and control port;
	// heartbeats use UDP on the same address. Port 0 picks a free one.
	Addr string
	// Node tunes failure detection (heartbeat interval, failure timeout,
	// claim retry); zero fields take ft's defaults.
	Node ft.Config
	// LagBound is how far, in time, a primary's guest may run ahead of its
	// backup's replay before the primary slows it; 0 means DefaultLagBound.
	LagBound time.Duration
	// Coalesce is the wasi.Config.Coalesce of the guests this host runs
	// live (a primary, or a backup gone live); 0 turns it off. ftvm host
	// uses DefaultCoalesce.
	Coalesce time.Duration
	// ReplayNice is how much a backup's replay raises its thread's nice
	// value (lowers its priority) while it keeps up with its primary (see
	// replayPriority); 0 turns it off. ftvm host uses DefaultReplayNice.
	ReplayNice int
	// GuestCPUs is how many guests compute at once (the others wait their
	// turn, see cpuGate); 0 means GOMAXPROCS. ftvm host runs with one P
	// more than its guests use, for its own goroutines.
	GuestCPUs int
	// MaxClones bounds the clones this host makes at once (more wait
	// their turn); 0 means MaxClones.
	MaxClones int
	// ClonePause bounds the final pause of a live clone (see clone.go); 0
	// means DefaultClonePause.
	ClonePause time.Duration
	// VerifyClones makes a clone's final state carry a hash of the
	// guest's whole memory, which the new backup checks its restored
	// memory against (a clone that differs fails): a check for tests and
	// the wary, which lengthens the final pause by the hashing.
	VerifyClones bool
	// Engine, if set, is the engine tier every VM this host runs (primary,
	// backup replay, clone) compiles its guest for; nil means
	// wasm.DefaultEngine(). The tiers count alike, so the replicas of a VM
	// may run different ones.
	Engine *wasm.Engine
	// Profiles, if set, is a directory where each VM this host runs
	// writes a profile of its guest (vmm.VM.WriteProfile) when its run
	// here ends, named VM-genN-HOST.pprof.
	Profiles string
	// HTTP is the address (HOST:PORT) where the host's HTTP server
	// (metrics, dashboard) listens, if it has one: recorded in the
	// registry for others to find. The caller serves it (see
	// MetricsHandler).
	HTTP string
	// SessionAddr is the TCP address where the host serves sessions
	// (package session); "" means the logging channel's IP with a free
	// port. The registry records it.
	SessionAddr string
	// SessionTimeout is how long a session whose client is gone is kept
	// before it ends (the guest sees its connection reset); 0 means
	// DefaultSessionTimeout.
	SessionTimeout time.Duration
	// SessionWindow bounds, per session, the output kept for its client and
	// the input buffered for its guest; 0 means session.DefaultWindow.
	SessionWindow int
	// Failpoints is the initial failpoint spec (see Failpoints).
	Failpoints string
	// Stdout and Stderr receive the output of the guests this host runs
	// live; nil discards it.
	Stdout, Stderr io.Writer
	// LabelOutput starts each line the guests write to Stdout and Stderr
	// with the VM's name and "| ".
	LabelOutput bool
	Logger      *slog.Logger
}

// Defaults.
const (
	DefaultLagBound = 100 * time.Millisecond
	// DefaultCoalesce suits FT: every reply already waits for the backup's
	// acknowledgement (a round trip of a few hundred microseconds), and
	// handling more requests per wake-up saves CPU on both replicas, since
	// the backup replays every instruction of the primary's wake-ups.
	DefaultCoalesce = 50 * time.Microsecond
	// DefaultReplayNice puts a replay that keeps up well below the host's
	// other work, and still gives it a share of a busy CPU.
	DefaultReplayNice = 10
	// scanInterval is how often a host looks for VMs placed on it.
	scanInterval = 200 * time.Millisecond
	// registryInterval is how often it refreshes its registry entry: often
	// enough for AliveWindow, rarely enough that an idle host stays idle.
	registryInterval = time.Second
	// AliveWindow is how recently a host must have refreshed its registry
	// entry to count as alive.
	AliveWindow = 3 * time.Second
)

// Host is a running host daemon.
type Host struct {
	cfg Config
	log *slog.Logger
	dir storage.Store
	// closeStore releases the store's connections when the host is down.
	closeStore io.Closer
	key        []byte
	ln         net.Listener
	sln        net.Listener // sessions
	udp        *net.UDPConn
	fp         *Failpoints
	// labeled are the guests' stdout and stderr with LabelOutput.
	labeled    [2]*labeledOutput
	started    time.Time
	epoch      uint64
	beats      atomic.Uint64
	sent       beatRing    // when its heartbeat datagrams left (see vouch.go)
	lapsed     atomic.Bool // the lease's running out was logged
	pulse      pulse
	statusKick chan struct{} // see statusLoop
	gcDue      atomic.Bool   // see collectSoon
	hostsNow   chan struct{} // see readHosts
	cloneSlots chan struct{} // one per clone in flight (see cloneSlot)
	cpu        *cpuGate      // the processors, in turn, to guests that compute
	modules    *moduleCache  // compiled modules, shared by the VMs of one binary
	statusMu   sync.Mutex    // one status write at a time (see writeStatuses)
	claims     atomic.Int32  // claims in flight, which clones wait for
	claimedAt  atomic.Int64  // when the last claim ended, in Unix ns (see takingOver)
	refused    sync.Map      // peer address: when a dial of it was last refused, Unix ns
	beatFrom   sync.Map      // peer host: its last heartbeat (beatSeen)
	lease      *vmm.Lease    // the right to let outputs out (see lease.go)

	mu      sync.Mutex
	runners map[string]*runner // by VM name
	events  *eventSink
	// incoming counts the clones this host is receiving, by VM, until
	// each commits or ends (a drain waits for them).
	incoming map[string]int
	lost     map[string]time.Time // when each VM was first seen with every replica lost
	// restarts holds the VMs this host is to start again that wait for
	// a host to be quiet (restartQuiet), and the host each waits for.
	restarts map[string]string
	// quiet holds, per VM whose restart waits and host that backed it
	// up, the registry time of the host's first entry since the claim
	// that did not run it (see restartQuiet).
	quiet map[string]time.Time
	peers map[string]storage.HostInfo
	alive map[string]bool // each peer's liveness, as last read
	// cloningTo counts the clones in flight from this host, by target.
	cloningTo map[string]int
	hosts     []HostState             // the registry, as last read
	conns     map[*replog.Conn]string // open logging channels, by peer host
	info      storage.HostInfo
	metrics   *hostMetrics
	// dataLock holds the data directory (see lockData).
	dataLock *os.File
}

// New opens the shared storage, creates the cluster key if it is the first
// to need it, and binds the host's ports.
func New(cfg Config) (*Host, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LagBound <= 0 {
		cfg.LagBound = DefaultLagBound
	}
	if cfg.ClonePause <= 0 {
		cfg.ClonePause = DefaultClonePause
	}
	if cfg.Coalesce < 0 {
		return nil, fmt.Errorf("host: negative coalescing time %v", cfg.Coalesce)
	}
	if cfg.ReplayNice < 0 || cfg.ReplayNice > 19 {
		return nil, fmt.Errorf("host: replay nice %d is not in 0..19", cfg.ReplayNice)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.SessionTimeout < 0 {
		return nil, fmt.Errorf("host: negative session timeout %v", cfg.SessionTimeout)
	}
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = DefaultSessionTimeout
	}
	if cfg.Data == "" && !backend.IsEtcd(cfg.Shared) && cfg.Shared != "" {
		cfg.Data = filepath.Join(cfg.Shared, "local", cfg.Name)
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	h := &Host{
		cfg:      cfg,
		log:      cfg.Logger,
		fp:       &Failpoints{},
		started:  time.Now(),
		runners:  make(map[string]*runner),
		incoming: make(map[string]int),
		lost:     make(map[string]time.Time),
		lease:    vmm.NewLease(),
		restarts: make(map[string]string),
		quiet:    make(map[string]time.Time),
		peers:    make(map[string]storage.HostInfo),
		alive:    make(map[string]bool),
		conns:    make(map[*replog.Conn]string),
	}
	h.epoch = uint64(h.started.UnixNano())
	if cfg.LabelOutput {
		h.labeled = [2]*labeledOutput{{w: cfg.Stdout}, {w: cfg.Stderr}}
	}
	h.pulse.resched = make(chan struct{}, 1)
	h.statusKick = make(chan struct{}, 1)
	h.hostsNow = make(chan struct{}, 1)
	if cfg.MaxClones < 0 {
		return nil, fmt.Errorf("host: negative clone limit %d", cfg.MaxClones)
	}
	if cfg.MaxClones == 0 {
		cfg.MaxClones = MaxClones
	}
	h.cloneSlots = make(chan struct{}, cfg.MaxClones)
	guests := cfg.GuestCPUs
	if guests <= 0 {
		guests = runtime.GOMAXPROCS(0)
	}
	h.cpu = newCPUGate(guests)
	engine := wasm.DefaultEngine()
	if cfg.Engine != nil {
		engine = *cfg.Engine
	}
	if !wasm.CompilerAvailable() {
		// The compiler would run the interpreter here: the host says
		// the tier its guests do run on.
		engine = wasm.EngineInterpreter
	}
	h.modules = newModuleCache(engine)
	h.cloningTo = make(map[string]int)
	// Heartbeats are the pulse's, per peer host (see pulse.go).
	h.cfg.Node.HostHeartbeats = true
	if h.cfg.Node.HeartbeatInterval <= 0 {
		h.cfg.Node.HeartbeatInterval = ft.DefaultHeartbeatInterval
	}
	h.metrics = newHostMetrics(h)
	if err := h.fp.Set(cfg.Failpoints); err != nil {
		return nil, err
	}
	h.fp.onCut = h.closeChannels
	h.fp.onStall = func(vm string) {
		if r := h.runner(vm); r != nil && r.wake != nil {
			r.poke()
		}
	}
	// The first host of a cluster creates its shared directory; a
	// mistyped path deep in nothing is refused rather than made into
	// another, empty cluster.
	fresh := false
	if backend.IsEtcd(cfg.Shared) {
		// Nothing to create.
	} else if _, err := os.Stat(cfg.Shared); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(filepath.Dir(filepath.Clean(cfg.Shared))); err != nil {
			return nil, fmt.Errorf("shared storage %s does not exist, nor does its parent directory (a mistyped path?)", cfg.Shared)
		}
		fresh = true
	}
	dir, closer, err := backend.Open(cfg.Shared, cfg.StoreOptions, true)
	if err != nil {
		return nil, err
	}
	h.closeStore = closer
	if fresh {
		cfg.Logger.Info("created shared storage for a new cluster", "shared", cfg.Shared)
	}
	dir.SetReachable(h.fp.StorageReachable)
	h.dir = dir
	h.events = newEventSink(dir, cfg.Name, h.metrics, h.takingOver)
	h.log = slog.New(newEventHandler(cfg.Logger.Handler(), h.events))
	if h.key, err = dir.ClusterKey(); err != nil {
		return nil, fmt.Errorf("host %s: cluster key: %w", cfg.Name, err)
	}
	if hs, err := dir.Hosts(); err == nil {
		for _, o := range hs {
			if o.Name == cfg.Name && hostRunning(o, h.started) {
				return nil, fmt.Errorf("host %s: already running (pid %d, at %s, seen %v ago): host names must be unique, and a frozen one must be killed before it is replaced",
					cfg.Name, o.PID, o.Addr, h.started.Sub(o.Seen).Round(time.Millisecond))
			}
		}
	}
	if cfg.Data != "" {
		if h.dataLock, err = lockData(cfg.Data); err != nil {
			return nil, fmt.Errorf("host %s: %w", cfg.Name, err)
		}
	}
	if h.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		h.unlockData()
		return nil, fmt.Errorf("host %s: %w", cfg.Name, err)
	}
	tcp := h.ln.Addr().(*net.TCPAddr)
	if h.udp, err = net.ListenUDP("udp", &net.UDPAddr{IP: tcp.IP, Port: tcp.Port}); err != nil {
		h.ln.Close()
		h.unlockData()
		return nil, fmt.Errorf("host %s: heartbeat port: %w", cfg.Name, err)
	}
	saddr := cfg.SessionAddr
	if saddr == "" {
		saddr = net.JoinHostPort(tcp.IP.String(), "0")
	}
	if h.sln, err = net.Listen("tcp", saddr); err != nil {
		h.ln.Close()
		h.udp.Close()
		h.unlockData()
		return nil, fmt.Errorf("host %s: session port: %w", cfg.Name, err)
	}
	h.info = storage.HostInfo{
		Name:      cfg.Name,
		Addr:      h.ln.Addr().String(),
		Heartbeat: h.udp.LocalAddr().String(),
		PID:       os.Getpid(),
		PIDSpace:  pidSpace(),
		Started:   h.started.UTC(),
		HTTP:      cfg.HTTP,
		Sessions:  h.sln.Addr().String(),
		Data:      cfg.Data != "",
		Engine:    h.modules.engine.String(),
	}
	return h, nil
}

// incomingClones returns the VMs this host is receiving a clone of.
func (h *Host) incomingClones() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for vm, n := range h.incoming {
		if n > 0 {
			out = append(out, vm)
		}
	}
	sort.Strings(out)
	return out
}

// draining reports whether this host is marked draining.
func (h *Host) draining() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.info.Draining
}

// hostRunning reports whether the host process of registry entry o still
// runs: on this machine (the same PID space) its process says, frozen or
// not; elsewhere, its entry is fresh.
func hostRunning(o storage.HostInfo, now time.Time) bool {
	if o.PID == os.Getpid() {
		return false // this process, a host of which stopped (tests)
	}
	if o.PIDSpace != "" && o.PIDSpace == pidSpace() {
		return processRunning(o.PID, o.Started)
	}
	return now.Sub(o.Seen) < AliveWindow
}

// Run serves until ctx is done, then stops the VMs this host runs (without
// stopping them for good: their peers take over) and returns.
func (h *Host) Run(ctx context.Context) error {
	// The events are written until the last, "host down".
	evCtx, evStop := context.WithCancel(context.Background())
	evDone := make(chan struct{})
	go func() { defer close(evDone); h.events.run(evCtx) }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(5)
	go func() { defer wg.Done(); h.acceptLoop(ctx, h.ln, func(c net.Conn) { h.serveConn(ctx, c) }) }()
	go func() { defer wg.Done(); h.acceptLoop(ctx, h.sln, h.serveSession) }()
	go func() { defer wg.Done(); h.beatLoop(ctx) }()
	go func() { defer wg.Done(); h.pulseLoop(ctx) }()
	go func() { defer wg.Done(); h.statusLoop(ctx) }()
	h.log.Info("host up", "host", h.cfg.Name, "engine", h.modules.engine.String(), "addr", h.info.Addr, "sessions", h.info.Sessions, "shared", h.cfg.Shared, "failpoints", h.fp.String())
	h.discover(ctx)
	h.ln.Close()
	h.sln.Close()
	h.udp.Close()
	for _, r := range h.allRunners() {
		r.shutdown(byeHostDown, false)
	}
	wg.Wait()
	h.log.Info("host down", "host", h.cfg.Name)
	evStop()
	<-evDone
	h.closeStore.Close()
	h.unlockData()
	return nil
}

// refresh refreshes the host's registry entry (with put) and its view of
// its peers.
// It reports whether a host came up, went down or restarted since the
// last refresh (hosts is what it read, nil if the read failed).
func (h *Host) refresh(put bool) (hosts []HostState, changed bool) {
	if put {
		info := h.self()
		start := time.Now()
		info.Seen = start.UTC()
		info.VMs, info.Primaries, info.Counted, info.Runs = h.counts()
		if err := h.dir.PutHost(info); err != nil {
			h.log.Debug("registry refresh failed", "err", err)
			h.noteLapse()
		} else {
			h.renewLease(start)
		}
	}
	hosts, err := Hosts(h.dir, time.Now())
	if err != nil {
		return nil, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range hosts {
		old, ok := h.peers[p.Name]
		if !ok || old.Started != p.Started || h.alive[p.Name] != p.Alive {
			changed = true
		}
		h.peers[p.Name] = p.HostInfo
		h.alive[p.Name] = p.Alive
	}
	h.hosts = hosts
	return hosts, changed
}

// counts returns how many VMs the host runs, and of how many it is the
// primary (or runs alone), and the creation time of the newest VM spec it
// has run (or its start).
func (h *Host) counts() (vms, primaries int, counted time.Time, runs []string) {
	counted = h.started.UTC()
	for _, r := range h.allRunners() {
		if r.spec.Created.After(counted) {
			counted = r.spec.Created
		}
		if r.finished() {
			continue
		}
		switch r.role() {
		case ft.Primary, ft.Alone, ft.HandingOver:
			vms++
			primaries++
			runs = append(runs, r.spec.Name)
		case ft.Backup:
			vms++
			runs = append(runs, r.spec.Name)
		}
	}
	slices.Sort(runs)
	return vms, primaries, counted, runs
}

// knownHosts returns the registry as last read.
func (h *Host) knownHosts() []HostState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hosts
}

// scan starts or stops runners as the named VMs' specs and owner records
// say; names nil means every VM.
func (h *Host) scan(ctx context.Context, names []string) {
	hosts := h.knownHosts()
	if names == nil {
		var err error
		if names, err = h.dir.VMs(); err != nil {
			return
		}
	}
	// A few at a time: after a mass start or failover there are hundreds,
	// each with a module to read and compile. Each VM is scanned by one
	// goroutine at a time, since scans run only here.
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(scanWorkers, len(names)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				h.scanVM(ctx, name, hosts)
			}
		}()
	}
	for _, name := range names {
		work <- name
	}
	close(work)
	wg.Wait()
}

// scanWorkers is how many VMs a scan looks at, or starts, at once.
const scanWorkers = 4

// collectSoon runs a garbage collection in a second, once for the calls
// within it. A guest's memory lies outside the Go heap (a mapping of its
// own, see wasm), unmapped once a collection finds its VM unreachable; a
// host's heap grows too slowly to start one for minutes, so a stopped
// guest of hundreds of MiB stayed resident that long.
func (h *Host) collectSoon() {
	if h.gcDue.CompareAndSwap(false, true) {
		time.AfterFunc(time.Second, func() {
			h.gcDue.Store(false)
			runtime.GC()
		})
	}
}

// scanVM is scan of one VM.
func (h *Host) scanVM(ctx context.Context, name string, hosts []HostState) {
	spec, err := h.dir.VM(name)
	if err != nil {
		return
	}
	h.mu.Lock()
	r := h.runners[name]
	waitFor := h.restarts[name]
	delete(h.restarts, name) // mayRestart puts it back if it still waits
	h.mu.Unlock()
	if spec.Stopped {
		if r != nil && !r.finished() {
			r.shutdown("on request", true)
		}
		if r != nil {
			// Its last status is written (drive's last word): nothing
			// of it need stay, its memory least of all.
			h.mu.Lock()
			if h.runners[name] == r {
				delete(h.runners, name)
			}
			h.mu.Unlock()
			h.metrics.forget(name)
			h.collectSoon()
		}
		return
	}
	owner, ok, err := h.dir.Latest(name)
	if err != nil || !ok {
		return
	}
	if r != nil && !r.finished() {
		h.checkOwner(r, owner)
		return
	}
	if owner.Reason == reasonStart && !spec.Created.Equal(owner.Time) && owner.Time.After(spec.Created) {
		// Claimed by a start whose spec is not written yet (see
		// StartVM): its write is a change the watch reports.
		return
	}
	started := owner.Reason == reasonStart || owner.Reason == reasonRestart
	if !started || owner.Time.Before(h.started) {
		// Running elsewhere, or a start from before this host came
		// up (a restarted host must not restart a guest whose state
		// it lost): started again only if every replica is lost.
		h.restartIfLost(spec, owner, hosts)
		return
	}
	if r != nil && r.startGen == owner.Generation {
		return
	}
	backup := owner.Backup
	if backup == "" && owner.Reason == reasonStart && !spec.LocalDisk() {
		backup = spec.Backup // a record from before owners named it
	}
	var role ft.Role
	var peer string
	switch {
	case owner.Host == h.cfg.Name && backup == "":
		role = ft.Alone // restarted with no other host live
	case owner.Host == h.cfg.Name:
		role, peer = ft.Primary, backup
	case backup == h.cfg.Name:
		role, peer = ft.Backup, owner.Host
	default:
		// Started elsewhere, since this host came up: started again
		// here too if every replica is lost.
		h.restartIfLost(spec, owner, hosts)
		return
	}
	if owner.Reason == reasonRestart && !h.mayRestart(spec.Name, owner, waitFor) {
		return
	}
	r, err = h.startRunner(ctx, spec, owner.Generation, role, peer)
	if err == nil && owner.Reason == reasonRestart {
		r.mu.Lock()
		r.restarted = fmt.Sprintf("restarted from its disk at %s: every replica of generation %d was lost, and its memory with them",
			owner.Time.Format(time.TimeOnly), owner.Generation-1)
		r.mu.Unlock()
		r.statusDirty.Store(true)
	}
	if err != nil {
		h.log.Error("cannot run vm", "vm", name, "err", err)
		st := storage.VMStatus{VM: name, Host: h.cfg.Name, Generation: owner.Generation, Role: role.String(), State: "failed", Detail: err.Error(), Updated: time.Now().UTC()}
		_ = h.dir.PutStatus(st)
		// Remember the failure so the next scan does not retry it.
		r = &runner{h: h, vm: name, startGen: owner.Generation, done: make(chan struct{})}
		close(r.done)
	}
	h.mu.Lock()
	h.runners[name] = r
	h.mu.Unlock()
}

// reasonStart marks the owner record `ftvm start` writes.
const reasonStart = "start"

// self returns this host's registry entry.
func (h *Host) self() storage.HostInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.info
}

// peerNow is peer, reading the registry at once if name is not known yet
// (a host that came up since it was last read).
func (h *Host) peerNow(name string) (storage.HostInfo, bool) {
	if p, ok := h.peer(name); ok {
		return p, true
	}
	h.refresh(false)
	return h.peer(name)
}

func (h *Host) peer(name string) (storage.HostInfo, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.peers[name]
	return p, ok
}

// expireSessions ends the sessions whose clients are gone too long.
func (h *Host) expireSessions(now time.Time) {
	for _, r := range h.allRunners() {
		r.expireSessions(now)
	}
}

// allRunners returns the runners, in no order.
func (h *Host) allRunners() []*runner {
	h.mu.Lock()
	defer h.mu.Unlock()
	rs := make([]*runner, 0, len(h.runners))
	for _, r := range h.runners {
		rs = append(rs, r)
	}
	return rs
}

// Store returns the cluster's store, as the host reaches it.
func (h *Host) Store() storage.Store { return h.dir }

func (h *Host) runner(vm string) *runner {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.runners[vm]
}

// track registers an open logging channel with peer, so a cut closes it.
func (h *Host) track(c *replog.Conn, peer string) {
	h.mu.Lock()
	h.conns[c] = peer
	h.mu.Unlock()
}

func (h *Host) untrack(c *replog.Conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
}

// closeChannels closes every logging channel with peer.
func (h *Host) closeChannels(peer string) {
	h.mu.Lock()
	var cs []*replog.Conn
	for c, p := range h.conns {
		if p == peer {
			cs = append(cs, c)
		}
	}
	h.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// acceptLoop serves each connection ln accepts on a goroutine of its own,
// until ln is closed.
func (h *Host) acceptLoop(ctx context.Context, ln net.Listener, serve func(net.Conn)) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			h.log.Warn("accept failed", "addr", ln.Addr().String(), "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go serve(nc)
	}
}

// serveConn authenticates a connection and hands it to its user. A
// stranger (no key, garbage, a bad frame) is closed with a logged reason;
// nothing else is affected.
func (h *Host) serveConn(ctx context.Context, nc net.Conn) {
	c, hello, err := replog.Handshake(ctx, nc, h.key, false, nil)
	if err != nil {
		h.log.Warn("connection refused", "remote", nc.RemoteAddr().String(), "reason", err)
		return
	}
	hi, err := parseHello(hello)
	if err != nil {
		h.log.Warn("connection refused", "remote", c.RemoteAddr().String(), "reason", err)
		c.Close()
		return
	}
	switch hi.kind {
	case helloControl:
		h.serveControl(c)
	case helloClone:
		h.serveClone(ctx, c, hi.clone)
	case helloLog:
		lh := hi.log
		r := h.runner(lh.VM)
		reason := ""
		switch {
		case h.fp.LogCut(lh.Backup):
			reason = "link cut by failpoint"
		case r == nil || r.primarySide() == nil || r.role() != ft.Primary:
			reason = "not primary of " + lh.VM
		case r.softState().Gen != lh.Gen || r.softState().Peer != lh.Backup:
			st := r.softState()
			reason = fmt.Sprintf("serving %s generation %d with backup %s", lh.VM, st.Gen, st.Peer)
		}
		if reason == "" {
			reason = r.primarySide().attach(c, lh.HaveSeq, lh.Backup, lh.Gen)
		}
		if reason != "" {
			h.log.Debug("logging channel refused", "vm", lh.VM, "from", lh.Backup, "reason", reason)
			_ = c.WriteFrame(replog.FrameBye, []byte(reason))
			c.Close()
		}
	}
}

// controlRequest is a control command (FrameControl, JSON).
type controlRequest struct {
	Op         string `json:"op"` // "failpoints", "get", "move", "drain"
	Failpoints string `json:"failpoints"`
	// For move: the VM, the host to move to, and whether the primary
	// role moves (else the backup); for drain, whether the host drains.
	VM      string `json:"vm,omitempty"`
	To      string `json:"to,omitempty"`
	Primary bool   `json:"primary,omitempty"`
	Drain   bool   `json:"drain,omitempty"`
	// ID tags the statuses of a move (storage.VMStatus.MoveID).
	ID string `json:"id,omitempty"`
}

type controlReply struct {
	OK         bool   `json:"ok"`
	Error      string `json:"error,omitempty"`
	Failpoints string `json:"failpoints"`
	// Incoming names the VMs this host is receiving a clone of (op
	// "incoming").
	Incoming []string `json:"incoming,omitempty"`
}

func (h *Host) serveControl(c *replog.Conn) {
	defer c.Close()
	for {
		typ, p, err := c.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				h.log.Warn("control connection closed", "remote", c.RemoteAddr().String(), "reason", err)
			}
			return
		}
		if typ != replog.FrameControl {
			h.log.Warn("control connection closed", "remote", c.RemoteAddr().String(), "reason", fmt.Sprintf("unexpected frame type %d", typ))
			return
		}
		var req controlRequest
		reply := controlReply{OK: true}
		if err := json.Unmarshal(p, &req); err != nil {
			reply = controlReply{Error: "bad request: " + err.Error()}
		} else {
			switch req.Op {
			case "failpoints":
				if err := h.fp.Set(req.Failpoints); err != nil {
					reply = controlReply{Error: err.Error()}
				} else {
					h.log.Info("failpoints set", "host", h.cfg.Name, "failpoints", h.fp.String())
				}
			case "get":
			case "incoming":
				reply.Incoming = h.incomingClones()
			case "move":
				if err := h.move(req.VM, req.To, req.Primary, req.ID); err != nil {
					reply = controlReply{Error: err.Error()}
				}
			case "drain":
				h.mu.Lock()
				h.info.Draining = req.Drain
				info := h.info
				h.mu.Unlock()
				info.Seen = time.Now().UTC()
				if err := h.dir.PutHost(info); err != nil {
					reply = controlReply{Error: err.Error()}
				} else {
					h.log.Info("draining", "host", h.cfg.Name, "draining", req.Drain)
				}
			default:
				reply = controlReply{Error: fmt.Sprintf("unknown op %q", req.Op)}
			}
		}
		reply.Failpoints = h.fp.String()
		b, _ := json.Marshal(reply)
		if err := c.WriteFrame(replog.FrameControl, b); err != nil {
			return
		}
	}
}

// Control sends one control request to the host at addr and returns the
// host's failpoints after it.
func Control(ctx context.Context, addr string, key []byte, op, failpoints string) (string, error) {
	rep, err := control(ctx, addr, key, controlRequest{Op: op, Failpoints: failpoints})
	return rep.Failpoints, err
}

// controlRefusal is a host's answer refusing a control request, as
// opposed to a request that did not reach it or got no answer.
type controlRefusal struct{ reason string }

func (e *controlRefusal) Error() string { return e.reason }

// control sends req to the host at addr and returns its reply; a request
// the host refused fails with a *controlRefusal.
func control(ctx context.Context, addr string, key []byte, req controlRequest) (controlReply, error) {
	var reply controlReply
	c, err := replog.Dial(ctx, addr, key, controlHello())
	if err != nil {
		return reply, err
	}
	defer c.Close()
	b, _ := json.Marshal(req)
	if err := c.WriteFrame(replog.FrameControl, b); err != nil {
		return reply, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetReadDeadline(dl)
	}
	typ, p, err := c.ReadFrame()
	if err != nil {
		return reply, fmt.Errorf("control %s: %w", addr, err)
	}
	if typ != replog.FrameControl {
		return reply, fmt.Errorf("control %s: unexpected frame type %d", addr, typ)
	}
	if err := json.Unmarshal(p, &reply); err != nil {
		return reply, fmt.Errorf("control %s: %w", addr, err)
	}
	if !reply.OK {
		return reply, &controlRefusal{reply.Error} // the caller names the host
	}
	return reply, nil
}

// beatLoop receives heartbeats and notes each in the runners of the VMs
// it vouches for (see pulse.go).
func (h *Host) beatLoop(ctx context.Context) {
	clock := beatClock{}
	buf := make([]byte, 64<<10)
	interval := h.cfg.Node.HeartbeatInterval
	// When the last heartbeat of each peer host came, for the metrics.
	lastBeat := map[string]time.Time{}
	for {
		n, from, err := h.udp.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		hb, err := parseHeartbeat(h.key, buf[:n])
		if err != nil {
			h.log.Debug("heartbeat dropped", "from", from.String(), "reason", err)
			h.metrics.dropped()
			continue
		}
		if h.fp.BeatCut(hb.From) {
			continue
		}
		if !clock.fresh(hb) {
			h.metrics.dropped()
			continue
		}
		now := time.Now()
		h.beatFrom.Store(hb.From, beatSeen{at: now, epoch: hb.Epoch, counter: hb.Counter})
		until, grant := h.grantOf(hb)
		for _, v := range hb.VMs {
			if r := h.runner(v.VM); r != nil {
				r.heard(hb.From, v.Gen, now)
				if grant {
					r.vouched(hb.From, v.Gen, until)
				}
			}
		}
		var gap time.Duration
		if at, ok := lastBeat[hb.From]; ok {
			gap = now.Sub(at)
		} else if len(lastBeat) > 4096 {
			clear(lastBeat) // hosts long gone
		}
		if gap > interval/2 || gap == 0 {
			// A heartbeat in several datagrams counts once.
			lastBeat[hb.From] = now
			h.metrics.beat(gap, interval)
		}
	}
}
