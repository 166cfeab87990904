package wasm

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"
)

// progGen generates random valid modules that exercise what the compiler
// tier translates: integer and float arithmetic and conversions with traps,
// loads and stores of every width in and out of bounds, memory.copy and
// memory.fill, globals, locals, counted loops, if/else, br_if with values to drop, br_table, select, calls of a
// WebAssembly function and of a host function. The exported function
// run(i32, i64) -> i64 does the work.
type progGen struct {
	r     *rand.Rand
	b     []byte
	depth int
	loops int // counted loops open (each has its own counter local)
}

// Locals of run: parameters 0 (i32) and 1 (i64), then these.
const (
	genI32a, genI32b = 2, 3
	genI64a, genI64b = 4, 5
	genF64           = 6
	genCounter0      = 7 // first loop counter (i32)
	genMaxLoops      = 3
	genMaxDepth      = 5
)

// Functions: the imported host function h(i64) -> i64, helper(i64, i64)
// -> i64, run.
const (
	genHost   = 0
	genHelper = 1
)

func sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func (g *progGen) emit(b ...byte) { g.b = append(g.b, b...) }

func (g *progGen) n(k int) int { return g.r.IntN(k) }

// constant returns an interesting 64-bit value.
func (g *progGen) constant() int64 {
	switch g.n(6) {
	case 0:
		return int64(g.n(5)) - 1
	case 1:
		return []int64{math.MinInt32, math.MaxInt32, math.MinInt64, math.MaxInt64, 0xffffffff, 1 << 32}[g.n(6)]
	case 2:
		return int64(g.n(70000)) // an address, often in bounds
	default:
		return int64(g.r.Uint64())
	}
}

func (g *progGen) memarg() {
	g.emit(0x00) // alignment 1: always valid
	if g.n(40) == 0 {
		g.emit(uleb(uint64(g.r.Uint32()))...)
	} else {
		g.emit(uleb(uint64(g.n(64)))...)
	}
}

// addr emits an i32 address: mostly within the first page, sometimes
// anywhere.
func (g *progGen) addr() {
	g.i32()
	if g.n(15) != 0 {
		g.emit(0x41)
		g.emit(sleb(0xfff8)...)
		g.emit(0x71) // i32.and
	}
}

func (g *progGen) leaf() bool { return g.depth >= genMaxDepth || g.n(3) == 0 }

func (g *progGen) i32() {
	g.depth++
	defer func() { g.depth-- }()
	if g.leaf() {
		switch g.n(3) {
		case 0:
			g.emit(0x41)
			g.emit(sleb(int64(int32(g.constant())))...)
		case 1:
			g.emit(0x20, []byte{0, genI32a, genI32b}[g.n(3)])
		default:
			g.emit(0x23, 0) // global.get 0
		}
		return
	}
	switch g.n(11) {
	case 0, 1:
		g.i32()
		g.i32()
		g.emit(byte(0x6a + g.n(15))) // i32.add .. i32.rotr
	case 2:
		g.i32()
		g.i32()
		g.emit(byte(0x46 + g.n(10))) // i32.eq .. i32.ge_u
	case 3:
		g.i64()
		g.i64()
		g.emit(byte(0x51 + g.n(10))) // i64.eq .. i64.ge_u
	case 4:
		g.f64()
		g.f64()
		g.emit(byte(0x61 + g.n(6))) // f64.eq .. f64.ge
	case 5:
		g.i32()
		g.emit([]byte{0x45, 0x67, 0x68, 0x69, 0xc0, 0xc1}[g.n(6)])
	case 6:
		if g.n(10) == 0 {
			g.f64()
			g.emit(0xaa + byte(g.n(2))) // i32.trunc_f64_s, _u
		} else {
			g.i64()
			g.emit(0xa7) // i32.wrap_i64
		}
	case 7:
		g.addr()
		g.emit([]byte{0x28, 0x2c, 0x2d, 0x2e, 0x2f}[g.n(5)])
		g.memarg()
	case 8:
		g.i32()
		g.i32()
		g.i32()
		g.emit(0x1b) // select
	case 9:
		g.i32()
		g.emit(0x22, genI32b) // local.tee
	default:
		g.emit(0x3f, 0x00) // memory.size
	}
}

