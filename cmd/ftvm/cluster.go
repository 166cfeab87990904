package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"ftvm/ft"
	"ftvm/host"
	"ftvm/storage"
	"ftvm/wasm"

	"golang.org/x/term"
)

// hostFlags are the tuning flags of ftvm host and ftvm run.
type hostFlags struct {
	heartbeat, timeout, goneTimeout, claimRetry, lagBound, coalesce, clonePause time.Duration
	sessionTimeout                                                              time.Duration
	replayNice, maxClones                                                       int
	logLevel, guestProfiles                                                     string
	verifyClones                                                                bool
	engine                                                                      engineFlag
}

func (f *hostFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&f.heartbeat, "heartbeat", ft.DefaultHeartbeatInterval, "interval between UDP heartbeats")
	fs.DurationVar(&f.timeout, "timeout", ft.DefaultFailureTimeout, "silence (no heartbeat, no log traffic) after which the peer has failed")
	fs.DurationVar(&f.goneTimeout, "gone-timeout", 0, fmt.Sprintf("silence after which the peer has failed once its logging channel ended under this host (closed, reset or refused, as when its process dies, or its host said it is shutting down); 0: %d heartbeat intervals; at most --timeout", ft.DefaultGoneHeartbeats))
	fs.DurationVar(&f.claimRetry, "claim-retry", ft.DefaultClaimRetry, "retry interval of a claim whose outcome is unknown")
	fs.DurationVar(&f.lagBound, "lag-bound", host.DefaultLagBound, "how far a primary's guest may run ahead of its backup's replay")
	fs.DurationVar(&f.coalesce, "coalesce", host.DefaultCoalesce, "after a live guest waited in poll_oneoff, wait this much more for other inputs to report at once, while inputs come from more than one connection (0: off)")
	fs.BoolVar(&f.verifyClones, "verify-clones", false, "check each clone's memory against a hash of the primary's, taken in the final pause (lengthens it by the hashing: about 1 ms per 2 MiB)")
	fs.DurationVar(&f.clonePause, "clone-pause", host.DefaultClonePause, "the longest pause of a guest whose primary clones a new backup (restoring redundancy): the rest of its memory is copied while it runs, and a guest that writes its memory faster than that is slowed")
	fs.IntVar(&f.replayNice, "replay-nice", host.DefaultReplayNice, "a backup's replay runs this much nicer (lower in priority) than the host while it keeps up with its primary, leaving busy CPUs to latency-bound work first (0: off)")
	fs.IntVar(&f.maxClones, "max-clones", host.MaxClones, "how many clones (new backups, moves) this host makes at once; more wait their turn, so that a host left with hundreds of VMs alone restores them without starving its guests (0: the default)")
	fs.DurationVar(&f.sessionTimeout, "session-timeout", host.DefaultSessionTimeout, "how long a session (ftvm proxy, package client) outlives its client's last connection to this host before it ends and the guest sees its connection reset (0: the default)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.guestProfiles, "guest-profiles", "", "write a profile of each guest this host runs to `DIR`/VM-genN-HOST.pprof when it stops (see exec --profile)")
	f.engine.register(fs)
}

// check refuses values of the tuning flags that cannot work: a duration
// that must be positive and is not, or a negative one (for those where 0
// has a meaning), and a failure timeout so short that a live peer would be
// failed over between two of its heartbeats.
func (f *hostFlags) check() error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"heartbeat", f.heartbeat}, {"timeout", f.timeout}, {"claim-retry", f.claimRetry}, {"lag-bound", f.lagBound}} {
		if d.v <= 0 {
			return fmt.Errorf("--%s %v: must be positive", d.flag, d.v)
		}
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"gone-timeout", f.goneTimeout}, {"coalesce", f.coalesce}, {"clone-pause", f.clonePause}, {"session-timeout", f.sessionTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("--%s %v: must not be negative", d.flag, d.v)
		}
	}
	if f.timeout < 2*f.heartbeat {
		return fmt.Errorf("--timeout %v: at least two heartbeat intervals (--heartbeat %v), or a live peer is taken for failed between two of its heartbeats", f.timeout, f.heartbeat)
	}
	if f.goneTimeout > f.timeout {
		return fmt.Errorf("--gone-timeout %v: at most --timeout (%v)", f.goneTimeout, f.timeout)
	}
	if f.maxClones < 0 {
		return fmt.Errorf("--max-clones %d: must not be negative", f.maxClones)
	}
	if f.replayNice < 0 || f.replayNice > 19 {
		return fmt.Errorf("--replay-nice %d: from 0 to 19", f.replayNice)
	}
	return nil
}

