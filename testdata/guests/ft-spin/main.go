// Command ft-spin computes without end, reading the clock now and then, for
// flow-control tests: a primary must slow it when its backup falls behind.
package main

import (
	"crypto/sha256"
	"fmt"
	"time"
)

func main() {
	var sum [32]byte
	start := time.Now()
	for i := 0; ; i++ {
		sum = sha256.Sum256(sum[:])
		if i%10000 == 0 {
			fmt.Printf("%d hashes after %v: %x\n", i, time.Since(start).Round(time.Millisecond), sum[:4])
		}
	}
}
