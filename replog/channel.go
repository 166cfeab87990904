package replog

import (
	"bufio"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// readBuffer is the size of a channel's read buffer: one per VM on each of
// its hosts, so a thousand VMs hold a thousand. Frames larger than it are
// read straight into place.
const readBuffer = 16 << 10

// Conn is an authenticated connection between two ftvm hosts: the logging
// channel (primary → backup: batches of entries; backup → primary: acks) or
// a control connection. Both ends hold the cluster key (32 or more random
// bytes from shared storage); a peer that does not can neither complete the
// handshake nor inject, alter, replay, reorder or drop a frame undetected.
//
// Go's crypto/tls has no pre-shared-key mode, and certificates would need a
// CA the hosts do not have, so the session is built from HMAC-SHA256 alone.
// It authenticates; it does not encrypt: log entries and commands are not
// secret from someone who can read the network, only unforgeable.
//
// # Handshake
//
// All integers are uvarints unless sized; "‖" is concatenation.
//
//	client → server   "FTVMCHAN"        8 bytes
//	                  version           1 byte, ProtocolVersion (2)
//	                  client nonce Nc   32 bytes from crypto/rand
//	                  hello length      uvarint, minimal, at most MaxHelloSize
//	                  hello             opaque to this layer (kind, VM, generation, host...)
//	server → client   server nonce Ns   32 bytes from crypto/rand
//	                  MACs              32 bytes
//	client → server   MACc              32 bytes
//
// With T = version ‖ Nc ‖ Ns ‖ hello and K the cluster key:
//
//	MACs = HMAC-SHA256(K, "ftvm server\x00" ‖ T)
//	MACc = HMAC-SHA256(K, "ftvm client\x00" ‖ T)
//	Kc2s = HMAC-SHA256(K, "ftvm c2s key\x00" ‖ T)   authenticates client → server frames
//	Ks2c = HMAC-SHA256(K, "ftvm s2c key\x00" ‖ T)   authenticates server → client frames
//
// The labels are distinct and NUL-terminated, so no MAC or key can stand
// for another, and T ends with the hello, so its length is implied. The
// client checks MACs before answering, so a server without the key learns
// no MAC of the client's; the server checks MACc before it trusts the hello.
// Fresh nonces on both sides make every session's keys new, so nothing
// recorded from one session is valid in another; a relay in the middle can
// pass bytes on or cut the connection, nothing else. MACs are compared in
// constant time. The key never crosses the wire.
//
// The client may send frames right after MACc, without a round trip: a
// server that refuses it closes the connection, which the client sees as
// the end of the stream on its first ReadFrame.
//
// A server that does not like the magic, the version or the hello's size
// closes the connection. The whole handshake has a deadline (the context's,
// and at most HandshakeTimeout), so a stranger who connects and stalls or
// sends garbage gets a closed connection and the server a clear error.
//
// # Frames
//
// After the handshake each direction carries frames:
//
//	length   uvarint, minimal   bytes of payload, at most MaxFrameSize
//	type     1 byte             FrameBatch, FrameAck, FrameBye, or FrameControl..FrameControlLast
//	payload  length bytes       encrypted
//	tag      16 bytes
//
// The payload is sealed with AES-256-GCM under the direction's key (a
// fresh one per connection, from the handshake), with the frame's type as
// additional data and as nonce the number of frames sent before this one
// in this direction (8 little-endian bytes, then 4 zero bytes): a nonce
// never repeats under a key, the clients' data on the channel (what the
// guest reads, what it writes) is secret, and a replayed, reordered,
// dropped or altered frame fails its tag (or the next frame's). The length
// is covered through the ciphertext's extent, and only its minimal
// encoding is accepted, so every valid frame has exactly one encoding. A
// bad length, an unknown type or a bad tag is an error, after which the
// connection is unusable: its reader must close it.
//
// Payloads: a Batch (FrameBatch) is
//
//	pos     uvarint   the primary's position when sending (Batch.Pos)
//	stdout  uvarint   bytes of the guest's stdout the primary wrote out (Batch.Out)
//	stderr  uvarint   bytes of its stderr the primary wrote out
//	count   uvarint   number of entries
//	entries           count entry frames as AppendEntry writes them
//
// an Ack (FrameAck) is seq uvarint ‖ pos uvarint ‖ stdout uvarint ‖
// stderr uvarint (Ack.Out), a Bye (FrameBye) is the
// sender's reason for closing as UTF-8 text, and control frames are opaque
// here.
//
// # Concurrency
//
// ReadFrame may be called by one goroutine at a time; WriteFrame,
// WriteBatch and WriteAck may be called from any number of goroutines (they
// are serialized), concurrently with ReadFrame. Close, the deadline
// methods, Hello and the address methods may be called at any time from any
// goroutine. So the usual shape is one reader goroutine per connection and
// any writer.
type Conn struct {
	nc    net.Conn
	hello []byte

	// Reader state, owned by the one reading goroutine.
	br     *bufio.Reader
	raead  cipher.AEAD
	rseq   uint64
	rbuf   []byte
	rnonce [12]byte
	rerr   error

	wmu    sync.Mutex
	waead  cipher.AEAD
	wseq   uint64
	wbuf   []byte
	wnonce [12]byte
	werr   error
}

// Protocol constants.
const (
	// ProtocolVersion is the version byte of the handshake. Version 2
	// added the output marks to batches, version 3 encrypted the frames.
	ProtocolVersion = 3
	// MinKeySize is the smallest cluster key accepted.
	MinKeySize = 32
	// MaxHelloSize bounds the client's hello.
	MaxHelloSize = 64 << 10
	// MaxFrameSize bounds a frame's payload, so a length cannot make a
	// reader allocate without bound.
	MaxFrameSize = 32 << 20
	// HandshakeTimeout bounds a handshake whose context has no earlier
	// deadline.
	HandshakeTimeout = 10 * time.Second
)

// Frame types.
const (
	// FrameBatch carries a Batch (primary → backup).
	FrameBatch = 1
	// FrameAck carries an Ack (backup → primary).
	FrameAck = 2
	// FrameBye announces an orderly close; its payload is the reason.
	FrameBye = 3
	// FrameControl..FrameControlLast are for control connections, whose
	// layer gives them their meaning.
	FrameControl     = 16
	FrameControlLast = 31
)

// ErrAuth is matched (errors.Is) by errors of a failed proof: a bad MAC in the
// handshake (the peer holds another cluster key, or none) or a bad frame
// tag (a frame was altered, replayed, reordered or dropped).
var ErrAuth = errors.New("replog: authentication failed")

// kindError reads as its own message and matches its kind (ErrAuth,
// ErrCorrupt) with errors.Is, so messages need not repeat the kind's text.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func kindf(kind error, format string, args ...any) error {
	return &kindError{kind, fmt.Sprintf(format, args...)}
}

