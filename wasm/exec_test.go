package wasm

import (
	"bytes"
	"errors"
	"math"
	"runtime"
	"slices"
	"testing"
)

// sumModule: sum(n) calls the host's env.next() n times and returns the sum
// of the results, storing the running sum at address 4096*k for k = i%8.
func sumModule(t testing.TB) *CompiledModule {
	var b modBuilder
	tNext := b.typ(nil, []ValType{I32})
	tSum := b.typ([]ValType{I32}, []ValType{I32})
	next := b.importFunc("env", "next", tNext)
	b.memory(1)
	body := []byte{
		0x02, 0x40, // block
		0x03, 0x40, // loop
		0x20, 0x00, 0x45, 0x0d, 0x01, // local.get 0; i32.eqz; br_if 1
		0x20, 0x01, 0x10, byte(next), 0x6a, 0x21, 0x01, // acc += next()
		// store acc at (n & 7) << 12
		0x20, 0x00, 0x41, 0x07, 0x71, 0x41, 0x0c, 0x74, 0x20, 0x01, 0x36, 0x02, 0x00,
		0x20, 0x00, 0x41, 0x01, 0x6b, 0x21, 0x00, // n--
		0x0c, 0x00, // br 0
		0x0b, 0x0b, // end loop, end block
		0x20, 0x01,
	}
	b.fn(tSum, "sum", []ValType{I32}, body...)
	return mustCompile(t, b.bytes())
}

func hostResolver(imp Import) (Extern, error) {
	return NewHostFunc(imp.Module, imp.Name, FuncType{Results: []ValType{I32}}), nil
}

// runSum runs sum(n) answering next() with 1, 2, 3, ... using the given
// budget per Run call; it returns the result and the final count.
func runSum(t *testing.T, in *Instance, n uint32, budget uint64) (uint32, uint64) {
	t.Helper()
	if err := in.Invoke(in.ExportedFunc("sum"), []uint64{uint64(n)}); err != nil {
		t.Fatal(err)
	}
	var calls uint64
	for {
		st, err := in.Run(budget)
		if err != nil {
			t.Fatal(err)
		}
		switch st.Reason {
		case StopHostCall:
			if st.Func.Module != "env" || st.Func.Name != "next" {
				t.Fatalf("host call of %s.%s", st.Func.Module, st.Func.Name)
			}
			calls++
			if err := in.Resume([]uint64{calls}); err != nil {
				t.Fatal(err)
			}
		case StopDone:
			return uint32(st.Results[0]), in.Count()
		}
	}
}

func TestHostCallsExitAndResume(t *testing.T) {
	cm := sumModule(t)
	in, err := NewStore().Instantiate(cm, hostResolver)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := runSum(t, in, 100, math.MaxUint64)
	if got != 5050 {
		t.Fatalf("sum = %d, want 5050", got)
	}
}

func TestCountIsIndependentOfBudget(t *testing.T) {
	cm := sumModule(t)
	var counts []uint64
	for _, budget := range []uint64{math.MaxUint64, 1, 2, 3, 7, 100} {
		in, err := NewStore().Instantiate(cm, hostResolver)
		if err != nil {
			t.Fatal(err)
		}
		got, count := runSum(t, in, 50, budget)
		if got != 1275 {
			t.Fatalf("budget %d: sum = %d", budget, got)
		}
		counts = append(counts, count)
	}
	for _, c := range counts[1:] {
		if c != counts[0] {
			t.Fatalf("counts differ across budgets: %v", counts)
		}
	}
	if counts[0] == 0 {
		t.Fatal("count is zero")
	}
}

