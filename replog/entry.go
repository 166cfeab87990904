// Package replog is ftvm's event log: the entries that carry every
// nondeterministic input of a guest from the primary to the backup (or to a
// file for offline replay), their binary encoding, and the file form.
//
// An entry is {sequence, position, type, data}. The sequence numbers
// entries from 1 without gaps; the position is the guest's instruction count
// at the import call that produced the entry; the type says which kind of
// input it is (see Type) and the data is the input's result, encoded by the
// layer that produced it (package vmm). On replay, the backup checks each
// entry's position and type against its own execution: a mismatch is a
// divergence and stops it loudly.
//
// # Encoding
//
// An entry is framed as
//
//	length  uvarint   bytes of payload
//	payload           type (1 byte), sequence (uvarint), position (uvarint), data
//	crc     4 bytes   CRC-32C of the payload, little-endian
//
// so a reader can tell a clean end of log from a truncated or corrupt one.
// An entry's payload may not exceed MaxEntrySize.
//
// # Files
//
// A log file is the magic "FTVMLOG1", a header frame (same framing, payload
// described by Header), then entry frames. See docs/LOG-FORMAT.md.
package replog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// MaxEntrySize bounds an entry's payload, so a corrupt length cannot make a
// reader allocate without bound. Inputs larger than this are split by the
// producer.
const MaxEntrySize = 16 << 20

// Type is the kind of an entry.
type Type uint8

// Entry is one nondeterministic event.
type Entry struct {
	Seq  uint64
	Pos  uint64
	Type Type
	Data []byte
}

func (e Entry) String() string {
	return fmt.Sprintf("#%d @%d %v (%d bytes)", e.Seq, e.Pos, e.Type, len(e.Data))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors a decoder reports. Both are wrapped with the entry's offset.
var (
	// ErrTruncated: the input ends inside a frame.
	ErrTruncated = errors.New("replog: truncated entry")
	// ErrCorrupt: a frame is malformed or fails its checksum.
	ErrCorrupt = errors.New("replog: corrupt entry")
)

// AppendFrame appends payload framed with its length and checksum.
func AppendFrame(b, payload []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(payload)))
	b = append(b, payload...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
}

// DecodeFrame reads one frame from b, returning its payload (aliasing b) and
// the number of bytes consumed. It reports ErrTruncated when b ends inside
// the frame and ErrCorrupt for a bad length or checksum.
func DecodeFrame(b []byte) (payload []byte, n int, err error) {
	return DecodeFrameUpTo(b, MaxEntrySize)
}

// DecodeFrameUpTo is DecodeFrame for a frame whose payload may be up to
// limit bytes long: a VM snapshot, whose memory alone may be far larger
// than any entry, read whole before it is decoded.
func DecodeFrameUpTo(b []byte, limit uint64) (payload []byte, n int, err error) {
	size, k := binary.Uvarint(b)
	switch {
	case k == 0:
		return nil, 0, ErrTruncated
	case k < 0:
		return nil, 0, fmt.Errorf("%w: bad length", ErrCorrupt)
	case size > limit:
		return nil, 0, fmt.Errorf("%w: length %d exceeds the limit of %d", ErrCorrupt, size, limit)
	}
	end := k + int(size) + 4
	if len(b) < end {
		return nil, 0, ErrTruncated
	}
	payload = b[k : k+int(size)]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[end-4:end]) {
		return nil, 0, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return payload, end, nil
}

// AppendEntry appends the framed encoding of e to b.
func AppendEntry(b []byte, e Entry) []byte {
	p := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(e.Data))
	p = append(p, byte(e.Type))
	p = binary.AppendUvarint(p, e.Seq)
	p = binary.AppendUvarint(p, e.Pos)
	p = append(p, e.Data...)
	return AppendFrame(b, p)
}

// DecodeEntry decodes one framed entry from b. The entry's Data aliases b.
func DecodeEntry(b []byte) (Entry, int, error) {
	p, n, err := DecodeFrame(b)
	if err != nil {
		return Entry{}, 0, err
	}
	e, err := parseEntry(p)
	return e, n, err
}

func parseEntry(p []byte) (Entry, error) {
	if len(p) < 1 {
		return Entry{}, fmt.Errorf("%w: empty payload", ErrCorrupt)
	}
	e := Entry{Type: Type(p[0])}
	p = p[1:]
	var k int
	if e.Seq, k = binary.Uvarint(p); k <= 0 {
		return Entry{}, fmt.Errorf("%w: bad sequence number", ErrCorrupt)
	}
	p = p[k:]
	if e.Pos, k = binary.Uvarint(p); k <= 0 {
		return Entry{}, fmt.Errorf("%w: bad position", ErrCorrupt)
	}
	e.Data = p[k:]
	return e, nil
}
