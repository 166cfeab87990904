//go:build linux

package wasi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	wzwasi "github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"ftvm/internal/guesttest"
	"ftvm/wasi"
	"ftvm/wasm"
)

// Until ftvm's engine runs whole guests, tests run them on wazero with a
// System plugged in as the wasi_snapshot_preview1 host module, through the
// adapter below. The same guests run on wazero's own WASI as a reference.

// wazeroMemory adapts wazero's memory to Memory.
type wazeroMemory struct{ m api.Memory }

func (w wazeroMemory) Read(off, n uint32) ([]byte, bool)    { return w.m.Read(off, n) }
func (w wazeroMemory) Write(off uint32, p []byte) bool      { return w.m.Write(off, p) }
func (w wazeroMemory) ReadUint32(off uint32) (uint32, bool) { return w.m.ReadUint32Le(off) }
func (w wazeroMemory) ReadUint64(off uint32) (uint64, bool) { return w.m.ReadUint64Le(off) }
func (w wazeroMemory) PutUint32(off uint32, v uint32) bool  { return w.m.WriteUint32Le(off, v) }
func (w wazeroMemory) PutUint64(off uint32, v uint64) bool  { return w.m.WriteUint64Le(off, v) }
func (w wazeroMemory) MarkDirty(uint32, uint32)             {}
func (w wazeroMemory) Size() uint32                         { return w.m.Size() }

func wazeroTypes(ts []wasm.ValType) []api.ValueType {
	out := make([]api.ValueType, len(ts))
	for i, t := range ts {
		if t == wasm.I64 {
			out[i] = api.ValueTypeI64
		} else {
			out[i] = api.ValueTypeI32
		}
	}
	return out
}

// instantiateSystem makes s the wasi_snapshot_preview1 module of rt.
func instantiateSystem(ctx context.Context, rt wazero.Runtime, s *wasi.System) error {
	b := rt.NewHostModuleBuilder(wasi.ModuleName)
	for _, name := range wasi.Functions() {
		ft, _ := wasi.Signature(name)
		nparams := len(ft.Params)
		fn := func(ctx context.Context, mod api.Module, stack []uint64) {
			var mem wasi.Memory
			if m := mod.Memory(); m != nil {
				mem = wazeroMemory{m}
			}
			res, err := s.Call(ctx, mem, name, stack[:nparams])
			if err != nil {
				var exit *wasi.ExitError
				if errors.As(err, &exit) {
					panic(sys.NewExitError(exit.Code))
				}
				panic(err)
			}
			copy(stack, res)
		}
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(fn), wazeroTypes(ft.Params), wazeroTypes(ft.Results)).
			Export(name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

// compilationCache is shared by the tests' runtimes, so each guest
// compiles once per test binary.
var compilationCache = sync.OnceValue(wazero.NewCompilationCache)

func newRuntime(ctx context.Context) wazero.Runtime {
	return wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(compilationCache()))
}

// runResult is what a guest run produced.
type runResult struct {
	stdout, stderr string
	code           uint32
}

// runSystem runs bin to completion with a System over an OSHost made from
// cfg. If started is not nil, it receives the host once it serves.
func runSystem(ctx context.Context, bin []byte, cfg wasi.Config, started chan<- *wasi.OSHost) (runResult, error) {
	var stdout, stderr lockedBuffer
	cfg.Stdout, cfg.Stderr = &stdout, &stderr
	host, err := wasi.NewOSHost(cfg, nil)
	if err != nil {
		return runResult{}, err
	}
	defer host.CloseAll()
	s, err := wasi.New(cfg, host)
	if err != nil {
		return runResult{}, err
	}
	if started != nil {
		started <- host
	}
	rt := newRuntime(ctx)
	defer rt.Close(ctx)
	if err := instantiateSystem(ctx, rt, s); err != nil {
		return runResult{}, err
	}
	mod, err := rt.InstantiateWithConfig(ctx, bin, wazero.NewModuleConfig().WithName(""))
	if mod != nil {
		mod.Close(ctx)
	}
	res := runResult{}
	var exit *sys.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		return runResult{stdout: stdout.String(), stderr: stderr.String()}, fmt.Errorf("run: %w", err)
	}
	if code, exited := s.Exited(); exited && code != res.code {
		return res, fmt.Errorf("System exit status %d, wazero's %d", code, res.code)
	}
	res.stdout, res.stderr = stdout.String(), stderr.String()
	return res, nil
}

// runReference runs bin on wazero's own WASI with the same arguments,
// environment, stdin and preopened directories.
func runReference(ctx context.Context, bin []byte, cfg wasi.Config) (runResult, error) {
	var stdout, stderr bytes.Buffer
	mc := wazero.NewModuleConfig().WithName("").WithArgs(cfg.Args...).
		WithStdout(&stdout).WithStderr(&stderr).
		WithSysWalltime().WithSysNanotime().WithSysNanosleep().WithRandSource(rand.Reader)
	if cfg.Stdin != nil {
		mc = mc.WithStdin(cfg.Stdin)
	}
	for _, e := range cfg.Env {
		k, v, _ := strings.Cut(e, "=")
		mc = mc.WithEnv(k, v)
	}
	fsc := wazero.NewFSConfig()
	for _, p := range cfg.Preopens {
		fsc = fsc.WithDirMount(p.HostDir, p.GuestPath)
	}
	mc = mc.WithFSConfig(fsc)
	rt := newRuntime(ctx)
	defer rt.Close(ctx)
	if _, err := wzwasi.Instantiate(ctx, rt); err != nil {
		return runResult{}, err
	}
	mod, err := rt.InstantiateWithConfig(ctx, bin, mc)
	if mod != nil {
		mod.Close(ctx)
	}
	res := runResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *sys.ExitError
	switch {
	case errors.As(err, &exit):
		res.code = exit.ExitCode()
	case err != nil:
		return res, fmt.Errorf("reference run: %w", err)
	}
	return res, nil
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// buildGo builds the Go guest testdata/guests/name.
func buildGo(t *testing.T, name string) []byte {
	t.Helper()
	return guesttest.Build(t, name)
}

// buildC builds the C guest testdata/guests/name (see guesttest.BuildC).
func buildC(t *testing.T, name string) []byte { return guesttest.BuildC(t, name) }

// buildRust builds the Rust guest testdata/guests/name (see
// guesttest.BuildRust).
func buildRust(t *testing.T, name string) []byte { return guesttest.BuildRust(t, name) }
