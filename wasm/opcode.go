// WebAssembly's opcodes, named after the instructions' names in the text
// format by one mechanical rule: "opcode", then each part of the name (split
// at ".", "_" and " ") with its first letter in upper case. So i32.load8_s is
// opcodeI32Load8S, br_table is opcodeBrTable and select t* (select with a
// type annotation) is opcodeSelectT. Instructions behind the 0xFC prefix put
// "Misc" after "opcode", as wazero does: memory.copy is opcodeMiscMemoryCopy.
//
// The package has two families of opcodes, and these names keep them apart:
//
//   - opcode* (this file): WebAssembly's, the bytes of a function body that
//     compile.go decodes and validates;
//   - op* (ir.go), of type opcode: the engine's internal code, which
//     compile.go emits and exec.go runs.
//
// The families meet where an instruction keeps its WebAssembly opcode as
// its internal opcode (the loads, stores and numeric instructions): there
// exec.go's switch uses the constants of this file. That is why they are
// untyped: a byte in compile.go's switch, an opcode in exec.go's, with no
// conversion in either. The 0xFC sub-opcodes are uint32, the type of the
// u32 that follows the prefix in the binary.
//
// Vector (SIMD) instructions are not supported, so only their prefix has a
// name.

package wasm

// Control instructions.
const (
	opcodeUnreachable = 0x00
	opcodeNop         = 0x01

	opcodeBlock = 0x02
	opcodeLoop  = 0x03
	opcodeIf    = 0x04
	opcodeElse  = 0x05
	opcodeEnd   = 0x0b

	opcodeBr           = 0x0c
	opcodeBrIf         = 0x0d
	opcodeBrTable      = 0x0e
	opcodeReturn       = 0x0f
	opcodeCall         = 0x10
	opcodeCallIndirect = 0x11
)

// Reference instructions.
const (
	opcodeRefNull   = 0xd0
	opcodeRefIsNull = 0xd1
	opcodeRefFunc   = 0xd2
)

// Parametric instructions.
const (
	opcodeDrop    = 0x1a
	opcodeSelect  = 0x1b
	opcodeSelectT = 0x1c
)

// Variable instructions.
const (
	opcodeLocalGet  = 0x20
	opcodeLocalSet  = 0x21
	opcodeLocalTee  = 0x22
	opcodeGlobalGet = 0x23
	opcodeGlobalSet = 0x24
)

// Table instructions (the others are 0xFC-prefixed).
const (
	opcodeTableGet = 0x25
	opcodeTableSet = 0x26
)

// Memory instructions (the others are 0xFC-prefixed).
const (
	opcodeI32Load    = 0x28
	opcodeI64Load    = 0x29
	opcodeF32Load    = 0x2a
	opcodeF64Load    = 0x2b
	opcodeI32Load8S  = 0x2c
	opcodeI32Load8U  = 0x2d
	opcodeI32Load16S = 0x2e
	opcodeI32Load16U = 0x2f
	opcodeI64Load8S  = 0x30
	opcodeI64Load8U  = 0x31
	opcodeI64Load16S = 0x32
	opcodeI64Load16U = 0x33
	opcodeI64Load32S = 0x34
	opcodeI64Load32U = 0x35

	opcodeI32Store   = 0x36
	opcodeI64Store   = 0x37
	opcodeF32Store   = 0x38
	opcodeF64Store   = 0x39
	opcodeI32Store8  = 0x3a
	opcodeI32Store16 = 0x3b
	opcodeI64Store8  = 0x3c
	opcodeI64Store16 = 0x3d
	opcodeI64Store32 = 0x3e

	opcodeMemorySize = 0x3f
	opcodeMemoryGrow = 0x40
)

