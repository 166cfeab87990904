// Command cpu-fmt is a CPU-bound guest: heavy fmt.Sprintf and strconv
// formatting and parsing of integers and floats, folded into a digest.
//
// Usage: cpu-fmt [iterations]   (default 200000)
package main

import (
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"strconv"
)

func main() {
	n := 200000
	if len(os.Args) > 1 {
		v, err := strconv.Atoi(os.Args[1])
		if err != nil || v < 0 {
			fmt.Fprintf(os.Stderr, "cpu-fmt: bad iterations %q\n", os.Args[1])
			os.Exit(2)
		}
		n = v
	}
	h := fnv.New64a()
	x := uint64(1)
	var parsed float64
	var ints int64
	var last string
	for i := 0; i < n; i++ {
		// LCG (Knuth MMIX)
		x = x*6364136223846793005 + 1442695040888963407
		iv := int64(x >> 20)
		fv := math.Float64frombits(0x3ff0000000000000|x>>12) * math.Pow(10, float64(int(x>>58)%40-20))
		s := fmt.Sprintf("%d|%x|%08.3f|%q|%v|%e|%-6s|%+.4g", iv, x, fv, "s"+strconv.Itoa(i), i%3 == 0, fv, "ab", -fv)
		h.Write([]byte(s))

		t := strconv.FormatFloat(fv, 'g', -1, 64)
		f, err := strconv.ParseFloat(t, 64)
		if err != nil || f != fv {
			fmt.Fprintf(os.Stderr, "cpu-fmt: float round trip of %v: %q %v %v\n", fv, t, f, err)
			os.Exit(1)
		}
		parsed += f / (1 + math.Abs(f))
		u := strconv.FormatInt(iv, 36)
		back, err := strconv.ParseInt(u, 36, 64)
		if err != nil || back != iv {
			fmt.Fprintf(os.Stderr, "cpu-fmt: int round trip of %d: %q\n", iv, u)
			os.Exit(1)
		}
		ints += back & 0xffff
		q := strconv.Quote(s[:min(len(s), 24)] + "\t\x00é")
		h.Write([]byte(q))
		h.Write(strconv.AppendUint(nil, x, 10))
		last = s
	}
	fmt.Printf("fmt n=%d fnv=%016x parsed=%.9f ints=%d\n", n, h.Sum64(), parsed, ints)
	fmt.Printf("last=%s\n", last)
}
