// Command ft-http is an HTTP server for fault-tolerance tests: it serves
// the first listener the host hands it (FTVM_LISTEN_FDS) with net/http.
// POST /count/ID counts a request: it answers "N ID", N being how many
// requests it counted in all, and remembers that it counted ID (a request
// counted twice answers "again N ID"); GET /count answers the count.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
)

type counter struct {
	mu   sync.Mutex
	n    int
	seen map[string]int
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/count":
		fmt.Fprintf(w, "%d\n", c.n)
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/count/"):
		id := strings.TrimPrefix(r.URL.Path, "/count/")
		if n, ok := c.seen[id]; ok {
			fmt.Fprintf(w, "again %d %s\n", n, id)
			return
		}
		c.n++
		c.seen[id] = c.n
		fmt.Fprintf(w, "%d %s\n", c.n, id)
	default:
		http.NotFound(w, r)
	}
}

func main() {
	fd, err := strconv.Atoi(strings.Split(os.Getenv("FTVM_LISTEN_FDS"), ",")[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "ft-http: no listener in FTVM_LISTEN_FDS")
		os.Exit(2)
	}
	ln, err := net.FileListener(os.NewFile(uintptr(fd), "listener"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "ft-http: listener:", err)
		os.Exit(1)
	}
	fmt.Println("serving")
	if err := http.Serve(ln, &counter{seen: make(map[string]int)}); err != nil {
		fmt.Fprintln(os.Stderr, "ft-http:", err)
		os.Exit(1)
	}
}
