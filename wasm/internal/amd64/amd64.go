// Package amd64 encodes the x86-64 instructions that the engine's compiler
// tier emits. It is an assembler without a parser: each method appends one
// instruction in a fixed encoding (the one GNU as picks for the same
// operands, so the tests can compare bytes), and labels give forward and
// backward jumps with 32-bit displacements.
//
// Only the forms the compiler needs exist. Operands are registers, 32-bit
// immediates, and memory operands of the form [base + index*scale + disp].
package amd64

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// Reg is a general-purpose register, numbered as in the instruction
// encoding.
type Reg uint8

// General-purpose registers.
const (
	RAX Reg = iota
	RCX
	RDX
	RBX
	RSP
	RBP
	RSI
	RDI
	R8
	R9
	R10
	R11
	R12
	R13
	R14
	R15
)

// XReg is an SSE register.
type XReg uint8

// SSE registers (those the compiler uses).
const (
	X0 XReg = iota
	X1
	X2
	X3
)

// Width is an operand size in bits: 32 or 64 for arithmetic, 8 and 16 too
// for stores.
type Width uint8

// Operand sizes.
const (
	W8  Width = 8
	W16 Width = 16
	W32 Width = 32
	W64 Width = 64
)

// Mem is a memory operand [Base + Index*Scale + Disp]; Index is used when
// Scale is not zero (1, 2, 4 or 8).
type Mem struct {
	Base  Reg
	Index Reg
	Scale uint8
	Disp  int32
}

// M returns the memory operand [base + disp].
func M(base Reg, disp int32) Mem { return Mem{Base: base, Disp: disp} }

// MI returns the memory operand [base + index*scale + disp].
func MI(base, index Reg, scale uint8, disp int32) Mem {
	return Mem{Base: base, Index: index, Scale: scale, Disp: disp}
}

// ALU is an arithmetic operation of the group that shares its encodings
// (opcode 0x01+8*op, 0x81 /op, 0x83 /op).
type ALU uint8

// ALU operations.
const (
	ADD ALU = 0
	OR  ALU = 1
	AND ALU = 4
	SUB ALU = 5
	XOR ALU = 6
	CMP ALU = 7
)

// Shift is a shift or rotate of the group 0xd3 /op.
type Shift uint8

// Shift operations.
const (
	ROL Shift = 0
	ROR Shift = 1
	SHL Shift = 4
	SHR Shift = 5
	SAR Shift = 7
)

// Cond is a condition code, as in the low nibble of Jcc, SETcc and CMOVcc.
type Cond uint8

// Conditions.
const (
	CondO  Cond = 0x0
	CondNO Cond = 0x1
	CondB  Cond = 0x2 // unsigned <
	CondAE Cond = 0x3 // unsigned >=
	CondE  Cond = 0x4
	CondNE Cond = 0x5
	CondBE Cond = 0x6 // unsigned <=
	CondA  Cond = 0x7 // unsigned >
	CondS  Cond = 0x8
	CondNS Cond = 0x9
	CondP  Cond = 0xa
	CondNP Cond = 0xb
	CondL  Cond = 0xc // signed <
	CondGE Cond = 0xd
	CondLE Cond = 0xe
	CondG  Cond = 0xf
)

// Label is a position in the code, bound once with Bind.
type Label int32

type fixup struct {
	at    int // position of the rel32 field
	label Label
}

// Asm accumulates machine code.
type Asm struct {
	b      []byte
	labels []int // bound position, or -1
	fixups []fixup
	// tables are 32-bit entries: position of the entry, label it points
	// to and the position the offset is relative to.
	tables []tableEntry
}

type tableEntry struct {
	at, base int
	label    Label
}

// Len returns the number of bytes emitted.
func (a *Asm) Len() int { return len(a.b) }

// NewLabel returns an unbound label.
func (a *Asm) NewLabel() Label {
	a.labels = append(a.labels, -1)
	return Label(len(a.labels) - 1)
}

// Bind binds l to the current position.
func (a *Asm) Bind(l Label) { a.labels[l] = len(a.b) }

// Bound reports whether l is bound, and where.
func (a *Asm) Bound(l Label) (int, bool) {
	p := a.labels[l]
	return p, p >= 0
}

