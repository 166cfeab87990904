package host

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ftvm/storage"
)

// envFenceHelper makes this test binary a stand-in for an old primary's
// host process: it listens on the address the variable names, with
// SO_REUSEPORT, and greets every connection it accepts with "old".
const envFenceHelper = "FTVM_FENCE_HELPER_ADDR"

func TestFenceHelperProcess(t *testing.T) {
	addr := os.Getenv(envFenceHelper)
	if addr == "" {
		t.Skip("helper process for TestFenceSockets")
	}
	ln, err := reusePortListen(addr)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	held := make(chan net.Conn, 64) // kept, so that no finalizer closes them
	for {
		c, err := ln.Accept()
		if err != nil {
			select {} // fenced: stay, as a halting host would for a while
		}
		fmt.Fprintln(c, "old")
		select {
		case held <- c:
		default:
		}
	}
}

func reusePortListen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		return errors.Join(err, serr)
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

// greeting dials addr and returns the first line it is sent, or an error
// if none comes within d.
func greeting(addr string, d time.Duration) (string, net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return "", nil, err
	}
	c.SetReadDeadline(time.Now().Add(d))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return "", nil, err
	}
	c.SetReadDeadline(time.Time{})
	return strings.TrimSpace(line), c, nil
}

// startHelper starts the stand-in for an old primary on addr and returns
// it, the HostInfo a registry would hold for it, and a client connection
// it accepted.
func startHelper(t *testing.T, addr string) (*exec.Cmd, storage.HostInfo, net.Conn) {
	t.Helper()
	started := time.Now()
	helper := exec.Command(os.Args[0], "-test.run=^TestFenceHelperProcess$")
	helper.Env = append(os.Environ(), envFenceHelper+"="+addr)
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { helper.Process.Kill(); helper.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	who, client, err := greeting(addr, 5*time.Second)
	if err != nil || who != "old" {
		t.Fatalf("first connection: %q, %v", who, err)
	}
	t.Cleanup(func() { client.Close() })
	return helper, storage.HostInfo{PID: helper.Process.Pid, PIDSpace: pidSpace(), Started: started}, client
}

// takeOver listens on addr as a backup going live does, greeting every
// connection with "new".
func takeOver(t *testing.T, addr string) {
	t.Helper()
	ln, err := reusePortListen(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "new")
			c.Close()
		}
	}()
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := reusePortListen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// allReachTakeOver checks that n new connections all reach this process.
func allReachTakeOver(t *testing.T, addr string, n int) {
	t.Helper()
	for i := range n {
		who, c, err := greeting(addr, 5*time.Second)
		if err != nil || who != "new" {
			t.Fatalf("connection %d after fencing: %q, %v", i, who, err)
		}
		c.Close()
	}
}

// TestFenceStoppedPeer: a process that holds a shared listen address and a
// client connection on it is frozen (SIGSTOP) while this process listens
// on the same address. Before fencing, some new connections are queued at
// the frozen listener and get nothing; fencePeer shuts its sockets (its
// client sees the end of its stream, and every new connection reaches this
// process) and kills it.
func TestFenceStoppedPeer(t *testing.T) {
	addr := freeLoopbackAddr(t)
	helper, peer, oldClient := startHelper(t, addr)
	takeOver(t, addr)
	if err := helper.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitStopped(t, helper.Process.Pid)

	// The problem fencing solves: the kernel spreads new connections over
	// both listeners, and those at the frozen one get no answer.
	lost := 0
	for range 16 {
		if _, c, err := greeting(addr, 200*time.Millisecond); err != nil {
			lost++
		} else {
			c.Close()
		}
	}
	if lost == 0 {
		t.Fatal("no connection went to the frozen listener: the test no longer shows the problem")
	}

	self := storage.HostInfo{PID: os.Getpid(), PIDSpace: pidSpace()}
	if self.PIDSpace == "" {
		t.Fatal("no PID space")
	}
	// Another machine's (or PID namespace's) process, or one that started
	// at another time (its ID reused), is left alone.
	for _, p := range []storage.HostInfo{
		{PID: peer.PID, PIDSpace: "another-machine", Started: peer.Started},
		{PID: peer.PID, PIDSpace: peer.PIDSpace, Started: peer.Started.Add(-time.Hour)},
		{PID: peer.PID, PIDSpace: peer.PIDSpace, Started: peer.Started.Add(time.Hour)},
	} {
		if done, err := fencePeer(p, self, []string{addr}); done != (fenced{}) || err != nil {
			t.Fatalf("fencePeer(%+v) = %+v, %v; want nothing done", p, done, err)
		}
	}
	if !processStopped(peer.PID) {
		t.Fatal("the helper is no longer stopped")
	}

	done, err := fencePeer(peer, self, []string{addr})
	if err != nil {
		t.Fatal(err)
	}
	// The listener and the connection it accepted (at least; the test's
	// lost connections may have been accepted by the kernel too).
	if done.sockets < 2 || !done.killed {
		t.Fatalf("fenced %+v, want the listener and its connection shut, and the process killed", done)
	}
	if err := helper.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("helper ended with %v, want killed", err)
	}
	oldClient.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := oldClient.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the frozen process's client read %v, want the end of the stream", err)
	}
	allReachTakeOver(t, addr, 64)
}

// TestFenceRunningPeer: a peer that runs (its link was cut, say) loses its
// sockets on the VM's addresses but is not killed: it halts by itself when
// it learns it lost. Its sockets on other addresses are left alone.
func TestFenceRunningPeer(t *testing.T) {
	addr := freeLoopbackAddr(t)
	helper, peer, oldClient := startHelper(t, addr)
	takeOver(t, addr)
	self := storage.HostInfo{PID: os.Getpid(), PIDSpace: pidSpace()}
	if done, err := fencePeer(peer, self, []string{"127.0.0.1:1"}); done != (fenced{}) || err != nil {
		t.Fatalf("fencePeer on another address = %+v, %v; want nothing done", done, err)
	}
	done, err := fencePeer(peer, self, []string{addr})
	if err != nil || done.sockets < 2 || done.killed {
		t.Fatalf("fencePeer = %+v, %v; want the listener and its connection shut, and the process alive", done, err)
	}
	if err := helper.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the running peer was killed: %v", err)
	}
	oldClient.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := oldClient.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the running peer's client read %v, want the end of the stream", err)
	}
	allReachTakeOver(t, addr, 64)
}

// waitStopped waits until every thread of pid is stopped.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err == nil {
			if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) > 0 && f[0] == "T" {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d did not stop", pid)
}

// TestProcessStart: this process started before now and after the boot.
// testBinaryStart is when this test process began, about.
var testBinaryStart = time.Now()

func TestProcessStart(t *testing.T) {
	at, err := processStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if now := time.Now(); at.After(now.Add(2*time.Second)) || at.Before(now.Add(-24*time.Hour)) {
		t.Fatalf("process start %v, now %v", at, now)
	}
	// As a host registers its start when it begins, not when this test
	// runs (perhaps minutes later, with -count).
	if !startedAround(os.Getpid(), testBinaryStart) {
		t.Fatalf("startedAround(self, %v) = false", testBinaryStart)
	}
	if startedAround(os.Getpid(), testBinaryStart.Add(time.Hour)) {
		t.Fatal("startedAround(self, an hour after it started) = true")
	}
	if _, err := processStart(-1); err == nil {
		t.Fatal("processStart(-1) succeeded")
	}
}
