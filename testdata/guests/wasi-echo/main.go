// Command wasi-echo is a TCP echo server on a listener handed to it by the
// host, found through FTVM_LISTEN_FDS. It serves N connections (the first
// argument, default 1), each concurrently, echoing every byte until the
// client closes, then prints what it served and exits.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

func main() {
	n := 1
	if len(os.Args) > 1 {
		v, err := strconv.Atoi(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "wasi-echo: bad count:", err)
			os.Exit(2)
		}
		n = v
	}
	fds := strings.Split(os.Getenv("FTVM_LISTEN_FDS"), ",")
	fd, err := strconv.Atoi(fds[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "wasi-echo: no listener in FTVM_LISTEN_FDS")
		os.Exit(2)
	}
	ln, err := net.FileListener(os.NewFile(uintptr(fd), "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "wasi-echo: listener:", err)
		os.Exit(1)
	}
	fmt.Println("listening")
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for range n {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "wasi-echo: accept:", err)
			os.Exit(1)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			k, err := io.Copy(c, c)
			if err != nil {
				fmt.Fprintln(os.Stderr, "wasi-echo: copy:", err)
			}
			mu.Lock()
			total += int(k)
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Printf("served %d connections, %d bytes\n", n, total)
}
