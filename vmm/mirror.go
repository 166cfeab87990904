package vmm

import (
	"fmt"

	"ftvm/wasi"
)

// A VM whose files are its replica's own (a local disk, not shared with
// the peer) is replayed with a mirror: the backup's OS host over its own
// copy of those files. The replay answers the guest from the log, as
// always, and also performs each file effect on the mirror, under the
// handles the primary gave (wasi.OSHost.Renumber), and checks the
// mirror's result against the logged one: a difference means the copies
// no longer agree, a divergence reported with the entry. So the backup's
// copy stays what the primary's was at the same point of the log, and a
// backup going live continues on it. Inputs (reads, metadata, listings)
// still come from the log: they are what the guest saw.

// mirrorErrno performs an effect whose result is an errno on the mirror
// and checks it against logged; what names the effect for the report.
func (p *replayer) mirrorErrno(logged wasi.Errno, do func(*wasi.OSHost) wasi.Errno, what string, args ...any) {
	if p.mirror == nil || p.err != nil {
		return
	}
	if got := do(p.mirror); got != logged {
		p.diverge(fmt.Sprintf("%s: the log has %v, this replica's own disk %v", fmt.Sprintf(what, args...), logged, got))
	}
}

// mirrorOpen opens on the mirror what the guest opened, and gives it the
// handle the log does.
func (p *replayer) mirrorOpen(dir wasi.Handle, path string, req wasi.OpenRequest, logged wasi.OpenResult, e wasi.Errno) {
	if p.mirror == nil || p.err != nil {
		return
	}
	got, ge := p.mirror.Open(dir, path, req)
	if ge != e {
		if ge == wasi.ESUCCESS {
			p.mirror.Close(got.Handle)
		}
		p.diverge(fmt.Sprintf("open %q: the log has %v, this replica's own disk %v", path, e, ge))
		return
	}
	if e != wasi.ESUCCESS {
		return
	}
	if got.Filetype != logged.Filetype {
		p.mirror.Close(got.Handle)
		p.diverge(fmt.Sprintf("open %q: the log has a file of type %d, this replica's own disk one of type %d", path, logged.Filetype, got.Filetype))
		return
	}
	if err := p.mirror.Renumber(got.Handle, logged.Handle); err != nil {
		p.mirror.Close(got.Handle)
		p.diverge(fmt.Sprintf("open %q: this replica's own disk cannot hold it as handle %d: %v", path, logged.Handle, err))
	}
}

// mirrorClose closes on the mirror a file or directory the guest closed.
func (p *replayer) mirrorClose(h wasi.Handle) {
	if p.mirror != nil && p.mirror.IsFile(h) {
		p.mirror.Close(h)
	}
}

// SetMirror gives a replaying VM made without one (restored from a clone,
// or turned from a primary into a backup) the mirror of Config.Mirror,
// which must hold what the guest holds (see Adoption). The VM closes it.
func (vm *VM) SetMirror(m *wasi.OSHost) error {
	if vm.rep == nil {
		return errNotReplaying
	}
	if vm.rep.mirror != nil {
		vm.rep.mirror.CloseAll()
	}
	vm.rep.mirror = m
	return nil
}
