package wasi

import (
	"unicode/utf8"

	"ftvm/wasm"
)

// The engine's memory is what System is given.
var _ Memory = (*wasm.Memory)(nil)

// Memory is the guest's linear memory as System sees it; *wasm.Memory
// implements it. Read returns a view that System only reads from: every
// write into guest memory goes through Write, PutUint32 or PutUint64, so
// that a Memory tracking dirty pages sees all of them. All offsets are
// bounds-checked by the Memory; a false result means out of range.
type Memory interface {
	Read(off, n uint32) ([]byte, bool)
	Write(off uint32, p []byte) bool
	ReadUint32(off uint32) (uint32, bool)
	ReadUint64(off uint32) (uint64, bool)
	PutUint32(off uint32, v uint32) bool
	PutUint64(off uint32, v uint64) bool
	MarkDirty(off, n uint32)
	Size() uint32
}

// noMemory stands in for the memory of a module that exports none: every
// access is out of range.
type noMemory struct{}

func (noMemory) Read(off, n uint32) ([]byte, bool) { return nil, n == 0 && off == 0 }
func (noMemory) Write(off uint32, p []byte) bool   { return len(p) == 0 && off == 0 }
func (noMemory) ReadUint32(uint32) (uint32, bool)  { return 0, false }
func (noMemory) ReadUint64(uint32) (uint64, bool)  { return 0, false }
func (noMemory) PutUint32(uint32, uint32) bool     { return false }
func (noMemory) PutUint64(uint32, uint64) bool     { return false }
func (noMemory) MarkDirty(uint32, uint32)          {}
func (noMemory) Size() uint32                      { return 0 }

// inRange reports whether n bytes at off lie inside mem.
func inRange(mem Memory, off, n uint32) bool {
	return uint64(off)+uint64(n) <= uint64(mem.Size())
}

// maxPathLen bounds the paths a guest may pass, as PATH_MAX does.
const maxPathLen = 4096

// readPath reads a path argument: valid UTF-8 without NUL bytes.
func readPath(mem Memory, off, n uint32) (string, Errno) {
	if n > maxPathLen {
		return "", ENAMETOOLONG
	}
	b, ok := mem.Read(off, n)
	if !ok {
		return "", EFAULT
	}
	if !utf8.Valid(b) {
		return "", EILSEQ
	}
	for _, c := range b {
		if c == 0 {
			return "", EINVAL
		}
	}
	return string(b), ESUCCESS
}

// iovMax bounds the iovecs of one call, as IOV_MAX does on Linux.
const iovMax = 1024

// iovec is one element of an iovec or ciovec array.
type iovec struct{ buf, len uint32 }

// readIovecs decodes n iovecs at off, checks that each buffer lies in
// memory, and returns them with their total length.
func readIovecs(mem Memory, off, n uint32) ([]iovec, uint64, Errno) {
	if n > iovMax {
		return nil, 0, EINVAL
	}
	if uint64(n)*8 > uint64(mem.Size()) || !inRange(mem, off, n*8) {
		return nil, 0, EFAULT
	}
	iovs := make([]iovec, n)
	var total uint64
	for i := range iovs {
		p := off + uint32(i)*8
		buf, ok1 := mem.ReadUint32(p)
		ln, ok2 := mem.ReadUint32(p + 4)
		if !ok1 || !ok2 {
			return nil, 0, EFAULT
		}
		if !inRange(mem, buf, ln) {
			return nil, 0, EFAULT
		}
		iovs[i] = iovec{buf, ln}
		total += uint64(ln)
	}
	return iovs, total, ESUCCESS
}

// gather copies the bytes the iovecs point at, at most limit of them, into
// one new slice. Iovecs may overlap, so their total length is not bounded
// by the memory's size; limit is.
func gather(mem Memory, iovs []iovec, total uint64, limit uint32) []byte {
	out := make([]byte, 0, min(total, uint64(limit)))
	for _, v := range iovs {
		room := uint64(limit) - uint64(len(out))
		if room == 0 {
			break
		}
		b, _ := mem.Read(v.buf, uint32(min(uint64(v.len), room))) // checked by readIovecs
		out = append(out, b...)
	}
	return out
}

// scatter copies data into the iovecs in order and returns how much it
// copied. Overlapping iovecs are written in order, as readv does.
func scatter(mem Memory, iovs []iovec, data []byte) uint32 {
	var n uint32
	for _, v := range iovs {
		if len(data) == 0 {
			break
		}
		k := min(uint32(len(data)), v.len)
		mem.Write(v.buf, data[:k])
		data = data[k:]
		n += k
	}
	return n
}