// Finish resolves every jump and returns the code.
func (a *Asm) Finish() ([]byte, error) {
	for _, f := range a.fixups {
		p := a.labels[f.label]
		if p < 0 {
			return nil, fmt.Errorf("amd64: label %d used but never bound", f.label)
		}
		binary.LittleEndian.PutUint32(a.b[f.at:], uint32(int32(p-(f.at+4))))
	}
	for _, t := range a.tables {
		p := a.labels[t.label]
		if p < 0 {
			return nil, fmt.Errorf("amd64: label %d used in a table but never bound", t.label)
		}
		binary.LittleEndian.PutUint32(a.b[t.at:], uint32(int32(p-t.base)))
	}
	return a.b, nil
}

func (a *Asm) byte1(b ...byte) { a.b = append(a.b, b...) }

func (a *Asm) imm32(v int32) { a.b = binary.LittleEndian.AppendUint32(a.b, uint32(v)) }

// rex emits a REX prefix if any of its bits are needed (or force is set,
// for byte registers SPL..DIL).
func (a *Asm) rex(w bool, r, x, b Reg, force bool) {
	v := byte(0x40)
	if w {
		v |= 8
	}
	if r&8 != 0 {
		v |= 4
	}
	if x&8 != 0 {
		v |= 2
	}
	if b&8 != 0 {
		v |= 1
	}
	if v != 0x40 || force {
		a.b = append(a.b, v)
	}
}

// modRM emits the ModRM byte (and SIB and displacement) for reg and the
// memory operand m.
func (a *Asm) modRM(reg Reg, m Mem) {
	r := byte(reg&7) << 3
	base := byte(m.Base & 7)
	var mod byte
	switch {
	case m.Disp == 0 && base != 5:
		mod = 0
	case m.Disp >= -128 && m.Disp <= 127:
		mod = 1
	default:
		mod = 2
	}
	if m.Scale == 0 {
		if base == 4 {
			a.byte1(mod<<6|r|4, 0x24)
		} else {
			a.byte1(mod<<6 | r | base)
		}
	} else {
		var ss byte
		switch m.Scale {
		case 1:
			ss = 0
		case 2:
			ss = 1
		case 4:
			ss = 2
		default:
			ss = 3
		}
		a.byte1(mod<<6|r|4, ss<<6|byte(m.Index&7)<<3|base)
	}
	switch mod {
	case 1:
		a.byte1(byte(int8(m.Disp)))
	case 2:
		a.imm32(m.Disp)
	}
}

func (a *Asm) modRR(reg, rm Reg) { a.byte1(0xc0 | byte(reg&7)<<3 | byte(rm&7)) }

func (a *Asm) memIndex(m Mem) Reg {
	if m.Scale == 0 {
		return 0
	}
	return m.Index
}

// opRM emits [prefix] REX opcode ModRM for reg and memory operand m.
func (a *Asm) opRM(w bool, op []byte, reg Reg, m Mem) {
	a.rex(w, reg, a.memIndex(m), m.Base, false)
	a.byte1(op...)
	a.modRM(reg, m)
}

// opRR emits REX opcode ModRM with reg in the reg field and rm in r/m.
func (a *Asm) opRR(w bool, op []byte, reg, rm Reg) {
	a.rex(w, reg, 0, rm, false)
	a.byte1(op...)
	a.modRR(reg, rm)
}

// MovRR: dst = src.
func (a *Asm) MovRR(w Width, dst, src Reg) { a.opRR(w == W64, []byte{0x89}, src, dst) }

// Load: dst = [m], 32 or 64 bits (32 zero-extends).
func (a *Asm) Load(w Width, dst Reg, m Mem) { a.opRM(w == W64, []byte{0x8b}, dst, m) }

// Store: [m] = src, of width 8, 16, 32 or 64 bits.
func (a *Asm) Store(w Width, m Mem, src Reg) {
	switch w {
	case W8:
		a.rex(false, src, a.memIndex(m), m.Base, src >= RSP && src <= RDI)
		a.byte1(0x88)
		a.modRM(src, m)
	case W16:
		a.byte1(0x66)
		a.opRM(false, []byte{0x89}, src, m)
	default:
		a.opRM(w == W64, []byte{0x89}, src, m)
	}
}

// StoreImm: [m] = imm (sign-extended for 64 bits).
func (a *Asm) StoreImm(w Width, m Mem, imm int32) {
	a.opRM(w == W64, []byte{0xc7}, 0, m)
	a.imm32(imm)
}

