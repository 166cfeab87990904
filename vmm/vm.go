// Package vmm is ftvm's hypervisor for one virtual machine: it runs a guest
// on the engine (package wasm), services every VM exit through the guest's
// system interface (package wasi), and records or replays the guest's
// nondeterministic inputs (package replog).
//
// A VM runs in one of three modes:
//
//   - live (ftvm exec): the WASI layer talks to the real host;
//   - recording (ftvm record, and the primary of a pair): the same, and
//     every import call that took something from outside (an Input or an
//     Effect result of the wasi.Host) becomes one log entry {sequence,
//     position, type, data}: its position is the instruction count at the
//     call, its type the WASI function, its data the Host results in order;
//   - replaying (ftvm replay, and the backup of a pair): the WASI layer's
//     Host answers from the log and performs nothing; before each call the
//     VM checks the log's next entry against the call's position and type,
//     and stops with a *DivergenceError at the first disagreement.
//
// Recording to a file and replaying it offline is the same mechanism as the
// logging channel between primary and backup: only the Sink and the Source
// differ.
package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"

	"ftvm/replog"
	"ftvm/wasi"
	"ftvm/wasm"
)

// Sink receives the entries a recording VM produces, in order.
type Sink interface {
	Append(e replog.Entry) error
}

// Config describes a VM.
type Config struct {
	// WASI is the guest's command line and devices. In replay only Args,
	// Env, the preopens' guest paths and the number of listeners are used.
	WASI wasi.Config
	// Engine bounds memory, call depth and stack.
	Engine wasm.Config
	// Record, if set, makes the VM record: it receives every entry.
	Record Sink
	// Replay, if set, makes the VM replay from it instead of touching the
	// host. Record and Replay are exclusive.
	Replay Source
	// Host, if set, replaces the real host of live and recording VMs
	// (tests use it to inject one). The VM does not close it.
	Host wasi.Host
	// Slice is how many instructions the VM runs between checks of its
	// context; 0 means a default of about 10 ms of guest execution.
	Slice uint64
	// CPU, if set, is held while the guest computes, one slice at a time,
	// and never while a host call waits: a host with many busy guests
	// hands its processors out in turn (see CPU).
	CPU CPU
	// ProfilePeriod, if not 0, makes the VM sample the guest's call stack
	// every ProfilePeriod instructions, for WriteProfile.
	ProfilePeriod uint64
	Logger        *slog.Logger
	// SessionOf names the session (see wasi.Session) a connection the
	// guest accepted is, "" for a plain one: a recording VM logs it with
	// the accept, so that its replay, and the host it goes live on, know
	// the guest's sessions. Without it, the VM asks the OS host it opened
	// (none when Host is set).
	SessionOf func(wasi.Handle) string
	// SessionOutput, if set, receives at a replaying VM every write of the
	// guest to a session, with the offset of its first byte in the
	// session's output: the output the replay regenerates, which the
	// backup keeps until the session's client has it.
	SessionOutput func(id string, off uint64, data []byte)
	// SessionInput, if set, hears at a recording VM every read of the
	// guest from a session: seq is the entry that logs it, and pos the
	// session's input position after it (its bytes, plus one once the
	// guest read its end). Once the backup has acknowledged seq, the host
	// may acknowledge that input to the client (session.ServerSession's
	// SafeInput): the backup can replay the read.
	SessionInput func(seq uint64, id string, pos uint64)
	// SessionClosed, if set, hears at a replaying VM that the guest ended
	// its output to a session after out bytes: by a shutdown of its
	// writing side, or by closing it (gone), having read its input to
	// position in. The backup keeps that end for the client too.
	SessionClosed func(id string, out uint64, gone bool, in uint64)
	// Mirror, if set at a replaying VM, is an OS host over this replica's
	// own copy of the guest's files (a local disk), holding what the
	// guest holds: the replay performs every file effect on it too and
	// checks the results against the log (see mirror.go). The VM closes
	// it when it goes live, before opening the host it goes on with, and
	// in Close.
	Mirror *wasi.OSHost
}

const defaultSlice = 1 << 22

// CPU is a share of a host's processors, taken for each slice of a guest's
// computation. Go's scheduler alone serves runnable goroutines in turn: a
// hundred busy guests would make every other goroutine of the host (the
// heartbeats' reader, the logging channel) wait behind all of them, for
// most of a second. Holding a CPU to compute keeps the busy guests that
// are runnable at once down to the processors there are.
type CPU interface {
	// Acquire waits for a turn to compute, or until ctx is done.
	Acquire(ctx context.Context) error
	// Release ends the turn.
	Release()
}

