package host

import (
	"bytes"
	"testing"
)

// TestLabeledOutput: every line of a guest's output starts with its VM's
// name; a line one VM left unfinished is ended when another VM's output
// comes, and its rest is marked again; nothing is held back.
func TestLabeledOutput(t *testing.T) {
	var out bytes.Buffer
	o := &labeledOutput{w: &out}
	a, b := o.forVM("a"), o.forVM("bb")
	for _, w := range []struct {
		w interface{ Write([]byte) (int, error) }
		s string
		// what the stream holds after this write
		want string
	}{
		{a, "one\ntwo\n", "a| one\na| two\n"},
		{a, "par", "a| one\na| two\na| par"},
		{a, "tial\n", "a| one\na| two\na| partial\n"},
		{a, "hal", "a| one\na| two\na| partial\na| hal"},
		{b, "x\ny", "a| one\na| two\na| partial\na| hal\nbb| x\nbb| y"},
		{a, "f\n", "a| one\na| two\na| partial\na| hal\nbb| x\nbb| y\na| f\n"},
		{b, "\n\n", "a| one\na| two\na| partial\na| hal\nbb| x\nbb| y\na| f\nbb| \nbb| \n"},
	} {
		n, err := w.w.Write([]byte(w.s))
		if err != nil || n != len(w.s) {
			t.Fatalf("write %q: %d, %v", w.s, n, err)
		}
		if out.String() != w.want {
			t.Fatalf("after %q:\n%q\nwant\n%q", w.s, out.String(), w.want)
		}
	}
}
