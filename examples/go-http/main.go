// Command go-http is a small key-value store served over HTTP, written as an
// ftvm guest (GOOS=wasip1 GOARCH=wasm). It serves the first listener ftvm
// hands it in FTVM_LISTEN_FDS and keeps its data in one file on its disk
// (/disk, given by ftvm run --disk), so that it survives a failover and a
// restart of the VM from its disk.
//
//	GET    /kv/          every key, one "key=value" line each, sorted
//	GET    /kv/{key}     the key's value, or 404
//	PUT    /kv/{key}     store the request body as the key's value
//	DELETE /kv/{key}     remove the key
//	POST   /incr/{key}   add 1 to the key's value (a decimal number; a new
//	                     key starts at 0) and answer the new value
//
// Build and run:
//
//	GOOS=wasip1 GOARCH=wasm go build -o go-http.wasm .
//	ftvm run --listen 127.0.0.1:8080 --disk go-http.wasm
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxValue bounds a value, so that one request cannot fill the guest's
// memory.
const maxValue = 1 << 20

// store is the key-value map and the file that holds it.
type store struct {
	mu   sync.Mutex // net/http serves each connection in its own goroutine
	data map[string]string
	path string // "" keeps the data in memory only
}

// load reads the store's file, if there is one yet.
func (s *store) load() error {
	s.data = map[string]string{}
	if s.path == "" {
		return nil
	}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return json.Unmarshal(b, &s.data)
}

// save writes the whole map to a temporary file and renames it over the old
// one. Under ftvm each of these steps is applied exactly once across a
// failover; the rename keeps the file whole if every replica is lost and
// the VM restarts from its disk.
func (s *store) save() error {
	if s.path == "" {
		return nil
	}
	b, err := json.Marshal(s.data)
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, s.path)
}

func (s *store) list(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]string, 0, len(s.data))
	for k := range s.data {
		keys = append(keys, k)
	}
	slices.Sort(keys) // map order is random; the answer should not be
	for _, k := range keys {
		fmt.Fprintf(w, "%s=%s\n", k, s.data[k])
	}
}

func (s *store) get(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[r.PathValue("key")]
	if !ok {
		http.Error(w, "no such key", http.StatusNotFound)
		return
	}
	fmt.Fprintln(w, v)
}

func (s *store) put(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxValue))
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	key, value := r.PathValue("key"), strings.TrimRight(string(b), "\r\n")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[key] = value
	s.mustSave()
	fmt.Printf("go-http: set %s (%d bytes)\n", key, len(value))
	fmt.Fprintln(w, "ok")
}

func (s *store) del(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.data[key]; !ok {
		http.Error(w, "no such key", http.StatusNotFound)
		return
	}
	delete(s.data, key)
	s.mustSave()
	fmt.Printf("go-http: deleted %s\n", key)
	fmt.Fprintln(w, "ok")
}

func (s *store) incr(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int64(0)
	if v, ok := s.data[key]; ok {
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil {
			http.Error(w, "the value is not a number", http.StatusConflict)
			return
		}
	}
	s.data[key] = strconv.FormatInt(n+1, 10)
	s.mustSave()
	fmt.Fprintln(w, n+1)
}

// mustSave saves the store before the reply leaves, so that a reply means
// the change is on the disk. A failed save ends the program: the map in
// memory would no longer match the file.
func (s *store) mustSave() {
	if err := s.save(); err != nil {
		fmt.Fprintln(os.Stderr, "go-http: saving:", err)
		os.Exit(1)
	}
}

// listener returns the first listener ftvm handed the guest. Under
// GOOS=wasip1, net.Listen would return an in-process fake that never sees
// a real connection: a guest can only serve the descriptors it was given.
func listener() (net.Listener, error) {
	fds := os.Getenv("FTVM_LISTEN_FDS")
	if fds == "" {
		return nil, errors.New("no listener in FTVM_LISTEN_FDS (run it with ftvm run --listen ADDR)")
	}
	fd, err := strconv.Atoi(strings.Split(fds, ",")[0])
	if err != nil {
		return nil, fmt.Errorf("bad FTVM_LISTEN_FDS %q", fds)
	}
	return net.FileListener(os.NewFile(uintptr(fd), "listener"))
}

func main() {
	path := flag.String("file", "/disk/kv.json", "keep the data in `FILE` (\"\": in memory only)")
	flag.Parse()
	s := &store{path: *path}
	if s.path != "" {
		if _, err := os.Stat(filepath.Dir(s.path)); err != nil {
			fmt.Fprintf(os.Stderr, "go-http: %v (run it with ftvm run --disk, or -file \"\")\n", err)
			os.Exit(2)
		}
	}
	if err := s.load(); err != nil {
		fmt.Fprintln(os.Stderr, "go-http: loading:", err)
		os.Exit(1)
	}
	ln, err := listener()
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-http:", err)
		os.Exit(2)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /kv/{$}", s.list)
	mux.HandleFunc("GET /kv/{key}", s.get)
	mux.HandleFunc("PUT /kv/{key}", s.put)
	mux.HandleFunc("DELETE /kv/{key}", s.del)
	mux.HandleFunc("POST /incr/{key}", s.incr)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Printf("go-http: serving, %d keys\n", len(s.data))
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "go-http:", err)
		os.Exit(1)
	}
}
