package guesttest

import (
	"slices"
	"testing"
)

// CheckExactlyOnce checks what clients of a counter saw across failovers:
// each client's values increasing (seen[i] is client i's, in order), and
// all of them together exactly 1..final, the counter's final value: no
// increment lost or repeated, none that no client saw. It returns how many
// replies there were.
func CheckExactlyOnce(t testing.TB, seen [][]uint64, final uint64) int {
	t.Helper()
	var all []uint64
	for i, s := range seen {
		for j := 1; j < len(s); j++ {
			if s[j] <= s[j-1] {
				t.Errorf("client %d saw %d after %d", i, s[j], s[j-1])
			}
		}
		all = append(all, s...)
	}
	slices.Sort(all)
	for i, v := range all {
		if v != uint64(i+1) {
			t.Fatalf("the replies are not exactly 1..%d: the %dth smallest is %d (an increment lost or repeated)", final, i+1, v)
		}
	}
	if uint64(len(all)) != final {
		t.Errorf("%d replies, but the counter is at %d: an increment no client saw", len(all), final)
	}
	return len(all)
}
