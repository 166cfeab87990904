package wasi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// The WASI state of a System travels with a VM snapshot (the live clone,
// time-travel debugging): arguments, environment, the descriptor table
// with flags, rights, offsets and Host handles, and the exit status. Host
// resources themselves (open files, connections) are not part of it; the
// Host on the other side must serve the same handles.
//
// Encoding, version 2: the magic "ftvmWASI", the version as a uvarint,
// then uvarints and length-prefixed strings:
//
//	args:   count, then each string
//	env:    count, then each string
//	exit:   1 byte exited, uvarint code
//	fds:    count, then for each descriptor in increasing fd order:
//	        fd, kind (1 byte), filetype (1 byte), handle, flags, rights,
//	        inheriting, offset, preopen flag (1 byte), preopen path,
//	        shutdown bits (1 byte), send credit (connections; 0 otherwise)
//
// A descriptor's rights never exceed what its kind allows (maxRights), as
// System never grants more and fd_fdstat_set_rights only drops them;
// decoding refuses a state that breaks this. Version 1 had no send
// credit; it is no longer read.

const stateMagic = "ftvmWASI"

// StateVersion is the version of the encoding MarshalState writes.
const StateVersion = 2

// MarshalState encodes the System's state. The encoding is deterministic:
// equal states give equal bytes.
func (s *System) MarshalState() ([]byte, error) {
	b := []byte(stateMagic)
	b = binary.AppendUvarint(b, StateVersion)
	b = appendStrings(b, s.args)
	b = appendStrings(b, s.env)
	b = appendBool(b, s.exited)
	b = binary.AppendUvarint(b, uint64(s.exitCode))
	fds := make([]uint32, 0, len(s.fds))
	for fd := range s.fds {
		fds = append(fds, fd)
	}
	slices.Sort(fds)
	b = binary.AppendUvarint(b, uint64(len(fds)))
	for _, fd := range fds {
		d := s.fds[fd]
		b = binary.AppendUvarint(b, uint64(fd))
		b = append(b, byte(d.kind), byte(d.filetype))
		b = binary.AppendUvarint(b, uint64(d.handle))
		b = binary.AppendUvarint(b, uint64(d.flags))
		b = binary.AppendUvarint(b, d.rights)
		b = binary.AppendUvarint(b, d.inheriting)
		b = binary.AppendUvarint(b, d.offset)
		b = appendBool(b, d.isPreopen)
		b = appendString(b, d.preopen)
		b = append(b, d.shut)
		b = binary.AppendUvarint(b, d.credit)
	}
	return b, nil
}

// UnmarshalState replaces the System's state by one MarshalState encoded.
// On error the System is unchanged.
func (s *System) UnmarshalState(data []byte) error {
	r := &stateReader{b: data}
	if string(r.bytes(len(stateMagic))) != stateMagic {
		return errors.New("wasi: state: bad magic")
	}
	if v := r.uvarint(); r.err == nil && v != StateVersion {
		return fmt.Errorf("wasi: state: version %d, want %d", v, StateVersion)
	}
	args := r.strings()
	env := r.strings()
	exited := r.bool()
	code := r.uvarint()
	if code > 1<<32-1 {
		r.fail("exit code out of range")
	}
	n := r.count(maxFDs)
	fds := make(map[uint32]*descriptor, n)
	last := -1
	for range n {
		if r.err != nil {
			break
		}
		fd := r.uvarint()
		if fd > 1<<32-1 || int64(fd) <= int64(last) {
			r.fail("descriptors out of order")
			break
		}
		last = int(fd)
		kind, ft := descKind(r.byte()), Filetype(r.byte())
		d := &descriptor{kind: kind, filetype: ft, handle: Handle(r.uvarint())}
		flags := r.uvarint()
		d.rights, d.inheriting, d.offset = r.uvarint(), r.uvarint(), r.uvarint()
		d.isPreopen = r.bool()
		d.preopen = r.string()
		d.shut = r.byte()
		d.credit = r.uvarint()
		switch {
		case kind == 0 || kind >= kindMax:
			r.fail("bad descriptor kind")
		case ft > FiletypeSymbolicLink:
			r.fail("bad filetype")
		case flags&^uint64(fdflagsAll) != 0:
			r.fail("bad fdflags")
		case d.rights&^rightsAll != 0 || d.inheriting&^rightsAll != 0:
			r.fail("bad rights")
		case d.rights&^maxRights(kind) != 0:
			// A restored directory must not gain fd_seek, say, which no
			// call could have given it.
			r.fail("rights beyond the descriptor's kind")
		case d.shut&^(ShutRd|ShutWr) != 0:
			r.fail("bad shutdown bits")
		case d.credit > SendWindow || d.credit != 0 && kind != kindConn:
			r.fail("bad send credit")
		case d.isPreopen != (d.preopen != "") || d.isPreopen && kind != kindDir:
			r.fail("bad preopen")
		}
		d.flags = uint16(flags)
		fds[uint32(fd)] = d
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	if r.err != nil {
		return fmt.Errorf("wasi: state: %w", r.err)
	}
	s.args, s.env, s.exited, s.exitCode, s.fds = args, env, exited, uint32(code), fds
	return nil
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendStrings(b []byte, list []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(list)))
	for _, v := range list {
		b = appendString(b, v)
	}
	return b
}

// stateReader decodes a state; its first error sticks.
type stateReader struct {
	b   []byte
	err error
}

func (r *stateReader) fail(msg string) {
	if r.err == nil {
		r.err = errors.New(msg)
	}
}

func (r *stateReader) bytes(n int) []byte {
	if r.err != nil || n > len(r.b) {
		r.fail("truncated")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *stateReader) byte() byte {
	if v := r.bytes(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *stateReader) bool() bool {
	switch r.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	r.fail("bad boolean")
	return false
}

func (r *stateReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	// Only the minimal encoding is accepted, so that every state has
	// exactly one encoding and a snapshot's bytes identify its state.
	if n != len(binary.AppendUvarint(nil, v)) {
		r.fail("non-minimal uvarint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a count of at most limit items, each at least one byte long.
func (r *stateReader) count(limit int) int {
	n := r.uvarint()
	if n > uint64(limit) || n > uint64(len(r.b)) {
		r.fail("count out of range")
		return 0
	}
	return int(n)
}

func (r *stateReader) string() string {
	n := r.count(len(r.b))
	return string(r.bytes(n))
}

func (r *stateReader) strings() []string {
	n := r.count(len(r.b))
	list := make([]string, 0, n)
	for range n {
		list = append(list, r.string())
	}
	return list
}
