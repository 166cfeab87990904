package host_test

import (
	"net"
	"syscall"
	"testing"
	"time"

	"ftvm/internal/guesttest"
	"ftvm/storage"
)

// TestSlowPeer: under FT, a client that does not read its replies holds up
// neither the guest nor the outputs to its other clients (the Gate releases
// each connection's bytes without waiting for another's peer), and the
// backup, which replayed it all, takes over afterwards.
func TestSlowPeer(t *testing.T) {
	c := newCluster(t)
	c.startHost("h1")
	c.startHost("h2")
	addr := guesttest.FreeAddr(t)
	echo := guesttest.Build(t, "wasi-echo")
	c.startVM("echo", echo, storage.VMSpec{Listeners: []string{addr}, Primary: "h1", Backup: "h2", Args: []string{"wasi-echo", "100"}})
	t.Run("primary", func(t *testing.T) { guesttest.CheckSlowPeer(t, addr) })
	if st := c.status("echo", "h1"); st.Generation != 1 || st.Role != "primary" || !st.Connected {
		t.Fatalf("the pair did not hold: %+v", st)
	}
	c.signal("h1", syscall.SIGKILL)
	c.waitFor(30*time.Second, "h2 to own generation 2 and listen", func() bool {
		if o := c.owner("echo"); o.Host != "h2" || o.Generation != 2 {
			return false
		}
		probe, err := net.Dial("tcp", addr) // one of the guest's 100 connections
		if err != nil {
			return false
		}
		probe.Close()
		return true
	})
	t.Run("survivor", func(t *testing.T) { guesttest.CheckSlowPeer(t, addr) })
}
