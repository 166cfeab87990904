package replog

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

func crc32Castagnoli(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

// Encoder builds the data of an entry: unsigned varints, fixed-size
// integers, length-prefixed byte strings.
type Encoder struct{ B []byte }

// Uint appends v as a uvarint.
func (e *Encoder) Uint(v uint64) { e.B = binary.AppendUvarint(e.B, v) }

// Uint32 appends v as 4 little-endian bytes.
func (e *Encoder) Uint32(v uint32) { e.B = binary.LittleEndian.AppendUint32(e.B, v) }

// Uint64 appends v as 8 little-endian bytes.
func (e *Encoder) Uint64(v uint64) { e.B = binary.LittleEndian.AppendUint64(e.B, v) }

// Blob appends a length-prefixed byte string.
func (e *Encoder) Blob(p []byte) {
	e.Uint(uint64(len(p)))
	e.B = append(e.B, p...)
}

// String appends a length-prefixed string.
func (e *Encoder) String(s string) {
	e.Uint(uint64(len(s)))
	e.B = append(e.B, s...)
}

// Decoder reads what an Encoder wrote. The first error sticks: later reads
// return zero values, and Finish reports it. Lengths are checked against
// the bytes left, so corrupt input cannot make it allocate.
type Decoder struct {
	b   []byte
	err error
}

// NewDecoder returns a Decoder over b.
func NewDecoder(b []byte) *Decoder { return &Decoder{b: b} }

func (d *Decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", ErrCorrupt, what)
	}
}

// Uint reads a uvarint in its minimal encoding (a longer one, ending in a
// zero byte, is refused), so that every value has exactly one encoding.
func (d *Decoder) Uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.fail("integer")
		return 0
	}
	if k > 1 && d.b[k-1] == 0 {
		d.fail("integer (not minimal)")
		return 0
	}
	d.b = d.b[k:]
	return v
}

// Uint32 reads 4 little-endian bytes.
func (d *Decoder) Uint32() uint32 {
	if b := d.Bytes(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

// Uint64 reads 8 little-endian bytes.
func (d *Decoder) Uint64() uint64 {
	if b := d.Bytes(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// Bytes reads n raw bytes (aliasing the input).
func (d *Decoder) Bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.fail("length")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// Blob reads a length-prefixed byte string (aliasing the input).
func (d *Decoder) Blob() []byte {
	n := d.Uint()
	if n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	return d.Bytes(int(n))
}

// String reads a length-prefixed string.
func (d *Decoder) String() string { return string(d.Blob()) }

// Strings reads a count and that many strings.
func (d *Decoder) Strings() []string {
	n := d.Uint()
	if n > uint64(len(d.b)) {
		d.fail("count")
		return nil
	}
	var ss []string
	for range n {
		ss = append(ss, d.String())
	}
	return ss
}

// Len returns the bytes left.
func (d *Decoder) Len() int { return len(d.b) }

// Err returns the first error.
func (d *Decoder) Err() error { return d.err }

// Finish returns the first error, or an error if bytes are left over.
func (d *Decoder) Finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return d.err
}
