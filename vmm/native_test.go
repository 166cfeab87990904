package vmm_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/wasi"
	"ftvm/wasm"
)

// TestRecordReplayCAndRust runs the C (wasi-libc) and Rust (wasm32-wasi)
// guests on ftvm's engine: files in a preopened directory, then one client
// served over sock_accept, sock_recv and sock_send; the recording is
// replayed from the log alone with identical output.
func TestRecordReplayCAndRust(t *testing.T) {
	for _, g := range []struct {
		name       string
		build      func(testing.TB, string) []byte
		send, want string
		stdout     []string
	}{
		{"wasi-c", guesttest.BuildC, "hello from a client\n", "HELLO FROM A CLIENT\n",
			[]string{"read: from C 42", "list: c.txt csub", "open ../ fails: ok", "served 20 bytes"}},
		{"wasi-rust", guesttest.BuildRust, "stressed\n", "rust: desserts\n",
			[]string{"read: from Rust\nappended", "list: rsub", "escape refused", "served 9 bytes"}},
	} {
		t.Run(g.name, func(t *testing.T) {
			cm, err := wasm.Compile(g.build(t, g.name), guesttest.Config())
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			cfg := wasi.Config{
				Args:      []string{g.name, "/data"},
				Env:       []string{"GREETING=hi from the host"},
				Preopens:  []wasi.Preopen{{GuestPath: "/data", HostDir: t.TempDir()}},
				Listeners: []wasi.Listener{{Listener: ln}},
			}
			done := make(chan run, 1)
			go func() { done <- record(t, cm, cfg) }()
			c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(c, g.send); err != nil {
				t.Fatal(err)
			}
			reply, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err != nil || reply != g.want {
				t.Fatalf("reply %q, %v; want %q", reply, err, g.want)
			}
			rec := <-done
			if rec.exit.Code != 0 || strings.Contains(rec.stdout, "FAIL") {
				t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", rec.exit.Code, rec.stdout, rec.stderr)
			}
			for _, w := range g.stdout {
				if !strings.Contains(rec.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, rec.stdout)
				}
			}
			rep, err := replay(t, cm, cfg, rec.log.reader())
			if err != nil {
				t.Fatal(err)
			}
			checkSame(t, rec, rep)
		})
	}
}

// TestRecordReplayRights records the C guest that drops rights and is
// refused what they allowed, and the calls on a directory and renames of
// directories, and replays them: the replay must see the same rights and
// so the same refusals.
func TestRecordReplayRights(t *testing.T) {
	cm, err := wasm.Compile(guesttest.BuildC(t, "wasi-dirops"), guesttest.Config())
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"dirops", "rights"} {
		t.Run(mode, func(t *testing.T) {
			cfg := wasi.Config{Args: []string{"wasi-dirops", mode},
				Preopens: []wasi.Preopen{{GuestPath: "/data", HostDir: t.TempDir()}}}
			rec := record(t, cm, cfg)
			if rec.exit.Code != 0 || (mode == "rights" && !strings.Contains(rec.stdout, ": 76\n")) {
				t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", rec.exit.Code, rec.stdout, rec.stderr)
			}
			rep, err := replay(t, cm, cfg, rec.log.reader())
			if err != nil {
				t.Fatal(err)
			}
			checkSame(t, rec, rep)
		})
	}
}
