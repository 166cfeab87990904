package main

import (
	"flag"

	"ftvm/wasm"
)

// engineFlag is the --engine flag of the commands that run a guest: the
// engine tier it compiles the guest for. It starts at wasm.DefaultEngine().
type engineFlag struct{ e wasm.Engine }

func (f *engineFlag) String() string { return f.e.String() }

func (f *engineFlag) Set(s string) error {
	e, err := wasm.ParseEngine(s)
	if err != nil {
		return err
	}
	f.e = e
	return nil
}

// engineUsage says what the tiers are, for every command's help.
const engineUsage = "run the guest on engine `TIER`: interp (the interpreter) or compiler (native code, on linux/amd64; elsewhere the interpreter). " +
	"Both count instructions alike, so logs, snapshots and replicas may mix them"

// register adds --engine to fs, defaulting to wasm.DefaultEngine().
func (f *engineFlag) register(fs *flag.FlagSet) {
	f.e = wasm.DefaultEngine()
	fs.Var(f, "engine", engineUsage)
}
