// Command wasi-fs exercises the file-system calls of a Go guest in a
// preopened directory and prints a transcript of what it saw.
//
// Usage: wasi-fs MODE DIR where MODE is
//
//	fs      create, write, read, seek, stat, truncate, append, readdir,
//	        rename, link, symlink, chtimes and remove files under DIR
//	escape  try to leave DIR through symbolic links the test prepared
//	        (outabs -> /etc, outrel -> ../.., inside -> sub/target.txt)
package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: wasi-fs fs|escape DIR")
		os.Exit(2)
	}
	dir := os.Args[2]
	switch os.Args[1] {
	case "fs":
		files(dir)
	case "escape":
		escape(dir)
	default:
		fmt.Fprintln(os.Stderr, "wasi-fs: unknown mode")
		os.Exit(2)
	}
}

var failed bool

func check(step string, err error) {
	if err != nil {
		fmt.Printf("%s: FAIL %v\n", step, err)
		failed = true
		return
	}
	fmt.Printf("%s: ok\n", step)
}

func show(step string, format string, args ...any) {
	fmt.Printf("%s: %s\n", step, fmt.Sprintf(format, args...))
}

// errnoOf names the errno under err.
func errnoOf(err error) string {
	if err == nil {
		return "no error"
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return fmt.Sprintf("errno %d", int(en))
	}
	if errors.Is(err, fs.ErrNotExist) {
		return "not exist"
	}
	return err.Error()
}

func names(dir string) string {
	list, err := os.ReadDir(dir)
	if err != nil {
		return "error " + errnoOf(err)
	}
	var out []string
	for _, e := range list {
		n := e.Name()
		switch {
		case e.IsDir():
			n += "/"
		case e.Type()&fs.ModeSymlink != 0:
			n += "@"
		}
		out = append(out, n)
	}
	return strings.Join(out, " ")
}

