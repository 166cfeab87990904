package wasm

import (
	"encoding/binary"
	"math/bits"
	"runtime"
)

// PageSize is the size of a WebAssembly memory page.
const PageSize = 65536

// DirtyPageSize is the granularity of dirty tracking: 4 KiB, the page size of
// the hosts the live clone copies between.
const DirtyPageSize = 4096

const dirtyShift = 12

// Memory is a linear memory. It records which 4 KiB pages were written since
// the last ResetDirty, whether by the guest (stores, memory.copy, memory.fill,
// memory.init, memory.grow) or by the host during a VM exit through Write,
// PutUint32, PutUint64 or MarkDirty.
//
// A Memory is not safe for concurrent use; the VM that owns it serialises
// guest execution and host calls.
type Memory struct {
	data []byte
	// mapping, if not nil, is the address space reserved for the memory's
	// maximum (linux): data is its accessible start and never moves. Else
	// data is on the Go heap and a grow may move it.
	mapping []byte
	cleanup runtime.Cleanup // unmaps mapping once m is unreachable
	max     uint32          // pages, already clamped to the engine's limit
	dirty   []uint64
	// The declared maximum, for import matching.
	declMax uint32
	hasMax  bool
}

func newMemory(minPages, maxPages uint32) *Memory {
	m := &Memory{max: maxPages}
	if !m.mapMemory(minPages) {
		// No mapping (another system, or no address space for it): the
		// heap serves, at the cost of copies on grow.
		m.data = make([]byte, int(minPages)*PageSize)
	}
	m.dirty = make([]uint64, dirtyWords(len(m.data)))
	return m
}

// NewMemory returns a memory of min pages that may grow to max pages; used
// by hosts that provide a memory to import.
func NewMemory(min, max uint32) *Memory {
	m := newMemory(min, max)
	m.declMax, m.hasMax = max, true
	return m
}

func (*Memory) isExtern() {}

func dirtyWords(n int) int {
	pages := (n + DirtyPageSize - 1) / DirtyPageSize
	return (pages + 63) / 64
}

// Bytes returns the memory's contents. The slice is invalidated by a grow,
// and must not be used once m is unreachable: it may point into a mapping
// that m's cleanup unmaps (keep m alive with it, or copy). A host that
// writes through it must call MarkDirty.
func (m *Memory) Bytes() []byte { return m.data }

// Size returns the size in bytes.
func (m *Memory) Size() uint32 { return uint32(len(m.data)) }

// Pages returns the size in 64 KiB pages.
func (m *Memory) Pages() uint32 { return uint32(len(m.data) / PageSize) }

// MaxPages returns the most pages the memory may grow to.
func (m *Memory) MaxPages() uint32 { return m.max }

// Read returns a view of n bytes at off, or false if out of range. As for
// Bytes, the view must not outlive m.
func (m *Memory) Read(off, n uint32) ([]byte, bool) {
	end := uint64(off) + uint64(n)
	if end > uint64(len(m.data)) {
		return nil, false
	}
	return m.data[off:end:end], true
}

// Write copies p to off and marks the pages dirty; false if out of range.
func (m *Memory) Write(off uint32, p []byte) bool {
	end := uint64(off) + uint64(len(p))
	if end > uint64(len(m.data)) {
		return false
	}
	copy(m.data[off:], p)
	m.MarkDirty(off, uint32(len(p)))
	return true
}

// ReadUint32 reads a little-endian uint32.
func (m *Memory) ReadUint32(off uint32) (uint32, bool) {
	b, ok := m.Read(off, 4)
	if !ok {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b), true
}

// ReadUint64 reads a little-endian uint64.
func (m *Memory) ReadUint64(off uint32) (uint64, bool) {
	b, ok := m.Read(off, 8)
	if !ok {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b), true
}

// PutUint32 writes a little-endian uint32.
func (m *Memory) PutUint32(off uint32, v uint32) bool {
	b, ok := m.Read(off, 4)
	if !ok {
		return false
	}
	binary.LittleEndian.PutUint32(b, v)
	m.MarkDirty(off, 4)
	return true
}

