// Command cpu-sort is a CPU-bound guest: it sorts pseudo-random integers
// from a fixed-seed generator, then stable-sorts an eighth as many keyed
// records with many equal keys, and prints checksums of both results.
//
// Usage: cpu-sort [count]   (default 1000000)
package main

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
)

type pair struct {
	key uint32
	idx int
}

func main() {
	n := 1000000
	if len(os.Args) > 1 {
		v, err := strconv.Atoi(os.Args[1])
		if err != nil || v < 0 {
			fmt.Fprintf(os.Stderr, "cpu-sort: bad count %q\n", os.Args[1])
			os.Exit(2)
		}
		n = v
	}
	rng := rand.New(rand.NewPCG(0x5eed, 0xf7))
	ints := make([]int64, n)
	pairs := make([]pair, n/8)
	for i := range ints {
		ints[i] = rng.Int64() - (1 << 62)
	}
	for i := range pairs {
		pairs[i] = pair{key: uint32(rng.IntN(1 << 10)), idx: i}
	}
	slices.Sort(ints)
	if !slices.IsSorted(ints) {
		fmt.Fprintln(os.Stderr, "cpu-sort: not sorted")
		os.Exit(1)
	}
	// A stable sort of keys with many duplicates: the order of equal keys
	// is defined, so the checksum covers it.
	slices.SortStableFunc(pairs, func(a, b pair) int { return cmp.Compare(a.key, b.key) })

	h := fnv.New64a()
	var b [8]byte
	for _, v := range ints {
		u := uint64(v)
		for i := range b {
			b[i] = byte(u >> (8 * i))
		}
		h.Write(b[:])
	}
	var weighted uint64
	for i, p := range pairs {
		weighted = weighted*31 + uint64(p.key)*uint64(i+1) + uint64(p.idx)
	}
	var median int64
	if n > 0 {
		median = ints[n/2]
	}
	fmt.Printf("sort n=%d min=%d median=%d fnv=%016x stable=%016x\n",
		n, first(ints), median, h.Sum64(), weighted)
}

func first(s []int64) int64 {
	if len(s) == 0 {
		return 0
	}
	return s[0]
}