func TestSnapshotRestoreMidRun(t *testing.T) {
	cm := sumModule(t)
	ref, err := NewStore().Instantiate(cm, hostResolver)
	if err != nil {
		t.Fatal(err)
	}
	wantSum, wantCount := runSum(t, ref, 40, math.MaxUint64)
	wantMem := bytes.Clone(ref.Memory().Bytes())

	for _, stopAt := range []uint64{1, 17, 100, 333} {
		in, err := NewStore().Instantiate(cm, hostResolver)
		if err != nil {
			t.Fatal(err)
		}
		if err := in.Invoke(in.ExportedFunc("sum"), []uint64{40}); err != nil {
			t.Fatal(err)
		}
		// Run to stopAt instructions, answering host calls, then snapshot;
		// also snapshot once while a host call is pending.
		var calls uint64
		for in.Count() < stopAt {
			st, err := in.Run(stopAt - in.Count())
			if err != nil {
				t.Fatal(err)
			}
			if st.Reason == StopHostCall {
				calls++
				if err := in.Resume([]uint64{calls}); err != nil {
					t.Fatal(err)
				}
			}
		}
		snap, err := in.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		re, err := NewStore().Restore(cm, hostResolver, snap)
		if err != nil {
			t.Fatal(err)
		}
		if re.Count() != in.Count() {
			t.Fatalf("restored count %d, want %d", re.Count(), in.Count())
		}
		var sum uint32
		for {
			st, err := re.Run(math.MaxUint64)
			if err != nil {
				t.Fatal(err)
			}
			if st.Reason == StopHostCall {
				calls++
				if err := re.Resume([]uint64{calls}); err != nil {
					t.Fatal(err)
				}
				continue
			}
			sum = uint32(st.Results[0])
			break
		}
		if sum != wantSum || re.Count() != wantCount {
			t.Fatalf("stop at %d: sum %d count %d, want %d %d", stopAt, sum, re.Count(), wantSum, wantCount)
		}
		if !bytes.Equal(re.Memory().Bytes(), wantMem) {
			t.Fatalf("stop at %d: memory differs after restore", stopAt)
		}
		runtime.KeepAlive(re) // its memory's bytes are not on the heap
	}
}

func TestSnapshotWithPendingHostCall(t *testing.T) {
	cm := sumModule(t)
	in, err := NewStore().Instantiate(cm, hostResolver)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Invoke(in.ExportedFunc("sum"), []uint64{3}); err != nil {
		t.Fatal(err)
	}
	st, err := in.Run(math.MaxUint64)
	if err != nil || st.Reason != StopHostCall {
		t.Fatalf("want a host call, got %v %v", st.Reason, err)
	}
	snap, err := in.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	re, err := NewStore().Restore(cm, hostResolver, snap)
	if err != nil {
		t.Fatal(err)
	}
	f, args, ok := re.Pending()
	if !ok || f.Name != "next" || len(args) != 0 {
		t.Fatalf("pending = %v %v %v", f, args, ok)
	}
	if _, err := re.Run(10); err == nil {
		t.Fatal("Run with a pending host call succeeded")
	}
	for i, v := range []uint64{10, 20, 30} {
		if i > 0 {
			if st, err := re.Run(math.MaxUint64); err != nil || st.Reason != StopHostCall {
				t.Fatalf("want a host call, got %v %v", st.Reason, err)
			}
		}
		if err := re.Resume([]uint64{v}); err != nil {
			t.Fatal(err)
		}
	}
	st, err = re.Run(math.MaxUint64)
	if err != nil || st.Reason != StopDone || st.Results[0] != 60 {
		t.Fatalf("got %+v %v, want 60", st, err)
	}
}

func TestSnapshotRejectsOtherModuleAndCorruption(t *testing.T) {
	cm := sumModule(t)
	in, err := NewStore().Instantiate(cm, hostResolver)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := in.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var b modBuilder
	b.fn(b.typ(nil, nil), "f", nil)
	other := mustCompile(t, b.bytes())
	if _, err := NewStore().Restore(other, hostResolver, snap); !errors.Is(err, ErrSnapshotModule) {
		t.Fatalf("restore into another module: %v", err)
	}
	for i := range snap {
		bad := bytes.Clone(snap)
		bad[i] ^= 0x40
		if _, err := NewStore().Restore(cm, hostResolver, bad); err == nil {
			t.Fatalf("flipping byte %d was not detected", i)
		}
	}
	for n := 0; n < len(snap); n += 7 {
		if _, err := NewStore().Restore(cm, hostResolver, snap[:n]); err == nil {
			t.Fatalf("truncation to %d bytes was not detected", n)
		}
	}
}

