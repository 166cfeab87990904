package session

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// Protocol constants.
const (
	// Version is the protocol version a server announces in its Hello.
	Version = 1
	// HeaderSize is the size of a frame's header: type and length.
	HeaderSize = 5
	// MaxPayload bounds a frame's payload, so a length cannot make a
	// reader allocate without bound.
	MaxPayload = 256 << 10
	// MaxData is the most stream bytes one Data frame carries.
	MaxData = MaxPayload - 8
)

// FrameType is a frame's first byte.
type FrameType uint8

// Frame types.
const (
	FrameHello   FrameType = 1 // server → client: Version, Nonce
	FrameOpen    FrameType = 2 // client → server: Target
	FrameOpened  FrameType = 3 // server → client: ID, Secret, Window
	FrameResume  FrameType = 4 // client → server: ID, Received, Sent, Proof, Target
	FrameResumed FrameType = 5 // server → client: Consumed, Window
	FrameData    FrameType = 6 // both ways: Offset, Data
	FrameAck     FrameType = 7 // both ways: Offset
	FrameClose   FrameType = 8 // both ways: Offset (the stream's length)
	FrameRefuse  FrameType = 9 // server → client: Reason
)

func (t FrameType) String() string {
	switch t {
	case FrameHello:
		return "Hello"
	case FrameOpen:
		return "Open"
	case FrameOpened:
		return "Opened"
	case FrameResume:
		return "Resume"
	case FrameResumed:
		return "Resumed"
	case FrameData:
		return "Data"
	case FrameAck:
		return "Ack"
	case FrameClose:
		return "Close"
	case FrameRefuse:
		return "Refuse"
	}
	return fmt.Sprintf("FrameType(%d)", uint8(t))
}

func (t FrameType) known() bool { return t >= FrameHello && t <= FrameRefuse }

// ID names a session. It is random, so it is hard to guess, but it is not
// a credential: resuming needs the Secret.
type ID [16]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Secret is the key a client proves it owns a session with. It crosses the
// wire once, in the Opened frame.
type Secret [32]byte

// String keeps secrets out of logs.
func (Secret) String() string { return "Secret(redacted)" }

// Nonce is the fresh random value of a server's Hello; a Resume's proof
// covers it, so a recorded Resume is worthless on another connection.
type Nonce [32]byte

// Frame is one decoded frame. Which fields are meaningful depends on Type;
// the others are zero.
type Frame struct {
	Type FrameType

	Version  uint8    // Hello
	Nonce    Nonce    // Hello
	Target   string   // Open, Resume
	ID       ID       // Opened, Resume
	Secret   Secret   // Opened
	Window   uint32   // Opened, Resumed
	Received uint64   // Resume
	Sent     uint64   // Resume
	Proof    [32]byte // Resume
	Consumed uint64   // Resumed
	Offset   uint64   // Data, Ack, Close
	Data     []byte   // Data
	Reason   string   // Refuse
}

// ErrProtocol is matched (errors.Is) by errors of a peer breaking the
// protocol: an unknown frame type, an oversize payload, one that does not
// parse, or a frame or offset the peer should not have sent. A connection
// with a protocol error is unusable.
var ErrProtocol = errors.New("session: protocol error")

// kindError reads as its own message and matches its kind with errors.Is,
// so messages need not repeat the kind's text.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func protoErrorf(format string, args ...any) error {
	return &kindError{ErrProtocol, "session: " + fmt.Sprintf(format, args...)}
}

// resumeFixed is the size of a Resume's payload before its target.
const resumeFixed = 16 + 8 + 8 + 32

// fixed payload sizes; Open, Resume, Data and Refuse vary.
func payloadSize(t FrameType) int {
	switch t {
	case FrameHello:
		return 1 + 32
	case FrameOpened:
		return 16 + 32 + 4
	case FrameResumed:
		return 8 + 4
	case FrameAck, FrameClose:
		return 8
	}
	return -1
}

// AppendFrame appends f's encoding to dst. It fails, leaving dst as it
// was, on an unknown type or a payload larger than MaxPayload.
func AppendFrame(dst []byte, f *Frame) ([]byte, error) {
	start := len(dst)
	dst = append(dst, byte(f.Type), 0, 0, 0, 0)
	be := binary.BigEndian
	switch f.Type {
	case FrameHello:
		dst = append(dst, f.Version)
		dst = append(dst, f.Nonce[:]...)
	case FrameOpen:
		dst = append(dst, f.Target...)
	case FrameOpened:
		dst = append(dst, f.ID[:]...)
		dst = append(dst, f.Secret[:]...)
		dst = be.AppendUint32(dst, f.Window)
	case FrameResume:
		dst = append(dst, f.ID[:]...)
		dst = be.AppendUint64(dst, f.Received)
		dst = be.AppendUint64(dst, f.Sent)
		dst = append(dst, f.Proof[:]...)
		dst = append(dst, f.Target...)
	case FrameResumed:
		dst = be.AppendUint64(dst, f.Consumed)
		dst = be.AppendUint32(dst, f.Window)
	case FrameData:
		dst = be.AppendUint64(dst, f.Offset)
		dst = append(dst, f.Data...)
	case FrameAck, FrameClose:
		dst = be.AppendUint64(dst, f.Offset)
	case FrameRefuse:
		dst = append(dst, f.Reason...)
	default:
		return dst[:start], fmt.Errorf("session: encoding a frame of unknown type %d", uint8(f.Type))
	}
	n := len(dst) - start - HeaderSize
	if n > MaxPayload {
		return dst[:start], fmt.Errorf("session: encoding a %v frame: payload of %d bytes exceeds the limit of %d", f.Type, n, MaxPayload)
	}
	be.PutUint32(dst[start+1:], uint32(n))
	return dst, nil
}

