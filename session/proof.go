package session

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
)

// proofLabel keeps a session proof from standing for any other HMAC made
// with the same key.
const proofLabel = "ftvm-session-resume"

// Proof is the proof of a Resume: HMAC-SHA256(secret, "ftvm-session-resume"
// ‖ nonce ‖ id ‖ received ‖ sent), the integers as 8 big-endian bytes. The
// nonce is the one of the Hello on the connection the Resume is sent on, so
// a proof is good for one connection only.
func Proof(secret Secret, nonce Nonce, id ID, received, sent uint64) [32]byte {
	m := hmac.New(sha256.New, secret[:])
	m.Write([]byte(proofLabel))
	m.Write(nonce[:])
	m.Write(id[:])
	var n [16]byte
	binary.BigEndian.PutUint64(n[:], received)
	binary.BigEndian.PutUint64(n[8:], sent)
	m.Write(n[:])
	var p [32]byte
	m.Sum(p[:0])
	return p
}

// NewID returns a random session ID.
func NewID() ID {
	var id ID
	rand.Read(id[:]) // never fails (Go 1.24+)
	return id
}

// NewSecret returns a random session secret.
func NewSecret() Secret {
	var s Secret
	rand.Read(s[:])
	return s
}

func newNonce() Nonce {
	var n Nonce
	rand.Read(n[:])
	return n
}

// Addr is the address of either end of a session: its ID.
type Addr struct{ ID ID }

// Network returns "ftvm-session".
func (Addr) Network() string { return "ftvm-session" }

func (a Addr) String() string { return a.ID.String() }
