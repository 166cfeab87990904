package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"ftvm/replog"
	"ftvm/vmm"
	"ftvm/wasi"
	"ftvm/wasm"
)

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// guestFlags are the flags exec and record share.
type guestFlags struct {
	dirs, env, listen listFlag
	coalesce          time.Duration
	prof              profileFlags
	engine            engineFlag
}

func (g *guestFlags) register(fs *flag.FlagSet) {
	fs.Var(&g.dirs, "dir", "preopen host directory `HOST[:GUEST]` (repeatable; fds 3, 4, ... in order)")
	fs.Var(&g.env, "env", "set guest environment variable `K=V` (repeatable)")
	fs.Var(&g.listen, "listen", "preopen a TCP listener on `ADDR` (repeatable; fds follow the directories)")
	fs.DurationVar(&g.coalesce, "coalesce", 0, "after waiting in poll_oneoff, wait this much more for other inputs to report at once, while inputs come from more than one connection (0: off)")
	g.prof.register(fs)
	g.engine.register(fs)
}

// wasiConfig builds the guest's configuration from the flags and the
// positional arguments (GUEST.wasm [ARGS...]).
func (g *guestFlags) wasiConfig(env *cmdEnv, guest string, args []string) (wasi.Config, error) {
	if g.coalesce < 0 {
		return wasi.Config{}, fmt.Errorf("--coalesce %v: negative", g.coalesce)
	}
	cfg := wasi.Config{
		Coalesce: g.coalesce,
		Args:     append([]string{guest}, args...),
		Stdin:    env.stdin,
		Stdout:   env.stdout,
		Stderr:   env.stderr,
	}
	for _, kv := range g.env {
		if !strings.Contains(kv, "=") {
			return cfg, fmt.Errorf("--env %q: want K=V", kv)
		}
		cfg.Env = append(cfg.Env, kv)
	}
	for _, d := range g.dirs {
		host, guestPath, ok := strings.Cut(d, ":")
		if !ok {
			guestPath = host
		}
		if host == "" || guestPath == "" {
			return cfg, fmt.Errorf("--dir %q: want HOST[:GUEST]", d)
		}
		if st, err := os.Stat(host); err != nil {
			return cfg, fmt.Errorf("--dir %q: %w", d, err)
		} else if !st.IsDir() {
			return cfg, fmt.Errorf("--dir %q: %s is not a directory", d, host)
		}
		cfg.Preopens = append(cfg.Preopens, wasi.Preopen{HostDir: host, GuestPath: guestPath})
	}
	for _, a := range g.listen {
		cfg.Listeners = append(cfg.Listeners, wasi.Listener{Addr: a})
	}
	return cfg, nil
}

// loadGuest reads and compiles a guest module for engine.
func loadGuest(path string, engine wasm.Engine) (*wasm.CompiledModule, error) {
	bin, err := readModule(path)
	if err != nil {
		return nil, err
	}
	cm, err := wasm.Compile(bin, wasm.Config{Engine: engine})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cm, nil
}

func usageFunc(fs *flag.FlagSet, w io.Writer, synopsis, about string) func() {
	out := &flagOutput{w: w}
	fs.SetOutput(out)
	return func() {
		if out.said {
			// The flag package has just said what is wrong with a
			// flag: the whole usage would bury it.
			out.said = false
			fmt.Fprintf(w, "run 'ftvm %s -h' for its usage\n", fs.Name())
			return
		}
		fmt.Fprintf(w, "usage: ftvm %s\n\n%s\n\nflags:\n", synopsis, about)
		fs.PrintDefaults()
		out.said = false
	}
}

// flagOutput is a flag set's output. It notes whether the flag package
// wrote to it, which it does only to report a bad flag, just before it
// asks for the usage.
type flagOutput struct {
	w    io.Writer
	said bool
}

func (o *flagOutput) Write(p []byte) (int, error) {
	o.said = true
	return o.w.Write(p)
}

// parseGuestCommand parses flags and returns GUEST.wasm and its arguments.
func parseGuestCommand(fs *flag.FlagSet, args []string) (string, []string, error) {
	if err := fs.Parse(args); err != nil {
		return "", nil, err
	}
	if fs.NArg() < 1 {
		fs.Usage()
		return "", nil, errors.New("missing GUEST.wasm")
	}
	return fs.Arg(0), fs.Args()[1:], nil
}

func runExec(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	var g guestFlags
	g.register(fs)
	fs.Usage = usageFunc(fs, env.stderr, "exec [flags] GUEST.wasm [ARGS...]",
		"Runs a WASI guest alone, with no replication. Exit status is the guest's; a trap exits 134.")
	guest, gargs, err := parseGuestCommand(fs, args)
	if err != nil {
		return 2
	}
	return runGuest(ctx, env, &g, guest, gargs, nil)
}

