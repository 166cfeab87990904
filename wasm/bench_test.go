package wasm_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/wasm"
)

// BenchmarkGuests runs each CPU-bound guest at its benchmark size on ftvm's
// engine (with the wasi package over a deterministic host, as ftvm's VMM
// drives it) under its interpreter (ftvm) and its compiler tier
// (ftvm-compiler, where available), on wazero's interpreter and on
// wazero's compiler (each with wazero's own WASI).
//
// What one op measures: instantiation of the compiled module plus the whole
// run of the guest (_start until proc_exit), including WASI calls. Building
// the guest and compiling the module (wasm.Compile, wazero's CompileModule)
// happen once per sub-benchmark, before the timer starts. Every op checks
// that the guest exited with status 0 and that its stdout equals that of
// the first run of the guest on any engine in this benchmark (so engines
// run together must agree; TestGuestsMatchWazero checks the agreement at
// small sizes in any case).
//
// Besides ns/op (wall time), every sub-benchmark reports cpu-ns/op: the CPU
// time of the whole process (all threads, so the Go garbage collector's
// background work counts) per op, which other load on the machine disturbs
// much less than wall time. The ftvm sub-benchmarks also report the guest's
// instruction count per run (instrs/op) and the engine's speed in millions
// of instructions per second of wall time (Minstrs/s).
func BenchmarkGuests(b *testing.B) {
	ctx := context.Background()
	for _, g := range cpuGuests() {
		b.Run(g.name, func(b *testing.B) {
			bin := guesttest.Build(b, g.name)
			args := []string{g.name, g.full}
			var want []byte // stdout of the first run
			check := func(b *testing.B, res guesttest.Result) {
				if want == nil && res.ExitCode == 0 && len(res.Stdout) > 0 {
					want = res.Stdout
				}
				if res.ExitCode != 0 || !bytes.Equal(res.Stdout, want) {
					b.Fatalf("exit %d, stdout %q, stderr %q; want exit 0, stdout %q", res.ExitCode, res.Stdout, res.Stderr, want)
				}
			}

			for _, tier := range []struct {
				name   string
				engine wasm.Engine
			}{{"ftvm", wasm.EngineInterpreter}, {"ftvm-compiler", wasm.EngineCompiler}} {
				if tier.engine == wasm.EngineCompiler && !wasm.CompilerAvailable() {
					continue
				}
				b.Run(tier.name, func(b *testing.B) {
					cm, err := compileGuest(bin, tier.engine)
					if err != nil {
						b.Fatal(err)
					}
					var count uint64
					b.ResetTimer()
					cpu0, cpuOK := guesttest.ProcessCPUTime()
					for range b.N {
						m, err := guesttest.Start(cm, args, nil)
						if err != nil {
							b.Fatal(err)
						}
						res, err := m.Finish(guesttest.DefaultBudget)
						if err != nil {
							b.Fatalf("%v\nstderr: %s", err, res.Stderr)
						}
						check(b, res)
						count = m.Instance().Count()
					}
					reportCPU(b, cpu0, cpuOK)
					b.ReportMetric(float64(count), "instrs/op")
					if s := b.Elapsed().Seconds(); s > 0 {
						b.ReportMetric(float64(count)*float64(b.N)/s/1e6, "Minstrs/s")
					}
				})
			}
			for _, engine := range []struct {
				name     string
				compiler bool
			}{{"wazero-interp", false}, {"wazero-compiler", true}} {
				b.Run(engine.name, func(b *testing.B) {
					w, err := guesttest.NewWazero(ctx, bin, engine.compiler)
					if err != nil {
						b.Fatal(err)
					}
					defer w.Close(ctx)
					b.ResetTimer()
					cpu0, cpuOK := guesttest.ProcessCPUTime()
					for range b.N {
						res, err := w.Run(ctx, args, nil)
						if err != nil {
							b.Fatal(err)
						}
						check(b, res)
					}
					reportCPU(b, cpu0, cpuOK)
				})
			}
		})
	}
}

// reportCPU reports the process's CPU time per op since cpu0.
func reportCPU(b *testing.B, cpu0 time.Duration, ok bool) {
	cpu1, ok1 := guesttest.ProcessCPUTime()
	if ok && ok1 && b.N > 0 {
		b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/op")
	}
}
