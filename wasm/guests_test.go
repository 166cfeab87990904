package wasm_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"ftvm/internal/guesttest"
	"ftvm/wasm"
)

// compileGuest compiles a guest with the default configuration on engine.
func compileGuest(bin []byte, engine wasm.Engine) (*wasm.CompiledModule, error) {
	return wasm.Compile(bin, wasm.Config{Engine: engine})
}

// cpuGuest is a CPU-bound Go guest of testdata/guests with the size argument
// tests run it at and the size benchmarks run it at.
type cpuGuest struct {
	name        string
	small, full string
}

// cpuGuests returns the CPU-bound guests. The benchmark sizes are chosen so
// that one run takes seconds, not minutes, on an interpreter.
func cpuGuests() []cpuGuest {
	return []cpuGuest{
		{"cpu-fib", "25", "30"},
		{"cpu-sha256", "65536", "1048576"},
		{"cpu-json", "1", "10"},
		{"cpu-sort", "10000", "200000"},
		{"cpu-maps", "10000", "200000"},
		{"cpu-fmt", "300", "5000"},
	}
}

// TestGuestsMatchWazero runs every CPU-bound guest on ftvm's engine and on
// wazero's interpreter: stdout, stderr and exit status must be identical.
func TestGuestsMatchWazero(t *testing.T) {
	for _, g := range cpuGuests() {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			bin := guesttest.Build(t, g.name)
			args := []string{g.name, g.small}
			wantOut, wantErr, wantCode := guesttest.RunWazero(t, bin, args, nil)
			if wantCode != 0 || len(wantOut) == 0 {
				t.Fatalf("wazero: exit %d, stdout %q, stderr %q", wantCode, wantOut, wantErr)
			}
			out, errOut, code := guesttest.RunFTVM(t, bin, args, nil)
			if code != wantCode || !bytes.Equal(out, wantOut) || !bytes.Equal(errOut, wantErr) {
				t.Fatalf("ftvm: exit %d, stdout %q, stderr %q\nwazero: exit %d, stdout %q, stderr %q",
					code, out, errOut, wantCode, wantOut, wantErr)
			}
		})
	}
}

// runOutcome is what a finished guest left behind.
type runOutcome struct {
	Stdout, Stderr []byte
	ExitCode       int
	Count          uint64
	MemoryHash     string
	BudgetStops    uint64
}

func finish(t testing.TB, m *guesttest.Machine, budget uint64) runOutcome {
	t.Helper()
	res, err := m.Finish(budget)
	if err != nil {
		t.Fatalf("%v\nstdout: %s\nstderr: %s", err, res.Stdout, res.Stderr)
	}
	h := m.MemoryHash()
	return runOutcome{
		Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode,
		Count: m.Instance().Count(), MemoryHash: hex.EncodeToString(h[:]), BudgetStops: m.BudgetStops(),
	}
}

