package main

import (
	"flag"
	"fmt"
	"os"

	"ftvm/vmm"
)

// profileFlags are the guest profile's flags, shared by exec, record and
// replay.
type profileFlags struct {
	path   string
	period uint64
}

func (p *profileFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.path, "profile", "", "write a profile of the guest's functions to `FILE` when it ends (pprof format: go tool pprof FILE)")
	fs.Uint64Var(&p.period, "profile-period", vmm.DefaultProfilePeriod, "with --profile, sample the guest's call stack every `N` instructions")
}

// apply turns sampling on in cfg if a profile was asked for.
func (p *profileFlags) apply(cfg *vmm.Config) error {
	if p.path == "" {
		return nil
	}
	if p.period == 0 {
		return fmt.Errorf("--profile-period 0: want at least 1")
	}
	cfg.ProfilePeriod = p.period
	return nil
}

// write saves vm's profile, if one was asked for.
func (p *profileFlags) write(vm *vmm.VM) error {
	if p.path == "" {
		return nil
	}
	f, err := os.Create(p.path)
	if err != nil {
		return fmt.Errorf("--profile: %w", err)
	}
	if err := vm.WriteProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--profile %s: %w", p.path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--profile: %w", err)
	}
	return nil
}
