package replog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// fileMagic starts every log file.
const fileMagic = "FTVMLOG1"

// Header describes the run a log file records: enough to replay it with
// nothing but the module.
type Header struct {
	// Module is the SHA-256 of the guest's binary; replay refuses another.
	Module [32]byte
	// Engine is the engine's code version (wasm.CodeVersion): positions
	// are instruction counts of that engine, so replay refuses another.
	Engine uint32
	// Args and Env are the guest's arguments and environment.
	Args []string
	Env  []string
	// Extra is opaque configuration of the recording layer (preopens,
	// listeners), encoded by it.
	Extra []byte
	// Tier names the engine tier that recorded the run ("interp" or
	// "compiler", wasm.Engine's String), for the record: the tiers count
	// alike, so a log replays under either. "" in logs written before the
	// field, which end after Extra; it is encoded only when set, so such
	// logs and new ones without a tier have the same bytes.
	Tier string
}

func (h Header) marshal() []byte {
	b := append([]byte(nil), h.Module[:]...)
	b = binary.AppendUvarint(b, uint64(h.Engine))
	b = appendStrings(b, h.Args)
	b = appendStrings(b, h.Env)
	b = binary.AppendUvarint(b, uint64(len(h.Extra)))
	b = append(b, h.Extra...)
	if h.Tier != "" {
		b = binary.AppendUvarint(b, uint64(len(h.Tier)))
		b = append(b, h.Tier...)
	}
	return b
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func parseHeader(p []byte) (Header, error) {
	var h Header
	d := Decoder{b: p}
	copy(h.Module[:], d.Bytes(32))
	h.Engine = uint32(d.Uint())
	h.Args = d.Strings()
	h.Env = d.Strings()
	h.Extra = d.Blob()
	if d.Err() == nil && d.Len() > 0 {
		// Optional: older logs end here.
		if h.Tier = d.String(); h.Tier == "" && d.Err() == nil {
			return Header{}, fmt.Errorf("log header: %w: empty tier", ErrCorrupt)
		}
	}
	if err := d.Finish(); err != nil {
		return Header{}, fmt.Errorf("log header: %w", err)
	}
	return h, nil
}

// Writer writes a log file.
type Writer struct {
	w   *bufio.Writer
	buf []byte
	seq uint64
}

// NewWriter writes the magic and the header to w and returns a Writer for
// the entries.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	lw := &Writer{w: bufio.NewWriterSize(w, 64<<10)}
	b := append([]byte(fileMagic), AppendFrame(nil, h.marshal())...)
	if _, err := lw.w.Write(b); err != nil {
		return nil, fmt.Errorf("write log header: %w", err)
	}
	return lw, nil
}

// Write appends e. Entries must come in sequence order without gaps.
func (w *Writer) Write(e Entry) error {
	if e.Seq != w.seq+1 {
		return fmt.Errorf("replog: entry %d written after %d", e.Seq, w.seq)
	}
	if len(e.Data) > MaxEntrySize-32 {
		return fmt.Errorf("replog: entry %d of %d bytes exceeds the limit", e.Seq, len(e.Data))
	}
	w.buf = AppendEntry(w.buf[:0], e)
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("write log entry %d: %w", e.Seq, err)
	}
	w.seq = e.Seq
	return nil
}

// Flush writes buffered entries to the underlying writer.
func (w *Writer) Flush() error {
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("flush log: %w", err)
	}
	return nil
}

// Reader reads a log file.
type Reader struct {
	r      *bufio.Reader
	header Header
	seq    uint64
	offset int64
	buf    []byte
}

// NewReader reads the magic and header from r.
func NewReader(r io.Reader) (*Reader, error) {
	lr := &Reader{r: bufio.NewReaderSize(r, 64<<10)}
	magic := make([]byte, len(fileMagic))
	if _, err := io.ReadFull(lr.r, magic); err != nil {
		return nil, fmt.Errorf("not an ftvm log: %w", errEOFtoTruncated(err))
	}
	if string(magic) != fileMagic {
		return nil, errors.New("not an ftvm log: bad magic")
	}
	lr.offset = int64(len(fileMagic))
	p, err := lr.frame()
	if err != nil {
		return nil, fmt.Errorf("log header: %w", err)
	}
	if lr.header, err = parseHeader(p); err != nil {
		return nil, err
	}
	return lr, nil
}

// Header returns the file's header.
func (r *Reader) Header() Header { return r.header }

// Next returns the next entry. It returns io.EOF at the clean end of the
// log, and an error wrapping ErrTruncated or ErrCorrupt (with the entry's
// sequence number and byte offset) otherwise. The entry's Data is valid
// until the next call.
func (r *Reader) Next() (Entry, error) {
	if _, err := r.r.Peek(1); err == io.EOF {
		return Entry{}, io.EOF
	}
	at := r.offset
	p, err := r.frame()
	if err != nil {
		return Entry{}, fmt.Errorf("log entry %d at byte %d: %w", r.seq+1, at, err)
	}
	e, err := parseEntry(p)
	if err != nil {
		return Entry{}, fmt.Errorf("log entry %d at byte %d: %w", r.seq+1, at, err)
	}
	if e.Seq != r.seq+1 {
		return Entry{}, fmt.Errorf("log entry at byte %d: %w: sequence %d follows %d", at, ErrCorrupt, e.Seq, r.seq)
	}
	r.seq = e.Seq
	return e, nil
}

// frame reads one frame without trusting its length more than MaxEntrySize.
func (r *Reader) frame() ([]byte, error) {
	size, err := binary.ReadUvarint(r.r)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrTruncated
		}
		return nil, fmt.Errorf("%w: bad length", ErrCorrupt)
	}
	if size > MaxEntrySize {
		return nil, fmt.Errorf("%w: length %d exceeds the limit of %d", ErrCorrupt, size, MaxEntrySize)
	}
	n := int(size) + 4
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	b := r.buf[:n]
	if _, err := io.ReadFull(r.r, b); err != nil {
		return nil, errEOFtoTruncated(err)
	}
	r.offset += int64(uvarintLen(size) + n)
	p := b[:size]
	if binary.LittleEndian.Uint32(b[size:]) != crc32Castagnoli(p) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return p, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func errEOFtoTruncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrTruncated
	}
	return err
}
