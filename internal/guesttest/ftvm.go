package guesttest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"ftvm/wasi"
	"ftvm/wasm"
)

// Machine is a guest running on ftvm's engine with the wasi package over a
// FakeHost, driven the way ftvm's VMM drives a guest: _start is invoked, Run
// executes until a host call, the budget or the end; a host call is
// serviced by wasi.System.Call and resumed with its results; proc_exit ends
// the run with its status.
type Machine struct {
	cm     *wasm.CompiledModule
	inst   *wasm.Instance
	sys    *wasi.System
	host   *FakeHost
	done   bool
	code   int
	budget uint64 // budget stops so far
	calls  uint64 // host calls so far
}

// Compile compiles a guest for ftvm's engine with the default limits, on
// the engine EnvEngine names.
func Compile(bin []byte) (*wasm.CompiledModule, error) {
	cm, err := wasm.Compile(bin, Config())
	if err != nil {
		return nil, fmt.Errorf("guesttest: compile: %w", err)
	}
	return cm, nil
}

// Resolve links every wasi_snapshot_preview1 function import to a host
// function of the signature WASI prescribes (a guest declaring another one
// fails to link); any other import is an error.
func Resolve(imp wasm.Import) (wasm.Extern, error) {
	if imp.Module != wasi.ModuleName || imp.Kind != wasm.ExternFunc {
		return nil, fmt.Errorf("guesttest: unsupported import %s.%s (%v)", imp.Module, imp.Name, imp.Kind)
	}
	sig, ok := wasi.Signature(imp.Name)
	if !ok {
		return nil, fmt.Errorf("guesttest: unknown WASI function %s.%s", imp.Module, imp.Name)
	}
	return wasm.NewHostFunc(imp.Module, imp.Name, sig), nil
}

// Start instantiates cm, runs its start function if it has one, and
// prepares the call of _start. args is the whole argument vector (args[0]
// is the program name).
func Start(cm *wasm.CompiledModule, args []string, stdin []byte) (*Machine, error) {
	host := NewFakeHost(stdin)
	sys, err := wasi.New(wasi.Config{Args: args}, host)
	if err != nil {
		return nil, fmt.Errorf("guesttest: %w", err)
	}
	inst, err := wasm.NewStore().Instantiate(cm, Resolve)
	if err != nil {
		return nil, fmt.Errorf("guesttest: instantiate: %w", err)
	}
	m := &Machine{cm: cm, inst: inst, sys: sys, host: host}
	if f := inst.StartFunc(); f != nil {
		if err := inst.Invoke(f, nil); err != nil {
			return nil, fmt.Errorf("guesttest: start function: %w", err)
		}
		for !m.done {
			if _, err := m.Step(1 << 62); err != nil {
				return nil, fmt.Errorf("guesttest: start function: %w", err)
			}
		}
		if m.code != 0 || m.sysExited() {
			return m, nil // exited during the start function
		}
		m.done = false
	}
	start := inst.ExportedFunc("_start")
	if start == nil {
		return nil, errors.New("guesttest: the guest exports no _start")
	}
	if err := inst.Invoke(start, nil); err != nil {
		return nil, fmt.Errorf("guesttest: invoke _start: %w", err)
	}
	return m, nil
}

func (m *Machine) sysExited() bool {
	_, exited := m.sys.Exited()
	return exited
}

// memory returns the instance's memory as wasi sees it (nil without one).
func (m *Machine) memory() wasi.Memory {
	if mem := m.inst.Memory(); mem != nil {
		return mem
	}
	return nil
}

// Step runs the guest, servicing its host calls, until its instruction
// budget is used up (one engine Run without a host call executing budget
// instructions) or it ends. It reports whether the guest ended.
func (m *Machine) Step(budget uint64) (done bool, err error) {
	for !m.done {
		stop, err := m.inst.Run(budget)
		if err != nil {
			return false, fmt.Errorf("guesttest: run (after %d instructions, %d host calls): %w",
				m.inst.Count(), m.calls, err)
		}
		switch stop.Reason {
		case wasm.StopDone:
			m.done = true
		case wasm.StopBudget:
			m.budget++
			return false, nil
		case wasm.StopHostCall:
			m.calls++
			f := stop.Func
			if f.Module != wasi.ModuleName {
				return false, fmt.Errorf("guesttest: call of unknown host function %s.%s", f.Module, f.Name)
			}
			results, err := m.sys.Call(context.Background(), m.memory(), f.Name, stop.Args)
			var exit *wasi.ExitError
			switch {
			case errors.As(err, &exit):
				m.done, m.code = true, int(exit.Code)
			case err != nil:
				return false, fmt.Errorf("guesttest: host call %s (after %d instructions): %w", f.Name, m.inst.Count(), err)
			default:
				if err := m.inst.Resume(results); err != nil {
					return false, fmt.Errorf("guesttest: resume %s: %w", f.Name, err)
				}
			}
		default:
			return false, fmt.Errorf("guesttest: unknown stop reason %v", stop.Reason)
		}
	}
	return true, nil
}