// Exit is how a guest ended: an exit status, or a trap.
type Exit struct {
	Code uint32
	Trap *wasm.Trap
}

// TrapStatus is the process exit status of a guest that trapped, as a
// process that aborts (SIGABRT) reports it.
const TrapStatus = 134

// Status is the process exit status the guest's end maps to: its exit
// code's low byte, or TrapStatus for a trap.
func (e Exit) Status() int {
	if e.Trap != nil {
		return TrapStatus
	}
	return int(e.Code & 0xff)
}

// VM is one virtual machine.
type VM struct {
	cfg  Config
	cm   *wasm.CompiledModule
	inst *wasm.Instance
	sys  *wasi.System
	os   *wasi.OSHost // the real host this VM opened, if any
	rec  *recorder
	rep  *replayer
	seq  uint64 // entries recorded
	exit *Exit  // set once the guest ended
	// startAfter is _start while the module's own start function runs.
	startAfter *wasm.Function
	prof       *profiler // nil unless Config.ProfilePeriod is set
	// rewritten counts the bytes of stdout and stderr the VM wrote again
	// when it went live (see outTail).
	rewritten [2]int
}

// New creates a VM for the compiled guest, ready to run its _start.
func New(cm *wasm.CompiledModule, cfg Config) (*VM, error) {
	vm, err := newVM(cm, cfg)
	if err != nil {
		return nil, err
	}
	// Its tracker sees the guest from its start.
	if vm.rep != nil {
		vm.rep.track.complete = true
	}
	if vm.rec != nil {
		vm.rec.track.complete = true
	}
	inst, err := wasm.NewStore().Instantiate(cm, resolveWASI)
	if err != nil {
		vm.Close()
		return nil, fmt.Errorf("instantiate guest: %w", err)
	}
	start := inst.ExportedFunc("_start")
	if start == nil || start.IsHost() || len(start.Type().Params)+len(start.Type().Results) != 0 {
		vm.Close()
		return nil, errors.New("guest has no _start function of type [] -> []: not a WASI command module")
	}
	if f := inst.StartFunc(); f != nil {
		// A module's own start function runs first, as part of
		// instantiation; ftvm runs it like _start, exits and all.
		if err := inst.Invoke(f, nil); err != nil {
			vm.Close()
			return nil, err
		}
		vm.inst = inst
		vm.startAfter = start
		return vm, nil
	}
	if err := inst.Invoke(start, nil); err != nil {
		vm.Close()
		return nil, err
	}
	vm.inst = inst
	return vm, nil
}

