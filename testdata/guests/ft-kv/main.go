// Command ft-kv is an in-memory key-value server for the linearizability
// tests: it serves the first listener the host hands it (FTVM_LISTEN_FDS)
// forever. Every line a client sends is one request, answered by one line:
//
//	get K          the value of K, or an empty line if K was never put
//	put K V        ok
//	cas K OLD NEW  ok if K held OLD (K now holds NEW), fail otherwise
//
// Keys and values are words without spaces. A request it cannot parse is
// answered "error ..." and changes nothing.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

type store struct {
	mu sync.Mutex
	kv map[string]string
}

func (s *store) apply(req string) string {
	f := strings.Fields(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case len(f) == 2 && f[0] == "get":
		return s.kv[f[1]]
	case len(f) == 3 && f[0] == "put":
		s.kv[f[1]] = f[2]
		return "ok"
	case len(f) == 4 && f[0] == "cas":
		if v, ok := s.kv[f[1]]; !ok || v != f[2] {
			return "fail"
		}
		s.kv[f[1]] = f[3]
		return "ok"
	}
	return fmt.Sprintf("error: bad request %q", req)
}

func (s *store) serve(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewScanner(conn)
	for r.Scan() {
		if _, err := fmt.Fprintln(conn, s.apply(r.Text())); err != nil {
			return
		}
	}
}

func main() {
	s := &store{kv: map[string]string{}}
	fd, err := strconv.Atoi(strings.Split(os.Getenv("FTVM_LISTEN_FDS"), ",")[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "ft-kv: no listener in FTVM_LISTEN_FDS")
		os.Exit(2)
	}
	// The host made the listener: the guest must not (net.Listen is not
	// in WASI preview 1, and the backup must not listen at all).
	ln, err := net.FileListener(os.NewFile(uintptr(fd), "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "ft-kv: listener:", err)
		os.Exit(1)
	}
	fmt.Println("ft-kv listening")
	for {
		conn, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "ft-kv: accept:", err)
			continue
		}
		go s.serve(conn)
	}
}
