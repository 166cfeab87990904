package session

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// sampleFrames has one frame of every type.
func sampleFrames() []Frame {
	var n Nonce
	var id ID
	var sec Secret
	var proof [32]byte
	for i := range n {
		n[i], sec[i], proof[i] = byte(i), byte(3*i), byte(5*i)
	}
	copy(id[:], "0123456789abcdef")
	return []Frame{
		{Type: FrameHello, Version: Version, Nonce: n},
		{Type: FrameOpen, Target: "127.0.0.1:8080"},
		{Type: FrameOpen},
		{Type: FrameOpened, ID: id, Secret: sec, Window: 1 << 20},
		{Type: FrameResume, ID: id, Received: 1 << 40, Sent: 7, Proof: proof},
		{Type: FrameResumed, Consumed: 12345, Window: 65536},
		{Type: FrameData, Offset: 99, Data: []byte("some bytes")},
		{Type: FrameData, Offset: 1 << 50, Data: []byte{}},
		{Type: FrameAck, Offset: 1<<64 - 1},
		{Type: FrameClose, Offset: 42},
		{Type: FrameRefuse, Reason: "bad proof"},
	}
}

func encodeAll(t testing.TB, frames ...Frame) []byte {
	var b []byte
	for i := range frames {
		var err error
		if b, err = AppendFrame(b, &frames[i]); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestFrameRoundTrip(t *testing.T) {
	frames := sampleFrames()
	d := NewDecoder(bytes.NewReader(encodeAll(t, frames...)))
	for _, want := range frames {
		got, err := d.Decode()
		if err != nil {
			t.Fatalf("%v: %v", want.Type, err)
		}
		if want.Type == FrameData && len(want.Data) == 0 {
			want.Data = got.Data[:0] // nil and empty are alike
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded %+v, want %+v", got, want)
		}
	}
	if _, err := d.Decode(); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}

func TestFrameErrors(t *testing.T) {
	hdr := func(typ byte, n uint32) []byte {
		return binary.BigEndian.AppendUint32([]byte{typ}, n)
	}
	cases := []struct {
		name  string
		input []byte
		proto bool   // an ErrProtocol, else io.ErrUnexpectedEOF
		want  string // in the message
	}{
		{"unknown type", hdr(0, 0), true, "unknown frame type 0"},
		{"unknown type 200", hdr(200, 3), true, "unknown frame type 200"},
		{"oversize", hdr(byte(FrameData), MaxPayload+1), true, "exceeds"},
		{"short Ack", append(hdr(byte(FrameAck), 4), 1, 2, 3, 4), true, "want 8"},
		{"long Hello", append(hdr(byte(FrameHello), 34), make([]byte, 34)...), true, "want 33"},
		{"short Data", append(hdr(byte(FrameData), 3), 1, 2, 3), true, "at least 8"},
		{"overflowing Data", append(hdr(byte(FrameData), 10), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2), true, "overflows"},
		{"truncated header", hdr(byte(FrameAck), 8)[:3], false, "truncated"},
		{"truncated payload", append(hdr(byte(FrameOpen), 10), "abc"...), false, "truncated"},
	}
	for _, c := range cases {
		_, err := NewDecoder(bytes.NewReader(c.input)).Decode()
		switch {
		case err == nil:
			t.Errorf("%s: decoded", c.name)
		case c.proto && !errors.Is(err, ErrProtocol), !c.proto && !errors.Is(err, io.ErrUnexpectedEOF):
			t.Errorf("%s: %v: wrong kind", c.name, err)
		case !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: %q does not say %q", c.name, err, c.want)
		}
	}
	if _, err := AppendFrame(nil, &Frame{Type: FrameData, Data: make([]byte, MaxData+1)}); err == nil {
		t.Error("encoded an oversize Data frame")
	}
	if _, err := AppendFrame(nil, &Frame{Type: 0}); err == nil {
		t.Error("encoded a frame of type 0")
	}
}

func TestProof(t *testing.T) {
	var sec Secret
	sec[0] = 1
	id, n := NewID(), newNonce()
	p := Proof(sec, n, id, 10, 20)
	r := ResumeRequest{ID: id, Received: 10, Sent: 20, Proof: p, Nonce: n}
	if !r.Verify(sec) {
		t.Fatal("a good proof fails")
	}
	for _, bad := range []ResumeRequest{
		{ID: id, Received: 11, Sent: 20, Proof: p, Nonce: n},
		{ID: id, Received: 10, Sent: 21, Proof: p, Nonce: n},
		{ID: NewID(), Received: 10, Sent: 20, Proof: p, Nonce: n},
		{ID: id, Received: 10, Sent: 20, Proof: p, Nonce: newNonce()},
	} {
		if bad.Verify(sec) {
			t.Fatalf("%+v verifies", bad)
		}
	}
	if r.Verify(NewSecret()) {
		t.Fatal("verifies with another secret")
	}
}

func FuzzDecodeFrame(f *testing.F) {
	frames := sampleFrames()
	for i := range frames {
		f.Add(encodeAll(f, frames[i]))
	}
	all := encodeAll(f, frames...)
	f.Add(all)
	f.Add(all[:len(all)-3])
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{byte(FrameData), 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		d := NewDecoder(r)
		var again []byte
		for range 64 {
			fr, err := d.Decode()
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrProtocol) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("error of no known kind: %v", err)
				}
				break
			}
			if again, err = AppendFrame(again, &fr); err != nil {
				t.Fatalf("decoded %v frame does not encode: %v", fr.Type, err)
			}
		}
		if cap(d.buf) > max(2*len(data), 4<<10) {
			t.Fatalf("buffer of %d bytes for %d bytes of input", cap(d.buf), len(data))
		}
		// Every frame has one encoding: what was read.
		if !bytes.Equal(again, data[:len(again)]) {
			t.Fatalf("decoded % x, which re-encodes as % x", data[:len(again)], again)
		}
	})
}