func (f *hostFlags) args() []string {
	args := []string{
		"--heartbeat", f.heartbeat.String(), "--timeout", f.timeout.String(), "--gone-timeout", f.goneTimeout.String(),
		"--claim-retry", f.claimRetry.String(), "--lag-bound", f.lagBound.String(),
		"--coalesce", f.coalesce.String(), "--clone-pause", f.clonePause.String(), "--replay-nice", strconv.Itoa(f.replayNice),
		"--log-level", f.logLevel, "--verify-clones=" + strconv.FormatBool(f.verifyClones),
		"--session-timeout", f.sessionTimeout.String(), "--max-clones", strconv.Itoa(f.maxClones),
		"--engine", f.engine.String(),
	}
	if f.guestProfiles != "" {
		args = append(args, "--guest-profiles", f.guestProfiles)
	}
	return args
}

func runHost(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("host", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	sf := addStoreFlags(fs)
	shared := &sf.resolved
	name := fs.String("name", "", "this host's `NAME` in the cluster (required)")
	addr := fs.String("addr", "127.0.0.1:0", "TCP `HOST:PORT` of the logging channel and control port (UDP heartbeats use the same)")
	httpAddr := fs.String("http", "", "serve Prometheus metrics (/metrics) and the cluster's live dashboard (/) on `HOST:PORT` (port 0 picks one; the registry records it)")
	pprofOn := fs.Bool("pprof", false, "with --http, also serve the host process's Go profiles (/debug/pprof/: CPU, heap, goroutines) for performance work")
	sessions := fs.String("sessions", "", "TCP `HOST:PORT` where clients' sessions (ftvm proxy, package client) reach the guests this host runs; \"\": the --addr IP, a free port (the registry records it)")
	data := fs.String("data", "", "this host's own `DIR`, where it keeps its copies of the VMs' local disks (ftvm start --disk local); default: SHARED/local/NAME with a directory store, none with etcd (local disks refused)")
	label := fs.Bool("label-output", true, "start each line the guests write to stdout and stderr with the VM's name and \"| \" (false: as the guests write them)")
	var hf hostFlags
	hf.register(fs)
	fs.Usage = usageFunc(fs, env.stderr, "host --shared DIR --name NAME [flags]",
		"Runs a host daemon: it registers in shared storage, runs the VMs placed on it as primary or\n"+
			"backup, and takes over when a peer fails. Guest output goes to stdout and stderr, each line\n"+
			"labeled with its VM's name; events to stderr.\n"+
			"Failpoints for tests: "+host.EnvFailpoints+"=SPEC or 'ftvm failpoint'.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := sf.resolve(); err != nil {
		fmt.Fprintf(env.stderr, "ftvm %s: %v\n", fs.Name(), err)
		return 2
	}
	if *shared == "" || *name == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	if err := checkNewName("host", *name); err != nil {
		fmt.Fprintf(env.stderr, "ftvm host: %v\n", err)
		return 2
	}
	if err := hf.check(); err != nil {
		fmt.Fprintf(env.stderr, "ftvm host: %v\n", err)
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(hf.logLevel)); err != nil {
		fmt.Fprintf(env.stderr, "ftvm host: --log-level: %v\n", err)
		return 2
	}
	if *pprofOn && *httpAddr == "" {
		fmt.Fprintln(env.stderr, "ftvm host: --pprof serves on the --http address: give --http too")
		return 2
	}
	logger := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: level}))
	httpLn, err := listenHTTP(*httpAddr)
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm host: %v\n", err)
		return 1
	}
	var httpBound string
	if httpLn != nil {
		httpBound = httpLn.Addr().String()
	}
	h, err := host.New(host.Config{
		Shared: *shared, StoreOptions: sf.options(), Data: *data, Name: *name, Addr: *addr, HTTP: httpBound, SessionAddr: *sessions, SessionTimeout: hf.sessionTimeout,
		Node:       ft.Config{HeartbeatInterval: hf.heartbeat, FailureTimeout: hf.timeout, GoneTimeout: hf.goneTimeout, ClaimRetry: hf.claimRetry},
		LagBound:   hf.lagBound,
		Coalesce:   hf.coalesce,
		ReplayNice: hf.replayNice,
		GuestCPUs:  runtime.GOMAXPROCS(0) - env.spareProcs,
		ClonePause: hf.clonePause, VerifyClones: hf.verifyClones, MaxClones: hf.maxClones,
		Profiles:   hf.guestProfiles,
		Engine:     &hf.engine.e,
		Failpoints: os.Getenv(host.EnvFailpoints),
		Stdout:     env.stdout, Stderr: env.stderr, LabelOutput: *label, Logger: logger,
	})
	if err != nil {
		if httpLn != nil {
			httpLn.Close()
		}
		fmt.Fprintf(env.stderr, "ftvm host: %v\n", err)
		return 1
	}
	ctx, cancel := context.WithCancel(ctx)
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		if httpLn == nil {
			return
		}
		if err := serveHTTP(ctx, httpLn, h, *name, *pprofOn, logger); err != nil {
			logger.Error("http server failed", "host", *name, "err", err)
		}
	}()
	err = h.Run(ctx)
	cancel()
	<-httpDone
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm host: %v\n", err)
		return 1
	}
	return 0
}

