package listeners

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"python3\x00-c\x00import socket\nsocket.socket()\x00": "python3 -c import socket socket.socket()",
		"a\x00\x00b\t\x1bc": "a b c",
		"":                  "",
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
	if got := []rune(printable(strings.Repeat("x", 500))); len(got) != maxCommand+1 {
		t.Errorf("a long command line is %d runes, want %d and an ellipsis", len(got), maxCommand)
	}
}

// TestDiagAgreesWithProc: the kernel's socket diagnostics find exactly
// the listening sockets on a port that /proc/net/tcp and tcp6 show, of
// both families, and none on other ports or that do not listen.
func TestDiagAgreesWithProc(t *testing.T) {
	a := listenShared(t, "127.0.0.1:0")
	ap, err := AddrOf(a)
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(int(ap.Port()))
	listenShared(t, "127.0.0.2:"+port)
	if ln, err := net.Listen("tcp6", "[::1]:"+port); err == nil {
		defer ln.Close()
	}
	listenShared(t, "127.0.0.1:0") // another port
	c, err := net.Dial("tcp", ap.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := diagListening(ap.Port())
	if err != nil {
		t.Fatalf("sock_diag refused: %v", err)
	}
	any := netip.AddrPortFrom(netip.IPv6Unspecified(), ap.Port())
	var want []Socket
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		s, err := readTable(f, any)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, s...)
	}
	key := func(s []Socket) []string {
		var out []string
		for _, x := range s {
			out = append(out, fmt.Sprintf("%d %s", x.Inode, x.Addr))
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(key(got), key(want)) || len(got) < 2 {
		t.Fatalf("sock_diag found %v, /proc %v", key(got), key(want))
	}
}

func TestParseDiagMsgShort(t *testing.T) {
	for n := 2; n < inetDiagMsgMinSize; n++ {
		b := make([]byte, n)
		b[0], b[1] = 2, tcpListenState
		if _, ok := parseDiagMsg(b); ok {
			t.Fatalf("a %d-byte message parsed", n)
		}
	}
}
