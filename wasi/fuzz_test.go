package wasi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"ftvm/wasm"
)

// FuzzCall feeds arbitrary call sequences, arguments and memory contents
// to a System: no call may panic or fail with anything but an errno (or
// an exit).
func FuzzCall(f *testing.F) {
	f.Add([]byte("\x00\x01\x02\x03 hello"))
	f.Add(bytes.Repeat([]byte{0x1f, 0x03, 0x01, 0x80, 0, 0, 0, 0}, 8))
	f.Add([]byte{0x1f, 3, 1, 0, 0x10, 0x20, 0, 0, 0, 0, 0})
	names := Functions()
	f.Fuzz(func(t *testing.T, data []byte) {
		h := newMemHost(1)
		h.in[0] = []byte("input")
		h.pending[4] = 1
		h.files["f"] = []byte("content")
		h.dirs["d"] = true
		s, err := New(Config{Args: []string{"fuzz"}, Preopens: []Preopen{{GuestPath: "/"}}, Listeners: []Listener{{}}}, h)
		if err != nil {
			t.Fatal(err)
		}
		mem := wasm.NewMemory(1, 1)
		mem.Write(0, data)
		r := data
		next := func(n int) uint64 {
			var b [8]byte
			k := copy(b[:n], r)
			r = r[k:]
			return binary.LittleEndian.Uint64(b[:])
		}
		for calls := 0; len(r) > 0 && calls < 32; calls++ {
			name := names[int(next(1))%len(names)]
			if name == "poll_oneoff" {
				continue // memHost's Poll may legitimately return no event; nothing blocks here anyway
			}
			ft, _ := Signature(name)
			args := make([]uint64, len(ft.Params))
			for i, p := range ft.Params {
				switch sel := next(1); {
				case sel < 0x60:
					args[i] = sel % 8 // small: descriptors, flags
				case sel < 0xc0:
					args[i] = next(2) // an offset in the page
				case p == wasm.I64:
					args[i] = next(8)
				default:
					args[i] = next(4)
				}
			}
			start := time.Now()
			res, err := s.Call(context.Background(), mem, name, args)
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("%s%v took %v", name, args, d)
			}
			var exit *ExitError
			if errors.As(err, &exit) {
				return
			}
			if err != nil {
				t.Fatalf("%s%v: %v", name, args, err)
			}
			if len(res) != 1 || !Errno(res[0]).Valid() {
				t.Fatalf("%s%v = %v", name, args, res)
			}
		}
		st, err := s.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		// Whatever the calls did, rights included, the state restores.
		s2, _ := New(Config{}, h)
		if err := s2.UnmarshalState(st); err != nil {
			t.Fatalf("the state after the calls does not restore: %v", err)
		}
	})
}

// FuzzUnmarshalState decodes arbitrary bytes as a state: it must fail
// cleanly or give a state that encodes back to the same bytes.
func FuzzUnmarshalState(f *testing.F) {
	s, err := New(Config{Args: []string{"a"}, Env: []string{"B=c"}, Preopens: []Preopen{{GuestPath: "/d"}},
		Listeners: []Listener{{Name: "l"}}}, newMemHost(1))
	if err != nil {
		f.Fatal(err)
	}
	st, _ := s.MarshalState()
	f.Add(st)
	f.Add([]byte(stateMagic))
	// With rights dropped, and with a file and a directory opened.
	s.Call(context.Background(), nil, "fd_fdstat_set_rights", []uint64{3, rightsDir &^ RightPathUnlinkFile, rightsFile})
	mem := wasm.NewMemory(1, 1)
	mem.Write(0x100, []byte("fd"))
	s.Call(context.Background(), mem, "path_open", []uint64{3, 0, 0x100, 1, uint64(OflagCreat), RightFdRead | RightFdSeek, 0, 0, 0x200})
	s.Call(context.Background(), mem, "path_create_directory", []uint64{3, 0x101, 1})
	s.Call(context.Background(), mem, "path_open", []uint64{3, 0, 0x101, 1, uint64(OflagDirectory), rightsDir, rightsFile, 0, 0x200})
	st, _ = s.MarshalState()
	f.Add(st)
	f.Fuzz(func(t *testing.T, data []byte) {
		s, _ := New(Config{}, newMemHost(0))
		if err := s.UnmarshalState(data); err != nil {
			return
		}
		out, err := s.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("round trip changed the state:\n%x\n%x", data, out)
		}
	})
}