// vmFlags are the flags of ftvm start and ftvm run that describe a VM.
type vmFlags struct {
	listen, env listFlag
	disk        diskFlag
	restart     string
}

// diskFlag is --disk: none, shared (--disk, or --disk shared) or local
// (--disk local).
type diskFlag struct{ on, local bool }

func (d *diskFlag) String() string {
	switch {
	case d == nil || !d.on:
		return ""
	case d.local:
		return "local"
	}
	return "shared"
}

func (d *diskFlag) Set(v string) error {
	switch v {
	case "true", "shared":
		*d = diskFlag{on: true}
	case "local":
		*d = diskFlag{on: true, local: true}
	case "false":
		*d = diskFlag{}
	default:
		return fmt.Errorf("want shared or local, not %q", v)
	}
	return nil
}

// IsBoolFlag lets --disk stand alone, for a shared disk.
func (d *diskFlag) IsBoolFlag() bool { return true }

// joinDiskKind turns "--disk local" (or shared) among the flags of args
// into "--disk=local": a flag that may stand alone takes a value only
// with "=" in package flag. It stops at the first argument that is not a
// flag (the guest's own arguments follow).
func joinDiskKind(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		out = append(out, a)
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			return append(out, args[i+1:]...)
		}
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if name == "disk" && i+1 < len(args) && (args[i+1] == "local" || args[i+1] == "shared") {
			out[len(out)-1] = "--disk=" + args[i+1]
			i++
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // package flag reports it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); (!ok || !b.IsBoolFlag()) && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}

func (f *vmFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.listen, "listen", "serve a TCP listener on `ADDR` (repeatable; a fixed port, which the backup takes over)")
	fs.Var(&f.env, "env", "set guest environment variable `K=V` (repeatable)")
	fs.Var(&f.disk, "disk", "give the guest a virtual disk as /disk, of `KIND` shared (--disk alone) or local: shared keeps it in the shared directory; --disk local keeps a copy on each replica's host (ftvm host --data), kept equal by the backup")
	fs.StringVar(&f.restart, "restart", "always", "when every replica is lost, start the VM again from its disk (`always`) or leave it down (never)")
}

func (f *vmFlags) spec(name, guest string, args []string) (storage.VMSpec, []byte, error) {
	mod, err := readModule(guest)
	if err != nil {
		return storage.VMSpec{}, nil, err
	}
	return f.specOf(name, filepath.Base(guest), mod, args)
}

// specOf checks a module and describes the VM running it.
func (f *vmFlags) specOf(name, argv0 string, mod []byte, args []string) (storage.VMSpec, []byte, error) {
	if err := checkModule(argv0, mod); err != nil {
		return storage.VMSpec{}, nil, err
	}
	return f.describe(name, argv0, mod, args)
}

// checkModule reports whether mod compiles. It only checks: the hosts
// compile the guest again for their own engine tier, so the interpreter's
// compile, the quicker, is enough here.
func checkModule(argv0 string, mod []byte) error {
	if _, err := wasm.Compile(mod, wasm.Config{}); err != nil {
		return fmt.Errorf("%s: %w", argv0, err)
	}
	return nil
}

