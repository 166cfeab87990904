package wasm

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// specOpcodes is the spec's index of instructions for WebAssembly 2.0 less
// the vector instructions, in the spec's notation: the opcode (for the
// 0xFC-prefixed ones, the prefix and the u32 that follows it) and the
// instruction's name in the text format.
const specOpcodes = `
0x00 unreachable
0x01 nop
0x02 block
0x03 loop
0x04 if
0x05 else
0x0B end
0x0C br
0x0D br_if
0x0E br_table
0x0F return
0x10 call
0x11 call_indirect
0x1A drop
0x1B select
0x1C select t*
0x20 local.get
0x21 local.set
0x22 local.tee
0x23 global.get
0x24 global.set
0x25 table.get
0x26 table.set
0x28 i32.load
0x29 i64.load
0x2A f32.load
0x2B f64.load
0x2C i32.load8_s
0x2D i32.load8_u
0x2E i32.load16_s
0x2F i32.load16_u
0x30 i64.load8_s
0x31 i64.load8_u
0x32 i64.load16_s
0x33 i64.load16_u
0x34 i64.load32_s
0x35 i64.load32_u
0x36 i32.store
0x37 i64.store
0x38 f32.store
0x39 f64.store
0x3A i32.store8
0x3B i32.store16
0x3C i64.store8
0x3D i64.store16
0x3E i64.store32
0x3F memory.size
0x40 memory.grow
0x41 i32.const
0x42 i64.const
0x43 f32.const
0x44 f64.const
0x45 i32.eqz
0x46 i32.eq
0x47 i32.ne
0x48 i32.lt_s
0x49 i32.lt_u
0x4A i32.gt_s
0x4B i32.gt_u
0x4C i32.le_s
0x4D i32.le_u
0x4E i32.ge_s
0x4F i32.ge_u
0x50 i64.eqz
0x51 i64.eq
0x52 i64.ne
0x53 i64.lt_s
0x54 i64.lt_u
0x55 i64.gt_s
0x56 i64.gt_u
0x57 i64.le_s
0x58 i64.le_u
0x59 i64.ge_s
0x5A i64.ge_u
0x5B f32.eq
0x5C f32.ne
0x5D f32.lt
0x5E f32.gt
0x5F f32.le
0x60 f32.ge
0x61 f64.eq
0x62 f64.ne
0x63 f64.lt
0x64 f64.gt
0x65 f64.le
0x66 f64.ge
0x67 i32.clz
0x68 i32.ctz
0x69 i32.popcnt
0x6A i32.add
0x6B i32.sub
0x6C i32.mul
0x6D i32.div_s
0x6E i32.div_u
0x6F i32.rem_s
0x70 i32.rem_u
0x71 i32.and
0x72 i32.or
0x73 i32.xor
0x74 i32.shl
0x75 i32.shr_s
0x76 i32.shr_u
0x77 i32.rotl
0x78 i32.rotr
0x79 i64.clz
0x7A i64.ctz
0x7B i64.popcnt
0x7C i64.add
0x7D i64.sub
0x7E i64.mul
0x7F i64.div_s
0x80 i64.div_u
0x81 i64.rem_s
0x82 i64.rem_u
0x83 i64.and
0x84 i64.or
0x85 i64.xor
0x86 i64.shl
0x87 i64.shr_s
0x88 i64.shr_u
0x89 i64.rotl
0x8A i64.rotr
0x8B f32.abs
0x8C f32.neg
0x8D f32.ceil
0x8E f32.floor
0x8F f32.trunc
0x90 f32.nearest
0x91 f32.sqrt
0x92 f32.add
0x93 f32.sub
0x94 f32.mul
0x95 f32.div
0x96 f32.min
0x97 f32.max
0x98 f32.copysign
0x99 f64.abs
0x9A f64.neg
0x9B f64.ceil
0x9C f64.floor
0x9D f64.trunc
0x9E f64.nearest
0x9F f64.sqrt
0xA0 f64.add
0xA1 f64.sub
0xA2 f64.mul
0xA3 f64.div
0xA4 f64.min
0xA5 f64.max
0xA6 f64.copysign
0xA7 i32.wrap_i64
0xA8 i32.trunc_f32_s
0xA9 i32.trunc_f32_u
0xAA i32.trunc_f64_s
0xAB i32.trunc_f64_u
0xAC i64.extend_i32_s
0xAD i64.extend_i32_u
0xAE i64.trunc_f32_s
0xAF i64.trunc_f32_u
0xB0 i64.trunc_f64_s
0xB1 i64.trunc_f64_u
0xB2 f32.convert_i32_s
0xB3 f32.convert_i32_u
0xB4 f32.convert_i64_s
0xB5 f32.convert_i64_u
0xB6 f32.demote_f64
0xB7 f64.convert_i32_s
0xB8 f64.convert_i32_u
0xB9 f64.convert_i64_s
0xBA f64.convert_i64_u
0xBB f64.promote_f32
0xBC i32.reinterpret_f32
0xBD i64.reinterpret_f64
0xBE f32.reinterpret_i32
0xBF f64.reinterpret_i64
0xC0 i32.extend8_s
0xC1 i32.extend16_s
0xC2 i64.extend8_s
0xC3 i64.extend16_s
0xC4 i64.extend32_s
0xD0 ref.null
0xD1 ref.is_null
0xD2 ref.func
0xFC 0 i32.trunc_sat_f32_s
0xFC 1 i32.trunc_sat_f32_u
0xFC 2 i32.trunc_sat_f64_s
0xFC 3 i32.trunc_sat_f64_u
0xFC 4 i64.trunc_sat_f32_s
0xFC 5 i64.trunc_sat_f32_u
0xFC 6 i64.trunc_sat_f64_s
0xFC 7 i64.trunc_sat_f64_u
0xFC 8 memory.init
0xFC 9 data.drop
0xFC 10 memory.copy
0xFC 11 memory.fill
0xFC 12 table.init
0xFC 13 elem.drop
0xFC 14 table.copy
0xFC 15 table.grow
0xFC 16 table.size
0xFC 17 table.fill
`

