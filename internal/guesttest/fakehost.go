package guesttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"ftvm/wasi"
)

// FakeHost is a deterministic wasi.Host for guests that use only the
// process streams: stdin comes from a byte slice, stdout and stderr go to
// buffers, both clocks are fakes that advance 1 ms per reading from a fixed
// epoch (as wazero's defaults do), a clock wait in poll_oneoff advances the
// fake time to its deadline at once, and random bytes come from a fixed-seed
// generator. A guest's execution on it, instruction by instruction, depends
// only on the module and its arguments.
//
// It has no files, directories or sockets: the System it serves must be
// configured without preopens or listeners.
//
// Its whole state (time, random generator, stdin position) is encoded by
// MarshalState, so that a guest snapshotted in one process goes on in
// another seeing exactly the inputs it would have seen.
type FakeHost struct {
	now    uint64 // fake nanoseconds since the fixed epoch
	rand   Rand
	stdin  []byte
	in     int
	Stdout bytes.Buffer
	Stderr bytes.Buffer
}

// fakeEpoch is the fake realtime clock's start: 2022-01-01T00:00:00Z, the
// epoch of wazero's fake clocks.
const fakeEpoch = 1640995200 * 1_000_000_000

// fakeTick is how far the fake clocks advance per reading.
const fakeTick = 1_000_000

// NewFakeHost returns a host whose stdin holds stdin.
func NewFakeHost(stdin []byte) *FakeHost {
	return &FakeHost{rand: Rand{state: 1}, stdin: stdin}
}

var _ wasi.Host = (*FakeHost)(nil)

const fakeStateMagic = "ftvmFAKEHOST1"

// MarshalState encodes the host's inputs state (not the output buffers).
func (h *FakeHost) MarshalState() []byte {
	b := []byte(fakeStateMagic)
	b = binary.LittleEndian.AppendUint64(b, h.now)
	b = binary.LittleEndian.AppendUint64(b, h.rand.state)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.in))
	return b
}

// UnmarshalState restores what MarshalState encoded. The host must have
// been made with the same stdin.
func (h *FakeHost) UnmarshalState(b []byte) error {
	if len(b) != len(fakeStateMagic)+24 || string(b[:len(fakeStateMagic)]) != fakeStateMagic {
		return errors.New("guesttest: not a fake host state")
	}
	b = b[len(fakeStateMagic):]
	in := binary.LittleEndian.Uint64(b[16:])
	if in > uint64(len(h.stdin)) {
		return fmt.Errorf("guesttest: fake host state: stdin position %d past its %d bytes", in, len(h.stdin))
	}
	h.now = binary.LittleEndian.Uint64(b)
	h.rand.state = binary.LittleEndian.Uint64(b[8:])
	h.in = int(in)
	return nil
}

func (h *FakeHost) clock(id wasi.ClockID) (uint64, wasi.Errno) {
	switch id {
	case wasi.ClockRealtime:
		return fakeEpoch + h.now, wasi.ESUCCESS
	case wasi.ClockMonotonic, wasi.ClockProcessCPUTime, wasi.ClockThreadCPUTime:
		return h.now, wasi.ESUCCESS
	}
	return 0, wasi.EINVAL
}

// ClockResolution implements wasi.Host.
func (h *FakeHost) ClockResolution(id wasi.ClockID) (uint64, wasi.Errno) {
	if _, errno := h.clock(id); errno != wasi.ESUCCESS {
		return 0, errno
	}
	return 1000, wasi.ESUCCESS
}

// ClockTime implements wasi.Host.
func (h *FakeHost) ClockTime(id wasi.ClockID, precision uint64) (uint64, wasi.Errno) {
	h.now += fakeTick
	return h.clock(id)
}

// Random implements wasi.Host.
func (h *FakeHost) Random(n uint32) ([]byte, error) {
	b := make([]byte, n)
	h.rand.Read(b)
	return b, nil
}

