package host

import (
	"fmt"
	"net"
	"time"

	"ftvm/vmm"
	"ftvm/wasi"
)

// promote makes vm, a backup's VM whose log ended, live on a real host of
// this host's (its disk, its listeners' addresses, its output streams),
// which adopts the handles the guest holds, and hands it to a primary's
// side that runs alone: its log goes on, its gate lets everything out,
// until a clone gives it a backup again; or, with pairWith (a
// switchover), one paired with that backup from the start. The old primary must be unable to
// perform anything more by now (dead or fenced): an effect it announced and
// may have performed is settled first, against the disk as it left it. Its
// listeners may share their addresses with oldPrimary's host process (a
// fence it could not do), but with no one else.
func (r *runner) promote(vm *vmm.VM, oldPrimary, pairWith string, kept *keptOutput) (*primarySide, error) {
	cfg := r.wasiConfig(oldPrimary)
	// The guest's sessions go on here: the clients resume them.
	cfg.Sessions = func(id string, in, out uint64) (net.Conn, error) { return r.restoreSession(kept, id, in, out) }
	s, err := vm.Settle(cfg)
	if err != nil {
		return nil, err
	}
	if s.InDoubt {
		r.log.Info("settled an effect in doubt", "effect", s.Effect, "performed_by_old_primary", s.Done)
	}
	a, err := vm.Adoption()
	if err != nil {
		return nil, err
	}
	oh, err := wasi.NewOSHostAdopting(cfg, r.log, a)
	for deadline, waited := time.Now().Add(listenWait), false; err != nil && listenTaken(err) && time.Now().Before(deadline); waited = true {
		// Someone else still listens on the VM's address (an old
		// primary frozen where it could not be fenced, or a program):
		// going live fails only if it does not go away.
		if r.ctx.Err() != nil {
			break
		}
		if !waited {
			r.log.Warn("go-live waits for the vm's listen address", "for_at_most", listenWait.String(), "err", explainListenErr(err, r.spec.Listeners))
		}
		select {
		case <-r.ctx.Done():
		case <-time.After(listenRetry):
		}
		oh, err = wasi.NewOSHostAdopting(cfg, r.log, a)
	}
	if err != nil {
		return nil, explainListenErr(err, r.spec.Listeners)
	}
	// The call the VM stopped at is pending: the log is complete through
	// the instruction before it.
	p := r.newPrimarySide(oh, newAloneLogBuffer(vm.Seq(), max(vm.Position(), 1)-1))
	p.vm = vm
	if pairWith != "" {
		// A switchover: the old primary, whose state is this VM's now,
		// follows as the backup. The log is kept from here, and outputs
		// wait for its acknowledgements from the start.
		p.buf.attach(vm.Seq())
		p.gate.Rearm(vm.Seq())
	} else {
		p.gate.Release()
	}
	if err := vm.GoLiveRecording(p.gate, oh, p.buf); err != nil {
		p.gate.Discard()
		oh.CloseAll()
		return nil, fmt.Errorf("go live: %w", err)
	}
	if stdout, stderr := vm.Rewritten(); stdout+stderr > 0 {
		r.log.Info("wrote again the output the old primary may not have written", "stdout_bytes", stdout, "stderr_bytes", stderr)
	}
	r.restoreGone(kept)
	r.mu.Lock()
	r.side, r.primary = p, p
	r.mu.Unlock()
	return p, nil
}
