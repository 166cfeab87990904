package wasm

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync/atomic"
	"testing"
)

// The tests of this file run the same modules on both tiers and compare
// everything FT depends on: at every stop, its reason, the instruction
// count, the host call and its arguments, and a digest of the whole
// execution state (value stack, frames and positions, globals, dirty
// pages); at the end of each invocation, its results or trap (kind,
// function and offset) and the memory's contents.

// tierConfig is the configuration of the differential tests: limits small
// enough that hostile modules stay cheap.
func tierConfig(e Engine) Config {
	return Config{MaxMemoryPages: 16, MaxCallDepth: 200, MaxStackValues: 1 << 16, Engine: e}
}

// tierResolver links every import to something of its type, the same for
// every instance: host functions (whose calls the trace answers), fresh
// tables, memories and globals.
func tierResolver(cm *CompiledModule) Resolver {
	return func(imp Import) (Extern, error) {
		if imp.Kind == ExternFunc {
			return NewHostFunc(imp.Module, imp.Name, cm.Module.Types[imp.TypeIndex]), nil
		}
		return fuzzResolver(imp)
	}
}

// stateDigest hashes the instance's execution state, and its memory too if
// withMemory.
func stateDigest(in *Instance, withMemory bool) string {
	h := sha256.New()
	var b []byte
	u := func(v uint64) { b = binary.LittleEndian.AppendUint64(b, v) }
	e := &in.exec
	fnIndex := func(f *Function) uint64 {
		if f == nil {
			return 1 << 40
		}
		if f.code == nil {
			return 1<<41 + f.ref
		}
		return uint64(f.code.idx)
	}
	u(e.count)
	if e.active {
		u(1)
		u(fnIndex(e.cur.fn))
		u(uint64(e.cur.pc))
		u(uint64(e.cur.bp))
		u(uint64(e.sp))
		for _, v := range e.stack[:e.sp] {
			u(v)
		}
		u(uint64(len(e.frames)))
		for _, f := range e.frames {
			u(fnIndex(f.fn))
			u(uint64(f.pc))
			u(uint64(f.bp))
		}
		u(fnIndex(e.pending))
	}
	for _, g := range in.globals {
		u(g.val)
	}
	if m := in.mem; m != nil {
		u(uint64(len(m.data)))
		for _, w := range m.dirty {
			u(w)
		}
		if withMemory {
			h.Write(m.data)
		}
	}
	h.Write(b)
	return fmt.Sprintf("%x", h.Sum(nil)[:12])
}

// traceLimit bounds the work of one traced invocation.
type traceLimit struct {
	runs   int    // Run calls
	instrs uint64 // instructions
}

// traceInvoke invokes f with args and runs it with the given budget per
// Run until it ends or the limit is reached, appending a line per stop to
// the trace. Host calls are answered with results that depend on the
// call's position only.
func traceInvoke(trace []string, in *Instance, f *Function, args []uint64, budget uint64, lim traceLimit) []string {
	if err := in.Invoke(f, args); err != nil {
		return append(trace, "invoke: "+err.Error())
	}
	start := in.Count()
	for i := 0; i < lim.runs && in.Count()-start < lim.instrs; i++ {
		st, err := in.Run(min(budget, lim.instrs))
		line := fmt.Sprintf("run %d: count %d state %s", i, in.Count(), stateDigest(in, false))
		if err != nil {
			var trap *Trap
			if !errors.As(err, &trap) {
				return append(trace, line+" error "+err.Error())
			}
			return append(trace, line+" trap "+err.Error()+" memory "+stateDigest(in, true))
		}
		switch st.Reason {
		case StopDone:
			return append(trace, fmt.Sprintf("%s done %v memory %s", line, st.Results, stateDigest(in, true)))
		case StopHostCall:
			trace = append(trace, fmt.Sprintf("%s host %s.%s %v", line, st.Func.Module, st.Func.Name, st.Args))
			res := make([]uint64, len(st.Func.Type().Results))
			for j := range res {
				res[j] = uint64(i*7 + j)
			}
			if err := in.Resume(res); err != nil {
				return append(trace, "resume: "+err.Error())
			}
		case StopBudget:
			trace = append(trace, line+" budget")
		}
	}
	return append(trace, "limit memory "+stateDigest(in, true))
}

// tierStats counts, over the runs on the compiler tier, the instructions
// executed and those native code executed.
type tierStats struct{ all, native uint64 }