// ParseFrame parses the payload of a frame of type t. The result's Data
// aliases p; its strings are copies.
func ParseFrame(t FrameType, p []byte) (Frame, error) {
	if !t.known() {
		return Frame{}, protoErrorf("unknown frame type %d", uint8(t))
	}
	if len(p) > MaxPayload {
		return Frame{}, protoErrorf("%v payload of %d bytes exceeds the limit of %d", t, len(p), MaxPayload)
	}
	if want := payloadSize(t); want >= 0 && len(p) != want {
		return Frame{}, protoErrorf("%v payload of %d bytes, want %d", t, len(p), want)
	}
	be := binary.BigEndian
	f := Frame{Type: t}
	switch t {
	case FrameHello:
		f.Version = p[0]
		copy(f.Nonce[:], p[1:])
	case FrameOpen:
		f.Target = string(p)
	case FrameOpened:
		copy(f.ID[:], p)
		copy(f.Secret[:], p[16:])
		f.Window = be.Uint32(p[48:])
	case FrameResume:
		if len(p) < resumeFixed {
			return Frame{}, protoErrorf("Resume payload of %d bytes, want at least %d", len(p), resumeFixed)
		}
		copy(f.ID[:], p)
		f.Received = be.Uint64(p[16:])
		f.Sent = be.Uint64(p[24:])
		copy(f.Proof[:], p[32:])
		f.Target = string(p[resumeFixed:])
	case FrameResumed:
		f.Consumed = be.Uint64(p)
		f.Window = be.Uint32(p[8:])
	case FrameData:
		if len(p) < 8 {
			return Frame{}, protoErrorf("Data payload of %d bytes, want at least 8", len(p))
		}
		f.Offset = be.Uint64(p)
		f.Data = p[8:]
		// The offset of the byte after the last must exist.
		if f.Offset > ^uint64(0)-uint64(len(f.Data)) {
			return Frame{}, protoErrorf("Data at offset %d with %d bytes overflows the stream", f.Offset, len(f.Data))
		}
	case FrameAck, FrameClose:
		f.Offset = be.Uint64(p)
	case FrameRefuse:
		f.Reason = string(p)
	}
	return f, nil
}

// Decoder reads frames from a stream. It reads exactly the bytes of the
// frames it returns, so a caller that wants buffering gives it a
// bufio.Reader, and one that hands the stream on after a frame gives it
// the bare stream.
type Decoder struct {
	r   io.Reader
	hdr [HeaderSize]byte
	buf []byte
}

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader) *Decoder { return &Decoder{r: r} }

// Decode reads the next frame. A Data frame's Data aliases the Decoder's
// buffer, valid until the next call. At the end of the stream between
// frames it returns io.EOF; a frame cut short is an error matching
// io.ErrUnexpectedEOF; a frame breaking the protocol one matching
// ErrProtocol.
func (d *Decoder) Decode() (Frame, error) {
	if _, err := io.ReadFull(d.r, d.hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return Frame{}, fmt.Errorf("session: truncated frame header: %w", err)
		}
		return Frame{}, err
	}
	t := FrameType(d.hdr[0])
	n := binary.BigEndian.Uint32(d.hdr[1:])
	if !t.known() {
		return Frame{}, protoErrorf("unknown frame type %d", uint8(t))
	}
	if n > MaxPayload {
		return Frame{}, protoErrorf("%v frame of %d bytes exceeds the limit of %d", t, n, MaxPayload)
	}
	if want := payloadSize(t); want >= 0 && int(n) != want {
		// Refused before reading, so a bad length cannot stall a reader.
		return Frame{}, protoErrorf("%v payload of %d bytes, want %d", t, n, want)
	}
	p, err := d.readPayload(int(n))
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return Frame{}, fmt.Errorf("session: truncated %v frame: %d of %d payload bytes: %w", t, len(p), n, io.ErrUnexpectedEOF)
		}
		return Frame{}, err
	}
	return ParseFrame(t, p)
}

// readPayload reads n bytes into d.buf. It grows the buffer as bytes
// arrive rather than by the length announced, so a length alone cannot
// make it allocate.
func (d *Decoder) readPayload(n int) ([]byte, error) {
	p := d.buf[:0]
	for len(p) < n {
		if len(p) == cap(p) {
			grown := make([]byte, len(p), min(n, max(2*cap(p), 4<<10)))
			copy(grown, p)
			p = grown
			d.buf = grown
		}
		k, err := io.ReadFull(d.r, p[len(p):min(n, cap(p))])
		p = p[:len(p)+k]
		if err != nil {
			if err == io.EOF && len(p) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return p, err
		}
	}
	return p, nil
}

// writeFrame encodes f and writes it to w in one Write.
func writeFrame(w io.Writer, f *Frame) error {
	b, err := AppendFrame(make([]byte, 0, 128), f)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
