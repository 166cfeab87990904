package amd64

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// encCase is one instruction: how the assembler emits it, and the same
// instruction in GNU as's Intel syntax.
type encCase struct {
	intel string
	emit  func(a *Asm)
}

var regNames64 = []string{"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"}
var regNames32 = []string{"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "r8d", "r9d", "r10d", "r11d", "r12d", "r13d", "r14d", "r15d"}

func rn(w Width, r Reg) string {
	if w == W64 {
		return regNames64[r]
	}
	return regNames32[r]
}

func memText(size string, m Mem) string {
	s := size + " ptr [" + regNames64[m.Base]
	if m.Scale != 0 {
		s += "+" + regNames64[m.Index] + "*" + itoa(int64(m.Scale))
	}
	if m.Disp != 0 {
		if m.Disp > 0 {
			s += "+"
		}
		s += itoa(int64(m.Disp))
	}
	return s + "]"
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func sizeName(w Width) string {
	switch w {
	case W8:
		return "byte"
	case W16:
		return "word"
	case W32:
		return "dword"
	}
	return "qword"
}

// cases covers every method with registers that need REX bits and those
// that do not, and memory operands with the special bases (RSP and R12 need
// a SIB byte, RBP and R13 a displacement) and displacements of 0, 8 and 32
// bits.
func cases() []encCase {
	var cs []encCase
	add := func(intel string, emit func(a *Asm)) { cs = append(cs, encCase{intel, emit}) }
	regs := []Reg{RAX, RCX, RBX, RSP, RBP, RSI, RDI, R8, R11, R12, R13, R15}
	mems := []Mem{M(RBX, 0), M(RDI, 8), M(RBP, 0), M(R13, 0), M(RSP, 16), M(R12, -8), M(R8, 4096),
		MI(R8, RAX, 1, 0), MI(RBX, R9, 8, 40), MI(R13, RCX, 4, -300), MI(R12, R11, 2, 0)}
	for _, w := range []Width{W32, W64} {
		for _, d := range regs {
			for _, s := range []Reg{RAX, RDX, R9, R14} {
				add("mov "+rn(w, d)+", "+rn(w, s), func(a *Asm) { a.MovRR(w, d, s) })
				add("add "+rn(w, d)+", "+rn(w, s), func(a *Asm) { a.ALURR(ADD, w, d, s) })
				add("xor "+rn(w, d)+", "+rn(w, s), func(a *Asm) { a.ALURR(XOR, w, d, s) })
				add("cmp "+rn(w, d)+", "+rn(w, s), func(a *Asm) { a.ALURR(CMP, w, d, s) })
				add("imul "+rn(w, d)+", "+rn(w, s), func(a *Asm) { a.IMul(w, d, s) })
				add("test "+rn(w, d)+", "+rn(w, s), func(a *Asm) { a.TestRR(w, d, s) })
				add("cmove "+rn(w, d)+", "+rn(w, s), func(a *Asm) { a.CMov(CondE, w, d, s) })
				add("bsr "+rn(w, d)+", "+rn(w, s), func(a *Asm) { a.Bsr(w, d, s) })
				add("bsf "+rn(w, d)+", "+rn(w, s), func(a *Asm) { a.Bsf(w, d, s) })
				add("popcnt "+rn(w, d)+", "+rn(w, s), func(a *Asm) { a.Popcnt(w, d, s) })
				add("bts "+rn(w, d)+", "+rn(w, s), func(a *Asm) { a.Bts(w, d, s) })
			}
			for _, imm := range []int32{0, 1, -1, 127, -128, 128, 100000, -2147483648} {
				add("sub "+rn(w, d)+", "+itoa(int64(imm)), func(a *Asm) { a.ALURI(SUB, w, d, imm) })
				add("and "+rn(w, d)+", "+itoa(int64(imm)), func(a *Asm) { a.ALURI(AND, w, d, imm) })
			}
			add("shl "+rn(w, d)+", cl", func(a *Asm) { a.ShiftCL(SHL, w, d) })
			add("sar "+rn(w, d)+", cl", func(a *Asm) { a.ShiftCL(SAR, w, d) })
			add("ror "+rn(w, d)+", cl", func(a *Asm) { a.ShiftCL(ROR, w, d) })
			add("shr "+rn(w, d)+", 12", func(a *Asm) { a.ShiftImm(SHR, w, d, 12) })
			add("div "+rn(w, d), func(a *Asm) { a.Div(w, d) })
			add("idiv "+rn(w, d), func(a *Asm) { a.IDiv(w, d) })
			for _, m := range mems {
				add("mov "+rn(w, d)+", "+memText(sizeName(w), m), func(a *Asm) { a.Load(w, d, m) })
				add("mov "+memText(sizeName(w), m)+", "+rn(w, d), func(a *Asm) { a.Store(w, m, d) })
				add("or "+rn(w, d)+", "+memText(sizeName(w), m), func(a *Asm) { a.ALURM(OR, w, d, m) })
				add("add "+memText(sizeName(w), m)+", "+rn(w, d), func(a *Asm) { a.ALUMR(ADD, w, m, d) })
			}
		}
		for _, m := range mems {
			add("mov "+memText(sizeName(w), m)+", -5", func(a *Asm) { a.StoreImm(w, m, -5) })
			add("cmp "+memText(sizeName(w), m)+", 0", func(a *Asm) { a.ALUMI(CMP, w, m, 0) })
			add("sub "+memText(sizeName(w), m)+", 1000", func(a *Asm) { a.ALUMI(SUB, w, m, 1000) })
			add("movsx "+rn(w, RCX)+", "+memText("byte", m), func(a *Asm) { a.LoadSX(W8, w, RCX, m) })
			add("movsx "+rn(w, R10)+", "+memText("word", m), func(a *Asm) { a.LoadSX(W16, w, R10, m) })
		}
	}
	for _, d := range regs {
		for _, m := range mems {
			add("lea "+rn(W64, d)+", "+memText("qword", m)[len("qword ptr "):], func(a *Asm) { a.Lea(d, m) })
			add("movzx "+rn(W32, d)+", "+memText("byte", m), func(a *Asm) { a.LoadZX(W8, d, m) })
			add("movzx "+rn(W32, d)+", "+memText("word", m), func(a *Asm) { a.LoadZX(W16, d, m) })
			add("movsxd "+rn(W64, d)+", "+memText("dword", m), func(a *Asm) { a.LoadSX(W32, W64, d, m) })
		}
		for _, s := range []Reg{RAX, RCX, RSI, R9} {
			add("movzx "+rn(W32, d)+", "+byteReg(s), func(a *Asm) { a.MovZX8(d, s) })
			add("movsx "+rn(W64, d)+", "+byteReg(s), func(a *Asm) { a.MovSX(W8, W64, d, s) })
			add("movsx "+rn(W32, d)+", "+wordReg(s), func(a *Asm) { a.MovSX(W16, W32, d, s) })
			add("movsxd "+rn(W64, d)+", "+rn(W32, s), func(a *Asm) { a.MovSX(W32, W64, d, s) })
		}
		add("sete "+byteReg(d), func(a *Asm) { a.SetCC(CondE, d) })
		add("setl "+byteReg(d), func(a *Asm) { a.SetCC(CondL, d) })
		add("seta "+byteReg(d), func(a *Asm) { a.SetCC(CondA, d) })
		add("jmp "+rn(W64, d), func(a *Asm) { a.JmpReg(d) })
		add("mov eax, "+rn(W32, d), func(a *Asm) { a.MovRR(W32, RAX, d) })
		for _, v := range []uint64{0, 1, 0x7fffffff, 0xffffffff, 0xffffffffffffffff, 0xffffffff80000000, 0x100000000, 0x8000000000000000} {
			var text string
			switch {
			case v == 0:
				text = "xor " + rn(W32, d) + ", " + rn(W32, d)
			case v <= 0xffffffff:
				text = "mov " + rn(W32, d) + ", " + itoa(int64(v))
			case int64(v) >= -1<<31:
				text = "mov " + rn(W64, d) + ", " + itoa(int64(v))
			default:
				text = "movabs " + rn(W64, d) + ", " + itoa(int64(v))
			}
			add(text, func(a *Asm) { a.MovImm(d, v) })
		}
	}
	for _, s := range []Reg{RAX, RCX, RSI, RDI, R9, R13} {
		for _, m := range mems {
			add("mov "+memText("byte", m)+", "+byteReg(s), func(a *Asm) { a.Store(W8, m, s) })
			add("mov "+memText("word", m)+", "+wordReg(s), func(a *Asm) { a.Store(W16, m, s) })
		}
	}
	for _, m := range mems {
		add("jmp "+memText("qword", m), func(a *Asm) { a.JmpMem(m) })
	}
	add("cdq", func(a *Asm) { a.SignExtendAX(W32) })
	add("cqo", func(a *Asm) { a.SignExtendAX(W64) })
	add("ret", func(a *Asm) { a.Ret() })
	add("int3", func(a *Asm) { a.Int3() })
	for _, x := range []XReg{X0, X1, X3} {
		for _, r := range []Reg{RAX, RDX, R8, R12} {
			add("movq "+xn(x)+", "+rn(W64, r), func(a *Asm) { a.MovQToX(x, r) })
			add("movq "+rn(W64, r)+", "+xn(x), func(a *Asm) { a.MovQFromX(r, x) })
			add("movd "+xn(x)+", "+rn(W32, r), func(a *Asm) { a.MovDToX(x, r) })
			add("movd "+rn(W32, r)+", "+xn(x), func(a *Asm) { a.MovDFromX(r, x) })
			add("cvtsi2ss "+xn(x)+", "+rn(W32, r), func(a *Asm) { a.CvtInt(W32, W32, x, r) })
			add("cvttsd2si "+rn(W32, r)+", "+xn(x), func(a *Asm) { a.CvttToInt(W32, r, x) })
			add("cvttsd2si "+rn(W64, r)+", "+xn(x), func(a *Asm) { a.CvttToInt(W64, r, x) })
			add("cvtsi2ss "+xn(x)+", "+rn(W64, r), func(a *Asm) { a.CvtInt(W64, W32, x, r) })
			add("cvtsi2sd "+xn(x)+", "+rn(W32, r), func(a *Asm) { a.CvtInt(W32, W64, x, r) })
			add("cvtsi2sd "+xn(x)+", "+rn(W64, r), func(a *Asm) { a.CvtInt(W64, W64, x, r) })
		}
		for _, y := range []XReg{X0, X2} {
			for _, op := range []struct {
				name string
				op   FOp
			}{{"add", FAdd}, {"sub", FSub}, {"mul", FMul}, {"div", FDiv}, {"sqrt", FSqrt}, {"min", FMin}, {"max", FMax}} {
				add(op.name+"ss "+xn(x)+", "+xn(y), func(a *Asm) { a.FArith(op.op, W32, x, y) })
				add(op.name+"sd "+xn(x)+", "+xn(y), func(a *Asm) { a.FArith(op.op, W64, x, y) })
			}
			add("ucomiss "+xn(x)+", "+xn(y), func(a *Asm) { a.UComis(W32, x, y) })
			add("cvtss2sd "+xn(x)+", "+xn(y), func(a *Asm) { a.CvtFloat(W64, x, y) })
			add("cvtsd2ss "+xn(x)+", "+xn(y), func(a *Asm) { a.CvtFloat(W32, x, y) })
			for mode := uint8(0); mode < 4; mode++ {
				add("roundss "+xn(x)+", "+xn(y)+", "+itoa(int64(mode)), func(a *Asm) { a.Round(W32, mode, x, y) })
				add("roundsd "+xn(x)+", "+xn(y)+", "+itoa(int64(mode)), func(a *Asm) { a.Round(W64, mode, x, y) })
			}
			add("ucomisd "+xn(x)+", "+xn(y), func(a *Asm) { a.UComis(W64, x, y) })
		}
	}
	return cs
}

func xn(x XReg) string { return "xmm" + itoa(int64(x)) }

func byteReg(r Reg) string {
	return []string{"al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil", "r8b", "r9b", "r10b", "r11b", "r12b", "r13b", "r14b", "r15b"}[r]
}

func wordReg(r Reg) string {
	return []string{"ax", "cx", "dx", "bx", "sp", "bp", "si", "di", "r8w", "r9w", "r10w", "r11w", "r12w", "r13w", "r14w", "r15w"}[r]
}

// assemble runs GNU as over the lines and returns the bytes of each line,
// by dumping the object with objdump, one line per instruction.
func assemble(t *testing.T, lines []string) [][]byte {
	t.Helper()
	if _, err := exec.LookPath("as"); err != nil {
		t.Skip("GNU as is not installed: cannot check the encodings against it")
	}
	if _, err := exec.LookPath("objcopy"); err != nil {
		t.Skip("objcopy is not installed: cannot check the encodings against GNU as")
	}
	dir := t.TempDir()
	var src strings.Builder
	src.WriteString(".intel_syntax noprefix\n.text\n")
	// Each instruction in a section of its own, so its bytes can be
	// extracted alone without a disassembler's interpretation.
	for i, l := range lines {
		src.WriteString(".section .t" + itoa(int64(i)) + ",\"ax\"\n" + l + "\n")
	}
	s, o := filepath.Join(dir, "x.s"), filepath.Join(dir, "x.o")
	if err := os.WriteFile(s, []byte(src.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("as", "--64", "-o", o, s).CombinedOutput(); err != nil {
		t.Fatalf("as: %v\n%s", err, out)
	}
	res := make([][]byte, len(lines))
	args := []string{"-O", "binary"}
	for i := range lines {
		f := filepath.Join(dir, "t"+itoa(int64(i)))
		args = append(args, "--dump-section", ".t"+itoa(int64(i))+"="+f)
		_ = f
	}
	args = append(args, o, filepath.Join(dir, "rest"))
	if out, err := exec.Command("objcopy", args...).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}
	for i := range lines {
		b, err := os.ReadFile(filepath.Join(dir, "t"+itoa(int64(i))))
		if err != nil {
			t.Fatal(err)
		}
		res[i] = b
	}
	return res
}

// TestEncodingsMatchGNUAs compares every case's bytes with GNU as's
// encoding of the same instruction.
func TestEncodingsMatchGNUAs(t *testing.T) {
	cs := cases()
	lines := make([]string, len(cs))
	for i, c := range cs {
		lines[i] = c.intel
	}
	want := assemble(t, lines)
	bad := 0
	for i, c := range cs {
		var a Asm
		c.emit(&a)
		got, err := a.Finish()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want[i]) {
			t.Errorf("%s: got %s, as gives %s", c.intel, hex.EncodeToString(got), hex.EncodeToString(want[i]))
			if bad++; bad > 20 {
				t.Fatal("too many mismatches")
			}
		}
	}
	t.Logf("%d instructions checked against GNU as", len(cs))
}

// TestJumps checks label resolution: forward and backward jumps, a
// RIP-relative LEA and a jump table, against golden bytes.
func TestJumps(t *testing.T) {
	var a Asm
	top, end, tab := a.NewLabel(), a.NewLabel(), a.NewLabel()
	a.Bind(top)
	a.Jcc(CondE, end) // 0: 0f 84 rel32 -> end
	a.Jmp(top)        // 6: e9 rel32 -> top
	a.LeaRIP(RCX, tab)
	a.Bind(end) // 18
	a.Ret()
	a.Bind(tab) // 19
	a.TableEntry(19, top)
	a.TableEntry(19, end)
	got, err := a.Finish()
	if err != nil {
		t.Fatal(err)
	}
	want := "0f840c000000" + "e9f5ffffff" + "488d0d01000000" + "c3" + "edffffff" + "ffffffff"
	if hex.EncodeToString(got) != want {
		t.Fatalf("got  %s\nwant %s", hex.EncodeToString(got), want)
	}
	var b Asm
	b.Jmp(b.NewLabel())
	if _, err := b.Finish(); err == nil {
		t.Fatal("a jump to an unbound label was accepted")
	}
}
