package host

import (
	"crypto/sha256"
	"fmt"
	"runtime"
	"sync"
	"weak"

	"ftvm/wasm"
)

// moduleCache shares compiled modules among a host's VMs: a hundred VMs
// of one binary compile it once and hold one copy of its code (a Go
// guest's is megabytes), not a hundred. An entry lives as long as some
// VM holds its module (a weak pointer), and concurrent compiles of one
// binary wait for the first. Its entries are keyed by the binary and the
// engine tier, whose compiled modules differ (native code or none).
type moduleCache struct {
	// engine is the tier compile compiles for: the host's.
	engine   wasm.Engine
	mu       sync.Mutex
	done     map[moduleKey]weak.Pointer[wasm.CompiledModule]
	inflight map[moduleKey]*compileCall
}

// moduleKey names a compiled module: the binary's SHA-256 and the tier.
type moduleKey struct {
	sum    [32]byte
	engine wasm.Engine
}

type compileCall struct {
	done chan struct{}
	cm   *wasm.CompiledModule
	err  error
}

func newModuleCache(engine wasm.Engine) *moduleCache {
	return &moduleCache{engine: engine, done: map[moduleKey]weak.Pointer[wasm.CompiledModule]{}, inflight: map[moduleKey]*compileCall{}}
}

// compile returns bin compiled for the cache's engine, from the cache if a
// VM of this host still holds it.
func (c *moduleCache) compile(bin []byte) (*wasm.CompiledModule, error) {
	return c.compileFor(bin, c.engine)
}

// compileFor is compile for a given engine.
func (c *moduleCache) compileFor(bin []byte, engine wasm.Engine) (*wasm.CompiledModule, error) {
	key := moduleKey{sha256.Sum256(bin), engine}
	c.mu.Lock()
	if cm := c.done[key].Value(); cm != nil {
		c.mu.Unlock()
		return cm, nil
	}
	if call := c.inflight[key]; call != nil {
		c.mu.Unlock()
		<-call.done
		return call.cm, call.err
	}
	call := &compileCall{done: make(chan struct{})}
	c.inflight[key] = call
	c.mu.Unlock()

	call.cm, call.err = wasm.Compile(bin, wasm.Config{Engine: engine})
	if call.err != nil {
		call.err = fmt.Errorf("compile the guest (%v): %w", engine, call.err)
	}
	c.mu.Lock()
	delete(c.inflight, key)
	if call.err == nil {
		wp := weak.Make(call.cm)
		c.done[key] = wp
		runtime.AddCleanup(call.cm, c.forget, cacheEntry{key, wp})
	}
	c.mu.Unlock()
	close(call.done)
	return call.cm, call.err
}

type cacheEntry struct {
	key moduleKey
	wp  weak.Pointer[wasm.CompiledModule]
}

// forget drops an entry whose module no VM holds any more, unless a newer
// compile of the binary replaced it.
func (c *moduleCache) forget(e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done[e.key] == e.wp {
		delete(c.done, e.key)
	}
}

// len returns how many compiled modules the cache holds.
func (c *moduleCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.done)
}
