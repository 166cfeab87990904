package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"ftvm/vmm"
	"ftvm/wasi"
)

// Local disks (the paper's non-shared disks, §4.1). A VM started with
// ftvm start --disk local keeps its disk in each replica's host data
// directory (ftvm host --data), not in the store: the primary writes its
// copy without waiting for its backup (disk writes are internal state, not
// outputs: what the backup lacks is lost with the primary's memory, which
// no client saw depend on it), and the backup performs the same writes on
// its copy as it replays them, checking each result against the logged one
// (vmm.Config.Mirror). So the copies agree at every entry of the log, and
// a backup going live continues on its own copy.
//
// Two copies are known to agree only when one was made from the other: the
// backup of a VM with a local disk is always a clone of its primary, disk
// included (see diskcopy.go). A start, or a restart after every replica
// was lost, runs the VM alone on the host that ran it last, the one whose
// copy is the latest, and a clone restores redundancy from there.
//
// Each copy has a mark beside it: the last generation in which this host
// ran the VM as its primary, or alone. A primary starts only on a copy
// marked with the generation just before its own (or on no copy at all,
// for the first generation): so a host that lost a test-and-set, whose
// copy another host has since gone past, never uses it again; a clone
// replaces it.

// lockData makes dir, the host's data directory, its own: created if
// missing, refused if it is not a directory, and locked (flock on
// dir/.lock) so that a second host given the same directory fails to
// start rather than overwrite the first one's copies. The lock goes with
// the process.
func lockData(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is another running host's: each host needs its own --data", dir)
		}
		return nil, fmt.Errorf("data directory %s: lock: %w", dir, err)
	}
	return f, nil
}

// unlockData releases the data directory.
func (h *Host) unlockData() {
	if h.dataLock != nil {
		h.dataLock.Close()
		h.dataLock = nil
	}
}

// errNoData refuses a VM with a local disk on a host that has no data
// directory.
var errNoData = errors.New("this host has no data directory for local disks (ftvm host --data DIR)")

// diskRoot is where this host keeps its copy of vm's local disk, and the
// copy's mark.
func (h *Host) diskRoot(vm string) string { return filepath.Join(h.cfg.Data, "vms", vm) }

// localDiskDir is this host's copy of vm's local disk.
func (h *Host) localDiskDir(vm string) string { return filepath.Join(h.diskRoot(vm), "disk") }

// diskMark is what a local copy's mark says.
type diskMark struct {
	// Generation is the last one in which this host ran the VM as its
	// primary (or alone).
	Generation uint64    `json:"generation"`
	Updated    time.Time `json:"updated"`
}

func (h *Host) markPath(vm string) string { return filepath.Join(h.diskRoot(vm), "mark.json") }

// readMark returns the mark of this host's copy of vm's disk; ok is false
// if there is none.
func (h *Host) readMark(vm string) (m diskMark, ok bool, err error) {
	b, err := os.ReadFile(h.markPath(vm))
	if errors.Is(err, fs.ErrNotExist) {
		return m, false, nil
	}
	if err != nil {
		return m, false, fmt.Errorf("local disk of %s: %w", vm, err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, false, fmt.Errorf("local disk of %s: mark %s: %w", vm, h.markPath(vm), err)
	}
	return m, true, nil
}

// markDisk records that this host runs vm as its primary in generation
// gen, its copy the latest.
func (h *Host) markDisk(vm string, gen uint64) error {
	if m, ok, err := h.readMark(vm); err == nil && ok && m.Generation >= gen {
		return nil
	}
	b, _ := json.Marshal(diskMark{Generation: gen, Updated: time.Now().UTC()})
	tmp := h.markPath(vm) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("local disk of %s: mark: %w", vm, err)
	}
	if err := os.Rename(tmp, h.markPath(vm)); err != nil {
		return fmt.Errorf("local disk of %s: mark: %w", vm, err)
	}
	return nil
}

// prepareLocalDisk makes sure this host may start vm as its primary in
// generation gen on its copy of the disk: an empty one for the first
// generation, else the copy marked with generation gen-1.
func (h *Host) prepareLocalDisk(vm string, gen uint64) error {
	if h.cfg.Data == "" {
		return errNoData
	}
	m, ok, err := h.readMark(vm)
	if err != nil {
		return err
	}
	if o, found, oerr := h.dir.Owner(vm, gen); oerr == nil && found && o.FromCopy && o.Host == h.cfg.Name {
		// The operator named this host: its own copy, whatever it is.
		if !ok {
			h.log.Warn("local disk: started from this host's copy as asked, but it has none: the disk starts empty", "vm", vm, "generation", gen)
		} else if m.Generation+1 != gen {
			h.log.Warn("local disk: started from this host's copy as asked, which is from an earlier generation", "vm", vm, "copy_generation", m.Generation, "generation", gen)
		}
		if err := os.MkdirAll(h.localDiskDir(vm), 0o755); err != nil {
			return fmt.Errorf("local disk of %s: %w", vm, err)
		}
		return h.markDisk(vm, gen)
	}
	switch {
	case !ok && gen == 1:
		if err := os.MkdirAll(h.localDiskDir(vm), 0o755); err != nil {
			return fmt.Errorf("local disk of %s: %w", vm, err)
		}
	case !ok:
		return fmt.Errorf("local disk of %s: this host has no copy of it, and generation %d is not its first (did it last run without a local disk?): start it with --primary naming a host whose copy to use", vm, gen)
	case m.Generation+1 != gen:
		return fmt.Errorf("local disk of %s: this host's copy is from generation %d, not the latest (%d): it was left behind (a lost test-and-set, or a backup), and only a clone makes it current again; to use it anyway, start the VM with --primary naming this host", vm, m.Generation, gen-1)
	}
	return h.markDisk(vm, gen)
}

// attachMirror gives vm, a backup's replaying VM with a local disk, its
// mirror: an OS host over this host's copy holding the files the guest
// holds, on which the replay performs the guest's file effects.
func (r *runner) attachMirror(vm *vmm.VM) error {
	if !r.spec.LocalDisk() {
		return nil
	}
	a, err := vm.Adoption()
	if err != nil {
		return fmt.Errorf("local disk: %w", err)
	}
	cfg := wasi.Config{Preopens: r.wasiConfig().Preopens}
	startup := wasi.Handle(3 + len(cfg.Preopens))
	var files wasi.Adoption
	for _, ad := range a.Handles {
		if ad.Kind == wasi.AdoptFile || ad.Kind == wasi.AdoptDir {
			files.Handles = append(files.Handles, ad)
		}
	}
	for _, hd := range a.Closed {
		if hd < startup {
			files.Closed = append(files.Closed, hd)
		}
	}
	m, err := wasi.NewOSHostAdopting(cfg, r.log, files)
	if err != nil {
		return fmt.Errorf("local disk: open this host's copy: %w", err)
	}
	if err := vm.SetMirror(m); err != nil {
		m.CloseAll()
		return err
	}
	return nil
}