// checkNewName checks the name of a VM or host about to be created: a
// name the storage takes, without white space, which would make it two
// words in every table, log line and shell command that names it.
func checkNewName(kind, name string) error {
	if err := storage.CheckName(kind, name); err != nil {
		return err
	}
	if strings.ContainsFunc(name, unicode.IsSpace) {
		return fmt.Errorf("invalid %s name %q: it holds white space", kind, name)
	}
	if strings.HasPrefix(name, "-") {
		// Commands would read it as a flag.
		return fmt.Errorf("invalid %s name %q: it starts with '-'", kind, name)
	}
	return nil
}

// describe describes the VM running a module that compiles.
func (f *vmFlags) describe(name, argv0 string, mod []byte, args []string) (storage.VMSpec, []byte, error) {
	if err := checkNewName("vm", name); err != nil {
		return storage.VMSpec{}, nil, err
	}
	for _, kv := range f.env {
		if !strings.Contains(kv, "=") {
			return storage.VMSpec{}, nil, fmt.Errorf("--env %q: want K=V", kv)
		}
	}
	restart := ""
	switch f.restart {
	case "always", "":
	case storage.RestartNever:
		restart = storage.RestartNever
	default:
		return storage.VMSpec{}, nil, fmt.Errorf("--restart %q: want always or never", f.restart)
	}
	return storage.VMSpec{
		Name: name, Args: append([]string{argv0}, args...),
		Env: f.env, Listeners: f.listen, Disk: f.disk.on, Restart: restart,
		DiskKind: map[bool]string{true: storage.DiskLocal, false: storage.DiskShared}[f.disk.local],
	}, mod, nil
}

func runStart(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	sf := addStoreFlags(fs)
	shared := &sf.resolved
	name := fs.String("name", "", "the VM's `NAME` (required)")
	primary := fs.String("primary", "", "place the primary on `HOST` (default: least loaded)")
	backup := fs.String("backup", "", "place the backup on `HOST` (default: least loaded)")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for the pair to come up (0: do not wait)")
	each := fs.String("each", "", "start one VM per line of `FILE` (- for standard input), each line the flags and arguments of one start (--name VM [flags] GUEST.wasm [ARGS...]), split as a shell splits words; all are placed at once and started together")
	var vf vmFlags
	vf.register(fs)
	fs.Usage = usageFunc(fs, env.stderr, "start --shared DIR --name VM [flags] GUEST.wasm [ARGS...]\n       ftvm start --shared DIR --each FILE [--wait D]",
		"Starts a fault-tolerant VM: its primary and backup on two different live hosts.\n"+
			"With --each, starts many: a thousand in a few seconds (a loop of ftvm start pays a process each).")
	if err := fs.Parse(joinDiskKind(fs, args)); err != nil {
		return 2
	}
	var guest string
	var gargs []string
	switch {
	case *each != "" && (fs.NArg() > 0 || *name != ""):
		fmt.Fprintln(env.stderr, "ftvm start: with --each, each VM's name, flags and guest are on its line of the file, not on the command line")
		return 2
	case *each == "" && fs.NArg() < 1:
		fs.Usage()
		return 2
	case *each == "":
		guest, gargs = fs.Arg(0), fs.Args()[1:]
	}
	if err := sf.resolve(); err != nil {
		fmt.Fprintf(env.stderr, "ftvm start: %v\n", err)
		return 2
	}
	if *each != "" {
		// The rest of the flags belong on each line.
		store := flag.NewFlagSet("", flag.ContinueOnError)
		addStoreFlags(store)
		var stray []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "each" && f.Name != "wait" && store.Lookup(f.Name) == nil {
				stray = append(stray, "--"+f.Name)
			}
		})
		if len(stray) > 0 {
			fmt.Fprintf(env.stderr, "ftvm start: with --each, these flags belong on each VM's line of the file: %s\n", strings.Join(stray, ", "))
			return 2
		}
	}
	switch {
	case *shared == "":
		fs.Usage()
		return 2
	case *name == "" && *each == "":
		fmt.Fprintln(env.stderr, "ftvm start: --name NAME is required: the name the VM is known by (in ftvm status, stop, move)")
		return 2
	}
	var batch []host.Start
	if *each != "" {
		var err error
		if batch, err = readStarts(env.stdin, *each); err != nil {
			fmt.Fprintf(env.stderr, "ftvm start: %v\n", err)
			return 2
		}
	}
	dir, _, err := sf.open(false)
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm start: %v\n", err)
		return 1
	}
	if *each != "" {
		return startBatch(ctx, env, dir, batch, *wait)
	}
	spec, mod, err := vf.spec(*name, guest, gargs)
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm start: %v\n", err)
		return 1
	}
	spec.Primary, spec.Backup = *primary, *backup
	if err := startAndWait(ctx, env.stdout, dir, spec, mod, *wait); err != nil {
		fmt.Fprintf(env.stderr, "ftvm start: %v\n", err)
		return exitCodeOf(err)
	}
	return 0
}

