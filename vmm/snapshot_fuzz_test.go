package vmm_test

import (
	"context"
	"io"
	"testing"
	"time"

	"ftvm/vmm"
	"ftvm/wasi"
)

// FuzzRestore feeds Restore arbitrary bytes as a VM snapshot (`ftvm replay
// --from` reads them from a file): it must return an error or a VM, never
// panic, and a VM it returns must replay on, or stop with an error, without
// panicking either. The seeds are real snapshots of a recorded guest.
func FuzzRestore(f *testing.F) {
	cm := compile(f, "wasi-basics")
	cfg := wasi.Config{Args: []string{"wasi-basics", "clock"}}
	rec := record(f, cm, cfg)
	for _, pos := range []uint64{1, rec.count / 3, rec.count / 2, rec.count - 1} {
		vm, err := vmm.New(cm, vmm.Config{WASI: wasi.Config{Args: cfg.Args, Stdout: io.Discard, Stderr: io.Discard}, Replay: rec.log.reader()})
		if err != nil {
			f.Fatal(err)
		}
		if paused, _, err := vm.RunUntil(context.Background(), pos); err != nil || !paused {
			f.Fatalf("run until %d: paused %v, %v", pos, paused, err)
		}
		snap, err := vm.Snapshot()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(snap)
		vm.Close()
	}
	f.Add([]byte{})
	f.Add([]byte("FTVMVM01"))
	f.Fuzz(func(t *testing.T, snap []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		rcfg := wasi.Config{Args: cfg.Args, Stdout: io.Discard, Stderr: io.Discard}
		vm, err := vmm.Restore(ctx, cm, vmm.Config{WASI: rcfg, Replay: rec.log.reader()}, snap)
		if err != nil {
			return
		}
		defer vm.Close()
		until := vm.Position() + 1_000_000
		if until < vm.Position() {
			until = ^uint64(0)
		}
		_, _, _ = vm.RunUntil(ctx, until)
	})
}
