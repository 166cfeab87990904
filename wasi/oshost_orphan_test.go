//go:build linux

package wasi

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// A file unlinked while open moves to OrphanDir under the lowest handle
// holding it, hidden from the guest, readable through its handles, and
// removed at the last close; a file unlinked while closed is removed.
func TestOSHostUnlinkWhileOpen(t *testing.T) {
	fx := newAdoptFixture(t)
	h, err := NewOSHost(fx.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.CloseAll()
	rw := OpenRequest{Oflags: OflagCreat, Read: true, Write: true, Follow: true}
	a, errno := h.Open(3, "tmp", rw)
	if errno != ESUCCESS {
		t.Fatal(errno)
	}
	b, errno := h.Open(3, "tmp", rw)
	if errno != ESUCCESS {
		t.Fatal(errno)
	}
	if _, errno := h.Pwrite(b.Handle, 0, []byte("scratch")); errno != ESUCCESS {
		t.Fatal(errno)
	}
	if errno := h.Unlink(3, "tmp"); errno != ESUCCESS {
		t.Fatalf("unlink = %v", errno)
	}
	if _, errno := h.PathFilestat(3, "tmp", false); errno != ENOENT {
		t.Errorf("the unlinked name still exists: %v", errno)
	}
	orphan := filepath.Join(fx.data, OrphanPath(min(a.Handle, b.Handle)))
	if _, err := os.Stat(orphan); err != nil {
		t.Fatalf("no orphan on the host: %v", err)
	}
	if data, errno := h.Pread(a.Handle, 0, 100); errno != ESUCCESS || string(data) != "scratch" {
		t.Errorf("read through the open handle = %q, %v", data, errno)
	}
	// Hidden: not listed, not reachable by path.
	entries, errno := h.ReadDir(3, 0, 100)
	if errno != ESUCCESS || slices.ContainsFunc(entries, func(e Dirent) bool { return e.Name == OrphanDir }) {
		t.Errorf("listing %v, %v shows %s", entries, errno, OrphanDir)
	}
	for _, p := range []string{OrphanDir, OrphanPath(a.Handle), "sub/../" + OrphanDir} {
		if _, errno := h.Open(3, p, OpenRequest{Read: true, Follow: true}); errno != ENOENT {
			t.Errorf("open %s = %v, want ENOENT", p, errno)
		}
		if errno := h.Unlink(3, p); errno != ENOENT {
			t.Errorf("unlink %s = %v, want ENOENT", p, errno)
		}
	}
	if errno := h.Rename(3, "sub/f", 3, OrphanDir+"/x"); errno != ENOENT {
		t.Errorf("rename into %s = %v, want ENOENT", OrphanDir, errno)
	}
	h.Close(a.Handle)
	if _, err := os.Stat(orphan); err != nil {
		t.Fatalf("the orphan went at the first of two closes: %v", err)
	}
	h.Close(b.Handle)
	if _, err := os.Stat(orphan); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the orphan outlived its last handle: %v", err)
	}
	// Unlinked while closed: gone for good, no orphan.
	if errno := h.Unlink(3, "sub/f"); errno != ESUCCESS {
		t.Fatal(errno)
	}
	if left, _ := os.ReadDir(filepath.Join(fx.data, OrphanDir)); len(left) != 0 {
		t.Errorf("orphans left: %v", left)
	}
}

// A backup going live reopens an orphan under its handle and removes it at
// the last close; a host that starts a guest afresh clears stale ones, an
// adopting one keeps them, and CloseAll leaves them.
func TestOSHostAdoptOrphan(t *testing.T) {
	fx := newAdoptFixture(t)
	stale := filepath.Join(fx.data, OrphanDir)
	if err := os.MkdirAll(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "7"), []byte("held"), 0o600); err != nil {
		t.Fatal(err)
	}
	const hd = Handle(1 << 20)
	a := Adoption{Handles: []Adopted{{Handle: hd, Kind: AdoptFile, Preopen: 0, Rel: OrphanPath(7), Req: OpenRequest{Read: true, Write: true}}}}
	h := adopting(t, fx.cfg, a)
	if data, errno := h.Pread(hd, 0, 10); errno != ESUCCESS || string(data) != "held" {
		t.Fatalf("read of the adopted orphan = %q, %v", data, errno)
	}
	h.Close(hd)
	if _, err := os.Stat(filepath.Join(stale, "7")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the adopted orphan outlived its last handle: %v", err)
	}

	if err := os.WriteFile(filepath.Join(stale, "8"), []byte("held"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.Handles[0].Rel = OrphanPath(8)
	h2 := adopting(t, fx.cfg, a)
	h2.CloseAll()
	if _, err := os.Stat(filepath.Join(stale, "8")); err != nil {
		t.Fatalf("CloseAll removed an orphan: %v", err)
	}
	fresh, err := NewOSHost(fx.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh.CloseAll()
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a fresh host kept the stale orphans: %v", err)
	}
}

// TestFreshStartClearsOnlyItsOrphans: a guest started afresh clears what a
// previous run left in OrphanDir, but refuses to start, and removes
// nothing, if something there is not what the OS host puts there.
func TestFreshStartClearsOnlyItsOrphans(t *testing.T) {
	for _, c := range []struct {
		name   string
		make   func(dir string) error
		refuse bool
	}{
		{"left by a run", func(dir string) error {
			if err := os.MkdirAll(filepath.Join(dir, OrphanDir), 0o700); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, OrphanDir, "1048577"), []byte("x"), 0o600)
		}, false},
		{"someone's file in it", func(dir string) error {
			if err := os.MkdirAll(filepath.Join(dir, OrphanDir), 0o700); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, OrphanDir, "important.txt"), []byte("keep"), 0o600)
		}, true},
		{"a file of that name", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, OrphanDir), []byte("keep"), 0o600)
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := c.make(dir); err != nil {
				t.Fatal(err)
			}
			before := listTree(t, dir)
			h, err := NewOSHost(Config{Preopens: []Preopen{{GuestPath: "/d", HostDir: dir}}}, nil)
			if c.refuse {
				if err == nil {
					h.CloseAll()
					t.Fatal("started over a foreign " + OrphanDir)
				}
				if after := listTree(t, dir); after != before {
					t.Fatalf("refused, but the directory changed:\n%s\nwas\n%s", after, before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h.CloseAll()
			if _, err := os.Lstat(filepath.Join(dir, OrphanDir)); !os.IsNotExist(err) {
				t.Fatalf("%s left: %v", OrphanDir, err)
			}
		})
	}
}

func listTree(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		out = append(out, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, "\n")
}

// Many OS hosts starting at once on one directory (ftvm exec runs of
// tests with / as their preopen) each clear what a previous run left in
// OrphanDir: the one that finds it gone, because another cleared it first,
// starts as well.
func TestOSHostsClearOrphansAtOnce(t *testing.T) {
	fx := newAdoptFixture(t)
	for round := range 20 {
		dir := filepath.Join(fx.data, OrphanDir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				h, err := NewOSHost(fx.cfg, nil)
				if err == nil {
					h.CloseAll()
				}
				errs <- err
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
}
