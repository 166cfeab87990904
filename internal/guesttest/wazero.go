package guesttest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
)

// Result is what a guest run produced.
type Result struct {
	Stdout, Stderr []byte
	ExitCode       int
}

// Wazero runs one compiled guest on wazero, with wazero's own WASI, as a
// reference for ftvm's engine. Compilation happens once in NewWazero; every
// Run instantiates the module afresh (which runs _start).
type Wazero struct {
	rt wazero.Runtime
	cm wazero.CompiledModule
}

// NewWazero compiles bin for wazero's interpreter, or for its compiler when
// compiler is true.
func NewWazero(ctx context.Context, bin []byte, compiler bool) (*Wazero, error) {
	cfg := wazero.NewRuntimeConfigInterpreter()
	if compiler {
		cfg = wazero.NewRuntimeConfigCompiler()
	}
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("guesttest: wazero WASI: %w", err)
	}
	cm, err := rt.CompileModule(ctx, bin)
	if err != nil {
		rt.Close(ctx)
		return nil, fmt.Errorf("guesttest: wazero compile: %w", err)
	}
	return &Wazero{rt: rt, cm: cm}, nil
}

// Close releases the runtime.
func (w *Wazero) Close(ctx context.Context) error { return w.rt.Close(ctx) }

// Run instantiates the module and runs it to completion. args is the whole
// argument vector (args[0] is the program name). The clocks are wazero's
// fakes, which advance 1 ms per reading from a fixed epoch, sleeping returns
// at once, and random bytes come from a fixed-seed generator, so a run's
// output depends only on the module and its inputs.
func (w *Wazero) Run(ctx context.Context, args []string, stdin []byte) (Result, error) {
	var stdout, stderr bytes.Buffer
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithArgs(args...).
		WithStdin(bytes.NewReader(stdin)).
		WithStdout(&stdout).
		WithStderr(&stderr).
		WithRandSource(NewRand(1))
	mod, err := w.rt.InstantiateModule(ctx, w.cm, cfg)
	res := Result{}
	if mod != nil {
		mod.Close(ctx)
	}
	var exit *sys.ExitError
	switch {
	case errors.As(err, &exit):
		res.ExitCode = int(exit.ExitCode())
	case err != nil:
		return Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}, fmt.Errorf("guesttest: wazero run: %w", err)
	}
	res.Stdout, res.Stderr = stdout.Bytes(), stderr.Bytes()
	return res, nil
}

// RunWazero runs the guest bin to completion on wazero's interpreter with
// wazero's WASI and returns its output and exit status. args is the whole
// argument vector (args[0] is the program name). It fails the test if the
// guest cannot be compiled or traps.
func RunWazero(tb testing.TB, bin []byte, args []string, stdin []byte) (stdout, stderr []byte, exitCode int) {
	tb.Helper()
	ctx := context.Background()
	w, err := NewWazero(ctx, bin, false)
	if err != nil {
		tb.Fatal(err)
	}
	defer w.Close(ctx)
	res, err := w.Run(ctx, args, stdin)
	if err != nil {
		tb.Fatalf("%v\nstdout: %s\nstderr: %s", err, res.Stdout, res.Stderr)
	}
	return res.Stdout, res.Stderr, res.ExitCode
}

// Rand is a deterministic source of random bytes (splitmix64 from a seed),
// standing in for the host's entropy so guest runs are reproducible.
type Rand struct{ state uint64 }

// NewRand returns a generator seeded with seed.
func NewRand(seed uint64) *Rand { return &Rand{state: seed} }

// Read fills p with pseudo-random bytes; it never fails.
func (r *Rand) Read(p []byte) (int, error) {
	for i := 0; i < len(p); {
		r.state += 0x9e3779b97f4a7c15
		z := r.state
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		for j := 0; j < 8 && i < len(p); j++ {
			p[i] = byte(z >> (8 * j))
			i++
		}
	}
	return len(p), nil
}