// MovImm: dst = v, in the shortest encoding.
func (a *Asm) MovImm(dst Reg, v uint64) {
	switch {
	case v == 0:
		a.ALURR(XOR, W32, dst, dst)
	case v <= 0xffffffff:
		a.rex(false, 0, 0, dst, false)
		a.byte1(0xb8 + byte(dst&7))
		a.imm32(int32(uint32(v)))
	case int64(v) >= -1<<31 && int64(v) < 1<<31:
		a.rex(true, 0, 0, dst, false)
		a.byte1(0xc7)
		a.modRR(0, dst)
		a.imm32(int32(v))
	default:
		a.rex(true, 0, 0, dst, false)
		a.byte1(0xb8 + byte(dst&7))
		a.b = binary.LittleEndian.AppendUint64(a.b, v)
	}
}

// LoadZX loads 8 or 16 bits from m, zero-extended to 64 bits.
func (a *Asm) LoadZX(from Width, dst Reg, m Mem) {
	op := byte(0xb6)
	if from == W16 {
		op = 0xb7
	}
	a.opRM(false, []byte{0x0f, op}, dst, m)
}

// LoadSX loads 8, 16 or 32 bits from m, sign-extended to w (32 or 64) bits.
func (a *Asm) LoadSX(from, w Width, dst Reg, m Mem) {
	switch from {
	case W8:
		a.opRM(w == W64, []byte{0x0f, 0xbe}, dst, m)
	case W16:
		a.opRM(w == W64, []byte{0x0f, 0xbf}, dst, m)
	default:
		a.opRM(true, []byte{0x63}, dst, m)
	}
}

// MovZX8 zero-extends the low byte of src into dst (32 bits, so 64).
func (a *Asm) MovZX8(dst, src Reg) {
	a.rex(false, dst, 0, src, src >= RSP && src <= RDI)
	a.byte1(0x0f, 0xb6)
	a.modRR(dst, src)
}

// MovSX sign-extends the low 8, 16 or 32 bits of src into w bits of dst.
func (a *Asm) MovSX(from, w Width, dst, src Reg) {
	switch from {
	case W8:
		a.rex(w == W64, dst, 0, src, src >= RSP && src <= RDI)
		a.byte1(0x0f, 0xbe)
		a.modRR(dst, src)
	case W16:
		a.opRR(w == W64, []byte{0x0f, 0xbf}, dst, src)
	default:
		a.opRR(true, []byte{0x63}, dst, src)
	}
}

// Lea: dst = address of m.
func (a *Asm) Lea(dst Reg, m Mem) { a.opRM(true, []byte{0x8d}, dst, m) }

// LeaRIP: dst = address of label l (RIP-relative).
func (a *Asm) LeaRIP(dst Reg, l Label) {
	a.rex(true, dst, 0, 0, false)
	a.byte1(0x8d, byte(dst&7)<<3|5)
	a.fixups = append(a.fixups, fixup{at: len(a.b), label: l})
	a.imm32(0)
}

// ALURR: dst op= src.
func (a *Asm) ALURR(op ALU, w Width, dst, src Reg) {
	a.opRR(w == W64, []byte{byte(op)<<3 | 1}, src, dst)
}

// ALURM: dst op= [m].
func (a *Asm) ALURM(op ALU, w Width, dst Reg, m Mem) {
	a.opRM(w == W64, []byte{byte(op)<<3 | 3}, dst, m)
}

// ALUMR: [m] op= src.
func (a *Asm) ALUMR(op ALU, w Width, m Mem, src Reg) {
	a.opRM(w == W64, []byte{byte(op)<<3 | 1}, src, m)
}

// ALURI: dst op= imm (sign-extended for 64 bits).
func (a *Asm) ALURI(op ALU, w Width, dst Reg, imm int32) {
	if imm >= -128 && imm <= 127 {
		a.opRR(w == W64, []byte{0x83}, Reg(op), dst)
		a.byte1(byte(int8(imm)))
		return
	}
	if dst == RAX {
		a.rex(w == W64, 0, 0, 0, false)
		a.byte1(byte(op)<<3 | 5)
		a.imm32(imm)
		return
	}
	a.opRR(w == W64, []byte{0x81}, Reg(op), dst)
	a.imm32(imm)
}

// ALUMI: [m] op= imm.
func (a *Asm) ALUMI(op ALU, w Width, m Mem, imm int32) {
	if imm >= -128 && imm <= 127 {
		a.opRM(w == W64, []byte{0x83}, Reg(op), m)
		a.byte1(byte(int8(imm)))
		return
	}
	a.opRM(w == W64, []byte{0x81}, Reg(op), m)
	a.imm32(imm)
}