// Poll implements wasi.Host: ready streams are reported at once; otherwise
// the fake time jumps to the earliest clock deadline.
func (h *FakeHost) Poll(ctx context.Context, subs []wasi.Subscription) ([]wasi.Event, error) {
	var events []wasi.Event
	for _, s := range subs {
		switch s.Type {
		case wasi.EventFdRead:
			switch s.Handle {
			case 0:
				ev := wasi.Event{Userdata: s.Userdata, Type: s.Type, NBytes: uint64(len(h.stdin) - h.in)}
				if h.in == len(h.stdin) {
					ev.Flags = wasi.EventFdHangup
				}
				events = append(events, ev)
			default:
				events = append(events, wasi.Event{Userdata: s.Userdata, Type: s.Type, Errno: wasi.EBADF})
			}
		case wasi.EventFdWrite:
			errno := wasi.ESUCCESS
			if s.Handle != 1 && s.Handle != 2 {
				errno = wasi.EBADF
			}
			events = append(events, wasi.Event{Userdata: s.Userdata, Type: s.Type, Errno: errno, NBytes: 1 << 16})
		}
	}
	if len(events) > 0 {
		return events, nil
	}
	// Deadlines in fake nanoseconds, fixed before the time moves.
	deadlines := make([]uint64, len(subs))
	first, clocks := ^uint64(0), 0
	for i, s := range subs {
		if s.Type != wasi.EventClock {
			continue
		}
		wait := s.Timeout
		if s.Flags&wasi.SubclockAbstime != 0 {
			now, _ := h.clock(s.Clock)
			wait = max(s.Timeout, now) - now
		}
		deadlines[i] = h.now + min(wait, ^uint64(0)-h.now) // saturating
		first = min(first, deadlines[i])
		clocks++
	}
	if clocks == 0 {
		return nil, errors.New("guesttest: poll_oneoff without subscriptions")
	}
	h.now = max(h.now, first)
	for i, s := range subs {
		if s.Type == wasi.EventClock && deadlines[i] <= h.now {
			events = append(events, wasi.Event{Userdata: s.Userdata, Type: s.Type})
		}
	}
	return events, nil
}

// Read implements wasi.Host for stdin.
func (h *FakeHost) Read(ctx context.Context, hd wasi.Handle, n uint32, flags wasi.ReadFlags) ([]byte, wasi.Errno, error) {
	if hd != 0 {
		return nil, wasi.EBADF, nil
	}
	end := h.in + int(min(uint64(n), uint64(len(h.stdin)-h.in)))
	data := append([]byte(nil), h.stdin[h.in:end]...)
	if flags&wasi.ReadPeek == 0 {
		h.in = end
	}
	return data, wasi.ESUCCESS, nil
}

// Accept implements wasi.Host: there are no listeners.
func (h *FakeHost) Accept(ctx context.Context, hd wasi.Handle, nonblock bool) (wasi.Handle, wasi.Errno, error) {
	return 0, wasi.EBADF, nil
}

// Pread implements wasi.Host: there are no files.
func (h *FakeHost) Pread(hd wasi.Handle, off uint64, n uint32) ([]byte, wasi.Errno) {
	return nil, wasi.EBADF
}

// Filestat implements wasi.Host for the process streams.
func (h *FakeHost) Filestat(hd wasi.Handle) (wasi.Filestat, wasi.Errno) {
	if hd > 2 {
		return wasi.Filestat{}, wasi.EBADF
	}
	return wasi.Filestat{Filetype: wasi.FiletypeCharacterDevice, Nlink: 1, Ino: uint64(hd) + 1}, wasi.ESUCCESS
}

// ReadDir implements wasi.Host: there are no directories.
func (h *FakeHost) ReadDir(hd wasi.Handle, cookie uint64, max uint32) ([]wasi.Dirent, wasi.Errno) {
	return nil, wasi.EBADF
}

