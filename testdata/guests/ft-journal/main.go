// Command ft-journal is a TCP journal server for the failover tests of
// effects that must happen exactly once: it serves the first listener the
// host hands it (FTVM_LISTEN_FDS), a goroutine per connection.
//
// Usage: ft-journal DIR
//
// Every line a client sends is one request. "get" answers the number of
// the last request performed. Anything else is a payload (a token without
// spaces); under one mutex the guest takes n = last+1 and, in this order,
// makes the lock directory DIR/lock-n (which must not exist), writes "n\n"
// to DIR/state.tmp and renames it to DIR/state, removes DIR/lock-n, and
// appends the line "n PAYLOAD" to DIR/journal (opened once, O_APPEND); then
// it answers "n". Each of these steps would fail, or leave a line twice,
// if a failover performed it again. If any step fails the guest answers
// "err STEP: ERROR" and stays broken: every later request answers an error
// too.
//
// At start it reads DIR/state, if there is one, to continue the count, and
// reports on stderr any lock directory left behind.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

type journal struct {
	dir string

	mu     sync.Mutex
	last   uint64
	file   *os.File
	broken error
}

func (j *journal) path(name string) string { return filepath.Join(j.dir, name) }

// apply performs one request and returns its reply line.
func (j *journal) apply(req string) string {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.broken != nil {
		return fmt.Sprintf("err %v", j.broken)
	}
	if req == "get" {
		return strconv.FormatUint(j.last, 10)
	}
	if err := j.step(req); err != nil {
		j.broken = err
		fmt.Fprintln(os.Stderr, "ft-journal:", err)
		return fmt.Sprintf("err %v", err)
	}
	return strconv.FormatUint(j.last, 10)
}

func (j *journal) step(payload string) error {
	n := j.last + 1
	lock := j.path(fmt.Sprintf("lock-%d", n))
	if err := os.Mkdir(lock, 0o755); err != nil {
		return fmt.Errorf("mkdir: %v", err)
	}
	if err := os.WriteFile(j.path("state.tmp"), fmt.Appendf(nil, "%d\n", n), 0o644); err != nil {
		return fmt.Errorf("write state: %v", err)
	}
	if err := os.Rename(j.path("state.tmp"), j.path("state")); err != nil {
		return fmt.Errorf("rename: %v", err)
	}
	if err := os.Remove(lock); err != nil {
		return fmt.Errorf("remove: %v", err)
	}
	if _, err := fmt.Fprintf(j.file, "%d %s\n", n, payload); err != nil {
		return fmt.Errorf("append: %v", err)
	}
	j.last = n
	return nil
}

func (j *journal) serve(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewScanner(conn)
	for r.Scan() {
		req := strings.TrimSpace(r.Text())
		if req == "" {
			continue
		}
		if _, err := fmt.Fprintf(conn, "%s\n", j.apply(req)); err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: ft-journal DIR")
		os.Exit(2)
	}
	j := &journal{dir: os.Args[1]}
	if b, err := os.ReadFile(j.path("state")); err == nil {
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ft-journal: state %q: %v\n", b, err)
			os.Exit(1)
		}
		j.last = v
	} else if !os.IsNotExist(err) {
		fmt.Fprintln(os.Stderr, "ft-journal: state:", err)
		os.Exit(1)
	}
	if locks, err := filepath.Glob(j.path("lock-*")); err != nil || len(locks) > 0 {
		fmt.Fprintf(os.Stderr, "ft-journal: lock directories left behind: %q %v\n", locks, err)
	}
	f, err := os.OpenFile(j.path("journal"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ft-journal: journal:", err)
		os.Exit(1)
	}
	j.file = f

	fd, err := strconv.Atoi(strings.Split(os.Getenv("FTVM_LISTEN_FDS"), ",")[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "ft-journal: no listener in FTVM_LISTEN_FDS")
		os.Exit(2)
	}
	ln, err := net.FileListener(os.NewFile(uintptr(fd), "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "ft-journal: listener:", err)
		os.Exit(1)
	}
	fmt.Printf("ft-journal listening, last %d\n", j.last)
	for {
		conn, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "ft-journal: accept:", err)
			continue
		}
		go j.serve(conn)
	}
}
