package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"ftvm/replog"
	"ftvm/vmm"
)

func runLog(ctx context.Context, env *cmdEnv, args []string) int {
	if len(args) == 0 || args[0] != "show" {
		fmt.Fprintln(env.stderr, "usage: ftvm log show [--stats] FILE")
		return 2
	}
	fs := flag.NewFlagSet("log show", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	stats := fs.Bool("stats", false, "print counts and bytes per entry type instead of the entries")
	fs.Usage = usageFunc(fs, env.stderr, "log show [--stats] FILE",
		"Prints an event log: sequence, position, type, size and the start of the data.")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm log: %v\n", err)
		return 1
	}
	defer f.Close()
	if err := showLog(ctx, env.stdout, f, *stats); err != nil {
		fmt.Fprintf(env.stderr, "ftvm log: %s: %v\n", fs.Arg(0), err)
		return 1
	}
	return 0
}

func showLog(ctx context.Context, w io.Writer, r io.Reader, stats bool) error {
	lr, err := replog.NewReader(r)
	if err != nil {
		return err
	}
	h := lr.Header()
	fmt.Fprintf(w, "module sha256 %s\nengine code version %d\n", hex.EncodeToString(h.Module[:]), h.Engine)
	if h.Tier != "" {
		// Logs before the field have none to say.
		fmt.Fprintf(w, "engine tier %s\n", h.Tier)
	}
	fmt.Fprintf(w, "args   %q\n", h.Args)
	if len(h.Env) > 0 {
		fmt.Fprintf(w, "env    %q\n", h.Env)
	}
	type stat struct{ n, bytes int }
	per := map[string]*stat{}
	var total stat
	malformed := 0
	if !stats {
		fmt.Fprintf(w, "%8s %14s  %-22s %8s  %s\n", "SEQ", "POSITION", "TYPE", "SIZE", "DATA")
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		e, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := vmm.TypeName(e.Type)
		if stats {
			s := per[name]
			if s == nil {
				s = &stat{}
				per[name] = s
			}
			s.n++
			s.bytes += len(e.Data)
			total.n++
			total.bytes += len(e.Data)
			continue
		}
		data := preview(e.Data)
		if e.Type == vmm.TypeIntent {
			data = vmm.DescribeIntent(e.Data)
			if strings.HasPrefix(data, "malformed") {
				malformed++
			}
		}
		fmt.Fprintf(w, "%8d %14d  %-22s %8d  %s\n", e.Seq, e.Pos, name, len(e.Data), data)
	}
	if stats {
		names := make([]string, 0, len(per))
		for n := range per {
			names = append(names, n)
		}
		sort.Slice(names, func(i, j int) bool { return per[names[i]].bytes > per[names[j]].bytes })
		fmt.Fprintf(w, "%-22s %10s %12s\n", "TYPE", "ENTRIES", "BYTES")
		for _, n := range names {
			fmt.Fprintf(w, "%-22s %10d %12d\n", n, per[n].n, per[n].bytes)
		}
		fmt.Fprintf(w, "%-22s %10d %12d\n", "total", total.n, total.bytes)
	}
	if malformed > 0 {
		return fmt.Errorf("%d malformed intent entries: the log is corrupt", malformed)
	}
	return nil
}

// preview shows the first bytes of data as hex and, where printable, text.
func preview(b []byte) string {
	const n = 16
	cut := b
	if len(cut) > n {
		cut = cut[:n]
	}
	var text strings.Builder
	for _, c := range cut {
		if c >= 0x20 && c < 0x7f {
			text.WriteByte(c)
		} else {
			text.WriteByte('.')
		}
	}
	s := hex.EncodeToString(cut)
	if len(b) > n {
		s += "…"
	}
	return fmt.Sprintf("%-33s |%s|", s, text.String())
}
