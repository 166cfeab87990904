package listeners

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// listenShared listens on addr with SO_REUSEPORT, as a pair's hosts do.
func listenShared(t testing.TB, addr string) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestOthers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	a := listenShared(t, "127.0.0.1:0")
	if others, err := Others(a); err != nil || len(others) != 0 {
		t.Fatalf("Others of a lone listener = %v, %v; want none", others, err)
	}
	b := listenShared(t, a.Addr().String())
	wild := listenShared(t, "0.0.0.0:"+strings.Split(a.Addr().String(), ":")[1])
	others, err := Others(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(others) != 2 {
		t.Fatalf("Others = %v; want b's and the wildcard's sockets", others)
	}
	for _, s := range others {
		if len(s.Holders) != 1 || s.Holders[0].PID != os.Getpid() {
			t.Errorf("socket %+v: want this process as its only holder", s)
		}
	}
	// A listener on another port, or a closed one, is no one's business.
	wild.Close()
	listenShared(t, "127.0.0.1:0")
	if others, err := Others(b); err != nil || len(others) != 1 {
		t.Fatalf("Others(b) = %v, %v; want a's socket", others, err)
	}
}

// TestOthersInAnotherProcess: the holder of another process's socket is
// named, with its command line.
func TestOthersInAnotherProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc")
	}
	if addr := os.Getenv("LISTENERS_TEST_HOLD"); addr != "" {
		ln := listenShared(t, addr)
		os.Stdout.WriteString("listening " + ln.Addr().String() + "\n")
		os.Stdin.Read(make([]byte, 1)) // until the parent closes stdin
		return
	}
	a := listenShared(t, "127.0.0.1:0")
	cmd := exec.Command(os.Args[0], "-test.run=^TestOthersInAnotherProcess$")
	cmd.Env = append(os.Environ(), "LISTENERS_TEST_HOLD="+a.Addr().String())
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { in.Close(); cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "listening ") {
		t.Fatalf("helper said %q, %v", line, err)
	}
	others, err := Others(a)
	if err != nil {
		t.Fatal(err)
	}
	if len(others) != 1 || len(others[0].Holders) != 1 || others[0].Holders[0].PID != cmd.Process.Pid {
		t.Fatalf("Others = %+v; want the helper's socket, held by pid %d", others, cmd.Process.Pid)
	}
	if s := others[0].String(); !strings.Contains(s, "TestOthersInAnotherProcess") {
		t.Errorf("String() = %q; want the holder's command line", s)
	}
}

func TestOverlap(t *testing.T) {
	p := netip.MustParseAddrPort
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:80", "127.0.0.1:80", true},
		{"127.0.0.1:80", "127.0.0.1:81", false},
		{"127.0.0.1:80", "127.0.0.2:80", false},
		{"0.0.0.0:80", "127.0.0.2:80", true},
		{"127.0.0.1:80", "[::]:80", true},
		{"[::ffff:127.0.0.1]:80", "127.0.0.1:80", true},
		{"[::1]:80", "127.0.0.1:80", false},
	} {
		if got := Overlap(p(c.a), p(c.b)); got != c.want {
			t.Errorf("Overlap(%s, %s) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

func TestParseLine(t *testing.T) {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("the samples are of a little-endian machine")
	}
	for _, c := range []struct {
		line   string
		listen bool
		addr   string
		inode  uint64
	}{
		{"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 41234 1 0000000000000000 100 0 0 10 0", true, "127.0.0.1:8080", 41234},
		{"   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 41235 1 0000000000000000 20 4 30 10 -1", false, "", 0},
		{"   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 9 1 0 100 0 0 10 0", true, "[::]:8080", 9},
		{"   0: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7 1 0 100 0 0 10 0", true, "127.0.0.1:80", 7},
		{"   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 8 1 0 100 0 0 10 0", true, "[::1]:80", 8},
	} {
		s, listen, err := parseLine(c.line)
		if err != nil || listen != c.listen {
			t.Errorf("parseLine(%q) = %v, %v; want listening %v", c.line, listen, err, c.listen)
			continue
		}
		if listen && (s.Addr != netip.MustParseAddrPort(c.addr) || s.Inode != c.inode) {
			t.Errorf("parseLine(%q) = %v inode %d; want %s inode %d", c.line, s.Addr, s.Inode, c.addr, c.inode)
		}
	}
	for _, bad := range []string{"", "0: 1 2", "   0: 0100007F 00000000:0000 0A 0 0 0 0 0 1", "   0: 0100007:1F90 00000000:0000 0A 0 0 0 0 0 1", "   0: 0100007F:1F90 00000000:0000 0A 0 0 0 0 0 x"} {
		if _, _, err := parseLine(bad); err == nil {
			t.Errorf("parseLine(%q): want an error", bad)
		}
	}
}
