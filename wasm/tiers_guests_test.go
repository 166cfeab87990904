package wasm_test

import (
	"bytes"
	"slices"
	"testing"

	"ftvm/internal/guesttest"
	"ftvm/wasm"
)

// tierSchedule is the sequence of budgets per Step that both tiers follow
// in TestGuestsTiers: tiny and odd budgets stop inside native segments,
// larger ones let native code run long.
var tierSchedule = []uint64{1, 7, 4_099, 99_991, 2, 1_000_003}

// TestGuestsTiers runs each CPU-bound guest on both tiers, step by step on
// the same schedule of budgets: the count must be equal after every step,
// the whole machine's snapshot (engine state and memory) and the pages
// dirtied since the last comparison every 16 steps, and output, exit
// status, count and memory at the end.
// Then a snapshot taken halfway under the interpreter is restored under
// the compiler tier and finished, and the other way round: both must end
// as the uninterrupted run did.
func TestGuestsTiers(t *testing.T) {
	if !wasm.CompilerAvailable() {
		t.Skip("the compiler tier is not available on this platform")
	}
	for _, g := range cpuGuests() {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			bin := guesttest.Build(t, g.name)
			args := []string{g.name, g.small}
			ci, err := compileGuest(bin, wasm.EngineInterpreter)
			if err != nil {
				t.Fatal(err)
			}
			cc, err := compileGuest(bin, wasm.EngineCompiler)
			if err != nil {
				t.Fatal(err)
			}
			if cc.Engine() != wasm.EngineCompiler {
				t.Fatalf("compiled for the compiler tier, runs on %v", cc.Engine())
			}
			if n := wasm.InterpretedFuncsForTests(cc); n != 0 {
				t.Fatalf("%d functions have no native code", n)
			}
			mi, mc := startOn(t, ci, args), startOn(t, cc, args)
			var steps int
			var half []byte
			for ; !mi.Done(); steps++ {
				budget := tierSchedule[steps%len(tierSchedule)]
				di, erri := mi.Step(budget)
				dc, errc := mc.Step(budget)
				if (erri == nil) != (errc == nil) || di != dc || mi.Instance().Count() != mc.Instance().Count() {
					t.Fatalf("step %d (budget %d): interp done %v, count %d, error %v; compiler done %v, count %d, error %v",
						steps, budget, di, mi.Instance().Count(), erri, dc, mc.Instance().Count(), errc)
				}
				if erri != nil {
					t.Fatalf("step %d: %v", steps, erri)
				}
				if di || steps%16 != 0 {
					continue
				}
				si, err := mi.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				sc, err := mc.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(si, sc) {
					t.Fatalf("step %d (count %d): the machines' snapshots differ", steps, mi.Instance().Count())
				}
				if di, dc := mi.Instance().Memory().DirtyPages(), mc.Instance().Memory().DirtyPages(); !slices.Equal(di, dc) {
					t.Fatalf("step %d (count %d): dirty pages differ: interp %v, compiler %v", steps, mi.Instance().Count(), di, dc)
				}
				mi.Instance().Memory().ResetDirty()
				mc.Instance().Memory().ResetDirty()
				if half == nil && steps >= 48 {
					half = si
				}
			}
			want := outcomeOf(t, mi)
			if got := outcomeOf(t, mc); got != want {
				t.Fatalf("compiler tier ended with %+v, interpreter with %+v", got, want)
			}
			if want.code != 0 || want.stdout == "" {
				t.Fatalf("guest failed: %+v", want)
			}
			t.Logf("%d steps, %d instructions", steps, mi.Instance().Count())
			if half == nil {
				t.Fatal("the run was too short to take a snapshot halfway")
			}
			// A snapshot goes on under either tier.
			for _, cm := range []*wasm.CompiledModule{cc, ci} {
				m, err := guesttest.Restore(cm, half, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := m.Finish(99_991); err != nil {
					t.Fatal(err)
				}
				if got := outcomeOf(t, m); got != want {
					t.Fatalf("restored under %v: ended with %+v, uninterrupted with %+v", cm.Engine(), got, want)
				}
			}
		})
	}
}

type tierOutcome struct {
	stdout, stderr string
	code           int
	count          uint64
	memory         [32]byte
}

func outcomeOf(t *testing.T, m *guesttest.Machine) tierOutcome {
	t.Helper()
	r := m.Result()
	return tierOutcome{string(r.Stdout), string(r.Stderr), r.ExitCode, m.Instance().Count(), m.MemoryHash()}
}

func startOn(t *testing.T, cm *wasm.CompiledModule, args []string) *guesttest.Machine {
	t.Helper()
	m, err := guesttest.Start(cm, args, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