// Numeric instructions (the others are 0xFC-prefixed).
const (
	opcodeI32Const = 0x41
	opcodeI64Const = 0x42
	opcodeF32Const = 0x43
	opcodeF64Const = 0x44

	opcodeI32Eqz = 0x45
	opcodeI32Eq  = 0x46
	opcodeI32Ne  = 0x47
	opcodeI32LtS = 0x48
	opcodeI32LtU = 0x49
	opcodeI32GtS = 0x4a
	opcodeI32GtU = 0x4b
	opcodeI32LeS = 0x4c
	opcodeI32LeU = 0x4d
	opcodeI32GeS = 0x4e
	opcodeI32GeU = 0x4f

	opcodeI64Eqz = 0x50
	opcodeI64Eq  = 0x51
	opcodeI64Ne  = 0x52
	opcodeI64LtS = 0x53
	opcodeI64LtU = 0x54
	opcodeI64GtS = 0x55
	opcodeI64GtU = 0x56
	opcodeI64LeS = 0x57
	opcodeI64LeU = 0x58
	opcodeI64GeS = 0x59
	opcodeI64GeU = 0x5a

	opcodeF32Eq = 0x5b
	opcodeF32Ne = 0x5c
	opcodeF32Lt = 0x5d
	opcodeF32Gt = 0x5e
	opcodeF32Le = 0x5f
	opcodeF32Ge = 0x60

	opcodeF64Eq = 0x61
	opcodeF64Ne = 0x62
	opcodeF64Lt = 0x63
	opcodeF64Gt = 0x64
	opcodeF64Le = 0x65
	opcodeF64Ge = 0x66

	opcodeI32Clz    = 0x67
	opcodeI32Ctz    = 0x68
	opcodeI32Popcnt = 0x69
	opcodeI32Add    = 0x6a
	opcodeI32Sub    = 0x6b
	opcodeI32Mul    = 0x6c
	opcodeI32DivS   = 0x6d
	opcodeI32DivU   = 0x6e
	opcodeI32RemS   = 0x6f
	opcodeI32RemU   = 0x70
	opcodeI32And    = 0x71
	opcodeI32Or     = 0x72
	opcodeI32Xor    = 0x73
	opcodeI32Shl    = 0x74
	opcodeI32ShrS   = 0x75
	opcodeI32ShrU   = 0x76
	opcodeI32Rotl   = 0x77
	opcodeI32Rotr   = 0x78

	opcodeI64Clz    = 0x79
	opcodeI64Ctz    = 0x7a
	opcodeI64Popcnt = 0x7b
	opcodeI64Add    = 0x7c
	opcodeI64Sub    = 0x7d
	opcodeI64Mul    = 0x7e
	opcodeI64DivS   = 0x7f
	opcodeI64DivU   = 0x80
	opcodeI64RemS   = 0x81
	opcodeI64RemU   = 0x82
	opcodeI64And    = 0x83
	opcodeI64Or     = 0x84
	opcodeI64Xor    = 0x85
	opcodeI64Shl    = 0x86
	opcodeI64ShrS   = 0x87
	opcodeI64ShrU   = 0x88
	opcodeI64Rotl   = 0x89
	opcodeI64Rotr   = 0x8a

	opcodeF32Abs      = 0x8b
	opcodeF32Neg      = 0x8c
	opcodeF32Ceil     = 0x8d
	opcodeF32Floor    = 0x8e
	opcodeF32Trunc    = 0x8f
	opcodeF32Nearest  = 0x90
	opcodeF32Sqrt     = 0x91
	opcodeF32Add      = 0x92
	opcodeF32Sub      = 0x93
	opcodeF32Mul      = 0x94
	opcodeF32Div      = 0x95
	opcodeF32Min      = 0x96
	opcodeF32Max      = 0x97
	opcodeF32Copysign = 0x98

	opcodeF64Abs      = 0x99
	opcodeF64Neg      = 0x9a
	opcodeF64Ceil     = 0x9b
	opcodeF64Floor    = 0x9c
	opcodeF64Trunc    = 0x9d
	opcodeF64Nearest  = 0x9e
	opcodeF64Sqrt     = 0x9f
	opcodeF64Add      = 0xa0
	opcodeF64Sub      = 0xa1
	opcodeF64Mul      = 0xa2
	opcodeF64Div      = 0xa3
	opcodeF64Min      = 0xa4
	opcodeF64Max      = 0xa5
	opcodeF64Copysign = 0xa6

	opcodeI32WrapI64        = 0xa7
	opcodeI32TruncF32S      = 0xa8
	opcodeI32TruncF32U      = 0xa9
	opcodeI32TruncF64S      = 0xaa
	opcodeI32TruncF64U      = 0xab
	opcodeI64ExtendI32S     = 0xac
	opcodeI64ExtendI32U     = 0xad
	opcodeI64TruncF32S      = 0xae
	opcodeI64TruncF32U      = 0xaf
	opcodeI64TruncF64S      = 0xb0
	opcodeI64TruncF64U      = 0xb1
	opcodeF32ConvertI32S    = 0xb2
	opcodeF32ConvertI32U    = 0xb3
	opcodeF32ConvertI64S    = 0xb4
	opcodeF32ConvertI64U    = 0xb5
	opcodeF32DemoteF64      = 0xb6
	opcodeF64ConvertI32S    = 0xb7
	opcodeF64ConvertI32U    = 0xb8
	opcodeF64ConvertI64S    = 0xb9
	opcodeF64ConvertI64U    = 0xba
	opcodeF64PromoteF32     = 0xbb
	opcodeI32ReinterpretF32 = 0xbc
	opcodeI64ReinterpretF64 = 0xbd
	opcodeF32ReinterpretI32 = 0xbe
	opcodeF64ReinterpretI64 = 0xbf

	opcodeI32Extend8S  = 0xc0
	opcodeI32Extend16S = 0xc1
	opcodeI64Extend8S  = 0xc2
	opcodeI64Extend16S = 0xc3
	opcodeI64Extend32S = 0xc4
)

// Prefixes of multi-byte opcodes.
const (
	opcodeMiscPrefix = 0xfc // then a u32 sub-opcode, opcodeMisc*
	opcodeVecPrefix  = 0xfd // vector instructions: not supported
)

// Sub-opcodes after opcodeMiscPrefix: the saturating truncations, the bulk
// memory instructions and the table instructions beyond table.get and
// table.set.
const (
	opcodeMiscI32TruncSatF32S uint32 = 0
	opcodeMiscI32TruncSatF32U uint32 = 1
	opcodeMiscI32TruncSatF64S uint32 = 2
	opcodeMiscI32TruncSatF64U uint32 = 3
	opcodeMiscI64TruncSatF32S uint32 = 4
	opcodeMiscI64TruncSatF32U uint32 = 5
	opcodeMiscI64TruncSatF64S uint32 = 6
	opcodeMiscI64TruncSatF64U uint32 = 7

	opcodeMiscMemoryInit uint32 = 8
	opcodeMiscDataDrop   uint32 = 9
	opcodeMiscMemoryCopy uint32 = 10
	opcodeMiscMemoryFill uint32 = 11
	opcodeMiscTableInit  uint32 = 12
	opcodeMiscElemDrop   uint32 = 13
	opcodeMiscTableCopy  uint32 = 14

	opcodeMiscTableGrow uint32 = 15
	opcodeMiscTableSize uint32 = 16
	opcodeMiscTableFill uint32 = 17
)