const (
	chanMagic = "FTVMCHAN"
	nonceSize = 32
	macSize   = sha256.Size
	tagSize   = 16
	// lenBytes is the most bytes a frame length may take: a minimal
	// uvarint of MaxFrameSize.
	lenBytes = 4
	// bufKeep is the largest buffer a Conn keeps between frames; a larger
	// one (from an unusually large frame) is dropped after use.
	bufKeep = 1 << 20
)

const (
	labelServer = "ftvm server\x00"
	labelClient = "ftvm client\x00"
	labelC2S    = "ftvm c2s key\x00"
	labelS2C    = "ftvm s2c key\x00"
)

func knownFrameType(t byte) bool {
	return t == FrameBatch || t == FrameAck || t == FrameBye || (t >= FrameControl && t <= FrameControlLast)
}

// Dial connects to a host's channel port at addr and runs the client side
// of the handshake with hello. The context bounds the dial and the
// handshake.
func Dial(ctx context.Context, addr string, key, hello []byte) (*Conn, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("replog: dial %s: %w", addr, err)
	}
	if len(hello) > MaxHelloSize {
		return nil, fmt.Errorf("replog: dial %s: hello of %d bytes exceeds the limit of %d", addr, len(hello), MaxHelloSize)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("replog: %w", err)
	}
	c, _, err := Handshake(ctx, nc, key, true, hello)
	return c, err
}

