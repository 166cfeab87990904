// Command wasi-journal keeps files open across many host calls, for the
// tests of a backup going live in the middle of a run: whatever call the
// log ends at, the files it leaves and what it prints must be those of an
// uninterrupted run.
//
// Usage: wasi-journal DIR OTHER N
//
// It closes stdin first. Then it writes N fixed-size records to DIR/journal, by explicit offsets and
// by sequential writes, closing and reopening the file now and then; writes
// parts through a directory opened as an os.Root (DIR/parts); writes to a
// file it renames while it holds it open; keeps a directory listing open
// and reads it one entry at a time; holds a file it removed (DIR/scratch,
// then made again) and goes on writing and reading it through its handle
// until it closes it; counts records in OTHER/counts; and reads the
// monotonic clock all along, checking that it never goes back.
// At the end it prints digests of what it wrote.
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

const recLen = 32

func record(i int) []byte {
	return fmt.Appendf(nil, "record %05d %018x\n", i, uint64(i)*0x9e3779b97f4a7c15)[:recLen]
}

func must(step string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "wasi-journal: %s: %v\n", step, err)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: wasi-journal DIR OTHER N")
		os.Exit(2)
	}
	must("close stdin", os.Stdin.Close()) // a startup descriptor closed
	dir, other := os.Args[1], os.Args[2]
	n, err := strconv.Atoi(os.Args[3])
	must("count", err)

	// A listing read one entry per step, through one open descriptor.
	must("mkdir list", os.Mkdir(filepath.Join(dir, "list"), 0o755))
	for i := range 8 {
		must("list entry", os.WriteFile(filepath.Join(dir, "list", fmt.Sprintf("entry-%d", i)), nil, 0o644))
	}
	list, err := os.Open(filepath.Join(dir, "list"))
	must("open list", err)
	var listed []string

	must("mkdir parts", os.Mkdir(filepath.Join(dir, "parts"), 0o755))
	parts, err := os.OpenRoot(filepath.Join(dir, "parts"))
	must("open parts", err)

	counts, err := os.OpenFile(filepath.Join(other, "counts"), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	must("open counts", err)

	// A file renamed while open, written before and after.
	moving, err := os.OpenFile(filepath.Join(dir, "draft"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	must("open draft", err)

	path := filepath.Join(dir, "journal")
	j, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	must("create journal", err)

	var scratch *os.File
	start := time.Now()
	prev := start
	backwards := 0
	tick := func() {
		now := time.Now()
		if now.Sub(prev) < 0 {
			backwards++
		}
		prev = now
	}
	for i := range n {
		tick()
		switch {
		case i%3 == 0:
			_, err = j.WriteAt(record(i), int64(i*recLen))
			must("pwrite", err)
		default:
			_, err = j.Seek(int64(i*recLen), io.SeekStart)
			must("seek", err)
			_, err = j.Write(record(i))
			must("write", err)
		}
		if i%7 == 6 {
			must("close journal", j.Close())
			j, err = os.OpenFile(path, os.O_RDWR, 0)
			must("reopen journal", err)
		}
		if i%5 == 0 {
			must("part", parts.WriteFile(fmt.Sprintf("part-%03d", i), record(i), 0o644))
		}
		_, err = counts.WriteAt(fmt.Appendf(nil, "%08d\n", i+1), 0)
		must("counts", err)
		if i == n/3 {
			_, err = moving.Write([]byte("before the rename\n"))
			must("draft", err)
			must("rename draft", os.Rename(filepath.Join(dir, "draft"), filepath.Join(dir, "final")))
		}
		if i == 2*n/3 {
			_, err = moving.Write([]byte("after the rename\n"))
			must("final", err)
			must("close final", moving.Close())
		}
		if i == n/2 {
			// A file removed while open, and another made at its name.
			scratch, err = os.OpenFile(filepath.Join(dir, "scratch"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
			must("open scratch", err)
			_, err = scratch.Write([]byte("old"))
			must("scratch", err)
			must("remove scratch", os.Remove(filepath.Join(dir, "scratch")))
			must("new scratch", os.WriteFile(filepath.Join(dir, "scratch"), []byte("new"), 0o644))
		}
		if scratch != nil {
			// The removed file keeps what was written to it.
			held := fmt.Sprintf("old+%d", i)
			_, err = scratch.WriteAt([]byte(held[3:]), 3)
			must("write held scratch", err)
			got := make([]byte, len(held))
			_, err = scratch.ReadAt(got, 0)
			must("read held scratch", err)
			if string(got) != held {
				fmt.Fprintf(os.Stderr, "wasi-journal: held scratch reads %q, want %q\n", got, held)
				os.Exit(1)
			}
		}
		if i == 3*n/4 {
			must("close scratch", scratch.Close())
			scratch = nil
		}
		if es, err := list.ReadDir(1); err == nil {
			listed = append(listed, es[0].Name())
		}
		var noise [8]byte
		rand.Read(noise[:])
		if i%10 == 9 {
			time.Sleep(time.Duration(noise[0]%4) * time.Microsecond)
		}
		if i%25 == 0 {
			fmt.Printf("step %d\n", i)
		}
	}
	tick()
	must("close journal", j.Close())
	must("close counts", counts.Close())
	must("close parts", parts.Close())
	must("close list", list.Close())

	data, err := os.ReadFile(path)
	must("read journal", err)
	ok := len(data) == n*recLen
	for i := 0; ok && i < n; i++ {
		ok = string(data[i*recLen:(i+1)*recLen]) == string(record(i))
	}
	fmt.Printf("journal: %d bytes, records in order %v, sha256 %x\n", len(data), ok, sha256.Sum256(data))
	final, err := os.ReadFile(filepath.Join(dir, "final"))
	must("read final", err)
	fmt.Printf("final: %q\n", final)
	fmt.Printf("listed: %v\n", listed)
	if backwards > 0 {
		fmt.Printf("monotonic clock: went back %d times\n", backwards)
		os.Exit(1)
	}
	fmt.Println("monotonic clock: never went back")
}
