package host

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiskCopy: a disk copied in a pre-copy pass while it changes, then a
// final pass, ends equal to the original: files changed, added, removed
// and renamed meanwhile, a directory, a symbolic link, a hard link, an
// empty file and one larger than a record.
func TestDiskCopy(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	write := func(rel, data string) {
		p := filepath.Join(src, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a", "one")
	write("gone", "removed after the pre-copy")
	write("old-name", "renamed after the pre-copy")
	write("dir/b", strings.Repeat("x", diskChunk+17))
	write("empty", "")
	os.Symlink("a", filepath.Join(src, "link"))
	os.Link(filepath.Join(src, "a"), filepath.Join(src, "hard"))
	rcv := &diskReceiver{dir: dst}
	snd := newDiskSender(src, rcv.apply)
	if err := snd.pass(false); err != nil {
		t.Fatal(err)
	}
	// Same size, rewritten at once: only the stamps (or racy-clean) tell.
	write("a", "two")
	os.Remove(filepath.Join(src, "gone"))
	os.Rename(filepath.Join(src, "old-name"), filepath.Join(src, "dir", "new-name"))
	write("dir/c", "added")
	if err := snd.pass(true); err != nil {
		t.Fatal(err)
	}
	if want, got := treeOf(t, src), treeOf(t, dst); want != got {
		t.Fatalf("copy\n%s\nwant\n%s", got, want)
	}
	a, _ := os.Stat(filepath.Join(dst, "a"))
	h, _ := os.Stat(filepath.Join(dst, "hard"))
	if !os.SameFile(a, h) {
		t.Error("the hard link was copied as a file of its own")
	}
}

// TestDiskCopyRacyClean: a file rewritten with the same size within the
// same timestamp tick as its pre-copy is still sent again in the final
// pass (its change time was too recent to trust).
func TestDiskCopyRacyClean(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	p := filepath.Join(src, "f")
	os.WriteFile(p, []byte("aaaa"), 0o644)
	rcv := &diskReceiver{dir: dst}
	snd := newDiskSender(src, rcv.apply)
	if err := snd.pass(false); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	f, _ := os.OpenFile(p, os.O_WRONLY, 0)
	f.WriteAt([]byte("bbbb"), 0)
	f.Close()
	// The worst case: stamps put back as they were.
	os.Chtimes(p, fi.ModTime(), fi.ModTime())
	if err := snd.pass(true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "f")); string(b) != "bbbb" {
		t.Fatalf("the copy holds %q, want bbbb", b)
	}
}

// treeOf describes a directory tree as text.
func treeOf(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case fi.IsDir():
			b.WriteString(rel + "/\n")
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			b.WriteString(rel + " -> " + l + "\n")
		default:
			data, _ := os.ReadFile(p)
			b.WriteString(rel + ": " + string(data) + "\n")
		}
		return nil
	})
	return b.String()
}

// FuzzDiskRecord: a disk record of any bytes is applied or refused with an
// error, never a panic, and nothing is written outside the copy.
func FuzzDiskRecord(f *testing.F) {
	f.Add([]byte{diskFile, 1, 'a', 0x80, 3, 4})
	f.Add([]byte{diskData, 1, 'a', 0, 2, 'h', 'i'})
	f.Add([]byte{diskDir, 3, 'a', '/', 'b', 0x80, 3})
	f.Add([]byte{diskSymlink, 1, 'l', 2, '.', '.'})
	f.Add([]byte{diskLink, 1, 'h', 1, 'a'})
	f.Add([]byte{diskEnd, 1, 1, 'a'})
	f.Add([]byte{diskFile, 5, '.', '.', '/', 'x', 'y', 0, 0})
	// A link out of the copy, then data through it.
	f.Add([]byte{diskSymlink, 1, 'l', 4, '/', 't', 'm', 'p', diskData, 3, 'l', '/', 'x', 0, 1, 'z'})
	f.Fuzz(func(t *testing.T, rec []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "copy")
		os.Mkdir(dir, 0o755)
		r := &diskReceiver{dir: dir}
		_ = r.apply(rec)
		r.close()
		ents, _ := os.ReadDir(parent)
		if len(ents) != 1 {
			t.Fatalf("a record wrote outside the copy: %v", ents)
		}
	})
}

// TestDataLocked: a second host given a data directory another holds is
// refused (it would overwrite the first one's copies), and one that is a
// file is refused at once.
func TestDataLocked(t *testing.T) {
	dir := t.TempDir()
	f, err := lockData(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockData(dir); err == nil || !strings.Contains(err.Error(), "another running host's") {
		t.Fatalf("a second lock: %v, want refused", err)
	}
	f.Close()
	g, err := lockData(dir)
	if err != nil {
		t.Fatalf("after the first host ended: %v", err)
	}
	g.Close()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := lockData(file); err == nil {
		t.Fatal("a file as the data directory was accepted")
	}
}
