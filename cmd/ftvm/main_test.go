package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/replog"
	"ftvm/storage"
)

// ftvm runs the command line in-process and returns its exit status and
// output.
func ftvm(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), &cmdEnv{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

// guestFile builds a guest and writes it to a temporary file.
func guestFile(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".wasm")
	if err := os.WriteFile(p, guesttest.Build(t, name), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExecArgsEnvAndExitStatus(t *testing.T) {
	g := guestFile(t, "wasi-basics")
	code, out, errs := ftvm(t, "", "exec", "--env", "A=1", "--env", "B=two", g, "env", "x y")
	if code != 0 {
		t.Fatalf("status %d, stderr %s", code, errs)
	}
	for _, want := range []string{`arg 1 "env"`, `arg 2 "x y"`, `env "A=1"`, `env "B=two"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	if code, _, _ := ftvm(t, "", "exec", g, "exit", "42"); code != 42 {
		t.Fatalf("status %d, want 42", code)
	}
}

func TestExecStdin(t *testing.T) {
	g := guestFile(t, "wasi-basics")
	code, out, errs := ftvm(t, "some input", "exec", g, "stdin")
	if code != 0 || !strings.Contains(out, "SOME INPUT") {
		t.Fatalf("status %d, stdout %q, stderr %s", code, out, errs)
	}
}

func TestExecTrapNamesFunctionAndOffset(t *testing.T) {
	// (module (func $_start unreachable) (export "_start" (func 0)))
	bin := []byte{0, 'a', 's', 'm', 1, 0, 0, 0,
		1, 4, 1, 0x60, 0, 0,
		3, 2, 1, 0,
		7, 10, 1, 6, '_', 's', 't', 'a', 'r', 't', 0, 0,
		10, 5, 1, 3, 0, 0x00, 0x0b,
	}
	p := filepath.Join(t.TempDir(), "trap.wasm")
	if err := os.WriteFile(p, bin, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := ftvm(t, "", "exec", p)
	if code != 134 || !regexp.MustCompile(`unreachable in .* at offset 0x[0-9a-f]+`).MatchString(errs) {
		t.Fatalf("status %d, stderr %q", code, errs)
	}
}

func TestExecBadModule(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.wasm")
	if err := os.WriteFile(p, []byte("\x00asm\x01\x00\x00\x00\x01\xff"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := ftvm(t, "", "exec", p)
	if code != 1 || !strings.Contains(errs, "bad.wasm") {
		t.Fatalf("status %d, stderr %q", code, errs)
	}
	code, _, errs = ftvm(t, "", "exec", filepath.Join(t.TempDir(), "missing.wasm"))
	if code != 1 || !strings.Contains(errs, "no such file") {
		t.Fatalf("status %d, stderr %q", code, errs)
	}
}

func TestRecordReplayShowCLI(t *testing.T) {
	g := guestFile(t, "wasi-basics")
	dir := t.TempDir()
	log := filepath.Join(dir, "run.log")
	code, out, errs := ftvm(t, "", "record", "--log", log, g, "random")
	if code != 0 {
		t.Fatalf("record: status %d, stderr %s", code, errs)
	}
	code, rout, rerrs := ftvm(t, "", "replay", "--log", log, g)
	if code != 0 || rout != out {
		t.Fatalf("replay: status %d, stdout %q (recorded %q), stderr %s", code, rout, out, rerrs)
	}
	code, show, _ := ftvm(t, "", "log", "show", log)
	if code != 0 || !strings.Contains(show, "random_get") || !strings.Contains(show, "end") {
		t.Fatalf("log show: status %d:\n%s", code, show)
	}
	code, stats, _ := ftvm(t, "", "log", "show", "--stats", log)
	if code != 0 || !regexp.MustCompile(`(?m)^total\s+\d+\s+\d+$`).MatchString(stats) {
		t.Fatalf("log show --stats: status %d:\n%s", code, stats)
	}
}

func TestReplayRefusesOtherModule(t *testing.T) {
	g := guestFile(t, "wasi-basics")
	other := guestFile(t, "cpu-fib")
	log := filepath.Join(t.TempDir(), "run.log")
	if code, _, errs := ftvm(t, "", "record", "--log", log, g, "clock"); code != 0 {
		t.Fatalf("record: %s", errs)
	}
	code, _, errs := ftvm(t, "", "replay", "--log", log, other)
	if code == 0 || !strings.Contains(errs, "recorded from module sha256") {
		t.Fatalf("status %d, stderr %q", code, errs)
	}
}

func TestReplayDamagedLog(t *testing.T) {
	g := guestFile(t, "wasi-basics")
	dir := t.TempDir()
	log := filepath.Join(dir, "run.log")
	if code, _, errs := ftvm(t, "", "record", "--log", log, g, "clock"); code != 0 {
		t.Fatalf("record: %s", errs)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", b[:len(b)-3], "truncated"},
		{"flipped", flip(b, len(b)-10), "corrupt"},
		{"empty", nil, "not an ftvm log"},
	} {
		p := filepath.Join(dir, tc.name+".log")
		if err := os.WriteFile(p, tc.data, 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errs := ftvm(t, "", "replay", "--log", p, g)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: status %d, stderr %q, want %q", tc.name, code, errs, tc.want)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x55
	return c
}

func TestReplayUntilSaveFrom(t *testing.T) {
	replaySaveFrom(t, guestFile(t, "wasi-basics"), func(end uint64) uint64 { return end / 2 }, "clock")
}

// replaySaveFrom records guest g run with args, replays the log until the
// position at(end) (end: the log's end entry's), saves the VM there, and
// replays the rest from the snapshot: the two replays' outputs make the
// recorded run's. It returns the snapshot's path.
func replaySaveFrom(t *testing.T, g string, at func(end uint64) uint64, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "run.log")
	code, out, errs := ftvm(t, "", append([]string{"record", "--log", log, g}, args...)...)
	if code != 0 {
		t.Fatalf("record: %s", errs)
	}
	_, show, _ := ftvm(t, "", "log", "show", log)
	m := regexp.MustCompile(`(?m)^\s*\d+\s+(\d+)\s+end\s`).FindStringSubmatch(show)
	if m == nil {
		t.Fatalf("no end entry:\n%s", show)
	}
	end, _ := strconv.ParseUint(m[1], 10, 64)
	snap := filepath.Join(dir, "vm.snap")
	code, first, errs := ftvm(t, "", "replay", "--log", log, "--until", strconv.FormatUint(at(end), 10), "--save", snap, g)
	if code != 0 || !strings.Contains(errs, "saved the VM at position") {
		t.Fatalf("replay --until: status %d, stderr %s", code, errs)
	}
	code, second, errs := ftvm(t, "", "replay", "--log", log, "--from", snap, g)
	if code != 0 || first+second != out {
		t.Fatalf("replay --from: status %d, output %q + %q, want %q; stderr %s", code, first, second, out, errs)
	}
	return snap
}

// TestExecSlowPeer: under exec, a client that does not read its replies
// holds up neither the guest nor its other clients.
func TestExecSlowPeer(t *testing.T) {
	g := guestFile(t, "wasi-echo")
	addr := guesttest.FreeAddr(t)
	done := make(chan int, 1)
	go func() {
		// Three connections: the probe of dialGuest and the two of
		// CheckSlowPeer.
		code, _, _ := ftvm(t, "", "exec", "--listen", addr, g, "3")
		done <- code
	}()
	dialGuest(t, addr).Close()
	// Each client is closed when its subtest ends, and the guest then exits.
	t.Run("peers", func(t *testing.T) { guesttest.CheckSlowPeer(t, addr) })
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exec exited with status %d", code)
		}
	case <-time.After(time.Minute):
		t.Fatal("the guest did not exit after its three connections closed")
	}
}

// dialGuest connects to addr once a guest listens there.
func dialGuest(t *testing.T, addr string) net.Conn {
	t.Helper()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			return c
		}
		if i == 600 {
			t.Fatalf("the guest never listened on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestExecListen(t *testing.T) {
	g := guestFile(t, "wasi-echo")
	addr := guesttest.FreeAddr(t)
	type result struct {
		code      int
		out, errs string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errs := ftvm(t, "", "exec", "--listen", addr, g, "1")
		done <- result{code, out, errs}
	}()
	c := dialGuest(t, addr)
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(reply) != "ping\n" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	r := <-done
	if r.code != 0 || !strings.Contains(r.out, "served 1 connections, 5 bytes") {
		t.Fatalf("status %d, stdout %q, stderr %q", r.code, r.out, r.errs)
	}
}

// record --profile and replay --profile write the same guest profile, which
// go tool pprof reads; a period of 0 is refused.
func TestProfileCLI(t *testing.T) {
	g := guestFile(t, "wasi-basics")
	dir := t.TempDir()
	log, recProf, repProf := filepath.Join(dir, "run.log"), filepath.Join(dir, "rec.pprof"), filepath.Join(dir, "rep.pprof")
	if code, _, errs := ftvm(t, "", "record", "--log", log, "--profile", recProf, g, "random"); code != 0 {
		t.Fatalf("record: status %d, stderr %s", code, errs)
	}
	if code, _, errs := ftvm(t, "", "replay", "--log", log, "--profile", repProf, g); code != 0 {
		t.Fatalf("replay: status %d, stderr %s", code, errs)
	}
	rec, err := os.ReadFile(recProf)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := os.ReadFile(repProf)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec) == 0 || !bytes.Equal(rec, rep) {
		t.Fatalf("profiles of %d and %d bytes, want the same", len(rec), len(rep))
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", recProf).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "main.main") || !strings.Contains(string(out), "Type: instructions") {
		t.Fatalf("go tool pprof: %v\n%s", err, out)
	}
	if code, _, errs := ftvm(t, "", "exec", "--profile", recProf, "--profile-period", "0", g, "env"); code == 0 || !strings.Contains(errs, "--profile-period 0") {
		t.Fatalf("period 0: status %d, stderr %s", code, errs)
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, out, _ := ftvm(t, "", "help", "run")
	if code != 0 || !strings.Contains(out, "usage: ftvm run") || !strings.Contains(out, "-no-restart") {
		t.Fatalf("help run: status %d\n%s", code, out)
	}
	if code, _, errs := ftvm(t, "", "help", "nope"); code != 2 || !strings.Contains(errs, `unknown command "nope"`) {
		t.Fatalf("help nope: status %d, %q", code, errs)
	}
	if code, out, _ := ftvm(t, "", "version"); code != 0 || !strings.HasPrefix(out, "ftvm ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: status %d, %q", code, out)
	}
}

// TestStatusOfEmptyStorage: status of a storage no host used yet shows
// empty lists and writes nothing.
func TestStatusOfEmptyStorage(t *testing.T) {
	shared := t.TempDir()
	code, out, errs := ftvm(t, "", "status", "--shared", shared, "--json")
	if code != 0 || !strings.Contains(out, `"hosts": []`) || !strings.Contains(out, `"vms": []`) {
		t.Fatalf("status --json: status %d, %q %q", code, out, errs)
	}
	if ents, err := os.ReadDir(shared); err != nil || len(ents) != 0 {
		t.Fatalf("status wrote %v (%v) into the storage", ents, err)
	}
	for _, args := range [][]string{{"stop", "--name", "x"}, {"move", "--name", "x", "--to", "h"}, {"drain", "h"}} {
		missing := filepath.Join(shared, "typo")
		ftvm(t, "", append([]string{args[0], "--shared", missing}, args[1:]...)...)
		if _, err := os.Stat(missing); err == nil {
			t.Errorf("%s created the storage it was pointed at", args[0])
		}
	}
}

// TestMoveAndDrainUsageErrors: what is wrong with the command line is
// said, and a drain's flags may follow its HOST.
func TestMoveAndDrainUsageErrors(t *testing.T) {
	shared := t.TempDir()
	if code, _, errs := ftvm(t, "", "drain", "--shared", shared, "h9", "--undo"); code != 1 || !strings.Contains(errs, `no host "h9"`) {
		t.Errorf("drain with a flag after HOST: status %d, %q", code, errs)
	}
	if code, _, errs := ftvm(t, "", "drain", "--shared", shared, "h9", "h8"); code != 2 || !strings.Contains(errs, "unexpected arguments: h8") {
		t.Errorf("drain of two hosts: status %d, %q", code, errs)
	}
	if code, _, errs := ftvm(t, "", "move", "--shared", shared, "--name", "x"); code != 2 || !strings.Contains(errs, "--to are required") {
		t.Errorf("move without --to: status %d, %q", code, errs)
	}
}

// TestStatusWatch: --watch prints the status again and again until
// interrupted; off a terminal, one after the other under its time.
func TestStatusWatch(t *testing.T) {
	shared := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &cancelAfter{n: 2, cancel: cancel}
	var errb bytes.Buffer
	code := run(ctx, &cmdEnv{stdin: strings.NewReader(""), stdout: out, stderr: &errb}, []string{"status", "--shared", shared, "--watch"})
	if code != 0 || strings.Count(out.b.String(), "\nHOST ") != 2 || !strings.HasPrefix(out.b.String(), "== ") {
		t.Fatalf("status --watch: status %d, %q %q", code, out.b.String(), errb.String())
	}
}

// cancelAfter is a writer that cancels after n writes.
type cancelAfter struct {
	b      bytes.Buffer
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	if c.n--; c.n == 0 {
		c.cancel()
	}
	return c.b.Write(p)
}

// TestEventsCLI: ftvm events prints the history as text or JSON, filters
// by VM, and with --follow prints what comes later.
func TestEventsCLI(t *testing.T) {
	shared := t.TempDir()
	d, err := storage.Open(shared)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for _, e := range []storage.Event{
		{Time: t0, Host: "h1", Kind: "host up"},
		{Time: t0.Add(time.Millisecond), Host: "h1", VM: "a", Generation: 1, Kind: "started", Detail: "role=primary"},
		{Time: t0.Add(2 * time.Millisecond), Host: "h2", VM: "b", Generation: 3, Kind: "went live"},
		{Time: t0.Add(3 * time.Millisecond), Host: "h2", Kind: "host down"},
	} {
		if err := d.AppendEvent(e); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ := ftvm(t, "", "events", "--shared", shared, "--vm", "a")
	// VM a's events, and the ups and downs of h1, where it ran, not h2's.
	if code != 0 || !strings.Contains(out, "h1     a          gen 1   started") || strings.Contains(out, "went live") || !strings.Contains(out, "host up") || strings.Contains(out, "host down") {
		t.Fatalf("events --vm a: status %d\n%s", code, out)
	}
	if code, _, errOut := ftvm(t, "", "events", "--shared", shared, "--vm", "nosuch"); code != 1 || !strings.Contains(errOut, `no vm "nosuch"`) {
		t.Fatalf("events --vm nosuch: status %d, %s", code, errOut)
	}
	code, out, _ = ftvm(t, "", "events", "--shared", shared, "--json")
	if code != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(out, `"kind":"went live"`) {
		t.Fatalf("events --json: status %d\n%s", code, out)
	}
	// --follow: the history, then a later event, then Ctrl-C.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &watchFor{want: "claim lost", cancel: cancel}
	done := make(chan int)
	go func() {
		done <- run(ctx, &cmdEnv{stdin: strings.NewReader(""), stdout: w, stderr: io.Discard}, []string{"events", "--shared", shared, "--follow"})
	}()
	if err := d.AppendEvent(storage.Event{Time: time.Now(), Host: "h2", VM: "a", Generation: 2, Kind: "claim lost"}); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 0 || strings.Count(w.String(), "started") != 1 {
		t.Fatalf("events --follow: status %d\n%s", code, w.String())
	}
}

// watchFor is a writer that cancels once what it was written holds want.
type watchFor struct {
	guesttest.SyncBuffer
	want   string
	cancel context.CancelFunc
}

func (w *watchFor) Write(p []byte) (int, error) {
	n, err := w.SyncBuffer.Write(p)
	if strings.Contains(w.SyncBuffer.String(), w.want) {
		w.cancel()
	}
	return n, err
}

func TestProxyUsageErrors(t *testing.T) {
	shared := t.TempDir()
	if code, _, errs := ftvm(t, "", "proxy", "--shared", shared); code != 2 || !strings.Contains(errs, "--name, --listen required") {
		t.Errorf("proxy without --name and --listen: status %d, %q", code, errs)
	}
	if code, _, errs := ftvm(t, "", "proxy", "--shared", shared, "--name", "x", "--listen", "127.0.0.1:0", "extra"); code != 2 || !strings.Contains(errs, "unexpected arguments: extra") {
		t.Errorf("proxy with an argument: status %d, %q", code, errs)
	}
	if code, _, errs := ftvm(t, "", "proxy", "--shared", shared, "--name", "x", "--listen", "127.0.0.1:0"); code != 1 || !strings.Contains(errs, `no VM "x"`) {
		t.Errorf("proxy for no VM: status %d, %q", code, errs)
	}
	if code, _, errs := ftvm(t, "", "proxy", "--shared", shared+"/nosuch", "--name", "x", "--listen", "127.0.0.1:0"); code != 1 || !strings.Contains(errs, "no such file") {
		t.Errorf("proxy on missing storage: status %d, %q", code, errs)
	}
}

// TestReplaySaveFromLargeMemory: a snapshot of a guest whose memory is
// larger than any log entry may be (24 MiB, every page written) is saved
// and restored (it was saved and then refused as corrupt).
func TestReplaySaveFromLargeMemory(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "bigmem", "main.c")
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	prog := `#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
int main(void) {
	size_t n = 24 << 20;
	unsigned char *p = malloc(n);
	memset(p, 7, n);
	for (size_t i = 0; i < n; i += 4096) p[i] = (unsigned char)(i >> 12);
	printf("filled\n");
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	unsigned long s = 0;
	for (size_t i = 0; i < n; i += 4096) s += p[i];
	printf("%lu %ld\n", s, (long)(ts.tv_nsec & 1));
	return 0;
}
`
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	g := filepath.Join(dir, "bigmem.wasm")
	if err := os.WriteFile(g, guesttest.BuildCFile(t, src), 0o644); err != nil {
		t.Fatal(err)
	}
	// Late, with every page written.
	snap := replaySaveFrom(t, g, func(end uint64) uint64 { return end - 1000 })
	if fi, err := os.Stat(snap); err != nil || fi.Size() <= replog.MaxEntrySize {
		t.Fatalf("snapshot %v, %v: want more than %d bytes", fi, err, replog.MaxEntrySize)
	}
}