// startAndWait starts a VM and waits until its backup is connected.
func startAndWait(ctx context.Context, w io.Writer, dir storage.Store, spec storage.VMSpec, mod []byte, wait time.Duration) error {
	old, oldErr := dir.Module(spec.Name)
	spec, owner, err := host.StartVM(dir, spec, mod, time.Now())
	if err != nil {
		return err
	}
	if oldErr == nil && !bytes.Equal(old, mod) {
		// Started again with another module: its disk is kept.
		fmt.Fprintf(w, "vm %s: started again with a new module (%d bytes, was %d); its disk is kept\n", spec.Name, len(mod), len(old))
	}
	announceStart(w, spec, owner)
	if wait <= 0 {
		return nil
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if up, err := pairUp(dir, spec, owner); err != nil {
			return err
		} else if up {
			fmt.Fprintf(w, "vm %s: running, backup connected\n", spec.Name)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("vm %s: the pair did not come up within %v (see ftvm status)", spec.Name, wait)
}

// announceStart says where a start placed its VM.
func announceStart(w io.Writer, spec storage.VMSpec, owner storage.Owner) {
	if spec.LocalDisk() {
		fmt.Fprintf(w, "vm %s: generation %d, primary %s, alone until its backup is cloned onto %s (local disk)\n", spec.Name, owner.Generation, spec.Primary, spec.Backup)
	} else {
		fmt.Fprintf(w, "vm %s: generation %d, primary %s, backup %s\n", spec.Name, owner.Generation, spec.Primary, spec.Backup)
	}
}

// pairUp reports whether a started VM's primary says its backup is
// connected, or a *vmEnded if it says the VM ended.
func pairUp(dir storage.Store, spec storage.VMSpec, owner storage.Owner) (bool, error) {
	sts, err := dir.Statuses(spec.Name)
	if err != nil {
		return false, nil // not yet readable: wait on
	}
	for _, st := range sts {
		// A local disk's backup comes with the clone's generation.
		gen := st.Generation == owner.Generation || spec.LocalDisk() && st.Generation > owner.Generation
		if st.Host == spec.Primary && gen && st.Updated.After(owner.Time) {
			if err := endOf(st); err != nil {
				return false, err
			}
			// Protected, not only connected: the backup has answered,
			// as ftvm status will then say.
			if st.Connected && st.Protected {
				return true, nil
			}
		}
	}
	return false, nil
}

// vmEnded is the end of a VM that ended by itself: its guest exited or
// trapped (a Code to exit with, as ftvm exec would), or it failed.
type vmEnded struct {
	vm, host, state, detail string
	code                    int
}

func (e *vmEnded) Error() string {
	if e.state == "exited" {
		return fmt.Sprintf("vm %s: the guest ended on %s: %s", e.vm, e.host, e.detail)
	}
	return fmt.Sprintf("vm %s %s on %s: %s", e.vm, e.state, e.host, e.detail)
}

// endOf returns a *vmEnded if st says its VM ended (exited or failed).
func endOf(st storage.VMStatus) error {
	switch {
	case st.State == "exited" && st.ExitCode != nil:
		return &vmEnded{vm: st.VM, host: st.Host, state: st.State, detail: st.Detail, code: *st.ExitCode}
	case st.State == "exited", st.State == "failed":
		return &vmEnded{vm: st.VM, host: st.Host, state: st.State, detail: st.Detail, code: 1}
	}
	return nil
}

// exitCodeOf is the exit status for an error of start or run: the guest's
// for a guest that ended, else 1.
func exitCodeOf(err error) int {
	if e, ok := errors.AsType[*vmEnded](err); ok {
		return e.code
	}
	return 1
}

func runStop(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("stop", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	sf := addStoreFlags(fs)
	shared := &sf.resolved
	var names listFlag
	fs.Var(&names, "name", "the VM's `NAME` (repeatable)")
	all := fs.Bool("all", false, "stop every VM that is not stopped")
	fs.Usage = usageFunc(fs, env.stderr, "stop --shared DIR --name VM [--name VM...] | --all", "Stops VMs on both their hosts.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := sf.resolve(); err != nil {
		fmt.Fprintf(env.stderr, "ftvm %s: %v\n", fs.Name(), err)
		return 2
	}
	switch {
	case *shared == "":
		fs.Usage()
		return 2
	case len(names) == 0 && !*all:
		fmt.Fprintln(env.stderr, "ftvm stop: name the VMs to stop (--name VM, repeatable), or --all")
		return 2
	case len(names) > 0 && *all:
		fmt.Fprintln(env.stderr, "ftvm stop: --name or --all, not both")
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(env.stderr, "ftvm stop: unexpected arguments %q (each VM takes its own --name)\n", fs.Args())
		return 2
	}
	dir, _, err := sf.open(false)
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm stop: %v\n", err)
		return 1
	}
	if *all {
		vms, err := host.VMs(dir, time.Now())
		if err != nil {
			fmt.Fprintf(env.stderr, "ftvm stop: %v\n", err)
			return 1
		}
		for _, v := range vms {
			if v.State != "stopped" {
				names = append(names, v.Name)
			}
		}
		if len(names) == 0 {
			fmt.Fprintln(env.stdout, "no vm to stop")
			return 0
		}
	}
	code := 0
	for _, name := range names {
		err := host.StopVM(dir, name)
		switch {
		case errors.Is(err, host.ErrAlreadyStopped):
			fmt.Fprintf(env.stdout, "vm %s: already stopped\n", name)
		case err != nil:
			fmt.Fprintf(env.stderr, "ftvm stop: %v\n", err)
			code = 1
		default:
			fmt.Fprintf(env.stdout, "vm %s: stopping\n", name)
		}
	}
	return code
}

// clusterStatus is ftvm status --json.
type clusterStatus struct {
	Hosts []host.HostState `json:"hosts"`
	VMs   []host.VMState   `json:"vms"`
	// Unreadable lists the records in storage that do not decode, which
	// everything else skips.
	Unreadable []string `json:"unreadable,omitempty"`
}

func runStatus(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	sf := addStoreFlags(fs)
	shared := &sf.resolved
	asJSON := fs.Bool("json", false, "print JSON")
	watch := fs.Bool("watch", false, "redraw every second until interrupted (on a terminal, in place; with --json, one object a line)")
	fs.Usage = usageFunc(fs, env.stderr, "status --shared DIR [--json] [--watch]", "Shows the hosts (address, pid, alive, engine tier) and the VMs: generation, primary, backup, state,\n"+
		"how far the backup trails, the outputs the Output Rule holds, and over the last 10 s how\n"+
		"long outputs waited for the backup (OUTPUT DELAY) and the logging channel's round trip.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := sf.resolve(); err != nil {
		fmt.Fprintf(env.stderr, "ftvm %s: %v\n", fs.Name(), err)
		return 2
	}
	if *shared == "" {
		fs.Usage()
		return 2
	}
	// Status only reads: it must not create an empty storage where a
	// mistyped path points.
	dir, _, err := sf.open(false)
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm status: %v\n", err)
		return 1
	}
	if *watch {
		return watchStatus(ctx, env, dir, *asJSON)
	}
	st, err := readStatus(dir)
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm status: %v\n", err)
		return 1
	}
	if *asJSON {
		printJSON(env.stdout, st)
		return 0
	}
	printStatus(env.stdout, st, time.Now())
	return 0
}

