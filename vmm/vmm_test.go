package vmm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/replog"
	"ftvm/vmm"
	"ftvm/wasi"
	"ftvm/wasm"
)

// memLog is a Sink and a Source over entries kept in memory.
type memLog struct {
	entries []replog.Entry
	next    int
}

func (l *memLog) Append(e replog.Entry) error {
	e.Data = bytes.Clone(e.Data)
	l.entries = append(l.entries, e)
	return nil
}

func (l *memLog) Peek(_ context.Context, pos uint64) (replog.Entry, bool, error) {
	if l.next < len(l.entries) {
		return l.entries[l.next], l.entries[l.next].Pos <= pos, nil
	}
	return replog.Entry{}, false, nil
}

func (l *memLog) Consume() { l.next++ }

func (l *memLog) reader() *memLog { return &memLog{entries: l.entries} }

type run struct {
	stdout, stderr string
	exit           vmm.Exit
	log            *memLog
	count          uint64
}

func compile(t testing.TB, name string) *wasm.CompiledModule {
	t.Helper()
	cm, err := wasm.Compile(guesttest.Build(t, name), guesttest.Config())
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// record runs the guest live, recording.
func record(t testing.TB, cm *wasm.CompiledModule, cfg wasi.Config) run {
	t.Helper()
	var out, errb bytes.Buffer
	cfg.Stdout, cfg.Stderr = &out, &errb
	log := &memLog{}
	vm, err := vmm.New(cm, vmm.Config{WASI: cfg, Record: log})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	exit, err := vm.Run(context.Background())
	if err != nil {
		t.Fatalf("record: %v (stderr %s)", err, errb.String())
	}
	return run{out.String(), errb.String(), exit, log, vm.Position()}
}

// replay runs the guest from the log alone.
func replay(t *testing.T, cm *wasm.CompiledModule, cfg wasi.Config, log *memLog) (run, error) {
	t.Helper()
	var out, errb bytes.Buffer
	rcfg := wasi.Config{Args: cfg.Args, Env: cfg.Env, Stdout: &out, Stderr: &errb}
	for _, p := range cfg.Preopens {
		rcfg.Preopens = append(rcfg.Preopens, wasi.Preopen{GuestPath: p.GuestPath})
	}
	for range cfg.Listeners {
		rcfg.Listeners = append(rcfg.Listeners, wasi.Listener{})
	}
	vm, err := vmm.New(cm, vmm.Config{WASI: rcfg, Replay: log})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	exit, err := vm.Run(context.Background())
	return run{out.String(), errb.String(), exit, log, vm.Position()}, err
}

func checkSame(t *testing.T, rec, rep run) {
	t.Helper()
	if rec.stdout != rep.stdout || rec.stderr != rep.stderr {
		t.Fatalf("replay output differs:\nrecorded stdout %q\nreplayed stdout %q\nrecorded stderr %q\nreplayed stderr %q",
			rec.stdout, rep.stdout, rec.stderr, rep.stderr)
	}
	if rec.exit.Code != rep.exit.Code || (rec.exit.Trap == nil) != (rep.exit.Trap == nil) {
		t.Fatalf("exit %+v, replayed %+v", rec.exit, rep.exit)
	}
	if rec.count != rep.count {
		t.Fatalf("final position %d, replayed %d", rec.count, rep.count)
	}
}

func TestRecordReplayClocksRandomStdin(t *testing.T) {
	cm := compile(t, "wasi-basics")
	for _, mode := range []string{"clock", "random", "stdin", "env"} {
		t.Run(mode, func(t *testing.T) {
			cfg := wasi.Config{Args: []string{"wasi-basics", mode}, Env: []string{"GREETING=hi"}}
			if mode == "stdin" {
				cfg.Stdin = strings.NewReader("hello, replay\n")
			}
			rec := record(t, cm, cfg)
			if rec.exit.Code != 0 {
				t.Fatalf("exit %d, stderr %s", rec.exit.Code, rec.stderr)
			}
			if mode != "env" && len(rec.log.entries) < 2 {
				t.Fatalf("only %d entries recorded", len(rec.log.entries))
			}
			rep, err := replay(t, cm, cfg, rec.log.reader())
			if err != nil {
				t.Fatal(err)
			}
			checkSame(t, rec, rep)
		})
	}
}

func TestRecordReplayExitStatus(t *testing.T) {
	cm := compile(t, "wasi-basics")
	cfg := wasi.Config{Args: []string{"wasi-basics", "exit", "7"}}
	rec := record(t, cm, cfg)
	if rec.exit.Code != 7 {
		t.Fatalf("exit %d, want 7", rec.exit.Code)
	}
	rep, err := replay(t, cm, cfg, rec.log.reader())
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, rec, rep)
}

