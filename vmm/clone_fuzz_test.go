package vmm_test

import (
	"context"
	"io"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/vmm"
	"ftvm/wasi"
	"ftvm/wasm"
)

// FuzzCloneFinish feeds a clone target arbitrary bytes as a pre-copy chunk
// and as a clone's final state (both arrive over the network from another
// host): it must return an error or a VM, never panic, and a VM it returns
// must replay on, or stop with an error, without panicking either. The
// seeds are real clones of a running guest.
func FuzzCloneFinish(f *testing.F) {
	// Memory is capped, as a host's would be, so that a chunk claiming a
	// memory of the module's largest size does not exhaust the fuzzer's.
	cm, err := wasm.Compile(guesttest.Build(f, "wasi-basics"), wasm.Config{MaxMemoryPages: 1024, Engine: guesttest.EnvEngine()})
	if err != nil {
		f.Fatal(err)
	}
	cfg := wasi.Config{Args: []string{"wasi-basics", "clock"}, Stdout: io.Discard, Stderr: io.Discard}
	log := &memLog{}
	vm, err := vmm.New(cm, vmm.Config{WASI: cfg, Record: log, Engine: wasm.Config{MaxMemoryPages: 1024}})
	if err != nil {
		f.Fatal(err)
	}
	defer vm.Close()
	ctx := context.Background()
	for _, step := range []uint64{1, 100_000, 200_000} {
		if _, _, err := vm.RunUntil(ctx, vm.Position()+step); err != nil {
			f.Fatal(err)
		}
		src, err := vm.StartClone()
		if err != nil {
			f.Fatal(err)
		}
		chunk := src.Copy(64 << 10)
		final, _, err := src.Finish([2]uint64{3, 0}, [2][]byte{[]byte("out"), nil})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(vmm.EncodeChunk(nil, chunk), final)
	}
	f.Add([]byte{}, []byte("FTVMCLN2"))
	f.Fuzz(func(t *testing.T, chunk, final []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		tgt := vmm.NewCloneTarget(cm)
		if c, err := vmm.DecodeChunk(chunk); err == nil {
			if err := tgt.Apply(c); err != nil {
				return
			}
		}
		vm, _, err := tgt.Finish(cm, vmm.Config{WASI: cfg, Replay: log.reader()}, final)
		if err != nil {
			return
		}
		defer vm.Close()
		_, _, _ = vm.RunUntil(ctx, vm.Position()+1_000_000)
	})
}