// traceModule instantiates cm, runs its start function and then every
// exported function (with args of value v), all with the given budget per
// Run, and returns the trace.
func traceModule(cm *CompiledModule, budget uint64, v uint64, lim traceLimit, stats *tierStats) []string {
	in, err := NewStore().Instantiate(cm, tierResolver(cm))
	if err != nil {
		return []string{"instantiate: " + err.Error()}
	}
	defer func() {
		stats.all += in.exec.count
		stats.native += in.exec.nativeCount
	}()
	var trace []string
	if f := in.StartFunc(); f != nil {
		trace = traceInvoke(append(trace, "start"), in, f, nil, budget, lim)
	}
	for _, ex := range cm.Module.Exports {
		f := in.ExportedFunc(ex.Name)
		if f == nil || f.IsHost() {
			continue
		}
		args := make([]uint64, len(f.Type().Params))
		for i := range args {
			args[i] = v
		}
		trace = traceInvoke(append(trace, "invoke "+ex.Name), in, f, args, budget, lim)
	}
	return trace
}

// compareTiers runs bin on both tiers with each budget and reports the
// first difference. It reports false if bin does not compile.
func compareTiers(t *testing.T, name string, bin []byte, budgets []uint64, args []uint64, lim traceLimit, stats *tierStats) bool {
	t.Helper()
	ci, err := Compile(bin, tierConfig(EngineInterpreter))
	if err != nil {
		return false
	}
	cc, err := Compile(bin, tierConfig(EngineCompiler))
	if err != nil {
		t.Errorf("%s: compiles for the interpreter but not for the compiler tier: %v", name, err)
		return false
	}
	// The analysis of valid code never gives up on a function.
	for _, f := range cc.funcs {
		if f.native == nil {
			t.Errorf("%s: function %d has no native code", name, f.idx)
		}
	}
	for _, budget := range budgets {
		for _, v := range args {
			want := traceModule(ci, budget, v, lim, &tierStats{})
			got := traceModule(cc, budget, v, lim, stats)
			if d := firstDiff(want, got); d != "" {
				t.Errorf("%s, budget %d, arguments %d: the tiers differ: %s", name, budget, v, d)
				return true
			}
		}
	}
	return true
}

func firstDiff(want, got []string) string {
	for i := range min(len(want), len(got)) {
		if want[i] != got[i] {
			return fmt.Sprintf("at line %d:\n  interp:   %s\n  compiler: %s", i, want[i], got[i])
		}
	}
	if len(want) != len(got) {
		return fmt.Sprintf("interp has %d lines, compiler %d", len(want), len(got))
	}
	return ""
}

// tierBudgets are the budgets per Run of the differential tests: 1 and odd
// ones stop inside segments.
var tierBudgets = []uint64{1, 2, 3, 7, 64, 1 << 40}

// TestTiersSpecModules runs every module of the spec suite on both tiers,
// with every exported function invoked with zeros, then ones, then
// all-ones arguments.
func TestTiersSpecModules(t *testing.T) {
	if !CompilerAvailable() {
		t.Skip("the compiler tier is not available on this platform")
	}
	root := specDir()
	if root == "" {
		t.Skip("spec suite not found (set FTVM_WASM_SPEC)")
	}
	files, err := filepath.Glob(filepath.Join(root, "*", "*.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	budgets := tierBudgets
	if testing.Short() {
		budgets = []uint64{1, 7, 1 << 40}
	}
	compiled := 0
	var stats tierStats
	for _, f := range files {
		bin, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lim := traceLimit{runs: 300, instrs: 20000}
		if compareTiers(t, filepath.Base(f), bin, budgets, []uint64{0, 1, 1<<64 - 1}, lim, &stats) {
			compiled++
		}
	}
	t.Logf("%d of %d modules compiled and compared; on the compiler tier %d instructions, %d of them (%.0f%%) native",
		compiled, len(files), stats.all, stats.native, 100*float64(stats.native)/float64(max(stats.all, 1)))
}

// FuzzTiers runs any module that compiles on both tiers, with several
// budgets, and compares the traces.
func FuzzTiers(f *testing.F) {
	if !CompilerAvailable() {
		f.Skip("the compiler tier is not available on this platform")
	}
	for _, seed := range decodeSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, bin []byte) {
		compareTiers(t, "input", bin, []uint64{1, 5, 1 << 40}, []uint64{0, 3}, traceLimit{runs: 200, instrs: 5000}, &tierStats{})
	})
}

