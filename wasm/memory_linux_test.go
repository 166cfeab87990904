package wasm

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// TestMemoryGrowsInPlace grows a memory 16 pages at a time to 256 MiB: its
// bytes never move, the new ones are zero and dirty, the old ones stay.
func TestMemoryGrowsInPlace(t *testing.T) {
	const step, most = 16, 4096
	m := newMemory(1, DefaultMaxMemoryPages)
	if m.mapping == nil {
		t.Fatal("the memory is not in a mapping")
	}
	base := unsafe.SliceData(m.data)
	m.PutUint32(0, 0xfeedbeef)
	for m.Pages() < most {
		old := m.Pages()
		m.ResetDirty()
		if got := m.Grow(step); got != int32(old) {
			t.Fatalf("grow from %d pages returned %d", old, got)
		}
		if p := unsafe.SliceData(m.data); p != base {
			t.Fatalf("at %d pages the memory moved from %p to %p", m.Pages(), base, p)
		}
		if int(m.Size()) != len(m.Bytes()) || m.Pages() != old+step {
			t.Fatalf("size %d, %d bytes, %d pages after growing from %d", m.Size(), len(m.Bytes()), m.Pages(), old)
		}
		fresh := m.data[old*PageSize:]
		if !isZero(fresh) {
			t.Fatalf("the pages grown from %d are not zero", old)
		}
		dirty := m.DirtyPages()
		first := old * PageSize / DirtyPageSize
		if len(dirty) != step*PageSize/DirtyPageSize || dirty[0] != first || dirty[len(dirty)-1] != first+uint32(len(dirty))-1 {
			t.Fatalf("growing from %d pages marked %d pages dirty, from %v", old, len(dirty), dirty[:min(len(dirty), 1)])
		}
		// A mark in the first new page, checked at the end.
		m.PutUint32(old*PageSize, old)
	}
	if v, _ := m.ReadUint32(0); v != 0xfeedbeef {
		t.Fatalf("the first word is %#x", v)
	}
	for p := uint32(1); p < m.Pages(); p += step {
		if v, _ := m.ReadUint32(p * PageSize); v != p {
			t.Fatalf("page %d holds %d", p, v)
		}
	}
	end := m.Pages()
	if m.Grow(DefaultMaxMemoryPages-end+1) != -1 || m.Pages() != end {
		t.Fatal("a grow past the maximum did not fail")
	}
	if m.Grow(DefaultMaxMemoryPages-end) != int32(end) || unsafe.SliceData(m.data) != base {
		t.Fatal("a grow to the maximum failed or moved the memory")
	}
}

// TestMemoryHeapFallback runs the memory on the heap, as when mmap fails.
func TestMemoryHeapFallback(t *testing.T) {
	heapMemory = true
	m := newMemory(1, 64)
	heapMemory = false
	if m.mapping != nil {
		t.Fatal("the memory is in a mapping")
	}
	m.PutUint32(8, 7)
	m.ResetDirty()
	if m.Grow(63) != 1 || m.DirtyCount() != 63*PageSize/DirtyPageSize || m.Grow(1) != -1 {
		t.Fatal("grow on the heap")
	}
	if v, _ := m.ReadUint32(8); v != 7 || !isZero(m.data[PageSize:]) {
		t.Fatal("contents after grow on the heap")
	}
}

func mapsLines(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Skip(err)
	}
	return bytes.Count(b, []byte{'\n'})
}

// waitUnmapped collects garbage until at most want mappings are live; a
// bounded number of rounds, no clock.
func waitUnmapped(want int64) int64 {
	for range 500 {
		if liveMappings.Load() <= want {
			break
		}
		runtime.GC()
		time.Sleep(time.Millisecond) // lets the cleanup goroutine run
	}
	return liveMappings.Load()
}