func TestDirtyPages(t *testing.T) {
	cm := sumModule(t)
	in, err := NewStore().Instantiate(cm, hostResolver)
	if err != nil {
		t.Fatal(err)
	}
	mem := in.Memory()
	mem.ResetDirty()
	runSum(t, in, 3, math.MaxUint64) // stores at pages 3, 2, 1
	if got := mem.DirtyPages(); !slices.Equal(got, []uint32{1, 2, 3}) {
		t.Fatalf("dirty pages %v, want [1 2 3]", got)
	}
	mem.ResetDirty()
	mem.Write(4095, []byte{1, 2})
	mem.PutUint32(40000, 7)
	if got := mem.DirtyPages(); !slices.Equal(got, []uint32{0, 1, 9}) {
		t.Fatalf("dirty pages %v, want [0 1 9]", got)
	}
	mem.ResetDirty()
	if mem.Grow(1) != 1 {
		t.Fatal("grow failed")
	}
	if got := mem.DirtyCount(); got != PageSize/DirtyPageSize {
		t.Fatalf("%d pages dirty after grow, want %d", got, PageSize/DirtyPageSize)
	}
}

func TestTrapNamesFunctionAndOffset(t *testing.T) {
	var b modBuilder
	ti := b.typ(nil, nil)
	b.fn(ti, "boom", nil, 0x01, 0x00) // nop; unreachable
	bin := b.bytes()
	cm := mustCompile(t, bin)
	in, err := NewStore().Instantiate(cm, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Invoke(in.ExportedFunc("boom"), nil); err != nil {
		t.Fatal(err)
	}
	_, err = in.Run(math.MaxUint64)
	var trap *Trap
	if !errors.As(err, &trap) || trap.Code != TrapUnreachable {
		t.Fatalf("err = %v, want an unreachable trap", err)
	}
	if bin[trap.Offset] != 0x00 || bin[trap.Offset-1] != 0x01 {
		t.Fatalf("trap offset 0x%x does not point at the unreachable instruction", trap.Offset)
	}
}

func TestCallDepthLimitTraps(t *testing.T) {
	var b modBuilder
	ti := b.typ(nil, nil)
	b.fn(ti, "rec", nil, 0x10, 0x00) // call 0 forever
	cm, err := Compile(b.bytes(), Config{MaxCallDepth: 1000, Engine: testEngine})
	if err != nil {
		t.Fatal(err)
	}
	in, err := NewStore().Instantiate(cm, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Invoke(in.ExportedFunc("rec"), nil); err != nil {
		t.Fatal(err)
	}
	_, err = in.Run(math.MaxUint64)
	var trap *Trap
	if !errors.As(err, &trap) || trap.Code != TrapCallStackExhausted {
		t.Fatalf("err = %v, want call stack exhausted", err)
	}
}

func TestCanonicalNaN(t *testing.T) {
	var b modBuilder
	ti := b.typ(nil, []ValType{F32})
	// 0/0 with an unusual payload in the operand: result must be canonical.
	body := append([]byte{0x43}, u32le(0x7fa00001)...)
	body = append(body, 0x43, 0, 0, 0x80, 0x3f, 0x92) // + 1.0
	b.fn(ti, "nan", nil, body...)
	cm := mustCompile(t, b.bytes())
	in, err := NewStore().Instantiate(cm, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Invoke(in.ExportedFunc("nan"), nil); err != nil {
		t.Fatal(err)
	}
	st, err := in.Run(math.MaxUint64)
	if err != nil {
		t.Fatal(err)
	}
	if st.Results[0] != canonNaN32 {
		t.Fatalf("NaN result 0x%x, want canonical 0x%x", st.Results[0], canonNaN32)
	}
}
