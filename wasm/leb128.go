package wasm

import (
	"encoding/binary"
	"errors"
)

// Errors of the fixed-size and LEB128 readers. They are sentinels so that
// the readers never allocate; the decoder and the compiler add the offset.
var (
	ErrUnexpectedEnd = errors.New("unexpected end")
	ErrIntTooLong    = errors.New("integer representation too long")
	ErrIntTooLarge   = errors.New("integer too large")
)

// The readers below decode one value at b[pos:] and return it with the
// number of bytes it took. pos may be anything: out of range means
// ErrUnexpectedEnd. The last byte of a maximal-length encoding may only
// carry bits that fit the type (unsigned) or copies of the sign bit
// (signed), as the binary format requires.

// readU32 reads an unsigned LEB128 integer of at most 5 bytes.
func readU32(b []byte, pos int) (uint32, int, error) {
	if uint(pos) < uint(len(b)) && b[pos] < 0x80 {
		return uint32(b[pos]), 1, nil
	}
	var v uint32
	for i := 0; i < 5; i++ {
		p := pos + i
		if uint(p) >= uint(len(b)) {
			return 0, 0, ErrUnexpectedEnd
		}
		c := b[p]
		if i == 4 {
			if c&0x80 != 0 {
				return 0, 0, ErrIntTooLong
			}
			if c&0x70 != 0 {
				return 0, 0, ErrIntTooLarge
			}
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, i + 1, nil
		}
	}
	return 0, 0, ErrIntTooLong // not reached
}

// readU64 reads an unsigned LEB128 integer of at most 10 bytes.
func readU64(b []byte, pos int) (uint64, int, error) {
	var v uint64
	for i := 0; i < 10; i++ {
		p := pos + i
		if uint(p) >= uint(len(b)) {
			return 0, 0, ErrUnexpectedEnd
		}
		c := b[p]
		if i == 9 {
			if c&0x80 != 0 {
				return 0, 0, ErrIntTooLong
			}
			if c&0x7e != 0 {
				return 0, 0, ErrIntTooLarge
			}
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, i + 1, nil
		}
	}
	return 0, 0, ErrIntTooLong // not reached
}

// readS32 reads a signed LEB128 integer of at most 5 bytes.
func readS32(b []byte, pos int) (int32, int, error) {
	if uint(pos) < uint(len(b)) && b[pos] < 0x80 {
		// One byte: bit 6 is the sign.
		return int32(int8(b[pos]<<1) >> 1), 1, nil
	}
	v, n, err := readSigned(b, pos, 5, 0x78)
	return int32(v), n, err
}

// readS33 reads a signed LEB128 integer of at most 5 bytes and 33 bits of
// value: the encoding of a block type's type index.
func readS33(b []byte, pos int) (int64, int, error) {
	return readSigned(b, pos, 5, 0x70)
}

// readS64 reads a signed LEB128 integer of at most 10 bytes.
func readS64(b []byte, pos int) (int64, int, error) {
	if uint(pos) < uint(len(b)) && b[pos] < 0x80 {
		return int64(int8(b[pos]<<1) >> 1), 1, nil
	}
	return readSigned(b, pos, 10, 0x7f)
}

// readSigned reads a signed LEB128 integer of at most max bytes. In the
// last byte, the bits in ext (the sign bit of the value and the unused bits
// above it) must all be equal.
func readSigned(b []byte, pos, max int, ext byte) (int64, int, error) {
	var v int64
	for i := 0; i < max; i++ {
		p := pos + i
		if uint(p) >= uint(len(b)) {
			return 0, 0, ErrUnexpectedEnd
		}
		c := b[p]
		if i == max-1 {
			if c&0x80 != 0 {
				return 0, 0, ErrIntTooLong
			}
			if s := c & ext; s != 0 && s != ext {
				return 0, 0, ErrIntTooLarge
			}
		}
		shift := uint(7 * i)
		v |= int64(c&0x7f) << shift
		if c&0x80 == 0 {
			if shift += 7; shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, ErrIntTooLong // not reached
}

// readF32 reads the bits of a 32-bit float (little endian).
func readF32(b []byte, pos int) (uint32, int, error) {
	if pos < 0 || pos > len(b)-4 {
		return 0, 0, ErrUnexpectedEnd
	}
	return binary.LittleEndian.Uint32(b[pos:]), 4, nil
}

// readF64 reads the bits of a 64-bit float (little endian).
func readF64(b []byte, pos int) (uint64, int, error) {
	if pos < 0 || pos > len(b)-8 {
		return 0, 0, ErrUnexpectedEnd
	}
	return binary.LittleEndian.Uint64(b[pos:]), 8, nil
}