// Handshake authenticates nc with the cluster key: as the client (which
// sends hello) or as the server (which receives it; its hello argument is
// ignored). The server gets the client's hello, now authenticated, as the
// second result; it decides whether to serve it and may answer a FrameBye
// with its reason if not. The client gets nil. On failure Handshake closes
// nc. It is done within the context's deadline and HandshakeTimeout,
// whichever comes first, and is abandoned if the context is canceled.
func Handshake(ctx context.Context, nc net.Conn, key []byte, client bool, hello []byte) (*Conn, []byte, error) {
	h := handshake{ctx: ctx, nc: nc, key: key, peer: peerName(nc)}
	c, err := h.run(client, hello)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("replog: handshake with %s: %w", h.peer, err)
	}
	if client {
		return c, nil, nil
	}
	return c, c.hello, nil
}

type handshake struct {
	ctx     context.Context
	nc      net.Conn
	key     []byte
	peer    string
	timeout time.Duration
}

func (h *handshake) run(client bool, hello []byte) (*Conn, error) {
	if err := checkKey(h.key); err != nil {
		return nil, err
	}
	if client && len(hello) > MaxHelloSize {
		return nil, fmt.Errorf("hello of %d bytes exceeds the limit of %d", len(hello), MaxHelloSize)
	}
	if err := h.ctx.Err(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(HandshakeTimeout)
	if d, ok := h.ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	h.timeout = time.Until(deadline).Round(time.Millisecond)
	if err := h.nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	// A canceled context unblocks the reads and writes at once.
	stop := context.AfterFunc(h.ctx, func() { h.nc.SetDeadline(time.Unix(1, 0)) })
	br := bufio.NewReaderSize(h.nc, readBuffer)
	var c *Conn
	var err error
	if client {
		c, err = h.client(br, hello)
	} else {
		c, err = h.server(br)
	}
	if !stop() {
		// The context ended while we ran: the deadline may be in the past.
		if err == nil {
			err = context.Cause(h.ctx)
		}
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	if err := h.nc.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return c, nil
}

func (h *handshake) client(br *bufio.Reader, hello []byte) (*Conn, error) {
	var cn [nonceSize]byte
	rand.Read(cn[:]) // never fails (Go 1.24+)
	msg := make([]byte, 0, len(chanMagic)+1+nonceSize+binary.MaxVarintLen64+len(hello))
	msg = append(msg, chanMagic...)
	msg = append(msg, ProtocolVersion)
	msg = append(msg, cn[:]...)
	msg = binary.AppendUvarint(msg, uint64(len(hello)))
	msg = append(msg, hello...)
	if _, err := h.nc.Write(msg); err != nil {
		return nil, h.ioErr("sending the hello", err)
	}
	var reply [nonceSize + macSize]byte
	if _, err := io.ReadFull(br, reply[:]); err != nil {
		if closedByPeer(err) {
			// What a server does with a hello it cannot take.
			return nil, errors.New("the server closed the connection instead of answering the hello (a host going down, not an ftvm channel port, another protocol version, or an oversized hello?)")
		}
		return nil, h.ioErr("reading the server's proof", err)
	}
	t := transcript(cn[:], reply[:nonceSize], hello)
	if !hmac.Equal(reply[nonceSize:], h.mac(labelServer, t)) {
		return nil, kindf(ErrAuth, "bad server MAC (wrong cluster key?)")
	}
	if _, err := h.nc.Write(h.mac(labelClient, t)); err != nil {
		return nil, h.ioErr("sending the client's proof", err)
	}
	return h.conn(br, true, t)
}

func (h *handshake) server(br *bufio.Reader) (*Conn, error) {
	// The magic alone first, so that another protocol's client (which
	// may send fewer bytes than a hello and wait) is turned away at once.
	var head [len(chanMagic) + 1 + nonceSize]byte
	magic := head[:len(chanMagic)]
	if _, err := io.ReadFull(br, magic); err != nil {
		return nil, h.ioErr("reading the client's hello", err)
	}
	if string(magic) != chanMagic {
		return nil, fmt.Errorf("not an ftvm channel client (bad magic %q)", magic)
	}
	if _, err := io.ReadFull(br, head[len(chanMagic):]); err != nil {
		return nil, h.ioErr("reading the client's hello", err)
	}
	if v := head[len(chanMagic)]; v != ProtocolVersion {
		return nil, fmt.Errorf("client speaks protocol version %d, this host %d", v, ProtocolVersion)
	}
	cn := head[len(chanMagic)+1:]
	n, err := readMinimalUvarint(br, 3)
	if err != nil {
		return nil, h.ioErr("reading the client's hello", fmt.Errorf("hello length: %w", err))
	}
	if n > MaxHelloSize {
		return nil, fmt.Errorf("hello of %d bytes exceeds the limit of %d", n, MaxHelloSize)
	}
	hello := make([]byte, n)
	if _, err := io.ReadFull(br, hello); err != nil {
		return nil, h.ioErr("reading the client's hello", err)
	}
	var sn [nonceSize]byte
	rand.Read(sn[:]) // never fails (Go 1.24+)
	t := transcript(cn, sn[:], hello)
	if _, err := h.nc.Write(append(sn[:], h.mac(labelServer, t)...)); err != nil {
		return nil, h.ioErr("sending the server's proof", err)
	}
	var proof [macSize]byte
	if _, err := io.ReadFull(br, proof[:]); err != nil {
		if closedByPeer(err) {
			// What a client does when our MAC fails its check.
			return nil, kindf(ErrAuth, "the client closed the connection instead of proving it holds the cluster key (a client that gave up or ended, or a wrong cluster key)")
		}
		return nil, h.ioErr("reading the client's proof", err)
	}
	if !hmac.Equal(proof[:], h.mac(labelClient, t)) {
		return nil, kindf(ErrAuth, "bad client MAC (wrong cluster key?)")
	}
	return h.conn(br, false, t)
}

// ioErr explains a failed read or write: the context's end, the deadline,
// or the peer's close.
func (h *handshake) ioErr(step string, err error) error {
	if h.ctx.Err() != nil {
		err = context.Cause(h.ctx)
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: no handshake within %v: %w", step, h.timeout, err)
	case h.ctx.Err() != nil:
		return fmt.Errorf("%s: %w", step, err)
	case closedByPeer(err):
		return fmt.Errorf("%s: connection closed by the peer", step)
	}
	return fmt.Errorf("%s: %w", step, err)
}

// closedByPeer tells a peer's close, orderly or not (a close with our bytes
// unread comes as a reset), from other errors.
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

func (h *handshake) mac(label string, t []byte) []byte {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(label))
	m.Write(t)
	return m.Sum(nil)
}

func (h *handshake) conn(br *bufio.Reader, client bool, t []byte) (*Conn, error) {
	send, recv := h.mac(labelC2S, t), h.mac(labelS2C, t)
	if !client {
		send, recv = recv, send
	}
	raead, err := newAEAD(recv)
	if err != nil {
		return nil, err
	}
	waead, err := newAEAD(send)
	if err != nil {
		return nil, err
	}
	return &Conn{nc: h.nc, hello: t[1+2*nonceSize:], br: br, raead: raead, waead: waead}, nil
}

// newAEAD returns AES-256-GCM under key (32 bytes: an HMAC-SHA256). Go's
// AES uses the CPU's instructions for it where there are some.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("replog: frame cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("replog: frame cipher: %w", err)
	}
	return aead, nil
}

