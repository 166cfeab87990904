package guesttest

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback address with a port no one listens on now,
// for a guest's listener or a host's.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
