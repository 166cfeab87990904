package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"ftvm/host"
)

// printJSON prints v as indented JSON.
func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func runWhere(_ context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("where", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	sf := addStoreFlags(fs)
	asJSON := fs.Bool("json", false, "print JSON: the VM, its generation, its primary host, the listeners' addresses there, the primary's session address")
	fs.Usage = usageFunc(fs, env.stderr, "where --shared DIR|--store URL [--json] VM",
		"Prints where VM is served now, for scripts: the address of each of its guest's listeners\n"+
			"at its current primary, one a line (a listener on 0.0.0.0 or :: is given the primary\n"+
			"host's address). It fails if the VM is stopped or has no primary. Clients that must\n"+
			"not see failovers use ftvm proxy instead.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	vm := ""
	if fs.NArg() > 0 {
		vm = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil { // flags after VM
			return 2
		}
	}
	if err := sf.resolve(); err != nil {
		fmt.Fprintf(env.stderr, "ftvm where: %v\n", err)
		return 2
	}
	switch {
	case sf.resolved == "" || vm == "":
		fmt.Fprintln(env.stderr, "ftvm where: --shared (or --store) and VM are required")
		fs.Usage()
		return 2
	case fs.NArg() > 0:
		fmt.Fprintf(env.stderr, "ftvm where: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	dir, _, err := sf.open(false)
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm where: %v\n", err)
		return 1
	}
	loc, err := host.Where(dir, vm, time.Now())
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm where: %v\n", err)
		return 1
	}
	if *asJSON {
		printJSON(env.stdout, loc)
		return 0
	}
	if !loc.Alive {
		fmt.Fprintf(env.stderr, "ftvm where: vm %s: its primary %s is not alive (a failover may be under way: try again)\n", vm, loc.Primary)
		return 1
	}
	for _, a := range loc.Listeners {
		fmt.Fprintln(env.stdout, a)
	}
	return 0
}