// TestOpcodeNames checks opcode.go against specOpcodes: each instruction
// has the constant that the naming rule of opcode.go derives from its text
// name, with its opcode as the value, and opcode.go has no other constants
// than these and the two prefixes.
func TestOpcodeNames(t *testing.T) {
	want := map[string]uint64{"opcodeMiscPrefix": 0xfc, "opcodeVecPrefix": 0xfd}
	for _, line := range strings.Split(strings.TrimSpace(specOpcodes), "\n") {
		f := strings.Fields(line)
		prefix, text := "opcode", strings.Join(f[1:], " ")
		code, err := strconv.ParseUint(f[0], 0, 8)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if code == 0xfc {
			prefix, text = "opcodeMisc", strings.Join(f[2:], " ")
			if code, err = strconv.ParseUint(f[1], 10, 32); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
		}
		name := prefix
		for _, part := range strings.FieldsFunc(strings.TrimSuffix(text, "*"), func(r rune) bool {
			return r == '.' || r == '_' || r == ' '
		}) {
			name += strings.ToUpper(part[:1]) + part[1:]
		}
		if _, dup := want[name]; dup {
			t.Fatalf("two instructions named %s", name)
		}
		want[name] = code
	}

	// The constants of opcode.go, one a line: "\tname = value" or
	// "\tname uint32 = value", perhaps followed by a comment.
	src, err := os.ReadFile("opcode.go")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, line := range strings.Split(string(src), "\n") {
		if !strings.HasPrefix(line, "\topcode") {
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 4 && f[1] == "uint32" {
			f = append(f[:1], f[2:]...)
		}
		if len(f) < 3 || f[1] != "=" {
			t.Fatalf("opcode.go: %q is not a constant as this test reads them", line)
		}
		if got[f[0]], err = strconv.ParseUint(f[2], 0, 32); err != nil {
			t.Fatalf("opcode.go: %s: %v", f[0], err)
		}
	}
	for name, code := range want {
		if v, ok := got[name]; !ok {
			t.Errorf("opcode.go lacks %s (0x%02x)", name, code)
		} else if v != code {
			t.Errorf("%s = 0x%02x; the spec says 0x%02x", name, v, code)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("opcode.go has %s, which is no instruction of the spec's", name)
		}
	}
}
