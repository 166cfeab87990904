package vmm

import (
	"bytes"
	"fmt"
	"slices"

	"ftvm/replog"
	"ftvm/wasi"
)

// Exactly-once effects. The primary performs an effect (a file written,
// created, renamed, ...) only once the backup has acknowledged every entry
// before it (the Gate's barrier), and logs the effect's result in its call's
// entry afterwards. If the primary dies between the effect and that entry's
// acknowledgement, the backup goes live at the call without knowing whether
// the effect happened. For most effects that does not matter: performing
// them again leaves the disk as performing them once does, because what
// they do follows from the entries before them (a write at an offset System
// keeps, a truncation, a sync, an open that at most creates).
//
// Two kinds do matter, and for them the primary first logs an intent entry,
// and waits for its acknowledgement before performing the effect:
//
//   - an effect whose arguments depend on inputs the same call took (an
//     append takes the file's size from Filestat, then writes there): the
//     intent carries those inputs, so the backup never asks for them again;
//   - an effect that performed twice fails the second time or does
//     something else (mkdir, rmdir, unlink, rename, link, symlink, an
//     exclusive create): the intent carries the state of the paths it
//     touches just before (a pre-state probe).
//
// A backup that goes live with an intent as the last entry of its log
// settles it (VM.Settle) once the old primary can perform nothing more:
// it looks at the paths again, and if they changed as the effect changes
// them (the directory now exists, the file's size grew past the offset),
// the primary performed it, and the backup completes the call as if the
// log had said so; otherwise it performs the call itself. Nothing but the
// VM changes its disk, and the primary performs at most one effect past
// what the backup acknowledged, so the comparison decides.

// TypeIntent is the entry a primary logs, at the position of a call, before
// that call performs an effect whose outcome a backup could not otherwise
// tell. Its data is the call's entry type (uvarint), the call's Host
// results so far (a blob, encoded as in the call's own entry), the effect
// (see effect.encode) and the pre-state probes (count, then per probe the
// errno of PathFilestat and, if 0, the file type and inode number). The call's own entry
// follows it at the same position.
const TypeIntent replog.Type = 101

// CompleteThrough returns the position through which a log is complete once
// it holds entry e: e's own position, except for an intent, whose call has
// its entry still to come.
func CompleteThrough(e replog.Entry) uint64 {
	if e.Type == TypeIntent && e.Pos > 0 {
		return e.Pos - 1
	}
	return e.Pos
}

// effect describes an effect about to be performed: the Host method and the
// arguments that say what it changes.
type effect struct {
	m      method
	h      wasi.Handle // Pwrite's file
	off, n uint64      // Pwrite's offset and length
	dir    wasi.Handle // the directory of path (Open, Mkdir, ... the old one of Rename and Link)
	path   string
	dir2   wasi.Handle // the new directory of Rename and Link
	path2  string      // the new path of Rename and Link
	target string      // Symlink's target
	oflags uint16      // Open's
	follow bool        // Link's
}

func (f effect) encode(e *replog.Encoder) {
	e.B = append(e.B, byte(f.m))
	switch f.m {
	case mPwrite:
		e.Uint(uint64(f.h))
		e.Uint(f.off)
		e.Uint(f.n)
	case mOpen:
		e.Uint(uint64(f.dir))
		e.String(f.path)
		e.Uint(uint64(f.oflags))
	case mMkdir, mRmdir, mUnlink:
		e.Uint(uint64(f.dir))
		e.String(f.path)
	case mSymlink:
		e.Uint(uint64(f.dir))
		e.String(f.path)
		e.String(f.target)
	case mRename, mLink:
		e.Uint(uint64(f.dir))
		e.String(f.path)
		e.Uint(uint64(f.dir2))
		e.String(f.path2)
		if f.follow {
			e.Uint(1)
		} else {
			e.Uint(0)
		}
	}
}

func decodeEffect(d *replog.Decoder) effect {
	b := d.Bytes(1)
	if b == nil {
		return effect{}
	}
	f := effect{m: method(b[0])}
	switch f.m {
	case mPwrite:
		f.h, f.off, f.n = wasi.Handle(d.Uint()), d.Uint(), d.Uint()
	case mOpen:
		f.dir, f.path, f.oflags = wasi.Handle(d.Uint()), d.String(), uint16(d.Uint())
	case mMkdir, mRmdir, mUnlink:
		f.dir, f.path = wasi.Handle(d.Uint()), d.String()
	case mSymlink:
		f.dir, f.path, f.target = wasi.Handle(d.Uint()), d.String(), d.String()
	case mRename, mLink:
		f.dir, f.path, f.dir2, f.path2 = wasi.Handle(d.Uint()), d.String(), wasi.Handle(d.Uint()), d.String()
		f.follow = d.Uint() != 0
	default:
		f.m = 0 // not an effect that has intents: decodeIntent says so
	}
	return f
}

