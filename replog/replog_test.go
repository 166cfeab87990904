package replog

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func sampleHeader() Header {
	h := Header{Args: []string{"guest.wasm", "-x"}, Env: []string{"A=1"}, Extra: []byte{1, 2, 3}, Tier: "compiler"}
	h.Module[0], h.Module[31] = 0xab, 0xcd
	return h
}

func writeLog(t *testing.T, entries []Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, sampleHeader())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sampleEntries() []Entry {
	return []Entry{
		{Seq: 1, Pos: 10, Type: 1, Data: []byte("hello")},
		{Seq: 2, Pos: 10, Type: 2},
		{Seq: 3, Pos: 1 << 40, Type: 255, Data: bytes.Repeat([]byte{7}, 100000)},
	}
}

func TestFileRoundTrip(t *testing.T) {
	want := sampleEntries()
	b := writeLog(t, want)
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header()
	if h.Module != sampleHeader().Module || strings.Join(h.Args, " ") != "guest.wasm -x" || h.Env[0] != "A=1" || !bytes.Equal(h.Extra, []byte{1, 2, 3}) {
		t.Fatalf("header = %+v", h)
	}
	for _, w := range want {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e.Seq != w.Seq || e.Pos != w.Pos || e.Type != w.Type || !bytes.Equal(e.Data, w.Data) {
			t.Fatalf("entry %v, want %v", e, w)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last entry: %v, want io.EOF", err)
	}
}

func TestTruncatedLogIsReportedAtEveryCut(t *testing.T) {
	b := writeLog(t, sampleEntries())
	for n := 0; n < len(b); n += 1 + n/50 {
		r, err := NewReader(bytes.NewReader(b[:n]))
		if err != nil {
			continue // cut inside the header: an error, good
		}
		for {
			_, err = r.Next()
			if err != nil {
				break
			}
		}
		if err == io.EOF {
			// A cut exactly between frames is a clean, shorter log; it
			// must hold fewer entries, which replay detects by itself.
			continue
		}
		if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("cut at %d: %v", n, err)
		}
	}
}

func TestCorruptionIsDetected(t *testing.T) {
	b := writeLog(t, sampleEntries()[:2])
	for i := len(fileMagic); i < len(b); i++ {
		bad := bytes.Clone(b)
		bad[i] ^= 0x10
		r, err := NewReader(bytes.NewReader(bad))
		if err != nil {
			continue
		}
		n := 0
		for {
			if _, err = r.Next(); err != nil {
				break
			}
			n++
		}
		if err == io.EOF && n == 2 {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
}

func TestSequenceGapRefused(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(Entry{Seq: 2}); err == nil {
		t.Fatal("writing entry 2 first succeeded")
	}
}

func TestNotALog(t *testing.T) {
	if _, err := NewReader(strings.NewReader("\x00asm\x01\x00\x00\x00")); err == nil {
		t.Fatal("a wasm module was accepted as a log")
	}
}

func TestHugeLengthDoesNotAllocate(t *testing.T) {
	b := append([]byte(fileMagic), 0xff, 0xff, 0xff, 0xff, 0x0f)
	_, err := NewReader(bytes.NewReader(b))
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
}

func FuzzDecodeEntry(f *testing.F) {
	for _, e := range sampleEntries() {
		f.Add(AppendEntry(nil, e))
	}
	f.Add([]byte{})
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, n, err := DecodeEntry(b)
		if err != nil {
			return
		}
		again := AppendEntry(nil, e)
		if !bytes.Equal(again, b[:n]) {
			// Non-minimal varints decode but re-encode differently; the
			// re-encoding must still decode to the same entry.
			e2, _, err := DecodeEntry(again)
			if err != nil || e2.Seq != e.Seq || e2.Pos != e.Pos || e2.Type != e.Type || !bytes.Equal(e2.Data, e.Data) {
				t.Fatalf("re-encoding of %v does not round-trip", e)
			}
		}
	})
}

func FuzzReader(f *testing.F) {
	f.Add(writeLogF(f))
	// A header without a tier, as logs before the field have.
	h := sampleHeader()
	h.Tier = ""
	f.Add(append([]byte(fileMagic), AppendFrame(nil, h.marshal())...))
	f.Add([]byte(fileMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		for range 1000 {
			if _, err := r.Next(); err != nil {
				return
			}
		}
	})
}

func writeLogF(f *testing.F) []byte {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, sampleHeader())
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range sampleEntries()[:2] {
		if err := w.Write(e); err != nil {
			f.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}

// TestHeaderTier checks the optional tier: a header with one round-trips,
// and one without it (every log written before the field) encodes to the
// bytes it always did and still decodes, with no tier.
func TestHeaderTier(t *testing.T) {
	for _, tier := range []string{"", "interp", "compiler"} {
		h := sampleHeader()
		h.Engine = 7
		h.Tier = tier
		var buf bytes.Buffer
		w, err := NewWriter(&buf, h)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		r, err := NewReader(bytes.NewReader(buf.Bytes()))
		if err != nil {
			t.Fatalf("tier %q: %v", tier, err)
		}
		got := r.Header()
		if got.Tier != tier || got.Engine != 7 || got.Module != h.Module || !bytes.Equal(got.Extra, h.Extra) {
			t.Fatalf("tier %q: header = %+v", tier, got)
		}
	}

	// A header as logs before the tier encoded it, written out by hand:
	// module, code version, args, env, extra, and nothing after.
	old := append(bytes.Repeat([]byte{0xab}, 32), 3) // code version 3
	old = append(old, 1, 1, 'g')                     // args ["g"]
	old = append(old, 0)                             // env []
	old = append(old, 2, 9, 9)                       // extra [9 9]
	if got := (Header{Module: [32]byte(old[:32]), Engine: 3, Args: []string{"g"}, Extra: []byte{9, 9}}).marshal(); !bytes.Equal(got, old) {
		t.Fatalf("a header without a tier encodes as % x, want the old % x", got, old)
	}
	b := append([]byte(fileMagic), AppendFrame(nil, old)...)
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("old log: %v", err)
	}
	if h := r.Header(); h.Tier != "" || h.Engine != 3 || len(h.Args) != 1 || h.Args[0] != "g" || !bytes.Equal(h.Extra, []byte{9, 9}) {
		t.Fatalf("old log's header = %+v", h)
	}

	// A tier present but empty is not what any writer encodes.
	bad := append([]byte(fileMagic), AppendFrame(nil, append(append([]byte(nil), old...), 0))...)
	if _, err := NewReader(bytes.NewReader(bad)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("empty tier: %v, want ErrCorrupt", err)
	}
}
