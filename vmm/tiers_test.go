package vmm_test

import (
	"strings"
	"testing"

	"ftvm/internal/guesttest"
	"ftvm/wasi"
	"ftvm/wasm"
)

// TestRecordReplayAcrossTiers records guests under one engine tier and
// replays the logs under the other, both ways: the tiers count
// instructions alike at every exit, so a backup may run the other tier
// than its primary, and a log replays whatever tier recorded it. (The
// logs of two recordings differ whatever the tiers: a Go guest's runtime
// reads the clock as often as time passes.)
func TestRecordReplayAcrossTiers(t *testing.T) {
	pairs := guesttest.TierPairs(t)
	for _, g := range []struct {
		name string
		args []string
	}{
		{"wasi-basics", []string{"clock"}},
		{"wasi-basics", []string{"random"}},
		{"wasi-basics", []string{"stdin"}},
		{"cpu-json", []string{"1"}},
		{"cpu-sort", []string{"10000"}},
	} {
		bin := guesttest.Build(t, g.name)
		cms := map[wasm.Engine]*wasm.CompiledModule{}
		for _, e := range []wasm.Engine{wasm.EngineInterpreter, wasm.EngineCompiler} {
			cm, err := wasm.Compile(bin, wasm.Config{Engine: e})
			if err != nil {
				t.Fatal(err)
			}
			if cm.Engine() != e {
				t.Fatalf("compiled for %v, runs on %v", e, cm.Engine())
			}
			cms[e] = cm
		}
		t.Run(g.name+"-"+strings.Join(g.args, "-"), func(t *testing.T) {
			cfg := func() wasi.Config {
				c := wasi.Config{Args: append([]string{g.name}, g.args...)}
				c.Stdin = strings.NewReader("the same input under both tiers\n")
				return c
			}
			for _, pair := range pairs {
				from, to := pair[0], pair[1]
				rec := record(t, cms[from], cfg())
				if rec.exit.Code != 0 || rec.exit.Trap != nil {
					t.Fatalf("recorded under %v: exit %+v, stderr %s", from, rec.exit, rec.stderr)
				}
				rep, err := replay(t, cms[to], cfg(), rec.log.reader())
				if err != nil {
					t.Fatalf("recorded under %v, replayed under %v: %v", from, to, err)
				}
				checkSame(t, rec, rep)
			}
		})
	}
}
