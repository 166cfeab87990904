package main

import (
	"flag"
	"io"
	"slices"
	"testing"
)

// TestDiskFlag: --disk alone or "shared" is a shared disk, "--disk local"
// (with a space, as the README writes it) or "--disk=local" a local one;
// the guest's own arguments after GUEST.wasm are left alone, even when
// they read "--disk local"; a value flag's value that reads "--disk" is
// not taken for the flag.
func TestDiskFlag(t *testing.T) {
	for _, c := range []struct {
		args      []string
		on, local bool
		rest      []string
	}{
		{[]string{"g.wasm"}, false, false, []string{"g.wasm"}},
		{[]string{"--disk", "g.wasm"}, true, false, []string{"g.wasm"}},
		{[]string{"--disk", "shared", "g.wasm"}, true, false, []string{"g.wasm"}},
		{[]string{"--disk", "local", "g.wasm"}, true, true, []string{"g.wasm"}},
		{[]string{"-disk=local", "g.wasm"}, true, true, []string{"g.wasm"}},
		{[]string{"--name", "x", "--disk", "local", "--listen", "a:1", "g.wasm", "--disk", "local"}, true, true, []string{"g.wasm", "--disk", "local"}},
		{[]string{"g.wasm", "--disk", "local"}, false, false, []string{"g.wasm", "--disk", "local"}},
		{[]string{"--name", "--disk", "local"}, false, false, []string{"local"}},
	} {
		fs := flag.NewFlagSet("start", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.String("name", "", "")
		var vf vmFlags
		vf.register(fs)
		if err := fs.Parse(joinDiskKind(fs, c.args)); err != nil {
			t.Errorf("%q: %v", c.args, err)
			continue
		}
		if vf.disk.on != c.on || vf.disk.local != c.local || !slices.Equal(fs.Args(), c.rest) {
			t.Errorf("%q: disk %+v, args %q; want on %v, local %v, args %q", c.args, vf.disk, fs.Args(), c.on, c.local, c.rest)
		}
	}
	var d diskFlag
	if err := d.Set("nfs"); err == nil {
		t.Error("--disk=nfs accepted")
	}
}
