package wasm

import (
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
)

// TestNativeCallsUnderSignals runs deep chains of native calls and returns
// while the process is hit by preemption signals (SIGURG, as the Go
// runtime sends them for asynchronous preemption), garbage collections
// and goroutines that compete for the processors: native code keeps its
// frames on the value stack, not the machine stack, and must come out
// with the interpreter's results and counts all the same.
func TestNativeCallsUnderSignals(t *testing.T) {
	if !CompilerAvailable() {
		t.Skip("the compiler tier is not available on this platform")
	}
	const depth = 20000
	cfg := Config{MaxCallDepth: depth + 10, MaxStackValues: 1 << 22}
	bin := downModule()
	run := func(e Engine) (uint64, uint64, uint64) {
		cfg.Engine = e
		cm, err := Compile(bin, cfg)
		if err != nil {
			t.Fatal(err)
		}
		in, err := NewStore().Instantiate(cm, tierResolver(cm))
		if err != nil {
			t.Fatal(err)
		}
		if err := in.Invoke(in.ExportedFunc("down"), []uint64{depth}); err != nil {
			t.Fatal(err)
		}
		for {
			// Budgets that end Run at many depths on the way.
			st, err := in.Run(100003)
			if err != nil {
				t.Fatal(err)
			}
			switch st.Reason {
			case StopHostCall:
				if err := in.Resume([]uint64{7}); err != nil {
					t.Fatal(err)
				}
			case StopDone:
				return st.Results[0], in.Count(), in.exec.nativeCount
			}
		}
	}
	wantRes, wantCount, _ := run(EngineInterpreter)
	if want := uint64(7 + depth*(depth+1)/2 + depth); wantRes != uint64(uint32(want)) {
		t.Fatalf("interpreter: down(%d) = %d, want %d", depth, wantRes, uint32(want))
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Until stop: signals (async preemption's SIGURG), collections, and
	// garbage with scheduling.
	for _, pester := range []func(){
		func() { _ = syscall.Kill(os.Getpid(), syscall.SIGURG); runtime.Gosched() },
		runtime.GC,
		func() { _ = make([]byte, 1<<14); runtime.Gosched() },
	} {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					pester()
				}
			}
		})
	}
	for i := range 20 {
		res, count, nat := run(EngineCompiler)
		if res != wantRes || count != wantCount {
			t.Errorf("run %d: result %d, count %d; want %d, %d", i, res, count, wantRes, wantCount)
		}
		if nat < count/2 {
			t.Errorf("run %d: %d of %d instructions ran natively", i, nat, count)
		}
	}
	close(stop)
	wg.Wait()
}