// watchStatus prints the status every second until ctx ends: redrawn in
// place on a terminal, else one after the other, each under its time.
func watchStatus(ctx context.Context, env *cmdEnv, dir storage.Store, asJSON bool) int {
	tty := false
	if f, ok := env.stdout.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		now := time.Now()
		var b bytes.Buffer
		st, err := readStatus(dir)
		switch {
		case err != nil:
			fmt.Fprintf(&b, "ftvm status: %v\n", err)
		case asJSON:
			// One object a line, nothing between them: a stream for jq
			// and the like.
			_ = json.NewEncoder(&b).Encode(st)
		default:
			printStatus(&b, st, now)
		}
		switch {
		case asJSON && err == nil:
			env.stdout.Write(b.Bytes())
		case asJSON:
			env.stderr.Write(b.Bytes())
		case tty:
			// Home, the new status with each line's rest cleared, then
			// clear what the old one left below.
			out := strings.ReplaceAll(b.String(), "\n", "\033[K\n")
			fmt.Fprintf(env.stdout, "\033[H%s  (every 1s; Ctrl-C ends)\033[K\n%s\033[J", now.Format(time.TimeOnly), out)
		default:
			fmt.Fprintf(env.stdout, "== %s\n%s\n", now.Format(time.TimeOnly), b.String())
		}
		select {
		case <-ctx.Done():
			return 0
		case <-t.C:
		}
	}
}

