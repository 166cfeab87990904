package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftvm/internal/guesttest"
)

// hostInProcess runs `ftvm host` in this process until the test ends.
func hostInProcess(t *testing.T, shared, name string) *guesttest.SyncBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &guesttest.SyncBuffer{}
	done := make(chan int)
	go func() {
		done <- run(ctx, &cmdEnv{stdin: strings.NewReader(""), stdout: logs, stderr: logs}, append([]string{"host", "--shared", shared, "--name", name}, guesttest.EngineArgs()...))
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("host %s exited %d:\n%s", name, code, logs.String())
		}
	})
	return logs
}

func counterRequest(t *testing.T, addr, req string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "%s\n", req)
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil {
				return strings.TrimSpace(line)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitHosts waits until the hosts named are registered.
func waitHosts(t *testing.T, shared string, names ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, out, _ := ftvm(t, "", "status", "--shared", shared)
		all := true
		for _, n := range names {
			all = all && strings.Contains(out, "\n"+n+" ")
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hosts did not register:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStartStatusStopFailpointCLI(t *testing.T) {
	shared := t.TempDir()
	logs := map[string]*guesttest.SyncBuffer{"a": hostInProcess(t, shared, "a"), "b": hostInProcess(t, shared, "b")}
	g := guestFile(t, "ft-counter")
	addr := guesttest.FreeAddr(t)
	waitHosts(t, shared, "a", "b")
	if code, _, errs := ftvm(t, "", "start", "--shared", shared, "--name", "c", "--listen", "127.0.0.1:0", g); code != 1 || !strings.Contains(errs, "fixed port") {
		t.Fatalf("start with port 0: status %d, %s", code, errs)
	}
	code, out, errs := ftvm(t, "", "start", "--shared", shared, "--name", "c", "--listen", addr, g)
	if code != 0 || !strings.Contains(out, "backup connected") {
		t.Fatalf("start: status %d\n%s%s", code, out, errs)
	}
	if code, _, errs := ftvm(t, "", "start", "--shared", shared, "--name", "c", "--listen", addr, g); code != 1 || !strings.Contains(errs, "running") {
		t.Fatalf("second start: status %d, %s", code, errs)
	}
	if code, _, errs := ftvm(t, "", "start", "--shared", shared, "--name", "d", "--listen", addr, g); code != 1 || !strings.Contains(errs, "vm c's") {
		t.Fatalf("start on a running vm's address: status %d, %s", code, errs)
	}
	if got := counterRequest(t, addr, "inc"); got != "1" {
		t.Fatalf("inc: %q", got)
	}
	_, out, _ = ftvm(t, "", "status", "--shared", shared, "--json")
	var st clusterStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if len(st.Hosts) != 2 || len(st.VMs) != 1 || st.VMs[0].Generation != 1 || st.VMs[0].Primary == st.VMs[0].Backup || st.VMs[0].Backup == "" {
		t.Fatalf("status: %+v", st)
	}
	// A host labels its guests' lines with their VM's name.
	if l := logs[st.VMs[0].Primary].String(); !strings.Contains(l, "\nc| ft-counter listening, value 0\n") {
		t.Errorf("primary's output lacks the guest's labeled line:\n%s", l)
	}
	for _, h := range st.Hosts {
		if want := guesttest.EnvEngine().String(); h.Engine != want {
			t.Errorf("host %s runs engine %q, want %q", h.Name, h.Engine, want)
		}
	}
	// The Output Rule's cost shows while the guest answers: every reply
	// waited for the backup's acknowledgement.
	deadline := time.Now().Add(10 * time.Second)
	for {
		counterRequest(t, addr, "inc")
		_, out, _ = ftvm(t, "", "status", "--shared", shared, "--json")
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, out)
		}
		if v := st.VMs[0]; v.OutputDelayP50 > 0 && v.OutputDelayP99 >= v.OutputDelayP50 && v.AckRTTP50 > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no output delay or log round trip in the status: %+v", st.VMs[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, out, _ = ftvm(t, "", "status", "--shared", shared); !strings.Contains(out, "OUTPUT DELAY") || !strings.Contains(out, "ENGINE") {
		t.Fatalf("status table without the output delay:\n%s", out)
	}
	primary := st.VMs[0].Primary
	if !strings.Contains(out, "c: served at "+addr+" (on "+primary+")") {
		t.Fatalf("status does not say where c is served:\n%s", out)
	}
	if code, out, errs := ftvm(t, "", "where", "--shared", shared, "c"); code != 0 || out != addr+"\n" {
		t.Fatalf("where: status %d, %q, %q", code, out, errs)
	}
	if code, out, _ := ftvm(t, "", "where", "--shared", shared, "c", "--json"); code != 0 || !strings.Contains(out, `"primary": "`+primary+`"`) {
		t.Fatalf("where --json: status %d, %s", code, out)
	}
	if code, _, errs := ftvm(t, "", "where", "--shared", shared, "nosuch"); code != 1 || !strings.Contains(errs, `no vm "nosuch"`) {
		t.Fatalf("where of no VM: status %d, %q", code, errs)
	}
	code, out, _ = ftvm(t, "", "failpoint", "--shared", shared, "--host", primary, "cut-heartbeat=nobody")
	if code != 0 || !strings.Contains(out, "cut-heartbeat=nobody") {
		t.Fatalf("failpoint: %d %s", code, out)
	}
	if code, _, errs := ftvm(t, "", "failpoint", "--shared", shared, "--host", primary, "bogus=1"); code != 1 || !strings.Contains(errs, "unknown") {
		t.Fatalf("bad failpoint: %d %s", code, errs)
	}
	if code, out, _ := ftvm(t, "", "failpoint", "--shared", shared, "--host", primary, ""); code != 0 || !strings.Contains(out, "(none)") {
		t.Fatalf("clear failpoints: %d %s", code, out)
	}
	if code, _, errs := ftvm(t, "", "stop", "--shared", shared, "--name", "c"); code != 0 {
		t.Fatalf("stop: %d %s", code, errs)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, out, _ = ftvm(t, "", "status", "--shared", shared)
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		if strings.Contains(out, "stopped") && err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vm did not stop (listener up: %v):\n%s", err == nil, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, out, errs := ftvm(t, "", "stop", "--shared", shared, "--name", "c"); code != 0 || !strings.Contains(out, "already stopped") {
		t.Fatalf("stop of a stopped vm: %d %s%s; want 0 and 'already stopped'", code, out, errs)
	}
	// Stopped, it may start again (a new generation, a fresh guest).
	code, out, errs = ftvm(t, "", "start", "--shared", shared, "--name", "c", "--listen", addr, g)
	if code != 0 || !strings.Contains(out, "generation 2") {
		t.Fatalf("restart: status %d\n%s%s", code, out, errs)
	}
	if got := counterRequest(t, addr, "get"); got != "0" {
		t.Fatalf("get after restart: %q", got)
	}
	for _, bad := range [][]string{{}, {"--all", "--name", "c"}, {"c"}} {
		if code, _, errs := ftvm(t, "", append([]string{"stop", "--shared", shared}, bad...)...); code != 2 || !strings.Contains(errs, "ftvm stop:") {
			t.Errorf("stop %q: status %d, %q; want 2 and what is wrong", bad, code, errs)
		}
	}
	if code, out, errs := ftvm(t, "", "stop", "--shared", shared, "--all"); code != 0 || !strings.Contains(out, "vm c: stopping") {
		t.Fatalf("stop --all: %d %s%s", code, out, errs)
	}
	if code, out, errs := ftvm(t, "", "stop", "--shared", shared, "--name", "c", "--name", "nosuch"); code != 1 || !strings.Contains(out, "vm c: already stopped") || !strings.Contains(errs, "nosuch") {
		t.Fatalf("stop of c and of no such vm: %d %s%s; want 1, c already stopped and nosuch refused", code, out, errs)
	}
}

// TestRunEmbeddedDefault runs the README's main command as a real process:
// two host processes, the guest under FT, events printed, and Ctrl-C
// (SIGINT) stopping everything.
func TestRunEmbeddedDefault(t *testing.T) {
	bin := ftvmBinary(t)
	g := guestFile(t, "ft-counter")
	work := t.TempDir()
	addr := guesttest.FreeAddr(t)
	cmd := exec.Command(bin, "run", "--listen", addr, g)
	cmd.Dir = work
	var out guesttest.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	if got := counterRequest(t, addr, "inc"); got != "1" {
		t.Fatalf("inc: %q\n%s", got, out.String())
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C stops everything") {
		if time.Now().After(deadline) {
			t.Fatalf("no pairing event:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(work, "ftvm-data", "vms", "ft-counter", "module.wasm")); err != nil {
		t.Fatalf("shared storage not in ./ftvm-data: %v", err)
	}
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ftvm run: %v\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("ftvm run did not stop on SIGINT:\n%s", out.String())
	}
	for _, want := range []string{"vm started", "role=primary", "role=backup", "stopping vm", "host down"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Error("the guest still listens after ftvm run stopped")
	}
}

// TestClusterCommandsOnMissingThings: a mistyped storage path or VM name
// gets an error that names what is missing, and status creates nothing.
func TestClusterCommandsOnMissingThings(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nowhere")
	if code, _, errs := ftvm(t, "", "status", "--shared", missing); code != 1 || !strings.Contains(errs, "shared storage "+missing+": no such file or directory") {
		t.Fatalf("status on a missing storage: %d %q", code, errs)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("status created the storage it was pointed at")
	}
	shared := t.TempDir()
	if code, _, errs := ftvm(t, "", "stop", "--shared", shared, "--name", "nope"); code != 1 || !strings.Contains(errs, `no vm "nope"`) {
		t.Fatalf("stop of an unknown vm: %d %q", code, errs)
	}
	// Profiles are served on the HTTP address: without one, say so
	// rather than serve nothing.
	if code, _, errs := ftvm(t, "", "host", "--shared", shared, "--name", "a", "--pprof"); code != 2 || !strings.Contains(errs, "--pprof serves on the --http address") {
		t.Fatalf("host --pprof without --http: %d %q", code, errs)
	}
	if code, _, errs := ftvm(t, "", "host", "--shared", shared, "--name", "h 1"); code != 2 || !strings.Contains(errs, "white space") {
		t.Errorf("host named with a space: %d %q", code, errs)
	}
	// Tuning that cannot work is refused before anything starts.
	for _, bad := range [][]string{
		{"--heartbeat", "-1s"}, {"--heartbeat", "0s"}, {"--timeout", "0s"}, {"--timeout", "10ms"},
		{"--lag-bound", "0s"}, {"--claim-retry", "-1s"}, {"--clone-pause", "-1ms"}, {"--max-clones", "-3"},
		{"--session-timeout", "-1s"}, {"--gone-timeout", "1s"}, {"--replay-nice", "20"},
	} {
		for _, cmd := range []string{"host", "run"} {
			args := append([]string{cmd, "--shared", shared, "--name", "h1"}, bad...)
			if cmd == "run" {
				args = append([]string{cmd, "--shared", t.TempDir()}, bad...)
			}
			if code, _, errs := ftvm(t, "", args...); code != 2 || !strings.Contains(errs, "--"+strings.TrimPrefix(bad[0], "--")+" ") {
				t.Errorf("%s %s: %d %q", cmd, strings.Join(bad, " "), code, errs)
			}
		}
	}
	for _, name := range []string{"a b", "tab\there", "new\nline", strings.Repeat("x", 129), "-dash"} {
		if code, _, errs := ftvm(t, "", "start", "--shared", shared, "--name", name, guestFile(t, "ft-counter")); code == 0 || !strings.Contains(errs, "invalid vm name") {
			t.Errorf("start of a vm named %q: %d %q", name, code, errs)
		}
	}
	if code, out, errs := ftvm(t, "", "rebalance", "--shared", shared); code != 0 || !strings.Contains(out, "nothing to move") {
		t.Fatalf("rebalance of an empty cluster: %d %q %q", code, out, errs)
	}
	for _, bad := range [][]string{{"--parallel", "0"}, {"extra"}} {
		if code, _, errs := ftvm(t, "", append([]string{"rebalance", "--shared", shared}, bad...)...); code != 2 || !strings.Contains(errs, "ftvm rebalance:") {
			t.Errorf("rebalance %q: %d %q; want 2 and what is wrong", bad, code, errs)
		}
	}
}
