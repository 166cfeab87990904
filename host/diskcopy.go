package host

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"ftvm/replog"
)

// A clone of a VM with a local disk copies the disk too (frameCloneDisk
// records), as it copies memory: a pre-copy while the guest runs, then, in
// the final pause, what changed since. Which files changed is told by the
// file system's own change stamps, as rsync and git do: a file whose size,
// modification time, change time (which no call can set) or inode differs
// from when it was sent is sent again. A file changed within the stamps'
// granularity of being read could keep the same stamps, so one whose
// change time is that recent when it is sent is "racily clean" (git's
// term) and is sent again in the final pause whatever its stamps say. The
// final pause ends with the list of every path, and the spare removes
// anything else: what the guest removed or renamed meanwhile.

// frameCloneDisk: primary → spare, a record of the VM's local disk.
const frameCloneDisk = replog.FrameControl + 10

// Disk record kinds.
const (
	diskDir     = 'd' // path, mode
	diskFile    = 'f' // path, mode, size: create or truncate it
	diskData    = 'c' // path, offset, bytes
	diskSymlink = 'l' // path, target
	diskLink    = 'h' // path, the path of a file it is a hard link to
	diskEnd     = 'e' // every path of the disk: remove the others
)

// diskChunk bounds the data of one record.
const diskChunk = 1 << 20

// racyWindow is how recent a file's change time may be when it is sent
// for its stamps to be trusted: well beyond any file system's timestamp
// granularity.
const racyWindow = 2 * time.Second

// fileSig is what says a file has not changed since it was sent.
type fileSig struct {
	mode         fs.FileMode
	size         int64
	mtime, ctime int64
	ino          uint64
	racy         bool
}

func sigOf(fi fs.FileInfo) fileSig {
	s := fileSig{mode: fi.Mode(), size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ctime = time.Unix(st.Ctim.Sec, st.Ctim.Nsec).UnixNano()
		s.ino = st.Ino
	}
	return s
}

func (s fileSig) same(o fileSig) bool {
	return s.mode == o.mode && s.size == o.size && s.mtime == o.mtime && s.ctime == o.ctime && s.ino == o.ino
}

// diskSender sends a disk's tree in records.
type diskSender struct {
	root string
	send func(rec []byte) error
	sent map[string]fileSig
	// Bytes counts the file data sent.
	bytes uint64
}

func newDiskSender(root string, send func([]byte) error) *diskSender {
	return &diskSender{root: root, send: send, sent: map[string]fileSig{}}
}

