package main

import (
	"path/filepath"
	"strings"
	"testing"

	"ftvm/internal/guesttest"
	"ftvm/wasm"
)

// Every command that runs a guest takes --engine, and refuses a tier it
// does not know, saying which it knows, and where to read the usage
// rather than the whole of it.
func TestEngineFlagRefusesUnknownTier(t *testing.T) {
	for _, args := range [][]string{
		{"exec", "--engine", "jit", "g.wasm"},
		{"record", "--engine", "jit", "--log", "x.log", "g.wasm"},
		{"replay", "--engine", "jit", "--log", "x.log", "g.wasm"},
		{"spectest", "--engine", "jit", "dir"},
		{"host", "--engine", "jit", "--shared", t.TempDir(), "--name", "h1"},
		{"run", "--engine", "jit", "g.wasm"},
	} {
		code, _, errs := ftvm(t, "", args...)
		if code != 2 || !strings.Contains(errs, `invalid value "jit" for flag -engine`) || !strings.Contains(errs, "want interp or compiler") ||
			!strings.Contains(errs, "run 'ftvm "+args[0]+" -h' for its usage") || strings.Contains(errs, "usage: ftvm") {
			t.Errorf("%s: status %d, stderr %q", strings.Join(args, " "), code, errs)
		}
	}
}

// A log recorded under one tier replays under the other, to the same
// output, and a snapshot saved under one resumes under the other; the log
// says which tier recorded it.
func TestRecordReplayAcrossTiersCLI(t *testing.T) {
	g := guestFile(t, "wasi-basics")
	for _, tiers := range guesttest.TierPairs(t) {
		rec, rep := tiers[0].String(), tiers[1].String()
		t.Run(rec+"-"+rep, func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "run.log")
			code, out, errs := ftvm(t, "", "record", "--engine", rec, "--log", log, g, "clock")
			if code != 0 {
				t.Fatalf("record: status %d, stderr %s", code, errs)
			}
			code, rout, rerrs := ftvm(t, "", "replay", "--engine", rep, "--log", log, g)
			if code != 0 || rout != out {
				t.Fatalf("replay: status %d, stdout %q (recorded %q), stderr %s", code, rout, out, rerrs)
			}
			// The tier that ran: the compiler falls back to the
			// interpreter where it has no native code.
			want := rec
			if tiers[0] == wasm.EngineCompiler && !wasm.CompilerAvailable() {
				want = wasm.EngineInterpreter.String()
			}
			_, show, _ := ftvm(t, "", "log", "show", log)
			if !strings.Contains(show, "\nengine tier "+want+"\n") {
				t.Fatalf("log show does not say tier %s:\n%.300s", want, show)
			}
			snap := filepath.Join(dir, "mid.snap")
			code, first, errs := ftvm(t, "", "replay", "--engine", rec, "--log", log, "--until", "1000", "--save", snap, g)
			if code != 0 {
				t.Fatalf("replay --until under %s: status %d, stderr %s", rec, code, errs)
			}
			code, second, errs := ftvm(t, "", "replay", "--engine", rep, "--log", log, "--from", snap, g)
			if code != 0 || first+second != out {
				t.Fatalf("replay --from under %s: status %d, output %q + %q, want %q; stderr %s", rep, code, first, second, out, errs)
			}
		})
	}
}
