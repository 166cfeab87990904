package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"ftvm/storage"
)

func runEvents(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	sf := addStoreFlags(fs)
	shared := &sf.resolved
	vm := fs.String("vm", "", "only the events of VM `NAME`, and the ups and downs of the hosts it ran on")
	follow := fs.Bool("follow", false, "print new events as they come, until interrupted")
	asJSON := fs.Bool("json", false, "print one JSON object a line")
	fs.Usage = usageFunc(fs, env.stderr, "events --shared DIR [--vm NAME] [--follow] [--json]",
		"Prints the cluster's event history, oldest first: what each host did with each VM\n"+
			"(started, backup connected, peer silent, claim won or lost, went live, fenced,\n"+
			"clone started, done or failed, switchover, halted, divergence, guest exit,\n"+
			"restarted) and hosts up and down, with the time, host, VM and generation. Each host\n"+
			"keeps up to 2 MiB of it; older events are dropped.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := sf.resolve(); err != nil {
		fmt.Fprintf(env.stderr, "ftvm %s: %v\n", fs.Name(), err)
		return 2
	}
	if *shared == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	dir, _, err := sf.open(false)
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm events: %v\n", err)
		return 1
	}
	seen := map[storage.Event]bool{}
	ranOn := map[string]bool{} // with --vm: the hosts its events name
	for first := true; ; first = false {
		evs, err := dir.Events()
		if err != nil {
			fmt.Fprintf(env.stderr, "ftvm events: %v\n", err)
			return 1
		}
		if first && *vm != "" && !slices.ContainsFunc(evs, func(e storage.Event) bool { return e.VM == *vm }) {
			// A mistyped name would print every host event and no error.
			if _, err := dir.VM(*vm); err != nil {
				fmt.Fprintf(env.stderr, "ftvm events: no vm %q, and no event names it\n", *vm)
				return 1
			}
		}
		next := make(map[storage.Event]bool, len(evs))
		for _, e := range evs {
			if e.VM != "" && e.VM == *vm {
				ranOn[e.Host] = true
			}
		}
		for _, e := range evs {
			next[e] = true
			if seen[e] || *vm != "" && e.VM != *vm && (e.VM != "" || !ranOn[e.Host]) {
				continue
			}
			printEvent(env.stdout, e, *asJSON)
		}
		if !*follow {
			return 0
		}
		seen = next
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func printEvent(w io.Writer, e storage.Event, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(e)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	vm, gen := e.VM, ""
	if vm == "" {
		vm = "-"
	}
	if e.Generation > 0 {
		gen = fmt.Sprintf("gen %d", e.Generation)
	}
	fmt.Fprintf(w, "%s  %-6s %-10s %-7s %-16s %s\n", e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Host, vm, gen, e.Kind, e.Detail)
}