// TestManyMemoriesReserveOnly makes 2,000 memories of a 1 GiB maximum at
// once (2 TiB of address space, which only a reservation that commits
// nothing allows), then drops them: the GC unmaps them.
func TestManyMemoriesReserveOnly(t *testing.T) {
	const n = 2000
	before, lines := waitUnmapped(0), mapsLines(t)
	mems := make([]*Memory, n)
	for i := range mems {
		m := newMemory(1, DefaultMaxMemoryPages)
		if m.mapping == nil || len(m.mapping) != DefaultMaxMemoryPages*PageSize {
			t.Fatalf("memory %d is not in a mapping of its maximum", i)
		}
		m.PutUint32(uint32(i%PageSize)&^3, uint32(i))
		mems[i] = m
	}
	if got := liveMappings.Load() - before; got != n {
		t.Fatalf("%d mappings live, want %d", got, n)
	}
	if got := mapsLines(t) - lines; got < n {
		t.Fatalf("/proc/self/maps has %d more lines with %d memories", got, n)
	}
	for i, m := range mems {
		if v, _ := m.ReadUint32(uint32(i%PageSize) &^ 3); v != uint32(i) {
			t.Fatalf("memory %d holds %d", i, v)
		}
	}
	full := mapsLines(t)
	mems = nil
	runtime.KeepAlive(mems)
	if left := waitUnmapped(before); left != before {
		t.Fatalf("%d of %d mappings left after the memories were dropped", left-before, n)
	}
	if got := full - mapsLines(t); got < n {
		t.Fatalf("/proc/self/maps has only %d fewer lines once %d memories are gone", got, n)
	}
}

// TestMemoryPeakRSS reports the peak RSS (VmHWM) of a process whose one
// memory grows to 960 MiB, 16 pages at a time, each page written once, on
// the heap and in a mapping. It takes about 4 GiB of memory, so it runs
// only with FTVM_WASM_RSS=1 (go test ./wasm -run PeakRSS -v).
func TestMemoryPeakRSS(t *testing.T) {
	if mode := os.Getenv("FTVM_WASM_RSS_CHILD"); mode != "" {
		heapMemory = mode == "heap"
		m := newMemory(0, DefaultMaxMemoryPages)
		for m.Pages() < 960*1024*1024/PageSize {
			old := m.Size()
			m.Grow(16)
			for off := old; off < m.Size(); off += DirtyPageSize {
				m.PutUint32(off, off)
			}
		}
		fmt.Printf("mapped=%v pages=%d VmHWM=%d kB\n", m.mapping != nil, m.Pages(), peakRSS(t))
		return
	}
	if os.Getenv("FTVM_WASM_RSS") != "1" {
		t.Skip("set FTVM_WASM_RSS=1 to measure")
	}
	for _, mode := range []string{"heap", "mapping"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryPeakRSS$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FTVM_WASM_RSS_CHILD="+mode)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", mode, err, out)
		}
		line, _, _ := strings.Cut(string(out), "\n")
		t.Logf("%s: %s", mode, line)
	}
}

func peakRSS(t *testing.T) int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(v, "kB")))
			return n
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// TestMemoryFree: Free unmaps a memory's mapping at once, not at the GC, and
// leaves the memory empty.
func TestMemoryFree(t *testing.T) {
	m := newMemory(16, 1024)
	if m.mapping == nil {
		t.Skip("no mapping here")
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(m.mapping)))
	if !isMapped(t, start) {
		t.Fatalf("%#x: not in /proc/self/maps", start)
	}
	m.Free()
	if isMapped(t, start) {
		t.Errorf("%#x: still mapped after Free", start)
	}
	if m.Size() != 0 || m.Grow(1) != -1 {
		t.Errorf("freed memory: size %d, grows", m.Size())
	}
}

// isMapped reports whether address a lies in a mapping of this process.
func isMapped(t *testing.T, a uintptr) bool {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		span, _, _ := strings.Cut(line, " ")
		lo, hi, _ := strings.Cut(span, "-")
		l, err1 := strconv.ParseUint(lo, 16, 64)
		h, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && uint64(a) >= l && uint64(a) < h {
			return true
		}
	}
	return false
}
