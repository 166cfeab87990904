package vmm

import (
	"context"
	"errors"
	"fmt"
	"math"

	"ftvm/replog"
	"ftvm/wasm"
)

const vmSnapMagic = "FTVMVM01"

// Snapshot encodes the whole VM: the engine's state (memory, stack,
// position, a pending call), the WASI state (descriptors, offsets), and the
// log sequence number it has reached. The host's resources (open files,
// connections) are not in it: a restored VM replays.
func (vm *VM) Snapshot() ([]byte, error) {
	if vm.exit != nil {
		return nil, errors.New("vmm: snapshot of a guest that has ended")
	}
	if vm.rep != nil && vm.rep.inDoubt != nil {
		return nil, errInDoubt
	}
	eng, err := vm.inst.Snapshot()
	if err != nil {
		return nil, err
	}
	st, err := vm.sys.MarshalState()
	if err != nil {
		return nil, err
	}
	var enc replog.Encoder
	enc.B = append(enc.B, vmSnapMagic...)
	enc.Blob(eng)
	enc.Blob(st)
	enc.Uint(vm.Seq())
	if vm.startAfter != nil {
		enc.Uint(1)
	} else {
		enc.Uint(0)
	}
	return replog.AppendFrame(nil, enc.B), nil
}

// maxSnapshotSize bounds a snapshot's frame: the engine's largest memory
// (1 GiB) and its state, with room to spare.
const maxSnapshotSize = 4 << 30

// Restore recreates a VM from a snapshot. It must replay (cfg.Replay set):
// the source's entries up to the snapshot's sequence number are skipped, and
// the VM goes on from the snapshot's position.
func Restore(ctx context.Context, cm *wasm.CompiledModule, cfg Config, snap []byte) (*VM, error) {
	if cfg.Replay == nil {
		return nil, errors.New("vmm: a restored VM must replay from a log")
	}
	// Its whole length is in hand: a frame longer says the file was cut
	// short, not that its length is corrupt.
	payload, n, err := replog.DecodeFrameUpTo(snap, maxSnapshotSize)
	switch {
	case errors.Is(err, replog.ErrTruncated):
		return nil, fmt.Errorf("vmm: the snapshot is cut short (%d bytes): %w", len(snap), err)
	case err != nil || n != len(snap):
		return nil, fmt.Errorf("vmm: not a VM snapshot or corrupt: %v", errOr(err, "trailing bytes"))
	}
	d := replog.NewDecoder(payload)
	if string(d.Bytes(len(vmSnapMagic))) != vmSnapMagic {
		return nil, errors.New("vmm: not a VM snapshot")
	}
	eng, st, seq, startPending := d.Blob(), d.Blob(), d.Uint(), d.Uint()
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("vmm: corrupt snapshot: %w", err)
	}
	vm, err := newVM(cm, cfg)
	if err != nil {
		return nil, err
	}
	inst, err := wasm.NewStore().Restore(cm, resolveWASI, eng)
	if err != nil {
		vm.Close()
		return nil, err
	}
	vm.inst = inst
	if err := vm.sys.UnmarshalState(st); err != nil {
		vm.Close()
		return nil, err
	}
	if startPending == 1 {
		vm.startAfter = inst.ExportedFunc("_start")
	}
	for {
		e, ok, err := cfg.Replay.Peek(ctx, math.MaxUint64)
		if err != nil {
			vm.Close()
			return nil, err
		}
		if !ok || e.Seq > seq {
			break
		}
		cfg.Replay.Consume()
	}
	vm.rep.seq = seq
	return vm, nil
}

func errOr(err error, msg string) string {
	if err != nil {
		return err.Error()
	}
	return msg
}