func newVM(cm *wasm.CompiledModule, cfg Config) (*VM, error) {
	if cfg.Record != nil && cfg.Replay != nil {
		return nil, errors.New("vmm: a VM cannot record and replay at once")
	}
	if cfg.Slice == 0 {
		cfg.Slice = defaultSlice
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	vm := &VM{cfg: cfg, cm: cm}
	var host wasi.Host
	switch {
	case cfg.Replay != nil:
		vm.rep = &replayer{src: cfg.Replay, stdout: cfg.WASI.Stdout, stderr: cfg.WASI.Stderr,
			track: newHandleTracker(cfg.WASI), sessionOutput: cfg.SessionOutput, sessionClosed: cfg.SessionClosed,
			mirror: cfg.Mirror}
		if w, ok := cfg.Replay.(interface{ Written() [2]uint64 }); ok {
			vm.rep.written = w.Written
		}
		host = vm.rep
	case cfg.Host != nil:
		host = cfg.Host
	default:
		oh, err := wasi.NewOSHost(cfg.WASI, cfg.Logger)
		if err != nil {
			return nil, err
		}
		vm.os = oh
		host = oh
	}
	if cfg.Record != nil {
		vm.rec = vm.newRecorder(host, newHandleTracker(cfg.WASI), vm.os)
		host = vm.rec
	}
	sys, err := wasi.New(cfg.WASI, host)
	if err != nil {
		vm.Close()
		return nil, err
	}
	vm.sys = sys
	return vm, nil
}

// resolveWASI links a guest's imports: only wasi_snapshot_preview1
// functions, with their exact signatures, become host functions.
func resolveWASI(imp wasm.Import) (wasm.Extern, error) {
	if imp.Module != wasi.ModuleName || imp.Kind != wasm.ExternFunc {
		return nil, fmt.Errorf("ftvm provides only %s functions", wasi.ModuleName)
	}
	sig, ok := wasi.Signature(imp.Name)
	if !ok {
		return nil, fmt.Errorf("unknown %s function", wasi.ModuleName)
	}
	return wasm.NewHostFunc(imp.Module, imp.Name, sig), nil
}

// Instance returns the engine instance (for its memory and count).
func (vm *VM) Instance() *wasm.Instance { return vm.inst }

// System returns the guest's WASI state.
func (vm *VM) System() *wasi.System { return vm.sys }

// OSHost returns the real host the VM opened, or nil.
func (vm *VM) OSHost() *wasi.OSHost { return vm.os }

// Position returns the guest's instruction count.
func (vm *VM) Position() uint64 { return vm.inst.Count() }

// Seq returns the sequence number of the last entry recorded or replayed.
func (vm *VM) Seq() uint64 {
	if vm.rep != nil {
		return vm.rep.seq
	}
	return vm.seq
}

// SessionsWritten returns, for each session the guest holds (see
// wasi.Session), how many bytes of output the guest wrote to it. Call it
// only while the VM does not run.
func (vm *VM) SessionsWritten() map[string]uint64 {
	switch {
	case vm.rec != nil:
		return vm.rec.track.sessionsWritten()
	case vm.rep != nil:
		return vm.rep.track.sessionsWritten()
	}
	return nil
}

// Close releases the VM's host resources.
func (vm *VM) Close() error {
	vm.closeMirror()
	if vm.os != nil {
		return vm.os.CloseAll()
	}
	return nil
}

// closeMirror closes the replay's mirror, if it has one. Its CloseAll
// leaves the orphans of the files the guest holds where they are, for the
// host the VM goes live on to adopt.
func (vm *VM) closeMirror() {
	if vm.rep != nil && vm.rep.mirror != nil {
		vm.rep.mirror.CloseAll()
		vm.rep.mirror = nil
	}
}

// WriteProfile writes the guest profile sampled so far (see
// Config.ProfilePeriod) to w in pprof's format, for `go tool pprof`.
func (vm *VM) WriteProfile(w io.Writer) error {
	if vm.cfg.ProfilePeriod == 0 {
		return errors.New("guest profile: the VM does not sample (Config.ProfilePeriod is 0)")
	}
	p := vm.prof
	if p == nil {
		p = newProfiler(vm.cfg.ProfilePeriod, vm.inst.Count())
	}
	return p.write(w, vm.inst.FuncName)
}

// Run runs the guest until it ends or ctx is done.
func (vm *VM) Run(ctx context.Context) (Exit, error) {
	_, exit, err := vm.RunUntil(ctx, math.MaxUint64)
	return exit, err
}

// RunUntil runs the guest until its instruction count reaches pos (paused
// is then true; a host call due exactly at pos is left pending, to be
// serviced when the VM runs on), until it ends, or until ctx is done.
func (vm *VM) RunUntil(ctx context.Context, pos uint64) (paused bool, exit Exit, err error) {
	if vm.exit != nil {
		return false, *vm.exit, nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return false, Exit{}, err
		}
		if vm.inst.Count() >= pos {
			return true, Exit{}, nil
		}
		if f, args, ok := vm.inst.Pending(); ok {
			ended, err := vm.service(ctx, f, args)
			if err != nil || ended {
				return false, vm.exitOrZero(), err
			}
			continue
		}
		budget := min(vm.cfg.Slice, pos-vm.inst.Count())
		if vm.cfg.ProfilePeriod != 0 {
			if vm.prof == nil {
				vm.prof = newProfiler(vm.cfg.ProfilePeriod, vm.inst.Count())
			}
			budget = vm.prof.budget(vm.inst.Count(), budget)
		}
		if vm.cfg.CPU != nil {
			if err := vm.cfg.CPU.Acquire(ctx); err != nil {
				return false, Exit{}, err
			}
		}
		st, err := vm.inst.Run(budget)
		if vm.cfg.CPU != nil {
			vm.cfg.CPU.Release()
		}
		if vm.prof != nil {
			vm.prof.sample(vm.inst.Count(), vm.inst.Stack)
		}
		if err != nil {
			var trap *wasm.Trap
			if !errors.As(err, &trap) {
				return false, Exit{}, err
			}
			err := vm.end(Exit{Trap: trap})
			return false, vm.exitOrZero(), err
		}
		if st.Reason == wasm.StopDone {
			if vm.startAfter != nil {
				// The module's start function finished: now _start.
				f := vm.startAfter
				vm.startAfter = nil
				if err := vm.inst.Invoke(f, nil); err != nil {
					return false, Exit{}, err
				}
				continue
			}
			err := vm.end(Exit{Code: 0})
			return false, vm.exitOrZero(), err
		}
	}
}

func (vm *VM) exitOrZero() Exit {
	if vm.exit != nil {
		return *vm.exit
	}
	return Exit{}
}

