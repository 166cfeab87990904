package native

import (
	"runtime"
	"sync"
	"testing"
	"unsafe"

	"ftvm/wasm/internal/amd64"
)

// loopArg is what the loop code reads and writes through RDI.
type loopArg struct {
	n     uint64 // iterations to run
	out   uint64 // the count the code reached
	slots *[4]uint64
}

// loopCode counts to arg.n in RAX, stores the count to arg.out and adds it
// to each of the four slots arg.slots points to; zero iterations are
// skipped.
func loopCode(t testing.TB) []byte {
	var a amd64.Asm
	loop, done := a.NewLabel(), a.NewLabel()
	a.Load(amd64.W64, amd64.RCX, amd64.M(amd64.RDI, 0))
	a.ALURR(amd64.XOR, amd64.W32, amd64.RAX, amd64.RAX)
	a.TestRR(amd64.W64, amd64.RCX, amd64.RCX)
	a.Jcc(amd64.CondE, done)
	a.Bind(loop)
	a.ALURI(amd64.ADD, amd64.W64, amd64.RAX, 1)
	a.ALURI(amd64.SUB, amd64.W64, amd64.RCX, 1)
	a.Jcc(amd64.CondNE, loop)
	a.Bind(done)
	a.Store(amd64.W64, amd64.M(amd64.RDI, 8), amd64.RAX)
	a.Load(amd64.W64, amd64.RDX, amd64.M(amd64.RDI, 16))
	for i := range int32(4) {
		a.ALUMR(amd64.ADD, amd64.W64, amd64.M(amd64.RDX, 8*i), amd64.RAX)
	}
	a.Ret()
	b, err := a.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCallLoop(t *testing.T) {
	c, err := New(loopCode(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint64{0, 1, 7, 1000, 1 << 20} {
		arg := &loopArg{n: n, slots: new([4]uint64)}
		c.Call(c.Addr(0), unsafe.Pointer(arg))
		if arg.out != n || arg.slots[3] != n {
			t.Errorf("n %d: out %d, slots %v", n, arg.out, arg.slots)
		}
	}
}

// TestCallUnderGC runs native code from many goroutines at once while the
// garbage collector runs without pause and the goroutines' stacks grow and
// shrink: every call must return the right count, into heap memory the
// code writes through pointers Go handed it. Code blocks are made and
// dropped all along, so their cleanups unmap memory while other code runs.
func TestCallUnderGC(t *testing.T) {
	code := loopCode(t)
	stop := make(chan struct{})
	var gcs sync.WaitGroup
	gcs.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				c, err := New(code)
				if err != nil {
					t.Error(err)
					return
				}
				n := uint64(g*1000 + i*37)
				arg := &loopArg{n: n, slots: new([4]uint64)}
				deep(i%8, func() { c.Call(c.Addr(0), unsafe.Pointer(arg)) })
				// Garbage for the collector, so the heap keeps moving on.
				_ = make([]byte, 1<<12)
				if arg.out != n || arg.slots[0] != n || arg.slots[3] != n {
					t.Errorf("goroutine %d call %d: out %d, slots %v; want %d", g, i, arg.out, arg.slots, n)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	gcs.Wait()
}

// deep calls f under n frames with large locals, so that the native call
// happens on a stack that has grown (and been moved) a different amount
// each time.
func deep(n int, f func()) {
	var pad [512]byte
	if n == 0 {
		f()
		return
	}
	pad[n] = byte(n)
	deep(n-1, f)
	runtime.KeepAlive(pad)
}

// TestNewEmpty: no code is an error, not an empty mapping.
func TestNewEmpty(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Fatal("New(nil) succeeded")
	}
}