func (g *progGen) i64() {
	g.depth++
	defer func() { g.depth-- }()
	if g.leaf() {
		switch g.n(3) {
		case 0:
			g.emit(0x42)
			g.emit(sleb(g.constant())...)
		case 1:
			g.emit(0x20, []byte{1, genI64a, genI64b}[g.n(3)])
		default:
			g.emit(0x23, 1) // global.get 1
		}
		return
	}
	switch g.n(10) {
	case 0, 1:
		g.i64()
		g.i64()
		g.emit(byte(0x7c + g.n(15))) // i64.add .. i64.rotr
	case 2:
		g.i64()
		g.emit([]byte{0x79, 0x7a, 0x7b, 0xc2, 0xc3, 0xc4}[g.n(6)])
	case 3:
		g.i32()
		g.emit(0xac + byte(g.n(2))) // i64.extend_i32_s, _u
	case 4:
		g.addr()
		g.emit([]byte{0x29, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35}[g.n(7)])
		g.memarg()
	case 5:
		g.i64()
		g.i64()
		g.emit(0x10, genHelper)
	case 6:
		if g.n(4) == 0 {
			g.i64()
			g.emit(0x10, genHost)
		} else {
			g.i64()
		}
	case 7:
		g.f64()
		if g.n(10) == 0 {
			g.emit(0xb0) // i64.trunc_f64_s
		} else {
			g.emit(0xbd) // i64.reinterpret_f64
		}
	case 8:
		// br_if with a value to drop: block (result i64) e1 e2 c br_if 0 drop end
		g.emit(0x02, byte(I64))
		g.i64()
		g.i64()
		g.i32()
		g.emit(0x0d, 0x00, 0x1a, 0x0b)
	default:
		g.i64()
		g.i64()
		g.i32()
		g.emit(0x1b)
	}
}

func (g *progGen) f64() {
	g.depth++
	defer func() { g.depth-- }()
	if g.leaf() {
		switch g.n(3) {
		case 0:
			g.emit(0x44)
			var v uint64
			switch g.n(4) {
			case 0:
				v = []uint64{0, 1 << 63, 0x7ff8000000000001, 0xfff0000000000000, math.Float64bits(1.5)}[g.n(5)]
			default:
				v = math.Float64bits(float64(int64(g.n(2001)) - 1000))
			}
			for range 8 {
				g.emit(byte(v))
				v >>= 8
			}
		case 1:
			g.emit(0x20, genF64)
		default:
			g.i64()
			g.emit(0xbf) // f64.reinterpret_i64
		}
		return
	}
	switch g.n(6) {
	case 0, 1:
		g.f64()
		g.f64()
		g.emit(byte(0xa0 + g.n(7))) // f64.add .. f64.copysign
	case 2:
		g.f64()
		g.emit(byte(0x99 + g.n(7))) // f64.abs .. f64.sqrt
	case 3:
		g.i32()
		g.emit(0xb7 + byte(g.n(2))) // f64.convert_i32_s, _u
	case 4:
		g.i64()
		g.emit(0xb9) // f64.convert_i64_s
	default:
		g.addr()
		g.emit(0x2b) // f64.load
		g.memarg()
	}
}

func (g *progGen) stmts(n int) {
	for range n {
		g.stmt()
	}
}

func (g *progGen) stmt() {
	g.depth++
	defer func() { g.depth-- }()
	if g.depth >= genMaxDepth {
		g.i64()
		g.emit(0x21, genI64a)
		return
	}
	switch g.n(13) {
	case 0:
		g.i32()
		g.emit(0x21, []byte{genI32a, genI32b}[g.n(2)])
	case 1:
		g.i64()
		g.emit(0x21, []byte{genI64a, genI64b}[g.n(2)])
	case 2:
		g.f64()
		g.emit(0x21, genF64)
	case 3:
		if g.n(2) == 0 {
			g.i32()
			g.emit(0x24, 0)
		} else {
			g.i64()
			g.emit(0x24, 1)
		}
	case 4, 5:
		g.addr()
		switch g.n(4) {
		case 0:
			g.i32()
			g.emit([]byte{0x36, 0x3a, 0x3b}[g.n(3)])
		case 1:
			g.f64()
			g.emit(0x39)
		default:
			g.i64()
			g.emit([]byte{0x37, 0x3c, 0x3d, 0x3e}[g.n(4)])
		}
		g.memarg()
	case 6:
		g.i32()
		g.emit(0x04, 0x40) // if
		g.stmts(1 + g.n(3))
		if g.n(2) == 0 {
			g.emit(0x05)
			g.stmts(1 + g.n(2))
		}
		if g.n(60) == 0 {
			g.emit(0x00) // unreachable
		}
		g.emit(0x0b)
	case 7:
		g.emit(0x02, 0x40) // block
		g.stmts(g.n(3))
		g.i32()
		g.emit(0x0d, 0x00) // br_if 0
		g.stmts(1 + g.n(2))
		g.emit(0x0b)
	case 8:
		if g.loops >= genMaxLoops {
			g.i64()
			g.emit(0x1a) // drop
			return
		}
		c := byte(genCounter0 + g.loops)
		g.loops++
		g.emit(0x41)
		g.emit(sleb(int64(1 + g.n(6)))...)
		g.emit(0x21, c, 0x03, 0x40) // local.set c; loop
		g.stmts(1 + g.n(3))
		g.emit(0x20, c, 0x41, 0x01, 0x6b, 0x22, c, 0x0d, 0x00, 0x0b) // c--; br_if 0 while c != 0
		g.loops--
	case 9:
		// block block block (i32) br_table 0 1 2 end ... end ... end
		g.emit(0x02, 0x40, 0x02, 0x40, 0x02, 0x40)
		g.i32()
		g.emit(0x0e, 0x03, 0x00, 0x01, 0x02, byte(g.n(3)), 0x0b)
		g.stmts(g.n(2))
		g.emit(0x0b)
		g.stmts(g.n(2))
		g.emit(0x0b)
	case 10:
		g.i32()
		g.emit(0x1a) // drop
	case 11:
		// memory.copy or memory.fill, mostly in bounds, over up to 3
		// pages' worth of dirty tracking
		g.addr()
		isCopy := g.n(2) == 0
		if isCopy {
			g.addr()
		} else {
			g.i32()
		}
		if g.n(8) == 0 {
			g.i32()
		} else {
			g.emit(0x41)
			g.emit(sleb(int64(g.n(9000)))...)
		}
		if isCopy {
			g.emit(0xfc, 0x0a, 0x00, 0x00)
		} else {
			g.emit(0xfc, 0x0b, 0x00)
		}
	default:
		g.f64()
		g.emit(0x1a)
	}
}

