package spectest

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Value types as wast2json names them.
const (
	typeI32       = "i32"
	typeI64       = "i64"
	typeF32       = "f32"
	typeF64       = "f64"
	typeV128      = "v128"
	typeFuncRef   = "funcref"
	typeExternRef = "externref"
)

// Canonical NaN bit patterns and the masks that recognise NaN classes.
const (
	canonNaN32  = 0x7fc00000
	canonNaN64  = 0x7ff8000000000000
	quietBit32  = 0x00400000
	quietBit64  = 0x0008000000000000
	expMask32   = 0x7f800000
	expMask64   = 0x7ff0000000000000
	absMask32   = 0x7fffffff
	absMask64   = 0x7fffffffffffffff
	nanCanon    = "nan:canonical"
	nanArith    = "nan:arithmetic"
	nullRefText = "null"
)

// ParseArg converts an argument to the engine's representation: i32 as its
// zero-extended bits, i64 as its bits, f32 and f64 as their IEEE bits, and
// references as 0 for null, or for externref N as N+1.
func ParseArg(v Value) (uint64, error) {
	if !v.HasValue || v.Lanes != nil {
		return 0, fmt.Errorf("%s argument without a scalar value", v.Type)
	}
	switch v.Type {
	case typeI32, typeF32:
		return parseBits(v.Value, 32)
	case typeI64, typeF64:
		return parseBits(v.Value, 64)
	case typeExternRef:
		if v.Value == nullRefText {
			return 0, nil
		}
		n, err := parseBits(v.Value, 64)
		if err != nil {
			return 0, err
		}
		if n == math.MaxUint64 {
			return 0, fmt.Errorf("externref %s is too large", v.Value)
		}
		return n + 1, nil
	case typeFuncRef:
		if v.Value == nullRefText {
			return 0, nil
		}
		return 0, fmt.Errorf("funcref argument %q: only null can be passed", v.Value)
	case typeV128:
		return 0, fmt.Errorf("v128 values are not supported")
	}
	return 0, fmt.Errorf("unknown value type %q", v.Type)
}

// parseBits reads a decimal bit pattern of the given width. wast2json writes
// unsigned values; a negative value is accepted as its two's complement.
func parseBits(s string, bits int) (uint64, error) {
	if u, err := strconv.ParseUint(s, 10, bits); err == nil {
		return u, nil
	}
	i, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("bad %d-bit value %q", bits, s)
	}
	if bits == 32 {
		return uint64(uint32(i)), nil
	}
	return uint64(i), nil
}

// matchKind says how an expected value is compared with a result.
type matchKind int

const (
	matchExact         matchKind = iota // bits must be equal
	matchCanonicalNaN                   // a canonical NaN of either sign
	matchArithmeticNaN                  // any NaN with the quiet bit set
	matchNonNull                        // any non-null reference
)

// Expectation is one expected result of assert_return.
type Expectation struct {
	Type string
	kind matchKind
	bits uint64
}

// ParseExpected converts an expected result of assert_return.
func ParseExpected(v Value) (Expectation, error) {
	e := Expectation{Type: v.Type}
	if !v.HasValue || v.Lanes != nil {
		if v.Type == typeV128 {
			return e, fmt.Errorf("v128 values are not supported")
		}
		return e, fmt.Errorf("expected %s without a scalar value", v.Type)
	}
	switch v.Type {
	case typeF32, typeF64:
		switch v.Value {
		case nanCanon:
			e.kind = matchCanonicalNaN
			return e, nil
		case nanArith:
			e.kind = matchArithmeticNaN
			return e, nil
		}
	case typeFuncRef:
		// A function reference cannot be named from the script: any
		// non-null reference matches a non-null expectation.
		if v.Value != nullRefText {
			if _, err := parseBits(v.Value, 64); err != nil {
				return e, err
			}
			e.kind = matchNonNull
			return e, nil
		}
	}
	bits, err := ParseArg(v)
	if err != nil {
		return e, err
	}
	e.bits = bits
	return e, nil
}

// Match reports whether a result (in the engine's representation) satisfies
// the expectation.
func (e Expectation) Match(got uint64) bool {
	switch e.kind {
	case matchCanonicalNaN:
		if e.Type == typeF32 {
			return got <= math.MaxUint32 && got&absMask32 == canonNaN32
		}
		return got&absMask64 == canonNaN64
	case matchArithmeticNaN:
		if e.Type == typeF32 {
			return got <= math.MaxUint32 && got&expMask32 == expMask32 && got&quietBit32 != 0
		}
		return got&expMask64 == expMask64 && got&quietBit64 != 0
	case matchNonNull:
		return got != 0
	}
	return got == e.bits
}

// String describes the expectation, as FormatValue describes a value.
func (e Expectation) String() string {
	switch e.kind {
	case matchCanonicalNaN:
		return e.Type + ":" + nanCanon
	case matchArithmeticNaN:
		return e.Type + ":" + nanArith
	case matchNonNull:
		return e.Type + ":non-null"
	}
	return FormatValue(e.Type, e.bits)
}

// FormatValue describes a value of type typ held in the engine's
// representation: integers in signed decimal, floats as their value and
// bits, references as null or their number.
func FormatValue(typ string, bits uint64) string {
	switch typ {
	case typeI32:
		if bits > math.MaxUint32 {
			return fmt.Sprintf("i32:<bad bits 0x%x>", bits)
		}
		return "i32:" + strconv.FormatInt(int64(int32(uint32(bits))), 10)
	case typeI64:
		return "i64:" + strconv.FormatInt(int64(bits), 10)
	case typeF32:
		if bits > math.MaxUint32 {
			return fmt.Sprintf("f32:<bad bits 0x%x>", bits)
		}
		f := math.Float32frombits(uint32(bits))
		return fmt.Sprintf("f32:%s (0x%08x)", formatFloat(float64(f), 32), bits)
	case typeF64:
		f := math.Float64frombits(bits)
		return fmt.Sprintf("f64:%s (0x%016x)", formatFloat(f, 64), bits)
	case typeExternRef:
		if bits == 0 {
			return "externref:null"
		}
		return "externref:" + strconv.FormatUint(bits-1, 10)
	case typeFuncRef:
		if bits == 0 {
			return "funcref:null"
		}
		return fmt.Sprintf("funcref:#%d", bits)
	}
	return fmt.Sprintf("%s:0x%x", typ, bits)
}

func formatFloat(f float64, bits int) string {
	if math.IsNaN(f) {
		return "nan"
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

// formatValues describes a list of values of the given types.
func formatValues(types []string, vals []uint64) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		t := "?"
		if i < len(types) {
			t = types[i]
		}
		parts[i] = FormatValue(t, v)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

// formatScriptValues describes values as the script writes them, for
// messages about commands whose values could not be converted.
func formatScriptValues(vals []Value) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		switch {
		case v.Lanes != nil:
			parts[i] = v.Type + ":[" + strings.Join(v.Lanes, " ") + "]"
		case v.HasValue:
			parts[i] = v.Type + ":" + v.Value
		default:
			parts[i] = v.Type
		}
	}
	return "(" + strings.Join(parts, ", ") + ")"
}
