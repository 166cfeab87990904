// Command cpu-fib is a CPU-bound microbenchmark guest: naive recursive
// Fibonacci, dominated by calls, returns and integer arithmetic.
//
// Usage: cpu-fib [n]   (default 32)
package main

import (
	"fmt"
	"os"
	"strconv"
)

//go:noinline
func fib(n int) int {
	if n < 2 {
		return n
	}
	return fib(n-1) + fib(n-2)
}

func main() {
	n := 32
	if len(os.Args) > 1 {
		v, err := strconv.Atoi(os.Args[1])
		if err != nil || v < 0 || v > 90 {
			fmt.Fprintf(os.Stderr, "cpu-fib: bad n %q\n", os.Args[1])
			os.Exit(2)
		}
		n = v
	}
	fmt.Printf("fib(%d) = %d\n", n, fib(n))
}
