package wasm

import (
	"bytes"
	"math"
	"runtime"
	"testing"
)

// growModule exports work(n): n times, memory.grow by 16 pages and a store
// in the second 4 KiB page of the new ones; it returns the size in pages.
func growModule(t *testing.T, e Engine) *CompiledModule {
	t.Helper()
	var b modBuilder
	ti := b.typ([]ValType{I32}, []ValType{I32})
	b.memory(1)
	body := []byte{
		0x02, 0x40, // block
		0x03, 0x40, // loop
		0x20, 0x00, 0x45, 0x0d, 0x01, // local.get 0; i32.eqz; br_if 1
		0x41, 0x10, 0x40, 0x00, 0x21, 0x01, // local.1 = memory.grow 16
		0x20, 0x01, 0x41, 0x10, 0x74, // local.1 << 16
		0x20, 0x00, 0x41, 0xef, 0x3d, 0x6c, // local.0 * 7919
		0x36, 0x02, 0x88, 0x60, // i32.store offset=12296
		0x20, 0x00, 0x41, 0x01, 0x6b, 0x21, 0x00, // local.0--
		0x0c, 0x00, // br 0
		0x0b, 0x0b, // end loop, end block
		0x3f, 0x00, // memory.size
	}
	b.fn(ti, "work", []ValType{I32}, body...)
	cm, err := Compile(b.bytes(), Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

func runWork(t *testing.T, in *Instance, n uint32) uint32 {
	t.Helper()
	if err := in.Invoke(in.ExportedFunc("work"), []uint64{uint64(n)}); err != nil {
		t.Fatal(err)
	}
	st, err := in.Run(math.MaxUint64)
	if err != nil || st.Reason != StopDone {
		t.Fatalf("run: %v %v", st.Reason, err)
	}
	return uint32(st.Results[0])
}

// TestSnapshotGrownMemory snapshots a memory the guest grew, on both tiers,
// restores it both ways (with the memory, and apart), and checks the
// restored memory, its snapshot (byte for byte), and that it grows on.
func TestSnapshotGrownMemory(t *testing.T) {
	var digests [][]byte
	for _, e := range []Engine{EngineInterpreter, EngineCompiler} {
		if e == EngineCompiler && !CompilerAvailable() {
			continue
		}
		cm := growModule(t, e)
		in, err := NewStore().Instantiate(cm, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := runWork(t, in, 40); got != 1+40*16 {
			t.Fatalf("%v: %d pages", e, got)
		}
		snap, err := in.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		state, err := in.SnapshotState()
		if err != nil {
			t.Fatal(err)
		}
		mem := bytes.Clone(in.Memory().Bytes())
		a, err := NewStore().Restore(cm, nil, snap)
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewStore().RestoreWithMemory(cm, nil, state, bytes.Clone(mem))
		if err != nil {
			t.Fatal(err)
		}
		for i, re := range []*Instance{a, b} {
			if !bytes.Equal(re.Memory().Bytes(), mem) || re.Memory().DirtyCount() != 0 {
				t.Fatalf("%v, restore %d: the memory differs, or has dirty pages", e, i)
			}
			resnap, err := re.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(resnap, snap) {
				t.Fatalf("%v, restore %d: the snapshot of the restored instance differs", e, i)
			}
		}
		// All three go on alike.
		for _, x := range []*Instance{in, a, b} {
			if got := runWork(t, x, 5); got != 1+45*16 {
				t.Fatalf("%v: %d pages after more work", e, got)
			}
		}
		if !bytes.Equal(a.Memory().Bytes(), in.Memory().Bytes()) || !bytes.Equal(b.Memory().Bytes(), in.Memory().Bytes()) {
			t.Fatalf("%v: the restored instances' memories differ from the original's after more work", e)
		}
		// Their memories' bytes are not on the heap: they go with them.
		runtime.KeepAlive(a)
		runtime.KeepAlive(b)
		digests = append(digests, bytes.Clone(in.Memory().Bytes())) // a copy, as above
	}
	if len(digests) == 2 && !bytes.Equal(digests[0], digests[1]) {
		t.Fatal("the tiers' memories differ")
	}
}