func transcript(cn, sn, hello []byte) []byte {
	t := make([]byte, 0, 1+2*nonceSize+len(hello))
	t = append(t, ProtocolVersion)
	t = append(t, cn...)
	t = append(t, sn...)
	return append(t, hello...)
}

func checkKey(key []byte) error {
	if len(key) < MinKeySize {
		return fmt.Errorf("cluster key of %d bytes; at least %d are needed", len(key), MinKeySize)
	}
	return nil
}

func peerName(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil {
		return a.String()
	}
	return "peer"
}

// readMinimalUvarint reads a uvarint of at most max bytes in its minimal
// encoding, so a length has one encoding and cannot be altered unnoticed.
func readMinimalUvarint(r io.ByteReader, max int) (uint64, error) {
	var v uint64
	for i := 0; i < max; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			if b == 0 && i > 0 {
				return 0, kindf(ErrCorrupt, "non-minimal length")
			}
			return v, nil
		}
	}
	return 0, kindf(ErrCorrupt, "length longer than %d bytes", max)
}

// Hello returns the client's hello that the session is bound to.
func (c *Conn) Hello() []byte { return c.hello }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// LocalAddr returns this end's address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// SetDeadline sets the read and write deadlines of the connection.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// SetReadDeadline sets the deadline of ReadFrame. A read that times out
// before any byte of a frame arrived may be retried; one that times out
// inside a frame leaves the connection unusable.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline of the writes. A write that times out
// leaves the connection unusable (part of a frame may have been sent).
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.nc.SetWriteDeadline(t) }

