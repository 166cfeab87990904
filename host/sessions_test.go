package host

import (
	"testing"
)

// TestKeptOutput: a backup keeps a session's output from what the client
// acknowledged to what the replay regenerated, whichever comes first.
func TestKeptOutput(t *testing.T) {
	k := newKeptOutput()
	k.output("s", 0, []byte("hello "))
	k.output("s", 6, []byte("world"))
	k.ack("s", 3)
	if ks := k.m["s"]; ks.start != 3 || string(ks.buf) != "lo world" {
		t.Fatalf("after an ack at 3: [%d, %q)", ks.start, ks.buf)
	}
	// An acknowledgement that overtakes the replay.
	k.ack("s", 20)
	k.output("s", 11, []byte("0123456789"))
	if ks := k.m["s"]; ks.start != 20 || string(ks.buf) != "9" {
		t.Fatalf("after an ack ahead of the replay: [%d, %q)", ks.start, ks.buf)
	}
	if n, b := k.size(); n != 1 || b != 1 {
		t.Fatalf("size %d sessions, %d bytes", n, b)
	}
	// A gap (a backup that starts from a state, not from the beginning).
	k.output("t", 100, []byte("abc"))
	if ks := k.m["t"]; ks.start != 100 || string(ks.buf) != "abc" {
		t.Fatalf("first output at 100: [%d, %q)", ks.start, ks.buf)
	}
	// The guest closes it; once the client has the close, it is forgotten.
	k.closed("t", 103, true, 7)
	k.ack("t", 103)
	if k.m["t"] == nil {
		t.Fatal("forgotten before the client acknowledged the close")
	}
	k.ack("t", 104)
	if k.m["t"] != nil {
		t.Fatal("kept after the client acknowledged everything")
	}
	// A session that ended at the primary is not restored, and output the
	// replay produces for it later is not kept.
	k.end("s")
	k.output("s", 21, []byte("x"))
	if _, ok := k.take("s"); ok {
		t.Fatal("an ended session taken for a go-live")
	}
	k.closed("s", 22, true, 0)
	if k.ended["s"] || k.m["s"] != nil {
		t.Fatal("an ended session still tracked after the guest closed it")
	}
}

// TestSafeInput: input is acknowledged to the client only once the entry
// that logged its read is.
func TestSafeInput(t *testing.T) {
	var q safeInput
	q.note(5, "a", 10)
	q.note(7, "b", 3)
	q.note(9, "a", 20)
	if got := q.take(4); len(got) != 0 {
		t.Fatalf("acked 4: took %v", got)
	}
	if got := q.take(8); len(got) != 2 || got[0].pos != 10 || got[1].id != "b" {
		t.Fatalf("acked 8: took %v", got)
	}
	if got := q.take(9); len(got) != 1 || got[0].pos != 20 {
		t.Fatalf("acked 9: took %v", got)
	}
}

// TestSessionSecrets: a session's secret depends on the cluster key, the
// VM and the session.
func TestSessionSecrets(t *testing.T) {
	id := [16]byte{1}
	a := sessionSecret([]byte("key"), "vm", id)
	for _, b := range []([32]byte){
		sessionSecret([]byte("key2"), "vm", id),
		sessionSecret([]byte("key"), "vm2", id),
		sessionSecret([]byte("key"), "vm", [16]byte{2}),
	} {
		if a == b {
			t.Fatal("two sessions share a secret")
		}
	}
}