func readStatus(dir storage.Store) (clusterStatus, error) {
	now := time.Now()
	var st clusterStatus
	var err error
	if st.Hosts, err = host.Hosts(dir, now); err != nil {
		return st, err
	}
	st.VMs, err = host.VMs(dir, now)
	if err == nil {
		st.Unreadable, err = dir.Unreadable()
	}
	// Empty lists, not null, for those who read the JSON.
	if st.Hosts == nil {
		st.Hosts = []host.HostState{}
	}
	if st.VMs == nil {
		st.VMs = []host.VMState{}
	}
	return st, err
}

func printStatus(w io.Writer, st clusterStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// What each host runs, as the owner records say (the registry's own
	// counts are a second old).
	primaries, backups := map[string]int{}, map[string]int{}
	running, protected := 0, 0
	for _, v := range st.VMs {
		if host.VMEnded(v.State) {
			continue
		}
		primaries[v.Primary]++
		if v.Backup != "" {
			backups[v.Backup]++
		}
		if strings.HasPrefix(v.State, "running") {
			running++
		}
		if v.Protected {
			protected++
		}
	}
	fmt.Fprintln(tw, "HOST\tADDRESS\tPID\tALIVE\tSEEN\tPRIMARIES\tBACKUPS\tENGINE")
	for _, h := range st.Hosts {
		alive := "no"
		if h.Alive {
			alive = "yes"
		}
		if h.Draining {
			alive += " (draining)"
		}
		engine := h.Engine
		if engine == "" {
			engine = "-" // a host from before the registry said
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s ago\t%d\t%d\t%s\n", h.Name, h.Addr, h.PID, alive, now.Sub(h.Seen).Round(100*time.Millisecond), primaries[h.Name], backups[h.Name], engine)
	}
	if len(st.VMs) > 0 {
		vms := "VMs"
		if len(st.VMs) == 1 {
			vms = "VM"
		}
		fmt.Fprintf(tw, "\n%d %s: %d running, %d protected\n", len(st.VMs), vms, running, protected)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "VM\tGEN\tPRIMARY\tBACKUP\tSTATE\tPROTECTED\tLAG\tHELD\tOUTPUT DELAY\tLOG RTT")
	for _, v := range st.VMs {
		backup := v.Backup
		if backup == "" {
			backup = "-"
		}
		protected := "yes"
		switch {
		case host.VMEnded(v.State):
			// Its state says why; old delays would read as current.
			protected = "no"
			v.OutputDelayP50, v.OutputDelayP99, v.AckRTTP50, v.AckRTTP99 = 0, 0, 0, 0
		case !v.Protected:
			protected = "no: " + v.Protection
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d entries, %d B, %.1f ms\t%d outputs, %d B\t%s\t%s\n",
			v.Name, v.Generation, v.Primary, backup, v.State, protected, v.LagEntries, v.LagBytes, v.LagMillis, v.HeldOut, v.HeldBytes,
			quantiles(v.OutputDelayP50, v.OutputDelayP99), quantiles(v.AckRTTP50, v.AckRTTP99))
	}
	tw.Flush()
	for _, v := range st.VMs {
		if v.Detail != "" && !strings.HasPrefix(v.State, "running") {
			fmt.Fprintf(w, "%s: %s: %s\n", v.Name, v.State, v.Detail)
		}
		if v.Restarted != "" {
			fmt.Fprintf(w, "%s: %s\n", v.Name, v.Restarted)
		}
		if v.LastClone != "" {
			fmt.Fprintf(w, "%s: last clone %s\n", v.Name, v.LastClone)
		}
		if len(v.Served) > 0 && !host.VMEnded(v.State) {
			fmt.Fprintf(w, "%s: served at %s (on %s)\n", v.Name, strings.Join(v.Served, ", "), v.Primary)
		}
		if v.Disk == "local" {
			fmt.Fprintf(w, "%s: local disk: a copy on each replica's host\n", v.Name)
		}
		switch {
		case v.Sessions == 1:
			fmt.Fprintf(w, "%s: 1 client session\n", v.Name)
		case v.Sessions > 1:
			fmt.Fprintf(w, "%s: %d client sessions\n", v.Name, v.Sessions)
		}
		// A planned move under way, or the last one, as the host running
		// it says (only from hosts still writing their status, in the
		// current generation: not one the VM has left).
		for _, hs := range v.Hosts {
			if hs.Move != "" && hostAlive(st.Hosts, hs.Host) && hs.Generation == v.Generation {
				fmt.Fprintf(w, "%s: on %s: %s\n", v.Name, hs.Host, hs.Move)
			}
		}
	}
	for _, u := range st.Unreadable {
		fmt.Fprintf(w, "warning: unreadable, skipped: %s\n", u)
	}
}

// hostAlive reports whether host name is alive in hosts.
func hostAlive(hosts []host.HostState, name string) bool {
	for _, h := range hosts {
		if h.Name == name {
			return h.Alive
		}
	}
	return false
}

// quantiles shows a p50 and a p99 in milliseconds, or "-" when nothing was
// measured.
func quantiles(p50, p99 float64) string {
	if p50 == 0 && p99 == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %.2f ms, p99 %.2f ms", p50, p99)
}

func runFailpoint(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("failpoint", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	sf := addStoreFlags(fs)
	shared := &sf.resolved
	hostName := fs.String("host", "", "the host `NAME` (required)")
	fs.Usage = usageFunc(fs, env.stderr, "failpoint --shared DIR --host NAME [SPEC]",
		"Shows, or with SPEC replaces, a running host's failpoints (fault injection for tests).\n"+
			"SPEC is a comma-separated list of cut=PEER, cut-log=PEER, cut-heartbeat=PEER,\n"+
			"storage=unreachable, fence=off, and crash-before-effect=M, crash-after-effect=M,\n"+
			"crash-after-send=M (kill the host at that point of a primary's next effect of\n"+
			"Host method M: Open, Pwrite, SetSize, Mkdir, Rename, ... or any), and\n"+
			"output-rule=off (a primary's outputs leave without waiting for its backup: a\n"+
			"deliberately broken build, for tests of the tests); an empty SPEC\n"+
			"(\"\") clears them.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := sf.resolve(); err != nil {
		fmt.Fprintf(env.stderr, "ftvm %s: %v\n", fs.Name(), err)
		return 2
	}
	if *shared == "" || *hostName == "" || fs.NArg() > 1 {
		fs.Usage()
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(env.stderr, "ftvm failpoint: %v\n", err)
		return 1
	}
	dir, _, err := sf.open(false)
	if err != nil {
		return fail(err)
	}
	key, err := dir.ClusterKey()
	if err != nil {
		return fail(err)
	}
	hs, err := dir.Hosts()
	if err != nil {
		return fail(err)
	}
	addr := ""
	for _, h := range hs {
		if h.Name == *hostName {
			addr = h.Addr
		}
	}
	if addr == "" {
		return fail(fmt.Errorf("no host %q in the registry", *hostName))
	}
	op, spec := "get", ""
	if fs.NArg() == 1 {
		op, spec = "failpoints", fs.Arg(0)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	got, err := host.Control(cctx, addr, key, op, spec)
	if err != nil {
		return fail(fmt.Errorf("host %s: %w", *hostName, err))
	}
	if got == "" {
		got = "(none)"
	}
	fmt.Fprintf(env.stdout, "%s: %s\n", *hostName, got)
	return 0
}
