package wasm

import (
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// nestedModule: outer(n) sums inner(acc) n times, and inner(x) returns
// x + next(), next being a host function; memory of one page, which may
// grow to 16 (so that a snapshot cannot make a restore allocate
// gigabytes). A snapshot taken inside inner has a caller frame.
func nestedModule(t testing.TB) *CompiledModule {
	var b modBuilder
	tNext := b.typ(nil, []ValType{I32})
	tI := b.typ([]ValType{I32}, []ValType{I32})
	next := b.importFunc("env", "next", tNext)
	b.memory(1)
	inner := b.fn(tI, "inner", nil, 0x20, 0x00, 0x10, byte(next), 0x6a)
	b.fn(tI, "outer", []ValType{I32},
		0x02, 0x40, 0x03, 0x40, // block, loop
		0x20, 0x00, 0x45, 0x0d, 0x01, // local.get 0; i32.eqz; br_if 1
		0x20, 0x01, 0x10, byte(inner), 0x21, 0x01, // acc = inner(acc)
		0x20, 0x00, 0x20, 0x01, 0x36, 0x02, 0x00, // mem[n] = acc
		0x20, 0x00, 0x41, 0x01, 0x6b, 0x21, 0x00, // n--
		0x0c, 0x00, 0x0b, 0x0b, // br 0, end, end
		0x20, 0x01)
	cm, err := Compile(b.bytes(), Config{MaxMemoryPages: 16, MaxCallDepth: 200, MaxStackValues: 1 << 16, Engine: testEngine})
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// snapshotSeeds are snapshots of the nested module at several points of a
// run: before it starts, at a pending host call (two frames), and between.
func snapshotSeeds(t testing.TB, cm *CompiledModule) [][]byte {
	in, err := NewStore().Instantiate(cm, hostResolver)
	if err != nil {
		t.Fatal(err)
	}
	var seeds [][]byte
	take := func() {
		snap, err := in.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, snap)
	}
	take()
	if err := in.Invoke(in.ExportedFunc("outer"), []uint64{5}); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		st, err := in.Run(7)
		if err != nil {
			t.Fatal(err)
		}
		take()
		if st.Reason == StopHostCall {
			if err := in.Resume([]uint64{3}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return seeds
}

// FuzzRestore: a snapshot is a file a user hands to `ftvm replay --from`.
// Any bytes either fail to restore with an error, or restore into an
// instance that then runs (for a bounded budget) to a result, a trap, or an
// error, never a panic. The checksum is recomputed over the mutated bytes,
// so that mutations reach the decoder and the interpreter rather than
// failing the checksum.
func FuzzRestore(f *testing.F) {
	cm := nestedModule(f)
	for _, s := range snapshotSeeds(f, cm) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, snap []byte) {
		if len(snap) >= 4 {
			binary.LittleEndian.PutUint32(snap[len(snap)-4:], crc32.ChecksumIEEE(snap[:len(snap)-4]))
		}
		in, err := NewStore().Restore(cm, hostResolver, snap)
		if err != nil {
			return
		}
		for range 50 {
			if fn, _, ok := in.Pending(); ok {
				if err := in.Resume(make([]uint64, len(fn.Type().Results))); err != nil {
					return
				}
			}
			st, err := in.Run(2000)
			if err != nil || st.Reason == StopDone {
				return
			}
		}
	})
}
