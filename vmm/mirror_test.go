package vmm_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ftvm/internal/guesttest"
	"ftvm/replog"
	"ftvm/vmm"
	"ftvm/wasi"
	"ftvm/wasm"
)

// mirrorOf opens the OS host a backup keeps its own copy of the guest's
// files with: the preopens of cfg over dirs, and nothing else.
func mirrorOf(t *testing.T, paths, dirs []string) *wasi.OSHost {
	t.Helper()
	var cfg wasi.Config
	for i, g := range paths {
		cfg.Preopens = append(cfg.Preopens, wasi.Preopen{GuestPath: g, HostDir: dirs[i]})
	}
	m, err := wasi.NewOSHost(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.CloseAll() })
	return m
}

// TestGoLiveLocalDisk: with a local disk, the backup keeps a copy of its
// own and performs every file effect on it as it replays (wasi-effects
// performs every kind and checks every result). Its primary dies at every
// point of its run, after each entry reached the backup and after each
// call performed its effect but before the entry reached the backup; the
// backup goes live on its own copy, never the primary's, and finishes the
// run: output, exit status and the backup's copy are those of an
// uninterrupted run.
func TestGoLiveLocalDisk(t *testing.T) {
	cm, err := wasm.Compile(guesttest.BuildC(t, "wasi-effects"), guesttest.Config())
	if err != nil {
		t.Fatal(err)
	}
	args, paths := []string{"wasi-effects", "/data"}, []string{"/data"}
	probe := recordCut(t, cm, args, paths, 0, false)
	rng := rand.New(rand.NewPCG(3, 9))
	step := 1
	if testing.Short() {
		step = 7
	}
	for cut := 1; cut < len(probe.entries); cut += step {
		for _, lost := range []bool{false, true} {
			t.Run(fmt.Sprintf("entry-%d-lost-%v", cut, lost), func(t *testing.T) {
				goLiveAfter(t, cm, args, paths, probe, cut, lost, true, rng, nil)
			})
		}
	}
}

// TestMirrorKeepsCopy: a backup replaying a whole run with a mirror ends
// with a copy equal to the primary's, files kept open and orphaned
// included (wasi-journal removes a file it holds and goes on using it).
func TestMirrorKeepsCopy(t *testing.T) {
	cm := compile(t, "wasi-journal")
	args, paths := []string{"wasi-journal", "/data", "/other", "150"}, []string{"/data", "/other"}
	probe := recordCut(t, cm, args, paths, 0, false)
	own := []string{t.TempDir(), t.TempDir()}
	replay := replayWithMirror(t, cm, args, paths, own, probe.entries)
	if err := replay; err != nil {
		t.Fatal(err)
	}
	for i := range paths {
		if want, got := tree(t, probe.dirs[i]), tree(t, own[i]); fmt.Sprint(want) != fmt.Sprint(got) {
			t.Errorf("%s: the backup's copy\n%v\nwant\n%v", paths[i], got, want)
		}
	}
}

// TestMirrorDivergence: a backup whose copy is not the primary's (a file
// the primary's had not) stops with a divergence that names the entry and
// its own disk, rather than go on with a copy that differs.
func TestMirrorDivergence(t *testing.T) {
	cm, err := wasm.Compile(guesttest.BuildC(t, "wasi-effects"), guesttest.Config())
	if err != nil {
		t.Fatal(err)
	}
	args, paths := []string{"wasi-effects", "/data"}, []string{"/data"}
	probe := recordCut(t, cm, args, paths, 0, false)
	own := []string{t.TempDir()}
	// Every path the run makes, made beforehand on the backup's copy: the
	// run's first exclusive create or mkdir fails there.
	for rel, kind := range tree(t, probe.dirs[0]) {
		if rel == "." {
			continue
		}
		p := filepath.Join(own[0], rel)
		if kind == "dir" {
			os.MkdirAll(p, 0o755)
		} else {
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, []byte("not the primary's"), 0o644)
		}
	}
	err = replayWithMirror(t, cm, args, paths, own, probe.entries)
	var div *vmm.DivergenceError
	if !errors.As(err, &div) || div.Seq == 0 || !strings.Contains(div.Detail, "this replica's own disk") {
		t.Fatalf("replay onto a copy that differs: %v, want a divergence at an entry naming the replica's own disk", err)
	}
	t.Log(err)
}

// replayWithMirror replays entries to their end, with the guest's files
// mirrored onto dirs.
func replayWithMirror(t *testing.T, cm *wasm.CompiledModule, args, paths, dirs []string, entries []replog.Entry) error {
	t.Helper()
	src := vmm.NewLiveSource(0)
	if err := src.Push(replog.Batch{Entries: entries, Pos: vmm.CompleteThrough(entries[len(entries)-1])}); err != nil {
		t.Fatal(err)
	}
	src.End()
	cfg := wasi.Config{Args: args}
	for _, g := range paths {
		cfg.Preopens = append(cfg.Preopens, wasi.Preopen{GuestPath: g})
	}
	vm, err := vmm.New(cm, vmm.Config{WASI: cfg, Replay: src, Mirror: mirrorOf(t, paths, dirs)})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	_, err = vm.Run(context.Background())
	return err
}
