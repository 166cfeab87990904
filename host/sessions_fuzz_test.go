package host

import (
	"testing"
)

// FuzzSessionFrames feeds the decoders of the session frames a backup
// reads from its logging channel (a client's acknowledgement, a session's
// end, a new backup's seed): they fail cleanly or decode what round-trips.
func FuzzSessionFrames(f *testing.F) {
	f.Add(sessionFrame("0802129c1f74505988d353fa72379cf4", 42))
	f.Add([]byte{0})
	f.Add([]byte{1, 1, 'a', 0, 2, 'h', 'i', 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if id, pos, err := parseSessionFrame(b); err == nil {
			if got := sessionFrame(id, pos); string(got) != string(b) {
				t.Fatalf("session frame % x decodes to (%q, %d), which encodes to % x", b, id, pos, got)
			}
		}
		k := newKeptOutput()
		if err := k.seed(b); err != nil {
			return
		}
		for id, ks := range k.m {
			if ks.closed && ks.closedAt != ks.start+uint64(len(ks.buf)) {
				t.Fatalf("session %q closed at %d, but its output ends at %d", id, ks.closedAt, ks.start+uint64(len(ks.buf)))
			}
		}
	})
}
