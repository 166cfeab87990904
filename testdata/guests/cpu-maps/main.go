// Command cpu-maps is a CPU-bound guest: it inserts, looks up and deletes
// millions of map entries and prints order-independent results.
//
// Usage: cpu-maps [ops]   (default 2000000)
package main

import (
	"fmt"
	"os"
	"strconv"
)

func main() {
	n := 2000000
	if len(os.Args) > 1 {
		v, err := strconv.Atoi(os.Args[1])
		if err != nil || v < 0 {
			fmt.Fprintf(os.Stderr, "cpu-maps: bad count %q\n", os.Args[1])
			os.Exit(2)
		}
		n = v
	}
	// splitmix64: a fixed-seed key stream with duplicates folded by the mask.
	state := uint64(42)
	next := func() uint64 {
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		return z ^ (z >> 31)
	}
	mask := uint64(1)
	for mask < uint64(n) {
		mask <<= 1
	}
	mask--

	m := make(map[uint64]uint64)
	for i := 0; i < n; i++ {
		k := next() & mask
		m[k] += uint64(i) + 1
	}
	var hits, sum uint64
	for i := 0; i < n; i++ {
		if v, ok := m[next()&mask]; ok {
			hits++
			sum += v
		}
	}
	deleted := 0
	for i := 0; i < n/2; i++ {
		k := next() & mask
		if _, ok := m[k]; ok {
			delete(m, k)
			deleted++
		}
	}
	// Order-independent fold over what is left.
	var xor, total uint64
	for k, v := range m {
		xor ^= k*0x9e3779b97f4a7c15 ^ v
		total += v
	}

	// String keys: counting words of a generated text.
	words := make(map[string]int)
	for i := 0; i < n/4; i++ {
		w := "w" + strconv.FormatUint(next()%uint64(n/16+1), 36)
		words[w]++
	}
	maxCount, maxWord := 0, ""
	for w, c := range words {
		if c > maxCount || c == maxCount && w < maxWord {
			maxCount, maxWord = c, w
		}
	}
	fmt.Printf("maps n=%d live=%d hits=%d sum=%d deleted=%d xor=%016x total=%d words=%d top=%s:%d\n",
		n, len(m), hits, sum, deleted, xor, total, len(words), maxWord, maxCount)
}