// TestRR sets the flags of x & y.
func (a *Asm) TestRR(w Width, x, y Reg) { a.opRR(w == W64, []byte{0x85}, y, x) }

// IMul: dst *= src.
func (a *Asm) IMul(w Width, dst, src Reg) { a.opRR(w == W64, []byte{0x0f, 0xaf}, dst, src) }

// Div divides RDX:RAX by src, unsigned: RAX quotient, RDX remainder.
func (a *Asm) Div(w Width, src Reg) { a.opRR(w == W64, []byte{0xf7}, 6, src) }

// IDiv divides RDX:RAX by src, signed.
func (a *Asm) IDiv(w Width, src Reg) { a.opRR(w == W64, []byte{0xf7}, 7, src) }

// SignExtendAX sign-extends RAX into RDX (CDQ or CQO).
func (a *Asm) SignExtendAX(w Width) {
	if w == W64 {
		a.byte1(0x48)
	}
	a.byte1(0x99)
}

// ShiftCL: dst = dst shift CL.
func (a *Asm) ShiftCL(op Shift, w Width, dst Reg) { a.opRR(w == W64, []byte{0xd3}, Reg(op), dst) }

// ShiftImm: dst = dst shift n.
func (a *Asm) ShiftImm(op Shift, w Width, dst Reg, n uint8) {
	a.opRR(w == W64, []byte{0xc1}, Reg(op), dst)
	a.byte1(n)
}

// SetCC sets the low byte of dst to the condition (dst must be RAX..RBX
// or R8..R15, whose low bytes need no REX decision by the caller).
func (a *Asm) SetCC(c Cond, dst Reg) {
	a.rex(false, 0, 0, dst, dst >= RSP && dst <= RDI)
	a.byte1(0x0f, 0x90|byte(c))
	a.modRR(0, dst)
}

// CMov: if c, dst = src.
func (a *Asm) CMov(c Cond, w Width, dst, src Reg) {
	a.opRR(w == W64, []byte{0x0f, 0x40 | byte(c)}, dst, src)
}

// Bsr: dst = index of the highest set bit of src (ZF if src is zero).
func (a *Asm) Bsr(w Width, dst, src Reg) { a.opRR(w == W64, []byte{0x0f, 0xbd}, dst, src) }

// Bsf: dst = index of the lowest set bit of src (ZF if src is zero).
func (a *Asm) Bsf(w Width, dst, src Reg) { a.opRR(w == W64, []byte{0x0f, 0xbc}, dst, src) }

// Popcnt: dst = number of set bits of src.
func (a *Asm) Popcnt(w Width, dst, src Reg) {
	a.byte1(0xf3)
	a.opRR(w == W64, []byte{0x0f, 0xb8}, dst, src)
}

// Bts sets bit (bit mod w) of dst.
func (a *Asm) Bts(w Width, dst, bit Reg) { a.opRR(w == W64, []byte{0x0f, 0xab}, bit, dst) }

// Jcc jumps to l if c.
func (a *Asm) Jcc(c Cond, l Label) {
	a.byte1(0x0f, 0x80|byte(c))
	a.fixups = append(a.fixups, fixup{at: len(a.b), label: l})
	a.imm32(0)
}

// Jmp jumps to l.
func (a *Asm) Jmp(l Label) {
	a.byte1(0xe9)
	a.fixups = append(a.fixups, fixup{at: len(a.b), label: l})
	a.imm32(0)
}

// JmpReg jumps to the address in r.
func (a *Asm) JmpReg(r Reg) { a.opRR(false, []byte{0xff}, 4, r) }

// JmpMem jumps to the address stored at m.
func (a *Asm) JmpMem(m Mem) { a.opRM(false, []byte{0xff}, 4, m) }

// Ret returns.
func (a *Asm) Ret() { a.byte1(0xc3) }

// RepMovsb copies RCX bytes from [RSI] to [RDI] (backwards if the
// direction flag is set), advancing both and counting RCX down to 0.
func (a *Asm) RepMovsb() { a.byte1(0xf3, 0xa4) }

// RepStosb stores AL to RCX bytes at [RDI], advancing it and counting RCX
// down to 0.
func (a *Asm) RepStosb() { a.byte1(0xf3, 0xaa) }

// Std sets the direction flag (string instructions go down); Cld clears it
// again, as Go and the ABI expect it.
func (a *Asm) Std() { a.byte1(0xfd) }

// Cld clears the direction flag.
func (a *Asm) Cld() { a.byte1(0xfc) }

