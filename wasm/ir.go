package wasm

// The engine executes a flat internal code, produced from each function body
// by the compiler: structured control flow is replaced by jumps to resolved
// positions, each branch carries the stack adjustment it implies, and
// immediates are decoded once. Loads, stores and numeric instructions keep
// their WebAssembly opcode (opcode.go) as their internal opcode; everything
// else lives at 0x100 and above.

type opcode uint16

// instr is one internal instruction. Its meaning of a and b depends on op.
type instr struct {
	op opcode
	a  uint32
	b  uint64
}

// brTarget is one entry of a br_table.
type brTarget struct {
	pc   uint32
	drop uint32
	keep uint32
}

// Internal opcodes that are not WebAssembly opcodes. Those below 0x100 are
// WebAssembly's own single-byte opcodes with the same meaning.
const (
	opUnreachable opcode = opcodeUnreachable
	opSelect      opcode = opcodeSelect // select and select t*
	opDrop        opcode = opcodeDrop
	opLocalGet    opcode = opcodeLocalGet
	opLocalSet    opcode = opcodeLocalSet
	opLocalTee    opcode = opcodeLocalTee
	opGlobalGet   opcode = opcodeGlobalGet
	opGlobalSet   opcode = opcodeGlobalSet
	opTableGet    opcode = opcodeTableGet
	opTableSet    opcode = opcodeTableSet
	opMemorySize  opcode = opcodeMemorySize
	opMemoryGrow  opcode = opcodeMemoryGrow
	opConst       opcode = opcodeI32Const // all four const opcodes and ref.null become this one: push b
	opRefIsNull   opcode = opcodeRefIsNull
	opRefFunc     opcode = opcodeRefFunc
)

const (
	opBr           opcode = 0x100 + iota // a: target pc
	opBrDrop                             // a: target pc, b: keep<<32 | drop
	opBrIf                               // a: target pc; pops the condition
	opBrIfDrop                           // a: target pc, b: keep<<32 | drop
	opBrUnless                           // a: target pc; pops the condition (if)
	opBrTable                            // a: first entry in brTargets, b: count (last is default)
	opReturn                             // copies the results to the frame base and returns
	opCall                               // a: function index
	opCallIndirect                       // a: type index, b: table index
	opTruncSat                           // a: opcodeMiscI32TruncSatF32S..opcodeMiscI64TruncSatF64U
	opMemoryInit                         // a: data index
	opDataDrop                           // a: data index
	opMemoryCopy                         //
	opMemoryFill                         //
	opTableInit                          // a: elem index, b: table index
	opElemDrop                           // a: elem index
	opTableCopy                          // a: destination table, b: source table
	opTableGrow                          // a: table index
	opTableSize                          // a: table index
	opTableFill                          // a: table index

	// Superinstructions: pairs (and one triple) of instructions that are
	// common in compiled code, fused by the compiler's peephole (fuse in
	// compile.go). Each counts as one instruction.
	opLocalGet2        // local.get a; local.get b
	opLocalGetConst    // local.get a; const b
	opLocalSetGet      // local.set a; local.get b
	opI32AddConst      // i32.const b; i32.add
	opI64AddConst      // i64.const b; i64.add
	opLocalI32AddConst // local.get a; i32.const b; i32.add
	opLocalI64AddConst // local.get a; i64.const b; i64.add
	opLocalI32Load     // local.get a; i32.load offset=b
	opLocalI64Load     // local.get a; i64.load offset=b
)