// PutUint64 writes a little-endian uint64.
func (m *Memory) PutUint64(off uint32, v uint64) bool {
	b, ok := m.Read(off, 8)
	if !ok {
		return false
	}
	binary.LittleEndian.PutUint64(b, v)
	m.MarkDirty(off, 8)
	return true
}

// MarkDirty records that n bytes at off were written.
func (m *Memory) MarkDirty(off, n uint32) {
	if n == 0 {
		return
	}
	first := uint64(off) >> dirtyShift
	last := (uint64(off) + uint64(n) - 1) >> dirtyShift
	for p := first; p <= last; p++ {
		w := p >> 6
		if w >= uint64(len(m.dirty)) {
			return
		}
		m.dirty[w] |= 1 << (p & 63)
	}
}

// markStore is MarkDirty for a store of at most 8 bytes, on the hot path.
func (m *Memory) markStore(addr uint64, n uint64) {
	p := addr >> dirtyShift
	m.dirty[p>>6] |= 1 << (p & 63)
	q := (addr + n - 1) >> dirtyShift
	m.dirty[q>>6] |= 1 << (q & 63)
}

// DirtyPages returns the indices of the 4 KiB pages written since the last
// ResetDirty, in increasing order.
func (m *Memory) DirtyPages() []uint32 {
	var out []uint32
	for w, word := range m.dirty {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			out = append(out, uint32(w*64+b))
			word &= word - 1
		}
	}
	return out
}

// DirtyCount returns how many 4 KiB pages are dirty.
func (m *Memory) DirtyCount() int {
	n := 0
	for _, w := range m.dirty {
		n += bits.OnesCount64(w)
	}
	return n
}

// ResetDirty forgets all dirty marks.
func (m *Memory) ResetDirty() { clear(m.dirty) }

// grow adds delta pages and returns the old size in pages, or -1 if the
// memory may not grow that far. New pages count as dirty: a clone must learn
// the new size and that the pages are zero.
func (m *Memory) grow(delta uint32) int32 {
	old := m.Pages()
	if uint64(old)+uint64(delta) > uint64(m.max) {
		return -1
	}
	if delta == 0 {
		return int32(old)
	}
	newLen := int(old+delta) * PageSize
	switch {
	case m.mapping != nil:
		// In place: the new pages are fresh anonymous pages, zero.
		if !m.commit(len(m.data), newLen) {
			return -1 // the system refuses the memory (commit limit)
		}
		m.data = m.mapping[:newLen:newLen]
	case newLen <= cap(m.data):
		m.data = m.data[:newLen]
	default:
		nd := make([]byte, newLen, newLen+newLen/4)
		copy(nd, m.data)
		m.data = nd[:newLen]
	}
	if w := dirtyWords(newLen); w > len(m.dirty) {
		m.dirty = append(m.dirty, make([]uint64, w-len(m.dirty))...)
	}
	m.MarkDirty(old*PageSize, delta*PageSize)
	return int32(old)
}

// Grow adds delta pages, as memory.grow does; it returns the old size in
// pages, or -1.
func (m *Memory) Grow(delta uint32) int32 { return m.grow(delta) }

// Free gives the memory's pages back to the system now rather than once
// the memory is unreachable: for a memory its owner is done with, and
// large. The memory is empty afterwards, and may not grow.
func (m *Memory) Free() {
	m.free()
	m.mapping, m.data, m.dirty, m.max = nil, nil, nil, 0
}

// zero clears the memory's contents, giving a mapping's pages back to the
// system rather than writing them.
func (m *Memory) zero() {
	if m.mapping == nil || !m.release() {
		clear(m.data)
	}
}

// copyIn copies src to the start of the memory, whose contents are zero,
// skipping the 4 KiB pages of src that are zero, so that a mapping commits
// only the pages with contents. It does not mark the pages dirty.
func (m *Memory) copyIn(src []byte) {
	const ps = DirtyPageSize
	for off := 0; off < len(src); off += ps {
		p := src[off:min(off+ps, len(src))]
		if !isZero(p) {
			copy(m.data[off:], p)
		}
	}
}
