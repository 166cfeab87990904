package host

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"ftvm/cmd/ftvm/defaultguest"
	"ftvm/wasm"
)

// VMs of one binary share its compiled module, compiled once even when
// they start at once; once no VM holds it, the cache lets it go.
func TestModuleCacheShares(t *testing.T) {
	c := newModuleCache(wasm.DefaultEngine())
	bin := defaultguest.Counter()
	const vms = 8
	cms := make([]*wasm.CompiledModule, vms)
	var wg sync.WaitGroup
	for i := range cms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			// A copy of the bytes: the cache goes by content.
			if cms[i], err = c.compile(append([]byte(nil), bin...)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for i, cm := range cms {
		if cm != cms[0] {
			t.Fatalf("vm %d has a module of its own", i)
		}
	}
	if _, err := c.compile([]byte("\x00asm\x01\x00\x00\x00\x01")); err == nil {
		t.Fatal("a malformed module compiled")
	}
	if n := c.len(); n != 1 {
		t.Fatalf("cache holds %d modules, want 1", n)
	}
	cms = nil
	for deadline := time.Now().Add(10 * time.Second); c.len() != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the cache keeps a module no VM holds")
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	cm, err := c.compile(bin)
	if err != nil || cm == nil || c.len() != 1 {
		t.Fatalf("compile after the cache let go: %v, %d held", err, c.len())
	}
}

// The cache keys modules by tier too: a binary compiled for one tier is
// not handed out for the other.
func TestModuleCacheKeyedByEngine(t *testing.T) {
	c := newModuleCache(wasm.EngineInterpreter)
	bin := defaultguest.Counter()
	interp, err := c.compile(bin)
	if err != nil {
		t.Fatal(err)
	}
	comp, err := c.compileFor(bin, wasm.EngineCompiler)
	if err != nil {
		t.Fatal(err)
	}
	if interp == comp {
		t.Fatal("one module for both tiers")
	}
	if interp.Engine() != wasm.EngineInterpreter {
		t.Errorf("interpreter's module runs on %v", interp.Engine())
	}
	if want := wasm.DefaultEngine(); comp.Engine() != want {
		t.Errorf("compiler's module runs on %v, want %v here", comp.Engine(), want)
	}
	if again, err := c.compileFor(bin, wasm.EngineCompiler); err != nil || again != comp {
		t.Errorf("the compiler's module again: %p, %v; want the cached %p", again, err, comp)
	}
	if n := c.len(); n != 2 {
		t.Errorf("cache holds %d modules, want 2", n)
	}
	// Held to here: the cache lets go of modules no one holds.
	runtime.KeepAlive(interp)
	runtime.KeepAlive(comp)
}