// TestNativeYieldsToGC runs an endless loop on the compiler tier, in Runs
// of 2^27 instructions (a tenth of a second or so), while another
// goroutine asks for garbage collections. A goroutine in native code
// cannot be stopped for the collector's stop-the-world, so native code
// must return to Go every nativeSlice instructions and yield: some
// collection starts and completes within one Run. Were native code not to
// yield, every collection would wait for the end of a Run, so none could
// complete within one. No clock is involved: on a loaded machine it takes
// more Runs, not a different outcome.
func TestNativeYieldsToGC(t *testing.T) {
	if !CompilerAvailable() {
		t.Skip("the compiler tier is not available on this platform")
	}
	var b modBuilder
	ti := b.typ(nil, nil)
	b.fn(ti, "spin", nil, 0x03, 0x40, 0x0c, 0x00, 0x0b) // loop; br 0; end
	cm, err := Compile(b.bytes(), Config{Engine: EngineCompiler})
	if err != nil {
		t.Fatal(err)
	}
	in, err := NewStore().Instantiate(cm, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Invoke(in.ExportedFunc("spin"), nil); err != nil {
		t.Fatal(err)
	}
	const (
		budget  = 1 << 27
		maxRuns = 1000
	)
	// run is twice the number of the Run in progress, plus one while it
	// runs.
	var run atomic.Uint64
	var within atomic.Bool
	stop, gcDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(gcDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := run.Load()
			if r%2 == 0 {
				runtime.Gosched()
				continue
			}
			runtime.GC()
			if run.Load() == r {
				within.Store(true)
				return
			}
		}
	}()
	runs := 0
	for ; runs < maxRuns && !within.Load(); runs++ {
		run.Add(1)
		c0 := in.Count()
		st, err := in.Run(budget)
		run.Add(1)
		if err != nil || st.Reason != StopBudget || in.Count()-c0 != budget {
			t.Fatalf("Run: %v, %v, count %d", st.Reason, err, in.Count()-c0)
		}
	}
	close(stop)
	<-gcDone
	if in.exec.nativeCount != in.Count() {
		t.Fatalf("%d of %d instructions ran natively", in.exec.nativeCount, in.Count())
	}
	if !within.Load() {
		t.Fatalf("in %d Runs of %d instructions, no garbage collection started and completed within one", runs, budget)
	}
	t.Logf("a collection started and completed within Run %d", runs)
}

// TestEngineSelection: the interpreter is the default, the compiler tier
// is what a module asked for it runs on where it is available, and engine
// names parse.
func TestEngineSelection(t *testing.T) {
	var b modBuilder
	ti := b.typ(nil, nil)
	b.fn(ti, "f", nil)
	for _, c := range []struct {
		cfg  Config
		want Engine
	}{
		{Config{}, EngineInterpreter},
		{Config{Engine: EngineInterpreter}, EngineInterpreter},
		{Config{Engine: EngineCompiler}, map[bool]Engine{true: EngineCompiler, false: EngineInterpreter}[CompilerAvailable()]},
	} {
		cm, err := Compile(b.bytes(), c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := cm.Engine(); got != c.want {
			t.Errorf("Config.Engine %v: runs on %v, want %v", c.cfg.Engine, got, c.want)
		}
	}
	for _, e := range []Engine{EngineInterpreter, EngineCompiler} {
		if got, err := ParseEngine(e.String()); err != nil || got != e {
			t.Errorf("ParseEngine(%q) = %v, %v", e.String(), got, err)
		}
	}
	if _, err := ParseEngine("jit"); err == nil {
		t.Error("ParseEngine accepted an unknown engine")
	}
}

// TestTiersStoreAcrossPages: a store whose bytes straddle two 4 KiB pages
// marks both dirty under either tier, one within a page only its own.
func TestTiersStoreAcrossPages(t *testing.T) {
	if !CompilerAvailable() {
		t.Skip("the compiler tier is not available on this platform")
	}
	var b modBuilder
	ti := b.typ([]ValType{I32}, nil)
	b.memory(1)
	b.fn(ti, "st", nil,
		0x20, 0x00, 0x42, 0x7f, 0x37, 0x00, 0x00, // local.get 0; i64.const -1; i64.store
		0x20, 0x00, 0x41, 0x7f, 0x3b, 0x01, 0x86, 0x40, // local.get 0; i32.const -1; i32.store16 offset=8198
	)
	args := []uint64{0, 4088, 4089, 4093, 4095, 4096, 8190, 65528, 65529}
	if !compareTiers(t, "st", b.bytes(), []uint64{1, 1 << 10}, args, traceLimit{runs: 100, instrs: 1 << 10}, &tierStats{}) {
		t.Fatal("st does not compile")
	}
}