// intentCalls are the calls (entry types) that perform each effect that has
// intents.
var intentCalls = map[method][]replog.Type{
	mPwrite:  {20, 27}, // fd_pwrite, fd_write
	mOpen:    {32},     // path_open
	mMkdir:   {28},     // path_create_directory
	mRmdir:   {34},     // path_remove_directory
	mUnlink:  {37},     // path_unlink_file
	mRename:  {35},     // path_rename
	mLink:    {31},     // path_link
	mSymlink: {36},     // path_symlink
}

// probe is the state of a path just before an effect, as much of what
// PathFilestat returned for it as settling needs: whether it exists, and if
// so its type and inode number.
type probe struct {
	errno    wasi.Errno
	filetype wasi.Filetype
	ino      uint64
}

func probeOf(st wasi.Filestat, errno wasi.Errno) probe {
	if errno != wasi.ESUCCESS {
		return probe{errno: errno}
	}
	return probe{filetype: st.Filetype, ino: st.Ino}
}

func (p probe) exists() bool { return p.errno == wasi.ESUCCESS }

// intent is a decoded TypeIntent entry.
type intent struct {
	seq    uint64
	pos    uint64
	call   replog.Type
	before []byte // the call's Host results before the effect
	effect effect
	probes []probe
}

// maxProbes bounds the probes an intent carries (Rename and Link have two).
const maxProbes = 2

func encodeIntent(call replog.Type, before []byte, f effect, probes []probe) []byte {
	var e replog.Encoder
	e.Uint(uint64(call))
	e.Blob(before)
	f.encode(&e)
	e.Uint(uint64(len(probes)))
	for _, p := range probes {
		e.Uint(uint64(p.errno))
		if p.exists() {
			e.Uint(uint64(p.filetype))
			e.Uint(p.ino)
		}
	}
	return e.B
}

func decodeIntent(en replog.Entry) (intent, error) {
	d := replog.NewDecoder(en.Data)
	in := intent{seq: en.Seq, pos: en.Pos, call: replog.Type(d.Uint())}
	in.before = d.Blob()
	if b := d.Bytes(1); b != nil {
		if _, ok := intentCalls[method(b[0])]; !ok {
			return intent{}, fmt.Errorf("intent of an unknown effect %d", b[0])
		}
		d = replog.NewDecoder(en.Data[len(en.Data)-d.Len()-1:])
	}
	in.effect = decodeEffect(d)
	if err := d.Err(); err != nil {
		return intent{}, err
	}
	if !slices.Contains(intentCalls[in.effect.m], in.call) {
		return intent{}, fmt.Errorf("intent of %v for %s, which performs no such effect", in.effect.m, TypeName(in.call))
	}
	n := d.Uint()
	if n > maxProbes {
		return intent{}, fmt.Errorf("intent with %d probes", n)
	}
	for range n {
		p := probe{errno: wasi.Errno(d.Uint())}
		if p.exists() {
			p.filetype, p.ino = wasi.Filetype(d.Uint()), d.Uint()
		}
		in.probes = append(in.probes, p)
	}
	if err := d.Finish(); err != nil {
		return intent{}, err
	}
	if in.effect.m == 0 {
		return intent{}, fmt.Errorf("intent without an effect")
	}
	if want := probesOf(in.effect.m); int(n) != want {
		return intent{}, fmt.Errorf("intent of %v with %d probes, want %d", in.effect.m, n, want)
	}
	// Each intent has one encoding (a flag is 0 or 1, a file type fits
	// its byte): anything else is not what a recorder wrote.
	if !bytes.Equal(encodeIntent(in.call, in.before, in.effect, in.probes), en.Data) {
		return intent{}, fmt.Errorf("intent not in its canonical encoding")
	}
	return in, nil
}

// probesOf returns how many paths the pre-state of effect m covers.
func probesOf(m method) int {
	switch m {
	case mRename, mLink:
		return 2
	case mPwrite:
		return 0
	}
	return 1
}

// DescribeIntent renders the data of an intent entry for people (ftvm log
// show): the effect announced and the state of its paths before.
func DescribeIntent(data []byte) string {
	in, err := decodeIntent(replog.Entry{Data: data})
	if err != nil {
		return "malformed intent: " + err.Error()
	}
	f := in.effect
	s := fmt.Sprintf("%s of %s", f.m, TypeName(in.call))
	switch f.m {
	case mPwrite:
		s += fmt.Sprintf(": %d bytes to handle %d at %d", f.n, f.h, f.off)
	case mRename, mLink:
		s += fmt.Sprintf(": %q in %d to %q in %d", f.path, f.dir, f.path2, f.dir2)
	default:
		s += fmt.Sprintf(": %q in %d", f.path, f.dir)
	}
	for i, p := range in.probes {
		if i == 0 {
			s += "; before:"
		}
		if p.exists() {
			s += fmt.Sprintf(" %s ino %d", filetypeName(p.filetype), p.ino)
		} else {
			s += " " + p.errno.String()
		}
	}
	return s
}

func filetypeName(t wasi.Filetype) string {
	switch t {
	case wasi.FiletypeDirectory:
		return "directory"
	case wasi.FiletypeRegularFile:
		return "file"
	case wasi.FiletypeSymbolicLink:
		return "symlink"
	}
	return fmt.Sprintf("filetype %d", t)
}
