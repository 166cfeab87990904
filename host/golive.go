package host

import (
	"log/slog"

	"ftvm/vmm"
	"ftvm/wasi"
)

// goLive switches a backup VM whose log ended to a real host made from cfg
// (this host's side of the guest: its disk, its listeners' addresses, its
// output streams), which adopts the handles the guest holds. The old
// primary must be unable to perform anything more by now (dead or fenced):
// an effect it announced and may have performed is settled first, against
// the disk as it left it.
func goLive(vm *vmm.VM, cfg wasi.Config, log *slog.Logger) error {
	s, err := vm.Settle(cfg)
	if err != nil {
		return err
	}
	if s.InDoubt {
		log.Info("settled an effect in doubt", "effect", s.Effect, "performed_by_old_primary", s.Done)
	}
	a, err := vm.Adoption()
	if err != nil {
		return err
	}
	oh, err := wasi.NewOSHostAdopting(cfg, log, a)
	if err != nil {
		return err
	}
	if err := vm.GoLiveWith(oh, oh); err != nil {
		oh.CloseAll()
		return err
	}
	if stdout, stderr := vm.Rewritten(); stdout+stderr > 0 {
		log.Info("wrote again the output the old primary may not have written", "stdout_bytes", stdout, "stderr_bytes", stderr)
	}
	return nil
}