func TestRecordReplayFiles(t *testing.T) {
	cm := compile(t, "wasi-fs")
	dir := t.TempDir()
	cfg := wasi.Config{Args: []string{"wasi-fs", "fs", "/data"}, Preopens: []wasi.Preopen{{GuestPath: "/data", HostDir: dir}}}
	rec := record(t, cm, cfg)
	if rec.exit.Code != 0 {
		t.Fatalf("exit %d, stderr %s", rec.exit.Code, rec.stderr)
	}
	// Replay touches no file: run it against an empty directory's worth of
	// nothing at all (the replay config has no host directory).
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	rep, err := replay(t, cm, cfg, rec.log.reader())
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, rec, rep)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("replay created files: %v", err)
	}
}

func TestRecordReplayEchoServer(t *testing.T) {
	cm := compile(t, "wasi-echo")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := wasi.Config{Args: []string{"wasi-echo", "3"}, Listeners: []wasi.Listener{{Listener: ln}}}
	done := make(chan run, 1)
	go func() { done <- record(t, cm, cfg) }()
	for i := range 3 {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		msg := fmt.Sprintf("message %d: %s\n", i, strings.Repeat("x", 1000*i))
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if string(got) != msg {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}
	rec := <-done
	if rec.exit.Code != 0 {
		t.Fatalf("exit %d, stderr %s", rec.exit.Code, rec.stderr)
	}
	rep, err := replay(t, cm, cfg, rec.log.reader())
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, rec, rep)
}

func TestReplayDetectsTamperedLog(t *testing.T) {
	cm := compile(t, "wasi-basics")
	cfg := wasi.Config{Args: []string{"wasi-basics", "clock"}}
	rec := record(t, cm, cfg)
	// Change an entry's type, its position, and drop one: each must stop
	// the replay with a divergence naming the entry.
	cases := map[string]func([]replog.Entry) []replog.Entry{
		"type": func(es []replog.Entry) []replog.Entry {
			es[1].Type = 41 // random_get
			return es
		},
		"position": func(es []replog.Entry) []replog.Entry {
			es[1].Pos += 3
			return es
		},
		"missing": func(es []replog.Entry) []replog.Entry {
			return append(es[:1:1], es[2:]...)
		},
		"truncated": func(es []replog.Entry) []replog.Entry {
			return es[:len(es)/2]
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			es := mutate(append([]replog.Entry(nil), rec.log.entries...))
			_, err := replay(t, cm, cfg, &memLog{entries: es})
			var div *vmm.DivergenceError
			if !errors.As(err, &div) {
				t.Fatalf("err = %v, want a divergence", err)
			}
			want := map[string]uint64{"type": 2, "position": 2, "missing": 3}[name]
			if want != 0 && (div.Seq != want || div.Type == "" || div.ActualType == "") {
				t.Fatalf("divergence %+v does not name entry %d", div, want)
			}
			t.Log(err)
		})
	}
}

func TestReplayGarbageDataIsAnError(t *testing.T) {
	cm := compile(t, "wasi-basics")
	cfg := wasi.Config{Args: []string{"wasi-basics", "random"}}
	rec := record(t, cm, cfg)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 50 {
		es := append([]replog.Entry(nil), rec.log.entries...)
		k := rng.IntN(len(es))
		d := bytes.Clone(es[k].Data)
		if len(d) == 0 {
			continue
		}
		d[rng.IntN(len(d))] ^= byte(1 + rng.IntN(255))
		if rng.IntN(2) == 0 {
			d = d[:rng.IntN(len(d))]
		}
		es[k].Data = d
		// Whatever the damage, replay must end with an error or a
		// result, never a panic.
		_, _ = replay(t, cm, cfg, &memLog{entries: es})
		_ = i
	}
}

