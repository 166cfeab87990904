package wasm

import (
	"errors"
	"testing"
)

// FuzzCompileAndRun checks the validator and the interpreter together: any
// input either fails to compile with an error, or compiles, and then every
// exported function runs (for a bounded budget, with host calls answered by
// zeros) to a result, a trap or the end of its budget, never a panic. A
// panic here means validation accepted code that the interpreter cannot
// execute safely.
func FuzzCompileAndRun(f *testing.F) {
	for _, seed := range decodeSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, bin []byte) {
		cm, err := Compile(bin, Config{MaxMemoryPages: 16, MaxCallDepth: 200, MaxStackValues: 1 << 16, Engine: testEngine})
		if err != nil {
			return
		}
		resolve := func(imp Import) (Extern, error) {
			if imp.Kind == ExternFunc {
				return NewHostFunc(imp.Module, imp.Name, cm.Module.Types[imp.TypeIndex]), nil
			}
			return fuzzResolver(imp)
		}
		in, err := NewStore().Instantiate(cm, resolve)
		if err != nil {
			var trap *Trap
			var link *LinkError
			if !errors.As(err, &trap) && !errors.As(err, &link) {
				t.Fatalf("instantiate: unexpected error type %T: %v", err, err)
			}
			return
		}
		if f := in.StartFunc(); f != nil {
			fuzzRun(t, in, f)
		}
		for _, ex := range cm.Module.Exports {
			if f := in.ExportedFunc(ex.Name); f != nil && !f.IsHost() {
				fuzzRun(t, in, f)
			}
		}
	})
}

func fuzzResolver(imp Import) (Extern, error) {
	switch imp.Kind {
	case ExternTable:
		return NewTable(imp.Table), nil
	case ExternMemory:
		max := imp.Memory.Max
		if !imp.Memory.HasMax || max > 16 {
			max = 16
		}
		if imp.Memory.Min > max {
			return nil, errors.New("too large")
		}
		return NewMemory(imp.Memory.Min, max), nil
	case ExternGlobal:
		return NewGlobal(imp.Global, 0), nil
	}
	return nil, errors.New("unknown kind")
}

func fuzzRun(t *testing.T, in *Instance, f *Function) {
	args := make([]uint64, len(f.Type().Params))
	if err := in.Invoke(f, args); err != nil {
		return
	}
	budget := uint64(20000)
	for range 100 {
		st, err := in.Run(budget)
		if err != nil {
			var trap *Trap
			if !errors.As(err, &trap) {
				t.Fatalf("run: unexpected error %T: %v", err, err)
			}
			return
		}
		switch st.Reason {
		case StopDone:
			if len(st.Results) != len(f.Type().Results) {
				t.Fatalf("%d results for %v", len(st.Results), f.Type())
			}
			return
		case StopHostCall:
			if err := in.Resume(make([]uint64, len(st.Func.Type().Results))); err != nil {
				t.Fatal(err)
			}
		case StopBudget:
			return
		}
	}
}