// pass sends what is new or changed since the last pass; the final one,
// made while the guest is paused, also sends racily clean files and ends
// with the list of every path. A path that vanishes during a pre-copy
// pass (the guest runs) is skipped: the final pass settles it.
func (s *diskSender) pass(final bool) error {
	var all []string
	links := map[uint64]string{} // inode → the first path sent with it
	err := filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if !final && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if p == s.root {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fi, err := os.Lstat(p)
		if err != nil {
			if !final && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		all = append(all, rel)
		sig := sigOf(fi)
		old, had := s.sent[rel]
		unchanged := had && old.same(sig) && !(final && old.racy)
		var enc replog.Encoder
		switch {
		case fi.IsDir():
			if unchanged {
				return nil
			}
			enc.B = append(enc.B, diskDir)
			enc.String(rel)
			enc.Uint(uint64(fi.Mode().Perm()))
		case fi.Mode()&fs.ModeSymlink != 0:
			if unchanged {
				return nil
			}
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			enc.B = append(enc.B, diskSymlink)
			enc.String(rel)
			enc.String(target)
		case fi.Mode().IsRegular():
			if first, ok := links[sig.ino]; ok && sig.ino != 0 {
				enc.B = append(enc.B, diskLink)
				enc.String(rel)
				enc.String(first)
				break
			}
			links[sig.ino] = rel
			if unchanged {
				return nil
			}
			sig.racy = time.Since(time.Unix(0, sig.ctime)) < racyWindow
			if err := s.sendFile(p, rel, fi); err != nil {
				if !final && errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			s.sent[rel] = sig
			return nil
		default:
			return fmt.Errorf("local disk: %s is neither a file, a directory nor a symbolic link", rel)
		}
		s.sent[rel] = sig
		return s.send(enc.B)
	})
	if err != nil || !final {
		return err
	}
	var enc replog.Encoder
	enc.B = append(enc.B, diskEnd)
	enc.Uint(uint64(len(all)))
	for _, p := range all {
		enc.String(p)
	}
	return s.send(enc.B)
}

// sendFile sends regular file p (rel in the disk) in records.
func (s *diskSender) sendFile(p, rel string, fi fs.FileInfo) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	var enc replog.Encoder
	enc.B = append(enc.B, diskFile)
	enc.String(rel)
	enc.Uint(uint64(fi.Mode().Perm()))
	enc.Uint(uint64(fi.Size()))
	if err := s.send(enc.B); err != nil {
		return err
	}
	buf := make([]byte, diskChunk)
	for off := int64(0); ; {
		n, err := f.ReadAt(buf, off)
		if n > 0 {
			var enc replog.Encoder
			enc.B = append(enc.B, diskData)
			enc.String(rel)
			enc.Uint(uint64(off))
			enc.Blob(buf[:n])
			if err := s.send(enc.B); err != nil {
				return err
			}
			off += int64(n)
			s.bytes += uint64(n)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// diskReceiver builds a copy of a disk from records, in dir. Every path
// goes through an os.Root: no record reaches outside the copy, through
// ".." or a symbolic link.
type diskReceiver struct {
	dir   string
	root  *os.Root
	ended bool
}

// close releases the receiver's root.
func (r *diskReceiver) close() {
	if r.root != nil {
		r.root.Close()
		r.root = nil
	}
}

// cleanRel checks that a record's path stays inside the disk.
func cleanRel(p string) (string, error) {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("local disk record: bad path %q", p)
	}
	return filepath.FromSlash(p), nil
}

// apply applies one record.
func (r *diskReceiver) apply(rec []byte) error {
	if len(rec) == 0 {
		return errors.New("local disk record: empty")
	}
	if r.ended {
		return errors.New("local disk record after the end")
	}
	if r.root == nil {
		root, err := os.OpenRoot(r.dir)
		if err != nil {
			return err
		}
		r.root = root
	}
	d := replog.NewDecoder(rec[1:])
	kind := rec[0]
	if kind == diskEnd {
		n := d.Uint()
		if n > uint64(d.Len()) {
			return fmt.Errorf("local disk record: %d paths in %d bytes", n, d.Len())
		}
		keep := make(map[string]bool, n)
		for range n {
			p, err := cleanRel(d.String())
			if err != nil {
				return err
			}
			keep[p] = true
		}
		if err := d.Finish(); err != nil {
			return fmt.Errorf("local disk record: %w", err)
		}
		r.ended = true
		return r.prune(keep)
	}
	p, err := cleanRel(d.String())
	if err != nil {
		return err
	}
	root := r.root
	switch kind {
	case diskDir:
		mode := fs.FileMode(d.Uint()) & fs.ModePerm
		if err := d.Finish(); err != nil {
			return fmt.Errorf("local disk record: %w", err)
		}
		if fi, err := root.Lstat(p); err == nil && !fi.IsDir() {
			root.Remove(p)
		}
		if err := root.MkdirAll(p, 0o700); err != nil {
			return err
		}
		return root.Chmod(p, mode|0o700)
	case diskFile:
		mode := fs.FileMode(d.Uint()) & fs.ModePerm
		size := d.Uint()
		if err := d.Finish(); err != nil {
			return fmt.Errorf("local disk record: %w", err)
		}
		if size > 1<<62 {
			return fmt.Errorf("local disk record: size %d", size)
		}
		if err := r.replace(p); err != nil {
			return err
		}
		f, err := root.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, mode)
		if err != nil {
			return err
		}
		// A file the guest made sparse stays so where nothing is sent.
		err = f.Truncate(int64(size))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case diskData:
		off := d.Uint()
		data := d.Blob()
		if err := d.Finish(); err != nil {
			return fmt.Errorf("local disk record: %w", err)
		}
		if off > 1<<62 {
			return fmt.Errorf("local disk record: offset %d", off)
		}
		f, err := root.OpenFile(p, os.O_WRONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteAt(data, int64(off))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case diskSymlink:
		target := d.String()
		if err := d.Finish(); err != nil {
			return fmt.Errorf("local disk record: %w", err)
		}
		if err := r.replace(p); err != nil {
			return err
		}
		return root.Symlink(target, p)
	case diskLink:
		first, err := cleanRel(d.String())
		if err != nil {
			return err
		}
		if err := d.Finish(); err != nil {
			return fmt.Errorf("local disk record: %w", err)
		}
		if err := r.replace(p); err != nil {
			return err
		}
		return root.Link(first, p)
	}
	return fmt.Errorf("local disk record: unknown kind %q", kind)
}

// replace makes room at p for a new file: whatever was there goes, and its
// directory exists.
func (r *diskReceiver) replace(p string) error {
	if err := r.root.RemoveAll(p); err != nil {
		return err
	}
	if dir := filepath.Dir(p); dir != "." {
		return r.root.MkdirAll(dir, 0o700)
	}
	return nil
}

// prune removes every path of the copy not in keep.
func (r *diskReceiver) prune(keep map[string]bool) error {
	var gone []string
	err := filepath.WalkDir(r.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == r.dir {
			return nil
		}
		rel, _ := filepath.Rel(r.dir, p)
		if !keep[rel] {
			gone = append(gone, p)
			if d.IsDir() {
				return filepath.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.Reverse(gone)
	for _, p := range gone {
		rel, _ := filepath.Rel(r.dir, p)
		if err := r.root.RemoveAll(rel); err != nil {
			return err
		}
	}
	return nil
}