func TestTimeTravelSnapshotsAtRandomPositions(t *testing.T) {
	cm := compile(t, "wasi-basics")
	cfg := wasi.Config{Args: []string{"wasi-basics", "clock"}}
	rec := record(t, cm, cfg)
	rng := rand.New(rand.NewPCG(7, 11))
	for range 5 {
		pos := 1 + rng.Uint64N(rec.count-1)
		var out1 bytes.Buffer
		rcfg := wasi.Config{Args: cfg.Args, Stdout: &out1, Stderr: io.Discard}
		vm, err := vmm.New(cm, vmm.Config{WASI: rcfg, Replay: rec.log.reader()})
		if err != nil {
			t.Fatal(err)
		}
		paused, _, err := vm.RunUntil(context.Background(), pos)
		if err != nil || !paused {
			t.Fatalf("run until %d: paused %v, %v", pos, paused, err)
		}
		if vm.Position() != pos {
			t.Fatalf("paused at %d, want exactly %d", vm.Position(), pos)
		}
		snap, err := vm.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		var out2 bytes.Buffer
		rcfg.Stdout = &out2
		re, err := vmm.Restore(context.Background(), cm, vmm.Config{WASI: rcfg, Replay: rec.log.reader()}, snap)
		if err != nil {
			t.Fatal(err)
		}
		exit, err := re.Run(context.Background())
		if err != nil {
			t.Fatalf("resume from %d: %v", pos, err)
		}
		if got := out1.String() + out2.String(); got != rec.stdout || exit.Code != rec.exit.Code || re.Position() != rec.count {
			t.Fatalf("resume from %d: output %q exit %d at %d; want %q %d at %d",
				pos, got, exit.Code, re.Position(), rec.stdout, rec.exit.Code, rec.count)
		}
	}
}

// TestRestoreCutSnapshot: a snapshot cut short, or with a byte changed,
// is refused, and a cut one says so rather than that its length is
// corrupt.
func TestRestoreCutSnapshot(t *testing.T) {
	cm := compile(t, "wasi-basics")
	cfg := wasi.Config{Args: []string{"wasi-basics", "clock"}}
	rec := record(t, cm, cfg)
	vm, err := vmm.New(cm, vmm.Config{WASI: wasi.Config{Args: cfg.Args, Stdout: io.Discard, Stderr: io.Discard}, Replay: rec.log.reader()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := vm.RunUntil(context.Background(), rec.count/2); err != nil {
		t.Fatal(err)
	}
	snap, err := vm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(snap)
	bad[len(bad)/2] ^= 0x40
	for _, c := range []struct {
		name string
		snap []byte
		want string
	}{
		{"cut", snap[:len(snap)/3], "cut short"},
		{"cut in its length", snap[:1], "cut short"},
		{"flipped", bad, "corrupt"},
	} {
		_, err := vmm.Restore(context.Background(), cm, vmm.Config{WASI: cfg, Replay: rec.log.reader()}, c.snap)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error that says %q", c.name, err, c.want)
		}
	}
}

func TestUnknownImportIsRefused(t *testing.T) {
	// A module importing env.foo: a clear link error, not a crash.
	bin := []byte{0, 'a', 's', 'm', 1, 0, 0, 0,
		1, 4, 1, 0x60, 0, 0, // type () -> ()
		2, 11, 1, 3, 'e', 'n', 'v', 3, 'f', 'o', 'o', 0, 0, // import env.foo
	}
	cm, err := wasm.Compile(bin, guesttest.Config())
	if err != nil {
		t.Fatal(err)
	}
	_, err = vmm.New(cm, vmm.Config{})
	var le *wasm.LinkError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "env.foo") {
		t.Fatalf("err = %v, want a link error naming env.foo", err)
	}
}