// Close closes the connection; a blocked ReadFrame or write returns.
func (c *Conn) Close() error { return c.nc.Close() }

// WriteFrame sends one frame with one Write call. After a failed write the
// stream is broken (part of a frame may have left): every later write
// returns the same error.
func (c *Conn) WriteFrame(typ byte, payload []byte) error {
	return c.writeFrame(typ, func(b []byte) []byte { return append(b, payload...) })
}

// WriteBatch sends batch as one FrameBatch frame, encoding it straight into
// the frame buffer. It refuses a batch that ParseBatch would reject or that
// exceeds MaxFrameSize, without sending anything.
func (c *Conn) WriteBatch(batch Batch) error {
	if err := batch.check(); err != nil {
		return fmt.Errorf("replog: write batch to %s: %w", peerName(c.nc), err)
	}
	return c.writeFrame(FrameBatch, func(b []byte) []byte { return AppendBatch(b, batch) })
}

// WriteAck sends ack as one FrameAck frame.
func (c *Conn) WriteAck(ack Ack) error {
	return c.writeFrame(FrameAck, func(b []byte) []byte { return AppendAck(b, ack) })
}

// writeFrame builds a frame in the reused buffer: room for the longest
// length, the type, the payload that appendPayload appends, the tag; then
// the length goes right before the type and the frame leaves in one Write.
func (c *Conn) writeFrame(typ byte, appendPayload func([]byte) []byte) error {
	if !knownFrameType(typ) {
		return fmt.Errorf("replog: write to %s: unknown frame type %d", peerName(c.nc), typ)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	const head = lenBytes + 1
	b := append(c.wbuf[:0], make([]byte, head)...)
	b[head-1] = typ
	b = appendPayload(b)
	n := len(b) - head
	if n > MaxFrameSize {
		c.keepWriteBuffer(b)
		return fmt.Errorf("replog: write to %s: frame of %d bytes exceeds the limit of %d", peerName(c.nc), n, MaxFrameSize)
	}
	binary.LittleEndian.PutUint64(c.wnonce[:8], c.wseq)
	b = c.waead.Seal(b[:head], c.wnonce[:], b[head:], b[head-1:head])
	start := head - 1 - uvarintLen(uint64(n))
	binary.PutUvarint(b[start:], uint64(n))
	_, err := c.nc.Write(b[start:])
	c.keepWriteBuffer(b)
	if err != nil {
		c.werr = fmt.Errorf("replog: write frame %d to %s: %w", c.wseq, peerName(c.nc), err)
		return c.werr
	}
	c.wseq++
	return nil
}

func (c *Conn) keepWriteBuffer(b []byte) {
	if cap(b) > bufKeep {
		b = nil
	}
	c.wbuf = b[:0]
}

// ReadFrame reads the next frame and checks its tag. The payload is valid
// until the next ReadFrame. At a clean close by the peer (between frames)
// the error wraps io.EOF. Any other error except a read timeout before the
// frame began means the stream can no longer be trusted: it is returned
// again by every later call, and the caller should close the connection.
func (c *Conn) ReadFrame() (typ byte, payload []byte, err error) {
	if c.rerr != nil {
		return 0, nil, c.rerr
	}
	if _, err := c.br.Peek(1); err != nil {
		err = fmt.Errorf("replog: read frame %d from %s: %w", c.rseq, peerName(c.nc), err)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			c.rerr = err
		}
		return 0, nil, err
	}
	typ, payload, err = c.readFrame()
	if err != nil {
		c.rerr = fmt.Errorf("replog: read frame %d from %s: %w", c.rseq, peerName(c.nc), err)
		return 0, nil, c.rerr
	}
	c.rseq++
	return typ, payload, nil
}

