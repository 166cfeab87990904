package session

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

const (
	// HandshakeTimeout bounds how long Accept waits for a client's first
	// frame, and a client for a server's answers while connecting.
	HandshakeTimeout = 10 * time.Second
	// refuseLinger bounds how long Refuse waits for a refused client to
	// close its end.
	refuseLinger = 2 * time.Second
)

// Request is a client's first frame on a connection: exactly one of Open
// and Resume is set.
type Request struct {
	// Nonce is the one Accept sent in its Hello.
	Nonce  Nonce
	Open   *OpenRequest
	Resume *ResumeRequest
}

// OpenRequest asks for a new session.
type OpenRequest struct {
	// Target is the guest listener address the session is for; "" means
	// the VM's only listener.
	Target string
}

// ResumeRequest asks to continue a session on a new connection.
type ResumeRequest struct {
	ID ID
	// Received is the output position the client has: it wants output
	// from there. One past the output's last byte (with its Close) means
	// the client's application consumed all of it: an acknowledgment.
	Received uint64
	// Sent is the input position the client has sent up to, in all (plus
	// one if it closed its input).
	Sent  uint64
	Proof [32]byte
	// Target is the session's target, as its Open named it.
	Target string
	// Nonce is the nonce of the Hello the proof must cover.
	Nonce Nonce
}

// Verify reports whether the request's proof was made with secret over
// this connection's nonce.
func (r *ResumeRequest) Verify(secret Secret) bool {
	p := Proof(secret, r.Nonce, r.ID, r.Received, r.Sent)
	return hmac.Equal(p[:], r.Proof[:])
}

// Accept starts the server side of a connection: it sends a Hello with a
// fresh nonce on c and reads the client's first frame, which must be an
// Open or a Resume. It reads nothing beyond that frame. It waits at most
// HandshakeTimeout, and clears c's deadlines before it returns.
//
// On error c has been refused with the reason (see Refuse) and closed; the
// caller has nothing more to do with it.
func Accept(c net.Conn) (Request, error) {
	nonce := newNonce()
	c.SetDeadline(time.Now().Add(HandshakeTimeout))
	if err := writeFrame(c, &Frame{Type: FrameHello, Version: Version, Nonce: nonce}); err != nil {
		c.Close()
		return Request{}, fmt.Errorf("session: accepting %s: sending Hello: %w", c.RemoteAddr(), err)
	}
	f, err := NewDecoder(c).Decode()
	req := Request{Nonce: nonce}
	if err == nil {
		switch f.Type {
		case FrameOpen:
			req.Open = &OpenRequest{Target: f.Target}
		case FrameResume:
			req.Resume = &ResumeRequest{ID: f.ID, Received: f.Received, Sent: f.Sent, Proof: f.Proof, Target: f.Target, Nonce: nonce}
		default:
			err = protoErrorf("expected Open or Resume, got %v", f.Type)
		}
	}
	if err != nil {
		Refuse(c, refusal(err))
		return Request{}, fmt.Errorf("session: accepting %s: %w", c.RemoteAddr(), err)
	}
	c.SetDeadline(time.Time{})
	return req, nil
}

// refusal turns a first frame's error into a reason for the client.
func refusal(err error) string {
	switch {
	case err == io.EOF:
		return "connection closed before Open or Resume"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Sprintf("no Open or Resume within %v", HandshakeTimeout)
	}
	return strings.TrimPrefix(err.Error(), "session: ")
}

// Refuse sends a Refuse frame with reason on c and closes c. It half-closes
// first and drains what the client still sends for a moment, so that
// unread bytes do not make the kernel reset the connection and destroy the
// refusal before the client reads it.
func Refuse(c net.Conn, reason string) error {
	defer c.Close()
	if len(reason) > MaxPayload {
		reason = reason[:MaxPayload]
	}
	c.SetDeadline(time.Now().Add(refuseLinger))
	if err := writeFrame(c, &Frame{Type: FrameRefuse, Reason: reason}); err != nil {
		return fmt.Errorf("session: refusing %s: %w", c.RemoteAddr(), err)
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	}
	return nil
}