func files(dir string) {
	a := filepath.Join(dir, "a.txt")
	check("create", os.WriteFile(a, []byte("hello\n"), 0o644))

	f, err := os.OpenFile(a, os.O_RDWR, 0)
	check("open rw", err)
	if err != nil {
		os.Exit(1)
	}
	end, err := f.Seek(0, io.SeekEnd)
	check("seek end", err)
	show("offset", "%d", end)
	_, err = f.Write([]byte("world\n"))
	check("write", err)
	_, err = f.Seek(2, io.SeekStart)
	check("seek set", err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(f, buf)
	check("read", err)
	show("read", "%q", buf)
	cur, _ := f.Seek(0, io.SeekCurrent)
	show("tell", "%d", cur)
	buf = make([]byte, 5)
	_, err = f.ReadAt(buf, 6)
	check("pread", err)
	show("pread", "%q", buf)
	_, err = f.WriteAt([]byte("W"), 6)
	check("pwrite", err)
	st, err := f.Stat()
	check("fstat", err)
	show("size", "%d", st.Size())
	check("truncate", f.Truncate(5))
	st, _ = f.Stat()
	show("size", "%d", st.Size())
	check("sync", f.Sync())
	check("close", f.Close())
	_, err = f.Write([]byte("x"))
	show("write after close", "%v", err != nil)

	f, err = os.OpenFile(a, os.O_WRONLY|os.O_APPEND, 0)
	check("open append", err)
	_, err = f.Write([]byte("!!"))
	check("append", err)
	_, err = f.Write([]byte("?"))
	check("append", err)
	check("close", f.Close())
	data, err := os.ReadFile(a)
	check("read file", err)
	show("content", "%q", data)

	_, err = os.OpenFile(a, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	show("create excl existing", "%s", errnoOf(err))
	_, err = os.Open(filepath.Join(dir, "missing"))
	show("open missing", "%s", errnoOf(err))

	sub := filepath.Join(dir, "sub")
	check("mkdir", os.Mkdir(sub, 0o755))
	show("mkdir again", "%s", errnoOf(os.Mkdir(sub, 0o755)))
	check("create in sub", os.WriteFile(filepath.Join(sub, "b.txt"), []byte("bee"), 0o644))
	show("list", "%s", names(dir))
	show("list sub", "%s", names(sub))

	check("rename", os.Rename(a, filepath.Join(sub, "c.txt")))
	_, err = os.Stat(a)
	show("stat old name", "%s", errnoOf(err))
	data, err = os.ReadFile(filepath.Join(sub, "c.txt"))
	check("read renamed", err)
	show("content", "%q", data)

	d := filepath.Join(dir, "d.txt")
	check("link", os.Link(filepath.Join(sub, "c.txt"), d))
	data, _ = os.ReadFile(d)
	show("read link", "%q", data)

	e := filepath.Join(dir, "e.lnk")
	check("symlink", os.Symlink("sub/c.txt", e))
	target, err := os.Readlink(e)
	check("readlink", err)
	show("target", "%q", target)
	data, err = os.ReadFile(e)
	check("read through symlink", err)
	show("content", "%q", data)
	lst, err := os.Lstat(e)
	check("lstat", err)
	show("lstat symlink", "%v", lst.Mode()&fs.ModeSymlink != 0)

	when := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	check("chtimes", os.Chtimes(d, when, when))
	st, err = os.Stat(d)
	check("stat", err)
	show("mtime", "%s", st.ModTime().UTC().Format(time.RFC3339))

	show("rmdir non-empty", "%s", errnoOf(syscall.Rmdir(sub)))
	show("unlink dir", "%s", errnoOf(syscall.Unlink(sub)))
	show("rmdir file", "%s", errnoOf(syscall.Rmdir(d)))

	// A file larger than one read or write of the host moves.
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16|7)
	check("write big", os.WriteFile(filepath.Join(dir, "big"), big, 0o644))
	got, err := os.ReadFile(filepath.Join(dir, "big"))
	check("read big", err)
	show("big", "%d bytes, equal %v, sha %x", len(got), bytes.Equal(got, big), sha256.Sum256(got))

	// Many entries: more than one fd_readdir buffer.
	many := filepath.Join(dir, "many")
	check("mkdir many", os.Mkdir(many, 0o755))
	for i := range 300 {
		if err := os.WriteFile(filepath.Join(many, fmt.Sprintf("file-with-a-long-name-%03d", i)), nil, 0o644); err != nil {
			check("create many", err)
			break
		}
	}
	list, err := os.ReadDir(many)
	check("list many", err)
	show("many", "%d entries, first %s, last %s", len(list), list[0].Name(), list[len(list)-1].Name())

	check("remove", os.Remove(d))
	check("remove symlink", os.Remove(e))
	check("remove all", os.RemoveAll(sub))
	check("remove all", os.RemoveAll(many))
	check("remove", os.Remove(filepath.Join(dir, "big")))
	show("list", "%s", names(dir))
	if failed {
		os.Exit(1)
	}
}

func escape(dir string) {
	try := func(name string, err error) { show(name, "%s", errnoOf(err)) }
	_, err := os.ReadFile(filepath.Join(dir, "outabs", "passwd"))
	try("absolute link, intermediate", err)
	_, err = os.Stat(filepath.Join(dir, "outabs"))
	try("absolute link, last", err)
	_, err = os.Lstat(filepath.Join(dir, "outabs"))
	try("absolute link, lstat", err)
	_, err = os.ReadDir(filepath.Join(dir, "outrel"))
	try("relative link", err)
	_, err = os.ReadFile(filepath.Join(dir, "outrel", "etc", "passwd"))
	try("relative link, intermediate", err)
	data, err := os.ReadFile(filepath.Join(dir, "inside"))
	try("link inside", err)
	show("content", "%q", data)
	try("symlink absolute target", os.Symlink("/etc/passwd", filepath.Join(dir, "new-abs")))
	try("symlink relative target", os.Symlink("../../../etc", filepath.Join(dir, "new-rel")))
	_, err = os.ReadFile(filepath.Join(dir, "new-rel", "passwd"))
	try("through new relative link", err)
	_, err = os.ReadFile(filepath.Join(dir, "..", "..", "etc", "passwd"))
	try("dot-dot", err)
	_, err = os.Create(filepath.Join(dir, "outabs", "created"))
	try("create through link", err)
	try("mkdir through link", os.Mkdir(filepath.Join(dir, "outrel", "x"), 0o755))
	try("rename through link", os.Rename(filepath.Join(dir, "inside"), filepath.Join(dir, "outrel", "stolen")))
}
