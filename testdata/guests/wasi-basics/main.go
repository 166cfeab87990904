// Command wasi-basics exercises the WASI calls of a Go guest that do not
// touch files or sockets: arguments, environment, clocks, sleeping and
// timers, randomness, stdin and the exit status.
//
// Usage: wasi-basics MODE [ARGS...] where MODE is one of
//
//	env          print the arguments and the environment (sorted)
//	clock        check the clocks, sleeps and timers; print "clock ok"
//	random       check crypto/rand and math/rand; print "random ok"
//	stdin        read stdin to its end, print its length and it upper-cased
//	exit CODE    exit with status CODE
package main

import (
	"bytes"
	crand "crypto/rand"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"time"
)

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "wasi-basics: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: wasi-basics MODE [ARGS...]")
	}
	switch os.Args[1] {
	case "env":
		for i, a := range os.Args {
			fmt.Printf("arg %d %q\n", i, a)
		}
		env := os.Environ()
		slices.Sort(env)
		for _, e := range env {
			fmt.Printf("env %q\n", e)
		}
	case "clock":
		clock()
	case "random":
		random()
	case "stdin":
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			fail("reading stdin: %v", err)
		}
		fmt.Printf("stdin %d bytes\n%s", len(b), bytes.ToUpper(b))
	case "exit":
		code, err := strconv.Atoi(os.Args[2])
		if err != nil {
			fail("bad code: %v", err)
		}
		fmt.Println("exiting")
		os.Exit(code)
	default:
		fail("unknown mode %q", os.Args[1])
	}
}

func clock() {
	now := time.Now()
	if now.Year() < 2020 {
		fail("wall clock in %d", now.Year())
	}
	const d = 30 * time.Millisecond
	start := time.Now()
	time.Sleep(d)
	if el := time.Since(start); el < d {
		fail("slept %v, want at least %v", el, d)
	}
	select {
	case <-time.After(d):
	case <-time.After(10 * time.Second):
		fail("the shorter timer did not fire first")
	}
	tk := time.NewTicker(5 * time.Millisecond)
	for range 3 {
		<-tk.C
	}
	tk.Stop()
	// Goroutines woken by timers, interleaved.
	done := make(chan int, 3)
	for i := range 3 {
		go func() {
			time.Sleep(time.Duration(3-i) * 5 * time.Millisecond)
			done <- i
		}()
	}
	var order []int
	for range 3 {
		order = append(order, <-done)
	}
	if !slices.Equal(order, []int{2, 1, 0}) {
		fail("timers fired in order %v", order)
	}
	if time.Since(start) <= 0 {
		fail("monotonic clock went backwards")
	}
	fmt.Println("clock ok")
}

func random() {
	b := make([]byte, 64)
	if _, err := crand.Read(b); err != nil {
		fail("crypto/rand: %v", err)
	}
	if bytes.Count(b, []byte{0}) == len(b) {
		fail("crypto/rand gave zeros")
	}
	big := make([]byte, 3<<20) // more than one random_get chunk
	if _, err := crand.Read(big); err != nil {
		fail("crypto/rand: %v", err)
	}
	if bytes.Equal(big[:1<<20], big[1<<20:2<<20]) {
		fail("random chunks repeat")
	}
	n := rand.IntN(1000)
	if n < 0 || n >= 1000 {
		fail("math/rand out of range: %d", n)
	}
	fmt.Println("random ok")
}
