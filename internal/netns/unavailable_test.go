package netns

import (
	"errors"
	"strings"
	"testing"
)

// TestUnavailable: the reasons New skips a test where it cannot build a
// network, checked without being in that situation.
func TestUnavailable(t *testing.T) {
	for _, c := range []struct {
		goos  string
		ipErr error
		euid  int
		want  string // a part of the reason; "" for none
	}{
		{"linux", nil, 0, ""},
		{"darwin", nil, 0, "Linux's"},
		{"linux", errors.New(`exec: "ip": executable file not found in $PATH`), 0, "no ip command"},
		{"linux", nil, 1000, "takes root; running as uid 1000"},
	} {
		got := unavailable(c.goos, c.ipErr, c.euid)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("unavailable(%q, %v, %d) = %q, want %q", c.goos, c.ipErr, c.euid, got, c.want)
		}
	}
}

// TestStaleNames: what removeStale takes for this package's names, with
// the PID in them.
func TestStaleNames(t *testing.T) {
	for name, pid := range map[string]string{
		"ftn2hwg0-eb":     "2hwg0",
		"ftn1a2-3v1":      "1a2",
		"ftn1a2-3-h1":     "1a2",
		"ftn1a2-probe":    "1a2",
		"ftnx":            "",
		"eth0":            "",
		"ftn1a2":          "",
		"ftn1A2-3b":       "",
		"docker0":         "",
		"ftn-1a2-3b":      "",
		"ftn1a2-3-h1 ext": "",
	} {
		got := ""
		if m := staleName.FindStringSubmatch(name); m != nil {
			got = m[1]
		}
		if got != pid {
			t.Errorf("%q: pid %q, want %q", name, got, pid)
		}
	}
}