// Int3 emits a breakpoint (padding that must never run).
func (a *Asm) Int3() { a.byte1(0xcc) }

// TableEntry emits a 32-bit offset from the position base to label l, for
// jump tables.
func (a *Asm) TableEntry(base int, l Label) {
	a.tables = append(a.tables, tableEntry{at: len(a.b), base: base, label: l})
	a.imm32(0)
}

// sse emits prefix, REX, 0x0f op, ModRM for register operands.
func (a *Asm) sse(prefix byte, w bool, op byte, reg, rm Reg) {
	if prefix != 0 {
		a.byte1(prefix)
	}
	a.rex(w, reg, 0, rm, false)
	a.byte1(0x0f, op)
	a.modRR(reg, rm)
}

// MovQToX: x = the 64 bits of r (the upper half of x is zeroed).
func (a *Asm) MovQToX(x XReg, r Reg) { a.sse(0x66, true, 0x6e, Reg(x), r) }

// MovQFromX: r = the low 64 bits of x.
func (a *Asm) MovQFromX(r Reg, x XReg) { a.sse(0x66, true, 0x7e, Reg(x), r) }

// MovDToX: x = the 32 bits of r.
func (a *Asm) MovDToX(x XReg, r Reg) { a.sse(0x66, false, 0x6e, Reg(x), r) }

// MovDFromX: r = the low 32 bits of x, zero-extended.
func (a *Asm) MovDFromX(r Reg, x XReg) { a.sse(0x66, false, 0x7e, Reg(x), r) }

// FOp is a scalar SSE arithmetic operation (the second opcode byte).
type FOp uint8

// Scalar SSE operations.
const (
	FSqrt FOp = 0x51
	FAdd  FOp = 0x58
	FMul  FOp = 0x59
	FSub  FOp = 0x5c
	FMin  FOp = 0x5d
	FDiv  FOp = 0x5e
	FMax  FOp = 0x5f
)

// FArith: dst = dst op src, in single (w 32) or double (w 64) precision;
// for FSqrt, dst = sqrt(src).
func (a *Asm) FArith(op FOp, w Width, dst, src XReg) {
	p := byte(0xf3)
	if w == W64 {
		p = 0xf2
	}
	a.sse(p, false, byte(op), Reg(dst), Reg(src))
}

// UComis compares x with y, unordered (PF set if either is NaN).
func (a *Asm) UComis(w Width, x, y XReg) {
	var p byte
	if w == W64 {
		p = 0x66
	}
	a.sse(p, false, 0x2e, Reg(x), Reg(y))
}

// CvtInt converts the signed integer of width from (32 or 64 bits) in r to
// a float of width to (W32: single, W64: double) in x.
func (a *Asm) CvtInt(from, to Width, x XReg, r Reg) {
	p := byte(0xf3)
	if to == W64 {
		p = 0xf2
	}
	a.sse(p, from == W64, 0x2a, Reg(x), r)
}

// CvtFloat converts the float in src to the other precision: to W64 from
// single, to W32 from double.
func (a *Asm) CvtFloat(to Width, dst, src XReg) {
	p := byte(0xf2)
	if to == W64 {
		p = 0xf3
	}
	a.sse(p, false, 0x5a, Reg(dst), Reg(src))
}

// Rounding modes of Round.
const (
	RoundNearest = 0
	RoundDown    = 1
	RoundUp      = 2
	RoundTrunc   = 3
)

// Round rounds src to an integral value in dst, in the given mode (SSE4.1).
func (a *Asm) Round(w Width, mode uint8, dst, src XReg) {
	op := byte(0x0a)
	if w == W64 {
		op = 0x0b
	}
	a.byte1(0x66)
	a.rex(false, Reg(dst), 0, Reg(src), false)
	a.byte1(0x0f, 0x3a, op)
	a.modRR(Reg(dst), Reg(src))
	a.byte1(mode)
}

// Grow makes room for about n more bytes of code, jumps jumps and labels
// labels without reallocating.
func (a *Asm) Grow(n, jumps, labels int) {
	a.b = slices.Grow(a.b, n)
	a.fixups = slices.Grow(a.fixups, jumps)
	a.labels = slices.Grow(a.labels, labels)
}

// CvttToInt converts the double in x to a signed integer of width w in r,
// truncating toward zero (CVTTSD2SI).
func (a *Asm) CvttToInt(w Width, r Reg, x XReg) { a.sse(0xf2, w == W64, 0x2c, r, Reg(x)) }