func start(t testing.TB, bin []byte, args []string) *guesttest.Machine {
	t.Helper()
	cm, err := compileGuest(bin, wasm.EngineForTests)
	if err != nil {
		t.Fatal(err)
	}
	m, err := guesttest.Start(cm, args, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Environment of the helper process of TestGuestSnapshotAcrossProcesses.
const (
	envHelperDir    = "FTVM_GUESTTEST_HELPER_DIR"
	envHelperBudget = "FTVM_GUESTTEST_HELPER_BUDGET"
)

// snapshotBudget is the instruction budget per engine Run in the snapshot
// test: small, so that snapshots fall at many points of a run.
const snapshotBudget = 1_000_000

// TestGuestSnapshotAcrossProcesses runs each guest twice with a small
// budget per Run: once without interruption, and once snapshotted halfway
// (after the K-th budget stop) and finished in a new process from the
// snapshot. Output, instruction count and final memory must be identical.
func TestGuestSnapshotAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	for _, g := range cpuGuests() {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			bin := guesttest.Build(t, g.name)
			args := []string{g.name, g.small}
			want := finish(t, start(t, bin, args), snapshotBudget)
			if want.ExitCode != 0 || len(want.Stdout) == 0 || want.BudgetStops < 2 {
				t.Fatalf("uninterrupted run: exit %d, %d budget stops, stdout %q, stderr %q",
					want.ExitCode, want.BudgetStops, want.Stdout, want.Stderr)
			}

			m := start(t, bin, args)
			k := want.BudgetStops / 2
			for m.BudgetStops() < k {
				done, err := m.Step(snapshotBudget)
				if err != nil || done {
					t.Fatalf("step %d: done %v, error %v", m.BudgetStops(), done, err)
				}
			}
			snap, err := m.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("snapshot after %d of %d budget stops, at instruction %d of %d: %d bytes",
				k, want.BudgetStops, m.Instance().Count(), want.Count, len(snap))

			dir := t.TempDir()
			for name, data := range map[string][]byte{"guest.wasm": bin, "machine.snap": snap} {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestGuestSnapshotHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), envHelperDir+"="+dir, fmt.Sprintf("%s=%d", envHelperBudget, snapshotBudget))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("helper process: %v\n%s", err, out)
			}
			b, err := os.ReadFile(filepath.Join(dir, "outcome.json"))
			if err != nil {
				t.Fatalf("helper process left no outcome: %v", err)
			}
			var got runOutcome
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			got.BudgetStops += k // the helper counts only its own
			if !bytes.Equal(got.Stdout, want.Stdout) || !bytes.Equal(got.Stderr, want.Stderr) || got.ExitCode != want.ExitCode {
				t.Errorf("restored run: exit %d, stdout %q, stderr %q; uninterrupted: exit %d, stdout %q, stderr %q",
					got.ExitCode, got.Stdout, got.Stderr, want.ExitCode, want.Stdout, want.Stderr)
			}
			if got.Count != want.Count || got.MemoryHash != want.MemoryHash || got.BudgetStops != want.BudgetStops {
				t.Errorf("restored run: count %d, memory %s, %d budget stops; uninterrupted: count %d, memory %s, %d budget stops",
					got.Count, got.MemoryHash, got.BudgetStops, want.Count, want.MemoryHash, want.BudgetStops)
			}

			// The snapshotted machine itself goes on unaffected.
			if again := finish(t, m, snapshotBudget); again.Count != want.Count || again.MemoryHash != want.MemoryHash ||
				!bytes.Equal(again.Stdout, want.Stdout) {
				t.Errorf("original machine after its snapshot: count %d, memory %s; uninterrupted: count %d, memory %s",
					again.Count, again.MemoryHash, want.Count, want.MemoryHash)
			}
		})
	}
}

// TestGuestSnapshotHelperProcess is the other process of
// TestGuestSnapshotAcrossProcesses: it restores the machine snapshot in the
// directory the environment names, finishes the run and writes its outcome
// there. Run directly, it does nothing.
func TestGuestSnapshotHelperProcess(t *testing.T) {
	dir := os.Getenv(envHelperDir)
	if dir == "" {
		t.Skip("helper process of TestGuestSnapshotAcrossProcesses")
	}
	var budget uint64
	if _, err := fmt.Sscan(os.Getenv(envHelperBudget), &budget); err != nil || budget == 0 {
		t.Fatalf("bad %s: %v", envHelperBudget, err)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "guest.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := os.ReadFile(filepath.Join(dir, "machine.snap"))
	if err != nil {
		t.Fatal(err)
	}
	cm, err := compileGuest(bin, wasm.EngineForTests)
	if err != nil {
		t.Fatal(err)
	}
	m, err := guesttest.Restore(cm, snap, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(finish(t, m, budget))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "outcome.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestGuestCountDeterministic checks that the instruction count, output and
// final memory of a guest are identical across runs and do not depend on
// how the run is sliced into budgets.
func TestGuestCountDeterministic(t *testing.T) {
	for _, name := range []string{"cpu-json", "cpu-maps"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bin := guesttest.Build(t, name)
			var g cpuGuest
			for _, c := range cpuGuests() {
				if c.name == name {
					g = c
				}
			}
			args := []string{g.name, g.small}
			ref := finish(t, start(t, bin, args), guesttest.DefaultBudget)
			if ref.ExitCode != 0 || len(ref.Stdout) == 0 || ref.Count == 0 {
				t.Fatalf("exit %d, count %d, stdout %q, stderr %q", ref.ExitCode, ref.Count, ref.Stdout, ref.Stderr)
			}
			for _, budget := range []uint64{guesttest.DefaultBudget, 1_000_000, 99_991, 4_099} {
				got := finish(t, start(t, bin, args), budget)
				if got.Count != ref.Count || got.MemoryHash != ref.MemoryHash || !bytes.Equal(got.Stdout, ref.Stdout) {
					t.Errorf("budget %d: count %d, memory %s, stdout %q; first run: count %d, memory %s, stdout %q",
						budget, got.Count, got.MemoryHash, got.Stdout, ref.Count, ref.MemoryHash, ref.Stdout)
				}
			}
			t.Logf("%s %s: %d instructions", g.name, g.small, ref.Count)
		})
	}
}
