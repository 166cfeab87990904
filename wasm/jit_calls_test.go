package wasm

import "testing"

// downModule is a module whose function down(n) calls itself n deep and
// then, at the bottom, the host function env.h; on the way up every level
// adds its n (kept in an i64 local across the call, among 20 locals that
// each call must start at zero) and 1: down(n) = h(0) + n(n+1)/2 + n.
func downModule() []byte {
	var b modBuilder
	ti := b.typ([]ValType{I32}, []ValType{I32})
	b.importFunc("env", "h", ti)
	locals := make([]ValType, 20)
	for i := range locals {
		locals[i] = I64
	}
	b.fn(ti, "down", locals,
		0x20, 0x00, 0x45, // local.get 0; i32.eqz
		0x04, 0x7f, // if (result i32)
		0x20, 0x00, 0x10, 0x00, // local.get 0; call h
		0x05,             // else
		0x20, 0x01, 0xa7, // local.get 1; i32.wrap_i64 (0: a fresh local)
		0x20, 0x00, 0xad, 0x21, 0x01, // local.get 0; i64.extend_i32_u; local.set 1
		0x20, 0x00, 0x41, 0x01, 0x6b, 0x10, 0x01, // local.get 0; i32.const 1; i32.sub; call down
		0x6a,                   // i32.add
		0x20, 0x01, 0xa7, 0x6a, // local.get 1; i32.wrap_i64; i32.add
		0x41, 0x01, 0x6a, // i32.const 1; i32.add
		0x0b, // end
	)
	return b.bytes()
}

// indirectModule is a module whose function ind(n) calls itself n deep
// through call_indirect (table elements 0 and 1), and whose n above 1000
// picks the element n-1000 at the top: itself, the host function, a
// function of another type, null elements and indices out of bounds.
func indirectModule() []byte {
	var b modBuilder
	ti := b.typ([]ValType{I32}, []ValType{I32})
	tv := b.typ(nil, nil)
	b.importFunc("env", "h", ti)
	b.fn(ti, "ind", nil,
		0x20, 0x00, 0x45, // local.get 0; i32.eqz
		0x04, 0x7f, // if (result i32)
		0x20, 0x00, 0x10, 0x00, // local.get 0; call h
		0x05,                         // else
		0x20, 0x00, 0x41, 0x01, 0x6b, // local.get 0; i32.const 1; i32.sub
		0x20, 0x00, 0x41, 0xe8, 0x07, 0x6b, // local.get 0; i32.const 1000; i32.sub
		0x20, 0x00, 0x41, 0x01, 0x71, // local.get 0; i32.const 1; i32.and
		0x20, 0x00, 0x41, 0xe8, 0x07, 0x4b, // local.get 0; i32.const 1000; i32.gt_u
		0x1b,             // select
		0x11, 0x00, 0x00, // call_indirect (type 0) (table 0)
		0x41, 0x01, 0x6a, // i32.const 1; i32.add
		0x0b, // end
	)
	b.fn(tv, "", nil)
	b.tables = []byte{1, 0x70, 0x00, 6}                        // one funcref table of 6
	b.elems = []byte{1, 0x00, 0x41, 0x00, 0x0b, 4, 1, 1, 0, 2} // at 0: ind, ind, h, the other
	return b.bytes()
}

// TestTiersDeepCalls: calls and returns made by native code leave the same
// frames, counts and stops as the interpreter's, at every budget, around
// the depth of the frames made into records at an entry, and at the call
// depth limit (tierConfig's 200), where both trap alike.
func TestTiersDeepCalls(t *testing.T) {
	if !CompilerAvailable() {
		t.Skip("the compiler tier is not available on this platform")
	}
	stats := &tierStats{}
	args := []uint64{0, 1, 3, 63, 64, 65, 130, 198, 199, 200, 201, 300}
	budgets := []uint64{1, 2, 7, 100, 1 << 20}
	if !compareTiers(t, "down", downModule(), budgets, args, traceLimit{runs: 5000, instrs: 1 << 20}, stats) {
		t.Fatal("down does not compile")
	}
	args = append(args, 1001, 1002, 1003, 1004, 1005, 1006, 1007)
	if !compareTiers(t, "ind", indirectModule(), budgets, args, traceLimit{runs: 5000, instrs: 1 << 20}, stats) {
		t.Fatal("ind does not compile")
	}
	if stats.native < stats.all/2 {
		t.Errorf("%d of %d instructions ran natively", stats.native, stats.all)
	}
}