// service performs the pending host call f(args): replay bookkeeping, the
// WASI call, recording, and resuming the guest.
func (vm *VM) service(ctx context.Context, f *wasm.Function, args []uint64) (ended bool, err error) {
	pos := vm.inst.Count()
	if vm.rep != nil {
		if err := vm.rep.begin(ctx, pos, f.Name); err != nil {
			return false, err
		}
	}
	if vm.rec != nil {
		vm.rec.begin(f.Name, pos)
	}
	results, callErr := vm.sys.Call(ctx, vm.inst.Memory(), f.Name, args)
	if vm.rep != nil {
		if err := vm.rep.end(); err != nil {
			return false, err
		}
	}
	if vm.rec != nil && vm.rec.err != nil {
		// An intent could not be logged (the log is closed): the effect
		// was not performed, and the call does not complete.
		vm.rec.take()
		return false, fmt.Errorf("vmm: %s: log the intent of its effect: %w", f.Name, vm.rec.err)
	}
	var exit *wasi.ExitError
	if callErr != nil && !errors.As(callErr, &exit) {
		// The call did not complete (the host failed, or ctx ended while
		// it waited): nothing of it is logged, and the log is not complete
		// through it, so a backup going live performs it again.
		if vm.rec != nil {
			vm.rec.take()
		}
		return false, callErr
	}
	if vm.rec != nil {
		if data := vm.rec.take(); len(data) > 0 {
			t, ok := callType(f.Name)
			if !ok {
				return false, fmt.Errorf("vmm: no entry type for %s", f.Name)
			}
			if err := vm.emit(replog.Entry{Pos: pos, Type: t, Data: append([]byte(nil), data...)}); err != nil {
				return false, err
			}
		}
	}
	if p, ok := vm.cfg.Record.(interface{ Progress(uint64) }); ok {
		// The log is complete through this call: a backup may run to it.
		p.Progress(pos)
	}
	if exit != nil {
		return true, vm.end(Exit{Code: exit.Code})
	}
	return false, vm.inst.Resume(results)
}

// newRecorder returns the recorder in front of host, tracking handles with
// track; oh, if not nil, is the OS host that names the guest's sessions
// when the Config does not.
func (vm *VM) newRecorder(host wasi.Host, track *handleTracker, oh *wasi.OSHost) *recorder {
	r := &recorder{inner: host, emit: vm.emit, track: track, sessionOf: vm.cfg.SessionOf}
	if r.sessionOf == nil && oh != nil {
		r.sessionOf = oh.SessionOf
	}
	if f := vm.cfg.SessionInput; f != nil {
		// The read's entry is the next one the VM emits.
		r.sessionInput = func(id string, pos uint64) { f(vm.seq+1, id, pos) }
	}
	return r
}

func (vm *VM) emit(e replog.Entry) error {
	e.Seq = vm.seq + 1
	if err := vm.cfg.Record.Append(e); err != nil {
		return fmt.Errorf("record entry %d: %w", e.Seq, err)
	}
	vm.seq = e.Seq
	return nil
}

// end records how the guest ended, or in replay checks it against the log.
func (vm *VM) end(x Exit) error {
	vm.exit = &x
	kind, code, msg := uint64(EndExit), uint64(x.Code), ""
	if x.Trap != nil {
		kind, code, msg = EndTrap, uint64(x.Trap.Code), x.Trap.Error()
	}
	pos := vm.inst.Count()
	if vm.rec != nil {
		var enc replog.Encoder
		enc.Uint(kind)
		enc.Uint(code)
		enc.String(msg)
		return vm.emit(replog.Entry{Pos: pos, Type: TypeEnd, Data: enc.B})
	}
	if vm.rep != nil {
		actual := fmt.Sprintf("an exit with status %d", x.Code)
		if x.Trap != nil {
			actual = "a trap (" + x.Trap.Error() + ")"
		}
		e, ok, err := vm.rep.src.Peek(context.Background(), math.MaxUint64)
		if err != nil {
			return err
		}
		if !ok {
			return &DivergenceError{ActualPos: pos, ActualType: actual, Detail: "the log ends without recording the end"}
		}
		div := &DivergenceError{Seq: e.Seq, Pos: e.Pos, Type: TypeName(e.Type), ActualPos: pos, ActualType: actual}
		if e.Type != TypeEnd {
			div.Detail = "the guest ended before the logged event"
			return div
		}
		d := replog.NewDecoder(e.Data)
		k, c := d.Uint(), d.Uint()
		if e.Pos != pos || k != kind || c != code {
			div.Detail = fmt.Sprintf("the log recorded end kind %d, code %d", k, c)
			return div
		}
		vm.rep.src.Consume()
		vm.rep.seq = e.Seq
	}
	return nil
}
