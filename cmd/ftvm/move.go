package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"ftvm/host"
	"ftvm/storage"
)

func runMove(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("move", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	sf := addStoreFlags(fs)
	shared := &sf.resolved
	name := fs.String("name", "", "the VM's `NAME` (required)")
	to := fs.String("to", "", "the `HOST` to move to (required)")
	primary := fs.Bool("primary", false, "move the primary (a switchover to its backup; the backup moves to HOST first if it is elsewhere), not the backup")
	fs.Usage = usageFunc(fs, env.stderr, "move --shared DIR --name VM --to HOST [--primary]",
		"Moves a running VM's backup to HOST while the guest runs (a live clone; the new\n"+
			"pair takes the next generation and the old backup leaves), or with --primary its\n"+
			"primary: the guest pauses, the backup gets every log entry and takes over, and the\n"+
			"old primary follows as its backup (the roles swap). Clients of a moved primary see their\n"+
			"connections close and reconnect; no output is lost or repeated. Waits until the\n"+
			"move is done and prints each step.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := sf.resolve(); err != nil {
		fmt.Fprintf(env.stderr, "ftvm %s: %v\n", fs.Name(), err)
		return 2
	}
	if *shared == "" || *name == "" || *to == "" || fs.NArg() > 0 {
		if fs.NArg() > 0 {
			fmt.Fprintf(env.stderr, "ftvm move: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		} else {
			fmt.Fprintln(env.stderr, "ftvm move: --shared, --name and --to are required")
		}
		fs.Usage()
		return 2
	}
	dir, _, err := sf.open(false)
	if err == nil {
		err = host.MoveVM(ctx, dir, *name, *to, *primary, newMoveProgress(env).report)
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm move: %v\n", err)
		return 1
	}
	return 0
}

func runDrain(ctx context.Context, env *cmdEnv, args []string) int {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	sf := addStoreFlags(fs)
	shared := &sf.resolved
	hostName := fs.String("host", "", "the host `NAME` (or give it as the argument)")
	undo := fs.Bool("undo", false, "end the drain: VMs may be placed on the host again")
	fs.Usage = usageFunc(fs, env.stderr, "drain --shared DIR [--undo] HOST",
		"Empties a host for maintenance: marks it draining (no VM is placed or cloned onto\n"+
			"it any more) and moves every VM off it, one at a time, as ftvm move does: a backup\n"+
			"to the least loaded other host, a primary to its backup (then the old primary, now\n"+
			"the backup, to such a host). The last live host\n"+
			"cannot be drained. The mark lasts until --undo or the host restarts.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *hostName == "" && fs.NArg() > 0 {
		// HOST, and flags after it (drain --shared DIR h1 --undo).
		*hostName = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return 2
		}
	}
	if err := sf.resolve(); err != nil {
		fmt.Fprintf(env.stderr, "ftvm drain: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.stderr, "ftvm drain: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		fs.Usage()
		return 2
	}
	if *shared == "" || *hostName == "" {
		fmt.Fprintln(env.stderr, "ftvm drain: --shared and HOST are required")
		fs.Usage()
		return 2
	}
	dir, _, err := sf.open(false)
	if err == nil {
		err = host.DrainVMs(ctx, dir, *hostName, *undo, newMoveProgress(env).report)
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "ftvm drain: %v\n", err)
		return 1
	}
	return 0
}

// moveProgress shows a move's or a drain's progress: each step on its own
// line, with the time since the command started; a clone's progress as a
// bar redrawn in place on a terminal, else a plain line per pre-copy round.
type moveProgress struct {
	w     io.Writer
	tty   bool
	start time.Time
	bar   bool  // a bar is drawn on the current line
	round int64 // the last round reported (plain lines)
}

func newMoveProgress(env *cmdEnv) *moveProgress {
	p := &moveProgress{w: env.stdout, start: time.Now()}
	if f, ok := env.stdout.(*os.File); ok {
		p.tty = term.IsTerminal(int(f.Fd()))
	}
	return p
}

func (p *moveProgress) report(m host.MoveProgress) {
	at := time.Since(p.start).Seconds()
	if c := m.Clone; c != nil {
		if p.tty {
			const width = 30
			done := int(c.Percent()) * width / 100
			fmt.Fprintf(p.w, "\r\033[K%6.2fs  cloning to %s [%s%s] %3d %%  round %d  %s left  %s/s",
				at, c.Target, strings.Repeat("#", done), strings.Repeat("-", width-done), c.Percent(), c.Round,
				storage.Size(c.LeftBytes), storage.Size(uint64(c.Rate)))
			p.bar = true
		} else if c.Round != p.round {
			p.round = c.Round
			fmt.Fprintf(p.w, "%6.2fs  %s, %s/s\n", at, c, storage.Size(uint64(c.Rate)))
		}
		return
	}
	if p.bar {
		fmt.Fprint(p.w, "\r\033[K")
		p.bar = false
	}
	p.round = 0
	fmt.Fprintf(p.w, "%6.2fs  %s\n", at, m.Step)
}