func (c *Conn) readFrame() (byte, []byte, error) {
	size, err := readMinimalUvarint(c.br, lenBytes)
	if err != nil {
		return 0, nil, fmt.Errorf("frame length: %w", unexpectedEOF(err))
	}
	if size > MaxFrameSize {
		return 0, nil, kindf(ErrCorrupt, "frame length %d exceeds the limit of %d", size, MaxFrameSize)
	}
	typ, err := c.br.ReadByte()
	if err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	if !knownFrameType(typ) {
		return 0, nil, kindf(ErrCorrupt, "unknown frame type %d", typ)
	}
	// Grow the buffer as the bytes arrive, not as the length claims, so a
	// forged length costs no more memory than the bytes really sent.
	if cap(c.rbuf) > bufKeep {
		c.rbuf = nil
	}
	// The ciphertext and its tag.
	sealed := int(size) + tagSize
	p := c.rbuf[:0]
	for len(p) < sealed {
		if len(p) == cap(p) {
			p = append(p, make([]byte, min(sealed-len(p), max(len(p), 64<<10)))...)[:len(p)]
		}
		k := min(sealed, cap(p))
		if _, err := io.ReadFull(c.br, p[len(p):k]); err != nil {
			c.rbuf = p
			return 0, nil, unexpectedEOF(err)
		}
		p = p[:k]
	}
	c.rbuf = p
	binary.LittleEndian.PutUint64(c.rnonce[:8], c.rseq)
	plain, err := c.raead.Open(p[:0], c.rnonce[:], p, []byte{typ})
	if err != nil {
		return 0, nil, kindf(ErrAuth, "bad frame tag (frame altered, replayed, reordered or dropped in transit)")
	}
	return typ, plain, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Batch is the payload of a FrameBatch: consecutive entries, and the
// primary's position when it sent them. Once the backup has it, it has every
// entry at a position ≤ Pos, so it may replay up to Pos. Entries are at
// positions up to Pos+1: the call at Pos+1 may have logged the first of its
// entries (vmm's intents) and not yet the rest. A batch may be empty, to
// move Pos alone. That each batch starts right after the previous one is
// the receiver's check: it knows what it has.
type Batch struct {
	Entries []Entry
	Pos     uint64
	// Out is how many bytes of the guest's stdout (Out[0]) and stderr
	// (Out[1]) the primary has written out so far: a backup that goes
	// live writes again what its replay produced beyond them, which the
	// primary may not have written when it died.
	Out [2]uint64
}

// Ack is the payload of a FrameAck.
type Ack struct {
	// Seq: every entry through Seq has been received.
	Seq uint64
	// Pos is the backup's replay position.
	Pos uint64
	// Out is how much of the guest's stdout and stderr the backup heard
	// the primary had written (the largest Batch.Out received): a
	// switchover hands over only once the backup has the final counts,
	// so that it writes none of that output again.
	Out [2]uint64
}

// minEntryFrame is the size of the smallest entry frame: length, type,
// sequence, position, no data, CRC.
const minEntryFrame = 1 + 1 + 1 + 1 + 4

// EntrySize returns the size of e's frame in a batch, for senders that cut
// batches below MaxFrameSize.
func EntrySize(e Entry) int {
	n := entryPayloadSize(e)
	return uvarintLen(uint64(n)) + n + 4
}

func entryPayloadSize(e Entry) int {
	return 1 + uvarintLen(e.Seq) + uvarintLen(e.Pos) + len(e.Data)
}

// AppendBatch appends the encoding of batch to b. It does not check the
// batch: WriteBatch does.
func AppendBatch(b []byte, batch Batch) []byte {
	b = binary.AppendUvarint(b, batch.Pos)
	b = binary.AppendUvarint(b, batch.Out[0])
	b = binary.AppendUvarint(b, batch.Out[1])
	b = binary.AppendUvarint(b, uint64(len(batch.Entries)))
	for _, e := range batch.Entries {
		b = appendEntry(b, e)
	}
	return b
}

// appendEntry is AppendEntry without its temporary buffer: the payload's
// size is known ahead, so it is written in place.
func appendEntry(b []byte, e Entry) []byte {
	b = binary.AppendUvarint(b, uint64(entryPayloadSize(e)))
	start := len(b)
	b = append(b, byte(e.Type))
	b = binary.AppendUvarint(b, e.Seq)
	b = binary.AppendUvarint(b, e.Pos)
	b = append(b, e.Data...)
	return binary.LittleEndian.AppendUint32(b, crc32Castagnoli(b[start:]))
}

// ParseBatch decodes a FrameBatch payload. The entries' Data alias p. It
// rejects a batch whose entries are not consecutive in sequence (from 1
// up), whose positions go back or beyond the batch's, or with bytes after
// the last entry.
func ParseBatch(p []byte) (Batch, error) {
	d := NewDecoder(p)
	pos, out0, out1, n := d.Uint(), d.Uint(), d.Uint(), d.Uint()
	if err := d.Err(); err != nil {
		return Batch{}, fmt.Errorf("replog: batch: %w", err)
	}
	rest := p[len(p)-d.Len():]
	if n > uint64(len(rest)/minEntryFrame) {
		return Batch{}, fmt.Errorf("replog: batch: %w", kindf(ErrCorrupt, "%d entries cannot fit in %d bytes", n, len(rest)))
	}
	batch := Batch{Pos: pos, Out: [2]uint64{out0, out1}, Entries: make([]Entry, 0, n)}
	for i := range n {
		e, k, err := DecodeEntry(rest)
		if errors.Is(err, ErrTruncated) {
			err = kindf(ErrCorrupt, "truncated entry")
		}
		if err != nil {
			return Batch{}, fmt.Errorf("replog: batch entry %d of %d: %w", i+1, n, err)
		}
		batch.Entries = append(batch.Entries, e)
		rest = rest[k:]
	}
	if len(rest) != 0 {
		return Batch{}, fmt.Errorf("replog: batch: %w", kindf(ErrCorrupt, "%d bytes after the last entry", len(rest)))
	}
	if err := batch.check(); err != nil {
		return Batch{}, fmt.Errorf("replog: batch: %w", err)
	}
	return batch, nil
}

// check reports what ParseBatch would refuse in a batch.
func (b Batch) check() error {
	for i, e := range b.Entries {
		switch {
		case e.Seq == 0:
			return kindf(ErrCorrupt, "entry with sequence number 0")
		case i > 0 && e.Seq != b.Entries[i-1].Seq+1:
			return kindf(ErrCorrupt, "entry %d follows %d", e.Seq, b.Entries[i-1].Seq)
		case i > 0 && e.Pos < b.Entries[i-1].Pos:
			return kindf(ErrCorrupt, "entry %d at position %d, before its predecessor's %d", e.Seq, e.Pos, b.Entries[i-1].Pos)
		case e.Pos > b.Pos+1:
			return kindf(ErrCorrupt, "entry %d at position %d, beyond the batch's %d", e.Seq, e.Pos, b.Pos)
		case entryPayloadSize(e) > MaxEntrySize:
			return kindf(ErrCorrupt, "entry %d of %d bytes exceeds the limit", e.Seq, len(e.Data))
		}
	}
	return nil
}

// AppendAck appends the encoding of ack to b.
func AppendAck(b []byte, ack Ack) []byte {
	b = binary.AppendUvarint(b, ack.Seq)
	b = binary.AppendUvarint(b, ack.Pos)
	b = binary.AppendUvarint(b, ack.Out[0])
	return binary.AppendUvarint(b, ack.Out[1])
}

// ParseAck decodes a FrameAck payload.
func ParseAck(p []byte) (Ack, error) {
	d := NewDecoder(p)
	a := Ack{Seq: d.Uint(), Pos: d.Uint(), Out: [2]uint64{d.Uint(), d.Uint()}}
	if err := d.Finish(); err != nil {
		return Ack{}, fmt.Errorf("replog: ack: %w", err)
	}
	return a, nil
}
