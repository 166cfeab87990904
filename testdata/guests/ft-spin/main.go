// Command ft-spin computes without end, reading the clock now and then, for
// flow-control and fairness tests: a primary must slow it when its backup
// falls behind. It prints a line every N hashes (its first argument;
// 10000 if none), which a benchmark counts as the guest's progress, each
// line starting with its second argument if there is one (to tell VMs
// apart in a host's output).
package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	every := 10000
	if len(os.Args) > 1 {
		n, err := strconv.Atoi(os.Args[1])
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "ft-spin: %q: want a positive count of hashes per line\n", os.Args[1])
			os.Exit(2)
		}
		every = n
	}
	tag := ""
	if len(os.Args) > 2 {
		tag = os.Args[2] + " "
	}
	var sum [32]byte
	start := time.Now()
	for i := 0; ; i++ {
		sum = sha256.Sum256(sum[:])
		if i%every == 0 {
			fmt.Printf("%s%d hashes after %v: %x\n", tag, i, time.Since(start).Round(time.Millisecond), sum[:4])
		}
	}
}