func runRecord(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("record", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	var g guestFlags
	g.register(fs)
	logPath := fs.String("log", "", "write the event log to `FILE` (required)")
	fs.Usage = usageFunc(fs, env.stderr, "record --log FILE [flags] GUEST.wasm [ARGS...]",
		"Runs a guest like exec and writes every nondeterministic input to an event log.")
	guest, gargs, err := parseGuestCommand(fs, args)
	if err != nil {
		return 2
	}
	if *logPath == "" {
		fmt.Fprintln(env.stderr, "ftvm record: --log FILE is required")
		return 2
	}
	return runGuest(ctx, env, &g, guest, gargs, logPath)
}

// fileSink writes recorded entries to a log file.
type fileSink struct{ w *replog.Writer }

func (s fileSink) Append(e replog.Entry) error { return s.w.Write(e) }

// runGuest runs a guest live, recording to logPath if it is not nil.
func runGuest(ctx context.Context, env *cmdEnv, g *guestFlags, guest string, args []string, logPath *string) int {
	fail := func(err error) int {
		fmt.Fprintf(env.stderr, "ftvm: %v\n", err)
		return 1
	}
	cm, err := loadGuest(guest, g.engine.e)
	if err != nil {
		return fail(err)
	}
	wcfg, err := g.wasiConfig(env, guest, args)
	if err != nil {
		return fail(err)
	}
	cfg := vmm.Config{WASI: wcfg}
	if err := g.prof.apply(&cfg); err != nil {
		return fail(err)
	}
	var lw *replog.Writer
	if logPath != nil {
		f, err := os.Create(*logPath)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		lw, err = replog.NewWriter(f, logHeader(cm, wcfg))
		if err != nil {
			return fail(err)
		}
		cfg.Record = fileSink{lw}
	}
	vm, err := vmm.New(cm, cfg)
	if err != nil {
		return fail(err)
	}
	defer vm.Close()
	exit, runErr := vm.Run(ctx)
	if lw != nil {
		if err := lw.Flush(); err != nil && runErr == nil {
			runErr = err
		}
	}
	if err := g.prof.write(vm); err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		if ctx.Err() != nil && errors.Is(runErr, ctx.Err()) {
			// Stopped by a signal (Ctrl-C, SIGTERM): not the guest's
			// failure, and nothing to explain.
			return signalStatus(ctx)
		}
		return fail(runErr)
	}
	return exitStatus(env, exit)
}

// exitStatus reports a trap and returns the process exit status for exit.
func exitStatus(env *cmdEnv, exit vmm.Exit) int {
	if exit.Trap != nil {
		fmt.Fprintf(env.stderr, "ftvm: guest trapped: %s in %s at offset 0x%x\n",
			exit.Trap.Code, exit.Trap.FuncName, exit.Trap.Offset)
	}
	return exit.Status()
}

// logHeader describes the recorded run so that replay can rebuild the
// guest's configuration: preopens' guest paths and listener count travel
// in Extra. The tier is the one the guest ran on (the compiler falls back
// to the interpreter where it has no native code), for the record only.
func logHeader(cm *wasm.CompiledModule, cfg wasi.Config) replog.Header {
	var enc replog.Encoder
	enc.Uint(uint64(len(cfg.Preopens)))
	for _, p := range cfg.Preopens {
		enc.String(p.GuestPath)
	}
	enc.Uint(uint64(len(cfg.Listeners)))
	for _, l := range cfg.Listeners {
		enc.String(l.Name)
	}
	return replog.Header{Module: cm.Hash, Engine: wasm.CodeVersion, Args: cfg.Args, Env: cfg.Env, Extra: enc.B, Tier: cm.Engine().String()}
}

// configFromHeader is the inverse of logHeader, for replay.
func configFromHeader(h replog.Header) (wasi.Config, error) {
	cfg := wasi.Config{Args: h.Args, Env: h.Env}
	d := replog.NewDecoder(h.Extra)
	n := d.Uint()
	for i := uint64(0); i < n && d.Err() == nil; i++ {
		cfg.Preopens = append(cfg.Preopens, wasi.Preopen{GuestPath: d.String()})
	}
	n = d.Uint()
	for i := uint64(0); i < n && d.Err() == nil; i++ {
		cfg.Listeners = append(cfg.Listeners, wasi.Listener{Name: d.String()})
	}
	if err := d.Finish(); err != nil {
		return cfg, fmt.Errorf("log header: %w", err)
	}
	return cfg, nil
}