// genModule returns a random module of the shape progGen describes.
func genModule(seed uint64) []byte {
	g := &progGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	var b modBuilder
	tH := b.typ([]ValType{I64}, []ValType{I64})
	tHelper := b.typ([]ValType{I64, I64}, []ValType{I64})
	tRun := b.typ([]ValType{I32, I64}, []ValType{I64})
	b.importFunc("env", "h", tH)
	b.memory(1)
	b.globals = append(b.globals,
		append([]byte{byte(I32), 1, 0x41}, append(sleb(7), 0x0b)...),
		append([]byte{byte(I64), 1, 0x42}, append(sleb(-3), 0x0b)...))
	// helper(x, y) = (x ^ y) * golden, rotated by x
	b.fn(tHelper, "", nil, 0x20, 0x00, 0x20, 0x01, 0x85, 0x42, 0x95, 0xf8, 0xe8, 0xfb, 0x9b, 0xf7, 0xc3, 0xcf, 0x1e, 0x7e,
		0x20, 0x00, 0x89)
	locals := []ValType{I32, I32, I64, I64, F64}
	for range genMaxLoops {
		locals = append(locals, I32)
	}
	g.stmts(3 + g.n(6))
	g.i64()
	b.fn(tRun, "run", locals, g.b...)
	return b.bytes()
}

// TestTiersGenerated runs generated modules on both tiers, with budgets
// from 1 up, and compares their traces.
func TestTiersGenerated(t *testing.T) {
	if !CompilerAvailable() {
		t.Skip("the compiler tier is not available on this platform")
	}
	n := 400
	if testing.Short() {
		n = 100
	}
	var stats tierStats
	for seed := range uint64(n) {
		bin := genModule(seed)
		if _, err := Compile(bin, tierConfig(EngineInterpreter)); err != nil {
			t.Fatalf("seed %d: generated module does not compile: %v", seed, err)
		}
		compareTiers(t, "generated module "+strconv.FormatUint(seed, 10), bin, []uint64{1, 3, 17, 1 << 40},
			[]uint64{0, 5, 1<<64 - 1}, traceLimit{runs: 400, instrs: 20000}, &stats)
		if t.Failed() {
			t.Fatalf("seed %d: module %x", seed, bin)
		}
	}
	t.Logf("%d modules; on the compiler tier %d instructions, %d of them (%.0f%%) native",
		n, stats.all, stats.native, 100*float64(stats.native)/float64(max(stats.all, 1)))
}

// FuzzTiersGenerated compares the tiers on the module genModule makes of
// each seed.
func FuzzTiersGenerated(f *testing.F) {
	if !CompilerAvailable() {
		f.Skip("the compiler tier is not available on this platform")
	}
	for seed := range uint64(8) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		bin := genModule(seed)
		compareTiers(t, "generated module", bin, []uint64{1, 2, 5, 1 << 40}, []uint64{0, 1<<64 - 1},
			traceLimit{runs: 400, instrs: 20000}, &tierStats{})
	})
}