// Finish runs the guest to its end with the given budget per engine Run.
func (m *Machine) Finish(budget uint64) (Result, error) {
	for {
		done, err := m.Step(budget)
		if err != nil {
			return m.Result(), err
		}
		if done {
			return m.Result(), nil
		}
	}
}

// Result returns the guest's output so far and its exit status (zero
// while it runs).
func (m *Machine) Result() Result {
	return Result{
		Stdout:   append([]byte(nil), m.host.Stdout.Bytes()...),
		Stderr:   append([]byte(nil), m.host.Stderr.Bytes()...),
		ExitCode: m.code,
	}
}

// Done reports whether the guest ended.
func (m *Machine) Done() bool { return m.done }

// Instance returns the engine instance.
func (m *Machine) Instance() *wasm.Instance { return m.inst }

// BudgetStops returns how many times Step stopped because the budget was
// used up, in this process.
func (m *Machine) BudgetStops() uint64 { return m.budget }

// MemoryHash returns the SHA-256 of the guest's linear memory.
func (m *Machine) MemoryHash() [32]byte {
	if mem := m.inst.Memory(); mem != nil {
		return sha256.Sum256(mem.Bytes())
	}
	return sha256.Sum256(nil)
}

// Snapshot encodes the whole machine between two Steps: the engine's
// snapshot, the WASI state, the fake host's state and the output so far.
func (m *Machine) Snapshot() ([]byte, error) {
	if m.done {
		return nil, errors.New("guesttest: snapshot of a guest that ended")
	}
	engine, err := m.inst.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("guesttest: engine snapshot: %w", err)
	}
	sys, err := m.sys.MarshalState()
	if err != nil {
		return nil, fmt.Errorf("guesttest: wasi state: %w", err)
	}
	b := []byte(machineMagic)
	for _, part := range [][]byte{engine, sys, m.host.MarshalState(), m.host.Stdout.Bytes(), m.host.Stderr.Bytes()} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	return b, nil
}

const machineMagic = "ftvmGUESTSNAP1"

// Restore recreates a machine of cm from Snapshot's encoding, in any
// process. stdin must be the input the snapshotted machine was started
// with.
func Restore(cm *wasm.CompiledModule, snap []byte, stdin []byte) (*Machine, error) {
	if len(snap) < len(machineMagic) || string(snap[:len(machineMagic)]) != machineMagic {
		return nil, errors.New("guesttest: not a machine snapshot")
	}
	rest := snap[len(machineMagic):]
	parts := make([][]byte, 5)
	for i := range parts {
		n, k := binary.Uvarint(rest)
		if k <= 0 || n > uint64(len(rest)-k) {
			return nil, errors.New("guesttest: truncated machine snapshot")
		}
		parts[i], rest = rest[k:k+int(n)], rest[k+int(n):]
	}
	if len(rest) != 0 {
		return nil, errors.New("guesttest: trailing bytes after the machine snapshot")
	}
	host := NewFakeHost(stdin)
	if err := host.UnmarshalState(parts[2]); err != nil {
		return nil, err
	}
	host.Stdout.Write(parts[3])
	host.Stderr.Write(parts[4])
	sys, err := wasi.New(wasi.Config{}, host)
	if err != nil {
		return nil, fmt.Errorf("guesttest: %w", err)
	}
	if err := sys.UnmarshalState(parts[1]); err != nil {
		return nil, fmt.Errorf("guesttest: wasi state: %w", err)
	}
	inst, err := wasm.NewStore().Restore(cm, Resolve, parts[0])
	if err != nil {
		return nil, fmt.Errorf("guesttest: engine restore: %w", err)
	}
	return &Machine{cm: cm, inst: inst, sys: sys, host: host}, nil
}

// DefaultBudget is the instruction budget per engine Run that RunFTVM uses:
// large enough that budget stops cost nothing measurable.
const DefaultBudget = 1 << 30

// RunFTVM runs the guest bin to completion on ftvm's engine with the wasi
// package over a FakeHost and returns its output and exit status. args is
// the whole argument vector (args[0] is the program name). It fails the
// test if the guest cannot be compiled or instantiated, traps, or makes a
// host call that fails.
func RunFTVM(tb testing.TB, bin []byte, args []string, stdin []byte) (stdout, stderr []byte, exitCode int) {
	tb.Helper()
	cm, err := Compile(bin)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := Start(cm, args, stdin)
	if err != nil {
		tb.Fatal(err)
	}
	res, err := m.Finish(DefaultBudget)
	if err != nil {
		tb.Fatalf("%v\nstdout: %s\nstderr: %s", err, res.Stdout, res.Stderr)
	}
	return res.Stdout, res.Stderr, res.ExitCode
}
