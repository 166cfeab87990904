package vmm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"ftvm/internal/guesttest"
	"ftvm/replog"
	"ftvm/vmm"
	"ftvm/wasi"
	"ftvm/wasm"
)

// cloneRun is a primary's run cloned mid-way: the clone's final state and
// what the primary had printed by then.
type cloneRun struct {
	cutRun
	final   []byte
	seq     uint64 // the last entry the clone's state has
	printed int    // bytes of stdout the primary had written at the clone
	memHash [32]byte
	state   []byte // the primary's WASI state at the clone
	target  *vmm.CloneTarget
	rounds  int
}

// recordClone runs the guest recording, as recordCut does (it dies at entry
// cut, if not 0), in runs of step instructions, and clones it while it
// runs: the clone starts at the first pause between runs past position
// startAt, copies at most chunk bytes of memory at each pause, and finishes
// at the first pause past finishAt.
func recordClone(t *testing.T, cm *wasm.CompiledModule, args, guestPaths []string, cut int, step, startAt, finishAt uint64, chunk int) cloneRun {
	t.Helper()
	var out, errb bytes.Buffer
	cfg := wasi.Config{Args: args, Stdout: &out, Stderr: &errb}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sink := &cutSink{cut: cut, stop: stop}
	var dirs []string
	for _, g := range guestPaths {
		d := t.TempDir()
		cfg.Preopens = append(cfg.Preopens, wasi.Preopen{GuestPath: g, HostDir: d})
		dirs = append(dirs, d)
	}
	oh, err := wasi.NewOSHost(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer oh.CloseAll()
	vm, err := vmm.New(cm, vmm.Config{WASI: cfg, Record: sink, Host: skewedClock{oh, skew}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	r := cloneRun{target: vmm.NewCloneTarget(cm)}
	var src *vmm.CloneSource
	for {
		paused, exit, err := vm.RunUntil(ctx, vm.Position()+step)
		switch {
		case errors.Is(err, errCut) || errors.Is(err, context.Canceled):
		case err != nil:
			t.Fatalf("record: %v (stderr %s)", err, errb.String())
		}
		if !paused {
			r.cutRun = cutRun{stdout: out.String(), exit: exit, entries: sink.entries, dirs: dirs, stopped: vm.Position()}
			break
		}
		switch pos := vm.Position(); {
		case r.final != nil:
		case src == nil && pos >= startAt:
			if src, err = vm.StartClone(); err != nil {
				t.Fatal(err)
			}
		case src != nil && pos >= finishAt:
			// As a host does: the last pages in chunks, then the rest.
			// More left than allowed: nothing taken.
			if left := src.Remaining(); left > 0 {
				if c, got, ok := src.FinishPages(chunk, left-1); ok || c != nil || got != left || src.Remaining() != left {
					t.Fatalf("FinishPages with %d bytes left, at most %d: %d chunks, %d left, %v; then %d left", left, left-1, len(c), got, ok, src.Remaining())
				}
			}
			last, _, _ := src.FinishPages(chunk, math.MaxUint64)
			for _, c := range last {
				if c.Bytes() > max(chunk, wasm.DirtyPageSize) {
					t.Fatalf("a final chunk of %d bytes, over the limit of %d", c.Bytes(), chunk)
				}
				if err := r.target.Apply(c); err != nil {
					t.Fatal(err)
				}
			}
			r.final, r.seq, err = src.Finish([2]uint64{uint64(out.Len()), 0}, [2][]byte{})
			if err != nil {
				t.Fatal(err)
			}
			r.printed, r.rounds = out.Len(), src.Round()
			r.memHash = sha256.Sum256(vm.Instance().Memory().Bytes())
			if r.state, err = vm.System().MarshalState(); err != nil {
				t.Fatal(err)
			}
		case src != nil:
			if err := r.target.Apply(src.Copy(chunk)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if r.final == nil {
		t.Fatalf("the run ended (%d entries) before the clone finished", len(r.entries))
	}
	return r
}

// TestCloneMidRun: a recording primary is cloned while it runs, in rounds
// of dirty pages and a final pause; a backup restored from the clone has
// the primary's memory and system state at the clone point, and, given the
// entries after it, replays on. The primary then dies at an entry past the
// clone; the cloned backup goes live there and finishes the run: what the
// primary printed before the clone and what the backup printed after make
// the output of an uninterrupted run, and the disk is that run's.
func TestCloneMidRun(t *testing.T) {
	for _, c := range []struct {
		guest  string
		c      bool
		args   []string
		paths  []string
		chunks []int
	}{
		{"wasi-effects", true, []string{"wasi-effects", "/data"}, []string{"/data"}, []int{4096, 1 << 20}},
		{"wasi-journal", false, []string{"wasi-journal", "/data", "/other", "150"}, []string{"/data", "/other"}, []int{64 << 10}},
	} {
		t.Run(c.guest, func(t *testing.T) {
			var bin []byte
			if c.c {
				bin = guesttest.BuildC(t, c.guest)
			} else {
				bin = guesttest.Build(t, c.guest)
			}
			cm, err := wasm.Compile(bin, guesttest.Config())
			if err != nil {
				t.Fatal(err)
			}
			probe := recordCut(t, cm, c.args, c.paths, 0, false)
			rng := rand.New(rand.NewPCG(3, 9))
			runs := 4
			if testing.Short() {
				runs = 1
			}
			for i := range runs {
				chunk := c.chunks[i%len(c.chunks)]
				startAt := rng.Uint64N(probe.stopped / 2)
				finishAt := startAt + rng.Uint64N(probe.stopped/4)
				t.Run(fmt.Sprintf("clone-%d-%d-chunk-%d", startAt, finishAt, chunk), func(t *testing.T) {
					cloneThenGoLive(t, cm, c.args, c.paths, probe, startAt, finishAt, chunk, rng)
				})
			}
		})
	}
}

func cloneThenGoLive(t *testing.T, cm *wasm.CompiledModule, args, paths []string, probe cutRun, startAt, finishAt uint64, chunk int, rng *rand.Rand) {
	// A first run finds how many entries the clone's state has, and where
	// the run may die after it.
	step := max(probe.stopped/200, 1000)
	whole := recordClone(t, cm, args, paths, 0, step, startAt, finishAt, chunk)
	if int(whole.seq) >= len(whole.entries)-1 {
		t.Skipf("the clone ends at entry %d of %d: nothing after it to die at", whole.seq, len(whole.entries))
	}
	cut := int(whole.seq) + 1 + rng.IntN(len(whole.entries)-1-int(whole.seq))
	rec := recordClone(t, cm, args, paths, cut, step, startAt, finishAt, chunk)
	t.Logf("cloned at entry %d after %d rounds, %d bytes of memory; the primary dies at entry %d of %d",
		rec.seq, rec.rounds, rec.target.Received(), cut, len(whole.entries))

	src := vmm.NewLiveSource(rec.seq)
	var out, errb bytes.Buffer
	cfg := wasi.Config{Args: args, Stdout: &out, Stderr: &errb}
	for i, g := range paths {
		cfg.Preopens = append(cfg.Preopens, wasi.Preopen{GuestPath: g, HostDir: rec.dirs[i]})
	}
	backup, seq, err := rec.target.Finish(cm, vmm.Config{WASI: cfg, Replay: src}, rec.final)
	if err != nil {
		t.Fatal(err)
	}
	defer backup.Close()
	if seq != rec.seq || backup.Seq() != rec.seq {
		t.Fatalf("the clone's state ends at entry %d, the VM at %d, want %d", seq, backup.Seq(), rec.seq)
	}
	if h := sha256.Sum256(backup.Instance().Memory().Bytes()); h != rec.memHash {
		t.Fatal("the clone's memory differs from the primary's at the clone point")
	}
	if st, _ := backup.System().MarshalState(); !bytes.Equal(st, rec.state) {
		t.Fatal("the clone's system state differs from the primary's at the clone point")
	}
	after := rec.entries[rec.seq:]
	known := vmm.CompleteThrough(rec.entries[len(rec.entries)-1])
	if err := src.Push(replog.Batch{Entries: after, Pos: known}); err != nil {
		t.Fatal(err)
	}
	src.End()
	ctx := context.Background()
	if _, err := backup.Run(ctx); !errors.Is(err, vmm.ErrLogEnded) {
		t.Fatalf("backup: %v, want ErrLogEnded (stderr %s)", err, errb.String())
	}
	if _, err := backup.Settle(cfg); err != nil {
		t.Fatal(err)
	}
	if err := backup.GoLive(); err != nil {
		t.Fatal(err)
	}
	exit, err := backup.Run(ctx)
	if err != nil {
		t.Fatalf("live run: %v (stderr %s)", err, errb.String())
	}
	if got := probe.stdout[:rec.printed] + out.String(); exit != probe.exit || got != probe.stdout {
		t.Fatalf("exit %+v, output (the primary's %d bytes, then the clone's):\n%s\nwant exit %+v:\n%s\nstderr %s",
			exit, rec.printed, got, probe.exit, probe.stdout, errb.String())
	}
	for i := range paths {
		if want, got := tree(t, probe.dirs[i]), tree(t, rec.dirs[i]); fmt.Sprint(want) != fmt.Sprint(got) {
			t.Errorf("%s after going live:\n%v\nwant\n%v", paths[i], got, want)
		}
	}
}

// TestReplaying: a recording VM paused mid-run becomes, in place, a VM
// that replays from where it stood (a primary that handed over becoming
// the backup): it has the same memory, system state and last entry, and,
// its log ending there, goes live and finishes the run as an
// uninterrupted one would.
func TestReplaying(t *testing.T) {
	cm, err := wasm.Compile(guesttest.BuildC(t, "wasi-effects"), guesttest.Config())
	if err != nil {
		t.Fatal(err)
	}
	args, paths := []string{"wasi-effects", "/data"}, []string{"/data"}
	probe := recordCut(t, cm, args, paths, 0, false)
	for _, at := range []uint64{probe.stopped / 5, probe.stopped / 2, probe.stopped * 4 / 5} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			var out, errb bytes.Buffer
			dir := t.TempDir()
			cfg := wasi.Config{Args: args, Stdout: &out, Stderr: &errb, Preopens: []wasi.Preopen{{GuestPath: paths[0], HostDir: dir}}}
			oh, err := wasi.NewOSHost(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer oh.CloseAll()
			vm, err := vmm.New(cm, vmm.Config{WASI: cfg, Record: &cutSink{stop: func() {}}, Host: skewedClock{oh, skew}})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if paused, _, err := vm.RunUntil(ctx, at); err != nil || !paused {
				t.Fatalf("run to %d: paused %v, err %v", at, paused, err)
			}
			memHash := sha256.Sum256(vm.Instance().Memory().Bytes())
			state, _ := vm.System().MarshalState()
			seq, printed := vm.Seq(), out.Len()
			oh.CloseAll()

			src := vmm.NewLiveSource(seq)
			var out2 bytes.Buffer
			cfg2 := cfg
			cfg2.Stdout = &out2
			r, got, err := vm.Replaying(cm, vmm.Config{WASI: cfg2, Replay: src}, [2]uint64{uint64(printed), uint64(errb.Len())}, [2][]byte{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if got != seq || r.Seq() != seq {
				t.Fatalf("replaying from entry %d (VM at %d), want %d", got, r.Seq(), seq)
			}
			if h := sha256.Sum256(r.Instance().Memory().Bytes()); h != memHash {
				t.Fatal("the replaying VM's memory differs from the recording one's")
			}
			if st, _ := r.System().MarshalState(); !bytes.Equal(st, state) {
				t.Fatal("the replaying VM's system state differs from the recording one's")
			}
			src.End()
			if _, err := r.Run(ctx); !errors.Is(err, vmm.ErrLogEnded) {
				t.Fatalf("replay: %v, want ErrLogEnded", err)
			}
			if _, err := r.Settle(cfg2); err != nil {
				t.Fatal(err)
			}
			if err := r.GoLive(); err != nil {
				t.Fatal(err)
			}
			exit, err := r.Run(ctx)
			if err != nil {
				t.Fatalf("live run: %v (stderr %s)", err, errb.String())
			}
			if whole := out.String() + out2.String(); exit != probe.exit || whole != probe.stdout {
				t.Fatalf("exit %+v, output:\n%s\nwant exit %+v:\n%s", exit, whole, probe.exit, probe.stdout)
			}
		})
	}
}
