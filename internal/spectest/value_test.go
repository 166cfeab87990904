package spectest

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func val(typ, v string) Value { return Value{Type: typ, Value: v, HasValue: true} }

func TestParseArg(t *testing.T) {
	tests := []struct {
		v    Value
		want uint64
	}{
		{val("i32", "0"), 0},
		{val("i32", "4294967295"), 0xffffffff},
		{val("i32", "-1"), 0xffffffff},
		{val("i32", "2147483648"), 0x80000000},
		{val("i64", "18446744073709551615"), math.MaxUint64},
		{val("i64", "-2"), math.MaxUint64 - 1},
		{val("f32", "2143289344"), 0x7fc00000},
		{val("f32", "1065353216"), uint64(math.Float32bits(1))},
		{val("f64", "9221120237041090560"), 0x7ff8000000000000},
		{val("externref", "null"), 0},
		{val("externref", "0"), 1},
		{val("externref", "137"), 138},
		{val("funcref", "null"), 0},
	}
	for _, tt := range tests {
		got, err := ParseArg(tt.v)
		if err != nil {
			t.Errorf("ParseArg(%s %q): %v", tt.v.Type, tt.v.Value, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseArg(%s %q) = %#x, want %#x", tt.v.Type, tt.v.Value, got, tt.want)
		}
	}
}

func TestParseArgErrors(t *testing.T) {
	bad := []Value{
		val("i32", "4294967296"),
		val("i32", "x"),
		val("i32", ""),
		val("i64", "18446744073709551616"),
		val("f32", "nan:canonical"), // only an expectation
		val("externref", "18446744073709551615"),
		val("externref", "-"),
		val("funcref", "3"),
		val("v128", "0"),
		{Type: "v128", Lanes: []string{"0", "0", "0", "0"}, HasValue: true},
		{Type: "i32"}, // no value
		val("anyref", "null"),
		val("", "1"),
	}
	for _, v := range bad {
		if got, err := ParseArg(v); err == nil {
			t.Errorf("ParseArg(%+v) = %#x, want an error", v, got)
		}
	}
}

func TestExpectationMatch(t *testing.T) {
	tests := []struct {
		v       Value
		matches []uint64
		misses  []uint64
	}{
		{val("i32", "4294967295"), []uint64{0xffffffff}, []uint64{0, 0xffffffffffffffff, 0x1ffffffff}},
		{val("i64", "1"), []uint64{1}, []uint64{0, 1 << 32}},
		{val("f32", "2143289344"), []uint64{0x7fc00000}, []uint64{0xffc00000, 0x7fc00001}},
		{val("f64", "0"), []uint64{0}, []uint64{1 << 63}},
		{
			val("f32", "nan:canonical"),
			[]uint64{0x7fc00000, 0xffc00000},
			[]uint64{0x7fc00001, 0x7fa00000, 0x7f800000, 0, 0x1_7fc00000, 0x7ff8000000000000},
		},
		{
			val("f32", "nan:arithmetic"),
			[]uint64{0x7fc00000, 0xffc00000, 0x7fc00001, 0xffffffff, 0x7fe00000},
			[]uint64{0x7fa00000, 0x7f800000, 0x7f800001, 0x3fc00000, 0x1_7fc00000},
		},
		{
			val("f64", "nan:canonical"),
			[]uint64{0x7ff8000000000000, 0xfff8000000000000},
			[]uint64{0x7ff8000000000001, 0x7ff4000000000000, 0x7ff0000000000000, 0x7fc00000},
		},
		{
			val("f64", "nan:arithmetic"),
			[]uint64{0x7ff8000000000000, 0xfff8000000000000, 0x7ff8000000000001, 0xffffffffffffffff},
			[]uint64{0x7ff4000000000000, 0x7ff0000000000000, 0x3ff8000000000000, 0x7fc00000},
		},
		{val("funcref", "null"), []uint64{0}, []uint64{1, 7}},
		{val("funcref", "0"), []uint64{1, 7}, []uint64{0}},
		{val("externref", "null"), []uint64{0}, []uint64{1}},
		{val("externref", "1"), []uint64{2}, []uint64{0, 1, 3}},
		{val("externref", "0"), []uint64{1}, []uint64{0}},
	}
	for _, tt := range tests {
		e, err := ParseExpected(tt.v)
		if err != nil {
			t.Errorf("ParseExpected(%s %q): %v", tt.v.Type, tt.v.Value, err)
			continue
		}
		for _, g := range tt.matches {
			if !e.Match(g) {
				t.Errorf("%v does not match %#x", e, g)
			}
		}
		for _, g := range tt.misses {
			if e.Match(g) {
				t.Errorf("%v matches %#x", e, g)
			}
		}
	}
}

func TestParseExpectedErrors(t *testing.T) {
	bad := []Value{
		{Type: "i32"},
		{Type: "v128", Lanes: []string{"1", "2", "3", "4"}, HasValue: true},
		val("i32", "nan:canonical"),
		val("f32", "nan"),
		val("funcref", "x"),
		val("bogus", "1"),
	}
	for _, v := range bad {
		if e, err := ParseExpected(v); err == nil {
			t.Errorf("ParseExpected(%+v) = %v, want an error", v, e)
		}
	}
}

func TestFormatValue(t *testing.T) {
	tests := []struct {
		typ  string
		bits uint64
		want string
	}{
		{"i32", 0xffffffff, "i32:-1"},
		{"i32", 1 << 32, "i32:<bad bits 0x100000000>"},
		{"i64", 1 << 63, "i64:-9223372036854775808"},
		{"f32", 0x3fc00000, "f32:1.5 (0x3fc00000)"},
		{"f32", 0xffc00000, "f32:nan (0xffc00000)"},
		{"f64", 0x8000000000000000, "f64:-0 (0x8000000000000000)"},
		{"externref", 0, "externref:null"},
		{"externref", 43, "externref:42"},
		{"funcref", 0, "funcref:null"},
		{"funcref", 5, "funcref:#5"},
		{"?", 5, "?:0x5"},
	}
	for _, tt := range tests {
		if got := FormatValue(tt.typ, tt.bits); got != tt.want {
			t.Errorf("FormatValue(%s, %#x) = %q, want %q", tt.typ, tt.bits, got, tt.want)
		}
	}
	e, err := ParseExpected(val("f64", "nan:arithmetic"))
	if err != nil || e.String() != "f64:nan:arithmetic" {
		t.Errorf("expectation = %v, %v; want f64:nan:arithmetic", e, err)
	}
}

func TestValueUnmarshal(t *testing.T) {
	var vs []Value
	in := `[{"type":"i32","value":"7"},{"type":"f32"},{"type":"v128","lane_type":"i32","value":["1","2","3","4"]},{"type":"externref","value":null}]`
	if err := json.Unmarshal([]byte(in), &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) != 4 {
		t.Fatalf("got %d values", len(vs))
	}
	if v := vs[0]; v.Type != "i32" || v.Value != "7" || !v.HasValue || v.Lanes != nil {
		t.Errorf("scalar: %+v", v)
	}
	if v := vs[1]; v.Type != "f32" || v.HasValue {
		t.Errorf("type only: %+v", v)
	}
	if v := vs[2]; v.Type != "v128" || !v.HasValue || strings.Join(v.Lanes, ",") != "1,2,3,4" {
		t.Errorf("v128: %+v", v)
	}
	if v := vs[3]; v.HasValue {
		t.Errorf("null value: %+v", v)
	}
	for _, bad := range []string{`{"type":"i32","value":7}`, `{"type":"i32","value":{}}`, `{"type":"v128","value":[1]}`, `[]`} {
		var v Value
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("Unmarshal(%s) = %+v, want an error", bad, v)
		}
	}
}
