// Command cpu-sha256 is a CPU-bound guest: it computes the SHA-256 of a
// large deterministic buffer and prints it in hex.
//
// Usage: cpu-sha256 [bytes]   (default 16 MiB)
package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
)

func main() {
	n := 16 << 20
	if len(os.Args) > 1 {
		v, err := strconv.Atoi(os.Args[1])
		if err != nil || v < 0 {
			fmt.Fprintf(os.Stderr, "cpu-sha256: bad size %q\n", os.Args[1])
			os.Exit(2)
		}
		n = v
	}
	buf := make([]byte, (n+7)&^7)
	x := uint64(0x9e3779b97f4a7c15)
	for i := 0; i < len(buf); i += 8 {
		// xorshift64*
		x ^= x >> 12
		x ^= x << 25
		x ^= x >> 27
		binary.LittleEndian.PutUint64(buf[i:], x*0x2545f4914f6cdd1d)
	}
	buf = buf[:n]
	sum := sha256.Sum256(buf)
	// A second pass through the streaming interface in uneven chunks must
	// agree with the one-shot sum.
	h := sha256.New()
	for off, step := 0, 1; off < len(buf); step = step*7%4093 + 1 {
		end := min(off+step, len(buf))
		h.Write(buf[off:end])
		off = end
	}
	if got := h.Sum(nil); string(got) != string(sum[:]) {
		fmt.Fprintln(os.Stderr, "cpu-sha256: streaming and one-shot sums differ")
		os.Exit(1)
	}
	fmt.Printf("sha256 %d %x\n", n, sum)
}
