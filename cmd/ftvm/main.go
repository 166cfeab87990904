// Command ftvm runs WebAssembly guests as fault-tolerant virtual machines.
//
// Each subcommand lives in its own file and registers itself in commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"syscall"
)

// command is one subcommand of ftvm.
type command struct {
	summary string
	// run executes the subcommand with its arguments (without the name) and
	// returns the process exit status.
	run func(ctx context.Context, env *cmdEnv, args []string) int
}

// cmdEnv carries what a subcommand may touch, so tests can run commands
// in-process with their own streams.
type cmdEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// spareProcs is how many of the process's Ps (GOMAXPROCS) were added
	// for the host's own goroutines: ftvm host lets its guests compute on
	// the others only (see main).
	spareProcs int
}

// commands returns the table of subcommands. It is a function rather than a
// package variable so there is no global mutable state.
func commands() map[string]command {
	return map[string]command{
		"exec":      {"run a WASI guest alone", runExec},
		"run":       {"run a guest under FT on local host processes (the embedded default)", runRun},
		"host":      {"run a host daemon", runHost},
		"start":     {"start a fault-tolerant VM on two hosts", runStart},
		"stop":      {"stop a fault-tolerant VM", runStop},
		"status":    {"show hosts and VMs", runStatus},
		"events":    {"show the cluster's event history (failovers, claims, clones, ...)", runEvents},
		"move":      {"move a VM's backup or primary to another host, live", runMove},
		"proxy":     {"a local gateway whose clients' connections survive failovers (sessions)", runProxy},
		"where":     {"print where a VM's listeners are served now (its primary's addresses)", runWhere},
		"drain":     {"move every VM off a host for maintenance", runDrain},
		"rebalance": {"even out the VMs among the hosts after failures or new hosts", runRebalance},
		"failpoint": {"show or set a running host's failpoints (tests)", runFailpoint},
		"record":    {"run a guest and write its event log", runRecord},
		"replay":    {"re-execute a guest from its event log", runReplay},
		"log":       {"show an event log (log show [--stats] FILE)", runLog},
		"spectest":  {"run WebAssembly spec test suites (wast2json output)", runSpectest},
	}
}

// version describes this build: the module's version, and the commit it
// was built from when the build recorded it.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "ftvm (unknown build)"
	}
	v := "ftvm " + bi.Main.Version
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = ", modified"
			}
		}
	}
	if rev != "" {
		v += fmt.Sprintf(" (commit %.12s, %s%s)", rev, at, dirty)
	}
	return v + ", " + bi.GoVersion
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: ftvm COMMAND [ARGS...]")
	fmt.Fprintln(w, "\ncommands:")
	cmds := commands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "version", "print ftvm's version")
	fmt.Fprintln(w, "\nRun 'ftvm help COMMAND' (or 'ftvm COMMAND -h') for a command's flags.")
}

func main() {
	ctx, stop := signalContext()
	env := &cmdEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	if n := runtime.GOMAXPROCS(0); n > 1 && len(os.Args) > 1 && os.Args[1] == "host" {
		// A host's guests compute on as many Ps as it has CPUs; one P
		// more is the host's own, so that its heartbeats, logging
		// channels and timers never wait behind busy guests for a P (they
		// had waited 300 ms and more, and live peers were failed over).
		// A one-CPU host keeps its one P: there the backup's replay
		// steps aside for the logging channel instead (stepaside.go).
		runtime.GOMAXPROCS(n + 1)
		env.spareProcs = 1
	}
	code := run(ctx, env, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, env *cmdEnv, args []string) int {
	if len(args) == 0 {
		usage(env.stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && args[0] == "help" {
			// ftvm help CMD: CMD's own usage.
			if c, ok := commands()[args[1]]; ok {
				c.run(ctx, &cmdEnv{stdin: env.stdin, stdout: env.stdout, stderr: env.stdout}, []string{"-h"})
				return 0
			}
			fmt.Fprintf(env.stderr, "ftvm: unknown command %q\n\n", args[1])
			usage(env.stderr)
			return 2
		}
		usage(env.stdout)
		return 0
	case "version", "-version", "--version":
		fmt.Fprintln(env.stdout, version())
		return 0
	}
	c, ok := commands()[args[0]]
	if !ok {
		fmt.Fprintf(env.stderr, "ftvm: unknown command %q\n\n", args[0])
		usage(env.stderr)
		return 2
	}
	if path := os.Getenv("FTVM_CPUPROFILE"); path != "" {
		// For performance work: a CPU profile of the whole command.
		f, err := os.Create(path)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(env.stderr, "ftvm: FTVM_CPUPROFILE: %v\n", err)
			return 1
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if path := os.Getenv("FTVM_MEMPROFILE"); path != "" {
		// For memory work: the live heap, written at each SIGUSR2 (a
		// host's, with its VMs running).
		usr2 := make(chan os.Signal, 1)
		signal.Notify(usr2, syscall.SIGUSR2)
		defer signal.Stop(usr2)
		go func() {
			for range usr2 {
				runtime.GC()
				f, err := os.Create(path)
				if err == nil {
					err = errors.Join(pprof.Lookup("heap").WriteTo(f, 0), f.Close())
				}
				if err != nil {
					fmt.Fprintf(env.stderr, "ftvm: FTVM_MEMPROFILE: %v\n", err)
				}
			}
		}()
	}
	return c.run(ctx, env, args[1:])
}
