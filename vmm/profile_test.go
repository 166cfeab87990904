package vmm_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"ftvm/vmm"
	"ftvm/wasi"
)

// runProfiled runs the guest (recording into rec, or replaying from rep)
// with sampling every period instructions and returns its profile.
func runProfiled(t *testing.T, cfg vmm.Config, period uint64) ([]byte, uint64) {
	t.Helper()
	cfg.ProfilePeriod = period
	vm, err := vmm.New(compile(t, "wasi-basics"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if _, err := vm.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := vm.WriteProfile(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), vm.Position()
}

// A guest profile counts instructions, so the replay of a log gives the
// profile of the recorded run, byte for byte, and it holds one sample per
// period of the run, on stacks named from the module's name section.
func TestGuestProfile(t *testing.T) {
	const period = 997
	args := []string{"wasi-basics", "random"}
	log := &memLog{}
	rec, count := runProfiled(t, vmm.Config{WASI: wasi.Config{Args: args, Stdout: io.Discard, Stderr: io.Discard}, Record: log}, period)
	rep, _ := runProfiled(t, vmm.Config{WASI: wasi.Config{Args: args, Stdout: io.Discard, Stderr: io.Discard}, Replay: log.reader()}, period)
	if !bytes.Equal(rec, rep) {
		t.Fatal("the replay's profile differs from the recorded run's")
	}
	p, err := profile.Parse(bytes.NewReader(rec))
	if err != nil {
		t.Fatal(err)
	}
	var samples int64
	funcs := map[string]bool{}
	for _, s := range p.Sample {
		samples += s.Value[0]
		if s.Value[1] != s.Value[0]*period {
			t.Fatalf("sample %v: instructions %d, want %d", s.Location, s.Value[1], s.Value[0]*period)
		}
		for _, l := range s.Location {
			funcs[l.Line[0].Function.Name] = true
		}
		// The outermost frame is the entry point.
		if outer := s.Location[len(s.Location)-1].Line[0].Function.Name; outer != "_rt0_wasm_wasip1" {
			t.Fatalf("a stack ends in %q, not the entry point", outer)
		}
	}
	if want := int64(count / period); samples != want {
		t.Fatalf("%d samples over %d instructions, want %d", samples, count, want)
	}
	if !funcs["main.main"] || !funcs["runtime.main"] {
		names := make([]string, 0, len(funcs))
		for f := range funcs {
			names = append(names, f)
		}
		t.Fatalf("main.main or runtime.main missing from the sampled functions: %s", strings.Join(names, " "))
	}
}

func TestGuestProfileOff(t *testing.T) {
	vm, err := vmm.New(compile(t, "wasi-basics"), vmm.Config{WASI: wasi.Config{Args: []string{"wasi-basics", "env"}, Stdout: io.Discard}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	if err := vm.WriteProfile(io.Discard); err == nil {
		t.Fatal("WriteProfile without sampling succeeded")
	}
}
