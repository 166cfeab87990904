package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"ftvm/host"
	"ftvm/storage"

	"mvdan.cc/sh/v3/shell"
)

// readStarts reads ftvm start --each's file (path, or r for "-"): one
// start per line, the flags and arguments ftvm start takes for one VM,
// split as a shell splits words (quotes, backslashes, $VARIABLES from the
// environment). Blank lines and lines starting with # are skipped. Every
// line is checked, its module read and compiled (once per file), before
// anything starts: a batch with one bad line starts nothing.
func readStarts(r io.Reader, path string) ([]host.Start, error) {
	src, name := r, path
	if path == "-" {
		name = "standard input"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		src = f
	}
	type guest struct {
		mod []byte
		err error
	}
	guests := map[string]guest{} // path: module (compiled once), or why not
	var starts []host.Start
	var bad []string
	sc := bufio.NewScanner(src)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		st, err := parseStartLine(line, func(p string) ([]byte, error) {
			g, ok := guests[p]
			if !ok {
				if g.mod, g.err = readModule(p); g.err == nil {
					g.err = checkModule(filepath.Base(p), g.mod)
				}
				guests[p] = g
			}
			return g.mod, g.err
		})
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s:%d: %v", name, n, err))
			continue
		}
		starts = append(starts, st)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(bad) > 0 {
		if len(bad) > 10 {
			bad = append(bad[:10], fmt.Sprintf("and %d more", len(bad)-10))
		}
		return nil, fmt.Errorf("nothing started:\n  %s", strings.Join(bad, "\n  "))
	}
	if len(starts) == 0 {
		return nil, fmt.Errorf("%s: no VM to start", name)
	}
	return starts, nil
}

// parseStartLine parses one line of --each: a VM's name, placement and
// vmFlags, then its guest (read and checked by module) and the guest's
// arguments.
func parseStartLine(line string, module func(path string) ([]byte, error)) (host.Start, error) {
	words, err := shell.Fields(line, os.Getenv)
	if err != nil {
		return host.Start{}, err
	}
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	name := fs.String("name", "", "")
	primary := fs.String("primary", "", "")
	backup := fs.String("backup", "", "")
	var vf vmFlags
	vf.register(fs)
	if err := fs.Parse(joinDiskKind(fs, words)); err != nil {
		return host.Start{}, err
	}
	switch {
	case *name == "":
		return host.Start{}, fmt.Errorf("no --name")
	case fs.NArg() < 1:
		return host.Start{}, fmt.Errorf("vm %s: no GUEST.wasm", *name)
	}
	mod, err := module(fs.Arg(0))
	if err != nil {
		return host.Start{}, fmt.Errorf("vm %s: %w", *name, err)
	}
	spec, mod, err := vf.describe(*name, filepath.Base(fs.Arg(0)), mod, fs.Args()[1:])
	if err != nil {
		return host.Start{}, fmt.Errorf("vm %s: %w", *name, err)
	}
	spec.Primary, spec.Backup = *primary, *backup
	return host.Start{Spec: spec, Module: mod}, nil
}

// startBatch starts the VMs of --each together, says where each went (or
// why it did not start), and with wait > 0 waits until every pair is up.
// It exits 0 if every VM started (and came up), else 1.
func startBatch(ctx context.Context, env *cmdEnv, dir storage.Store, starts []host.Start, wait time.Duration) int {
	began := time.Now()
	results := host.StartVMs(dir, starts, began)
	var up []host.Started
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(env.stderr, "vm %s: not started: %v\n", r.Spec.Name, r.Err)
			failed++
			continue
		}
		announceStart(env.stdout, r.Spec, r.Owner)
		up = append(up, r)
	}
	fmt.Fprintf(env.stdout, "started %d of %d vms in %v\n", len(up), len(results), time.Since(began).Round(time.Millisecond))
	if wait > 0 && len(up) > 0 {
		deadline := time.Now().Add(wait)
		for len(up) > 0 && time.Now().Before(deadline) {
			waiting := up[:0]
			for _, r := range up {
				ok, err := pairUp(dir, r.Spec, r.Owner)
				switch {
				case err != nil:
					fmt.Fprintf(env.stderr, "%v\n", err)
					failed++
				case ok:
					fmt.Fprintf(env.stdout, "vm %s: running, backup connected\n", r.Spec.Name)
				default:
					waiting = append(waiting, r)
				}
			}
			if up = waiting; len(up) == 0 {
				break
			}
			select {
			case <-ctx.Done():
				fmt.Fprintf(env.stderr, "ftvm start: %v\n", ctx.Err())
				return 1
			case <-time.After(200 * time.Millisecond):
			}
		}
		if len(up) > 0 {
			fmt.Fprintf(env.stderr, "ftvm start: %d pairs did not come up within %v (see ftvm status), the first: vm %s\n", len(up), wait, up[0].Spec.Name)
			failed += len(up)
		} else if failed == 0 {
			fmt.Fprintf(env.stdout, "all pairs up in %v\n", time.Since(began).Round(time.Millisecond))
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}
