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
	c := newModuleCache()
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
