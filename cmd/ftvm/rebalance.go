package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"ftvm/host"
)

func runRebalance(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("rebalance", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	sf := addStoreFlags(fs)
	shared := &sf.resolved
	dryRun := fs.Bool("dry-run", false, "print the moves, make none")
	parallel := fs.Int("parallel", 4, "make up to `N` moves at once")
	fs.Usage = usageFunc(fs, env.stderr, "rebalance --shared DIR [--dry-run] [--parallel 4]",
		"Evens out the running VMs among the live hosts that are not draining, as failures\n"+
			"and new hosts leave them uneven: first backups move, live, from the hosts with the\n"+
			"most replicas to those with the fewest (as ftvm move does), then primaries hand\n"+
			"over to their backups (switchovers) until no host has two primaries more than\n"+
			"another where a switchover can help. Prints the plan, then each step.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := sf.resolve(); err != nil {
		fmt.Fprintf(env.stderr, "ftvm %s: %v\n", fs.Name(), err)
		return 2
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(env.stderr, "ftvm rebalance: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	case *shared == "":
		fs.Usage()
		return 2
	case *parallel < 1:
		fmt.Fprintf(env.stderr, "ftvm rebalance: --parallel %d: want 1 or more\n", *parallel)
		return 2
	}
	dir, _, err := sf.open(false)
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm rebalance: %v\n", err)
		return 1
	}
	mp := newMoveProgress(env)
	report := func(p host.MoveProgress) {
		if p.Clone != nil && *parallel > 1 {
			return // the bars of clones at once would overwrite each other
		}
		mp.report(p)
	}
	plan, failed, err := host.Rebalance(ctx, dir, *dryRun, *parallel, report)
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm rebalance: %v\n", err)
		return 1
	}
	switch {
	case len(plan) == 0:
		fmt.Fprintln(env.stdout, "balanced: nothing to move")
	case *dryRun:
		fmt.Fprintf(env.stdout, "%d moves (none made: --dry-run)\n", len(plan))
	case failed > 0:
		fmt.Fprintf(env.stderr, "ftvm rebalance: %d of %d moves failed (see above); run it again once the VMs run\n", failed, len(plan))
		return 1
	default:
		fmt.Fprintf(env.stdout, "%d moves made in %.1fs\n", len(plan), time.Since(mp.start).Seconds())
	}
	return 0
}
