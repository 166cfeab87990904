// Command ft-counter is a TCP counter server for fault-tolerance tests: it
// serves the first listener the host hands it (FTVM_LISTEN_FDS) forever.
// Every line a client sends is one request: "get" answers the current
// value, anything else increments the counter and answers the new value,
// one decimal number per line. State lives in memory; with -file PATH the
// counter is also written to PATH (overwritten in place, fixed width) before
// each answer, and read back from it at start.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

type counter struct {
	mu   sync.Mutex
	n    uint64
	file *os.File
}

func (c *counter) apply(req string) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if req == "get" {
		return c.n, nil
	}
	c.n++
	if c.file != nil {
		if _, err := c.file.WriteAt([]byte(fmt.Sprintf("%020d\n", c.n)), 0); err != nil {
			return 0, err
		}
	}
	return c.n, nil
}

func (c *counter) serve(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewScanner(conn)
	for r.Scan() {
		v, err := c.apply(strings.TrimSpace(r.Text()))
		if err != nil {
			fmt.Fprintln(os.Stderr, "ft-counter: persist:", err)
			os.Exit(1)
		}
		if _, err := fmt.Fprintf(conn, "%d\n", v); err != nil {
			return
		}
	}
}

func main() {
	path := flag.String("file", "", "persist the counter to this file")
	flag.Parse()
	var c counter
	if *path != "" {
		f, err := os.OpenFile(*path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ft-counter:", err)
			os.Exit(1)
		}
		buf := make([]byte, 21)
		if k, _ := f.ReadAt(buf, 0); k > 0 {
			if v, err := strconv.ParseUint(strings.TrimSpace(string(buf[:k])), 10, 64); err == nil {
				c.n = v
			}
		}
		c.file = f
	}
	fd, err := strconv.Atoi(strings.Split(os.Getenv("FTVM_LISTEN_FDS"), ",")[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "ft-counter: no listener in FTVM_LISTEN_FDS")
		os.Exit(2)
	}
	ln, err := net.FileListener(os.NewFile(uintptr(fd), "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "ft-counter: listener:", err)
		os.Exit(1)
	}
	fmt.Printf("ft-counter listening, value %d\n", c.n)
	for {
		conn, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "ft-counter: accept:", err)
			continue
		}
		go c.serve(conn)
	}
}
