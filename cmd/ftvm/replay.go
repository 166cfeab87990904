package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"

	"ftvm/replog"
	"ftvm/vmm"
	"ftvm/wasm"
)

func runReplay(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	logPath := fs.String("log", "", "replay the event log `FILE` (required)")
	until := fs.Uint64("until", 0, "stop when the guest reaches instruction count `POS`")
	save := fs.String("save", "", "with --until: save the VM to `SNAPSHOT`")
	from := fs.String("from", "", "resume from `SNAPSHOT` instead of starting the guest")
	var prof profileFlags
	prof.register(fs)
	var engine engineFlag
	engine.register(fs)
	fs.Usage = usageFunc(fs, env.stderr, "replay --log FILE [--until POS --save SNAPSHOT] [--from SNAPSHOT] [--profile FILE] [--engine TIER] GUEST.wasm",
		"Re-executes a recorded guest from its log alone: no real clock, randomness, network or\n"+
			"file reads. It writes the recorded run's stdout and stderr and exits with its status;\n"+
			"it checks every entry's position and type and stops at the first divergence. A log\n"+
			"replays under either engine tier, whichever recorded it.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || *logPath == "" {
		fs.Usage()
		return 2
	}
	if (*save == "") != (*until == 0) {
		fmt.Fprintln(env.stderr, "ftvm replay: --until and --save go together")
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(env.stderr, "ftvm replay: %v\n", err)
		return 1
	}
	cm, err := loadGuest(fs.Arg(0), engine.e)
	if err != nil {
		return fail(err)
	}
	f, err := os.Open(*logPath)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	lr, err := replog.NewReader(f)
	if err != nil {
		return fail(fmt.Errorf("%s: %w", *logPath, err))
	}
	h := lr.Header()
	if h.Module != cm.Hash {
		return fail(fmt.Errorf("%s was recorded from module sha256 %s; %s is %s",
			*logPath, hex.EncodeToString(h.Module[:8]), fs.Arg(0), hex.EncodeToString(cm.Hash[:8])))
	}
	if h.Engine != wasm.CodeVersion {
		return fail(fmt.Errorf("%s was recorded by engine code version %d; this ftvm runs version %d, whose instruction counts differ",
			*logPath, h.Engine, wasm.CodeVersion))
	}
	wcfg, err := configFromHeader(h)
	if err != nil {
		return fail(err)
	}
	wcfg.Stdout, wcfg.Stderr = env.stdout, env.stderr
	cfg := vmm.Config{WASI: wcfg, Replay: vmm.NewFileSource(lr)}
	if err := prof.apply(&cfg); err != nil {
		return fail(err)
	}
	var vm *vmm.VM
	if *from != "" {
		snap, err := os.ReadFile(*from)
		if err != nil {
			return fail(err)
		}
		if vm, err = vmm.Restore(ctx, cm, cfg, snap); err != nil {
			return fail(err)
		}
	} else if vm, err = vmm.New(cm, cfg); err != nil {
		return fail(err)
	}
	defer vm.Close()
	if *until != 0 {
		paused, exit, err := vm.RunUntil(ctx, *until)
		if err != nil {
			return fail(err)
		}
		if !paused {
			exitStatus(env, exit)
			return fail(fmt.Errorf("the guest ended at position %d, before %d: nothing saved", vm.Position(), *until))
		}
		snap, err := vm.Snapshot()
		if err != nil {
			return fail(err)
		}
		if err := os.WriteFile(*save, snap, 0o644); err != nil {
			return fail(err)
		}
		fmt.Fprintf(env.stderr, "ftvm replay: saved the VM at position %d (log entry %d) to %s\n", vm.Position(), vm.Seq(), *save)
		return 0
	}
	exit, err := vm.Run(ctx)
	if perr := prof.write(vm); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		var div *vmm.DivergenceError
		if errors.As(err, &div) {
			fmt.Fprintf(env.stderr, "ftvm replay: DIVERGENCE: %v\n", err)
			return 3
		}
		return fail(err)
	}
	return exitStatus(env, exit)
}
