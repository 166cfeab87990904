package listeners

import (
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