// PathFilestat implements wasi.Host: there are no directories.
func (h *FakeHost) PathFilestat(dir wasi.Handle, path string, follow bool) (wasi.Filestat, wasi.Errno) {
	return wasi.Filestat{}, wasi.EBADF
}

// Readlink implements wasi.Host: there are no directories.
func (h *FakeHost) Readlink(dir wasi.Handle, path string) (string, wasi.Errno) {
	return "", wasi.EBADF
}

// Open implements wasi.Host: there are no directories.
func (h *FakeHost) Open(dir wasi.Handle, path string, req wasi.OpenRequest) (wasi.OpenResult, wasi.Errno) {
	return wasi.OpenResult{}, wasi.EBADF
}

// Pwrite implements wasi.Host: there are no files.
func (h *FakeHost) Pwrite(hd wasi.Handle, off uint64, data []byte) (uint32, wasi.Errno) {
	return 0, wasi.EBADF
}

// SetSize implements wasi.Host: there are no files.
func (h *FakeHost) SetSize(hd wasi.Handle, size uint64) wasi.Errno { return wasi.EBADF }

// SetTimes implements wasi.Host: there are no files.
func (h *FakeHost) SetTimes(hd wasi.Handle, atim, mtim uint64, flags uint16) wasi.Errno {
	return wasi.EBADF
}

// Sync implements wasi.Host: there are no files.
func (h *FakeHost) Sync(hd wasi.Handle, dataOnly bool) wasi.Errno { return wasi.EBADF }

// Allocate implements wasi.Host: there are no files.
func (h *FakeHost) Allocate(hd wasi.Handle, off, n uint64) wasi.Errno { return wasi.EBADF }

// Mkdir implements wasi.Host: there are no directories.
func (h *FakeHost) Mkdir(dir wasi.Handle, path string) wasi.Errno { return wasi.EBADF }

// Rmdir implements wasi.Host: there are no directories.
func (h *FakeHost) Rmdir(dir wasi.Handle, path string) wasi.Errno { return wasi.EBADF }

// Unlink implements wasi.Host: there are no directories.
func (h *FakeHost) Unlink(dir wasi.Handle, path string) wasi.Errno { return wasi.EBADF }

// Rename implements wasi.Host: there are no directories.
func (h *FakeHost) Rename(oldDir wasi.Handle, oldPath string, newDir wasi.Handle, newPath string) wasi.Errno {
	return wasi.EBADF
}

// Link implements wasi.Host: there are no directories.
func (h *FakeHost) Link(oldDir wasi.Handle, oldPath string, follow bool, newDir wasi.Handle, newPath string) wasi.Errno {
	return wasi.EBADF
}

// Symlink implements wasi.Host: there are no directories.
func (h *FakeHost) Symlink(target string, dir wasi.Handle, path string) wasi.Errno {
	return wasi.EBADF
}

// PathSetTimes implements wasi.Host: there are no directories.
func (h *FakeHost) PathSetTimes(dir wasi.Handle, path string, follow bool, atim, mtim uint64, flags uint16) wasi.Errno {
	return wasi.EBADF
}

// Write implements wasi.Host for stdout and stderr.
func (h *FakeHost) Write(hd wasi.Handle, data []byte) error {
	switch hd {
	case 1:
		h.Stdout.Write(data)
	case 2:
		h.Stderr.Write(data)
	default:
		return fmt.Errorf("guesttest: write to unknown handle %d", hd)
	}
	return nil
}

// Shutdown implements wasi.Host: there are no connections.
func (h *FakeHost) Shutdown(hd wasi.Handle, how uint8) error {
	return fmt.Errorf("guesttest: shutdown of unknown handle %d", hd)
}

// Close implements wasi.Host.
func (h *FakeHost) Close(hd wasi.Handle) error {
	if hd > 2 {
		return fmt.Errorf("guesttest: close of unknown handle %d", hd)
	}
	return nil
}
