package wasm

import (
	"math"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// On linux a linear memory lives in its own anonymous mapping, which
// reserves the memory's maximum as PROT_NONE address space (not counted
// against the commit limit) and makes pages accessible as the memory grows.
// A grow never copies and the pages the guest never touched cost nothing,
// where a heap slice would leave the old arrays to the GC, which lets the
// heap reach twice the live size before it returns memory.

// heapMemory makes new memories use the heap, as when mmap fails; for tests.
var heapMemory = false

// liveMappings counts the mappings not yet unmapped; for tests.
var liveMappings atomic.Int64

// mapMemory reserves m.max pages and makes the first pages accessible; false
// if it cannot, and then the caller falls back to the heap.
func (m *Memory) mapMemory(pages uint32) bool {
	size := uint64(m.max) * PageSize
	if heapMemory || size == 0 || size > math.MaxInt {
		return false
	}
	b, err := unix.Mmap(-1, 0, int(size), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return false
	}
	n := int(pages) * PageSize
	if n > 0 && unix.Mprotect(b[:n], unix.PROT_READ|unix.PROT_WRITE) != nil {
		_ = unix.Munmap(b)
		return false
	}
	liveMappings.Add(1)
	m.mapping, m.data = b, b[:n:n]
	// The GC does not see slices into the mapping, so the mapping must
	// outlive every use of them. Who uses them, and what keeps m alive
	// meanwhile:
	//   - the interpreter's local mem and native code's nativeCtx.mem, set
	//     from inst.mem for a run; the run holds inst (runCompiled uses it
	//     after native code returns), which holds m;
	//   - Read, Bytes and the methods of m, within a host call or a
	//     snapshot, whose caller holds the instance or m (the WASI call's
	//     context holds m, vmm holds m while it copies pages out);
	//   - importers of an exported memory, whose instances hold m.
	// Nothing keeps a view past the call that took it; snapshots, clones
	// and restores copy. A cleanup, unlike a finalizer, cannot resurrect m
	// and runs only once m is unreachable, so after every such use.
	m.cleanup = runtime.AddCleanup(m, unmapMemory, b)
	return true
}

// free unmaps the mapping now, if there is one.
func (m *Memory) free() {
	if m.mapping != nil {
		m.cleanup.Stop()
		unmapMemory(m.mapping)
	}
}

func unmapMemory(b []byte) {
	if unix.Munmap(b) == nil {
		liveMappings.Add(-1)
	}
}

// commit makes the bytes [from, to) of the mapping accessible.
func (m *Memory) commit(from, to int) bool {
	return unix.Mprotect(m.mapping[from:to], unix.PROT_READ|unix.PROT_WRITE) == nil
}

// release gives the mapping's accessible pages back to the system; they
// read as zero afterwards (MADV_DONTNEED on private anonymous memory).
func (m *Memory) release() bool {
	return len(m.data) == 0 || unix.Madvise(m.data, unix.MADV_DONTNEED) == nil
}
