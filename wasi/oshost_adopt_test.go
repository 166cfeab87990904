//go:build linux

package wasi

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// adoptFixture is two preopened directories with a few files:
//
//	data/        preopen 0, handle 3
//	data/sub/f   "inside"
//	data/gone    removed before adoption
//	other/       preopen 1, handle 4
type adoptFixture struct {
	cfg  Config
	data string
}

func newAdoptFixture(t *testing.T) adoptFixture {
	t.Helper()
	root := t.TempDir()
	data, other := filepath.Join(root, "data"), filepath.Join(root, "other")
	for _, d := range []string{data, filepath.Join(data, "sub"), other} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{"sub/f": "inside", "gone": "soon gone"} {
		if err := os.WriteFile(filepath.Join(data, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return adoptFixture{
		cfg:  Config{Preopens: []Preopen{{GuestPath: "/data", HostDir: data}, {GuestPath: "/other", HostDir: other}}},
		data: data,
	}
}

func adopting(t *testing.T, cfg Config, a Adoption) *OSHost {
	t.Helper()
	h, err := NewOSHostAdopting(cfg, nil, a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.CloseAll() })
	return h
}

// TestOSHostAdoptFiles: the handles a guest opened on one host are served
// by the adopting host under the same numbers, reopened by path, never
// created or truncated again; files that vanished become lost handles.
func TestOSHostAdoptFiles(t *testing.T) {
	fx := newAdoptFixture(t)
	// The first host: open what the guest would, write a little.
	first, err := NewOSHost(fx.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub, errno := first.Open(3, "sub", OpenRequest{Oflags: OflagDirectory, Read: true, Follow: true})
	if errno != ESUCCESS {
		t.Fatal(errno)
	}
	f, errno := first.Open(sub.Handle, "f", OpenRequest{Read: true, Write: true, Follow: true})
	if errno != ESUCCESS {
		t.Fatal(errno)
	}
	createTrunc := OpenRequest{Oflags: OflagCreat | OflagTrunc | OflagExcl, Read: true, Write: true, Follow: true}
	log, errno := first.Open(4, "log", createTrunc)
	if errno != ESUCCESS {
		t.Fatal(errno)
	}
	if n, errno := first.Pwrite(log.Handle, 0, []byte("record 1\n")); n != 9 || errno != ESUCCESS {
		t.Fatalf("pwrite = %d, %v", n, errno)
	}
	gone, errno := first.Open(3, "gone", OpenRequest{Read: true, Follow: true})
	if errno != ESUCCESS {
		t.Fatal(errno)
	}
	if err := first.CloseAll(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(fx.data, "gone")); err != nil {
		t.Fatal(err)
	}

	const lost, wrongType, far = 1<<20 + 100, 1<<20 + 101, 5 << 20
	h := adopting(t, fx.cfg, Adoption{Handles: []Adopted{
		{Handle: sub.Handle, Kind: AdoptDir, Preopen: 0, Rel: "sub", Req: OpenRequest{Oflags: OflagDirectory, Read: true, Follow: true}},
		{Handle: f.Handle, Kind: AdoptFile, Preopen: 0, Rel: "sub/f", Req: OpenRequest{Read: true, Write: true, Follow: true}},
		{Handle: log.Handle, Kind: AdoptFile, Preopen: 1, Rel: "log", Req: createTrunc},
		{Handle: gone.Handle, Kind: AdoptFile, Preopen: 0, Rel: "gone", Req: OpenRequest{Read: true, Follow: true}},
		{Handle: lost, Kind: AdoptLost},
		{Handle: wrongType, Kind: AdoptDir, Preopen: 0, Rel: "sub/f", Req: OpenRequest{Read: true, Follow: true}},
		{Handle: far, Kind: AdoptFile, Preopen: 0, Rel: "sub/f", Req: OpenRequest{Read: true, Follow: true}},
	}})

	// Reads and writes at offsets, on the files as they were left.
	if data, errno := h.Pread(f.Handle, 2, 4); string(data) != "side" || errno != ESUCCESS {
		t.Errorf("pread of the adopted file = %q, %v", data, errno)
	}
	if data, errno := h.Pread(far, 0, 100); string(data) != "inside" || errno != ESUCCESS {
		t.Errorf("pread of the far handle = %q, %v", data, errno)
	}
	if data, errno := h.Pread(log.Handle, 0, 100); string(data) != "record 1\n" || errno != ESUCCESS {
		t.Errorf("the adopted log was truncated or not reopened: %q, %v", data, errno)
	}
	if n, errno := h.Pwrite(log.Handle, 9, []byte("record 2\n")); n != 9 || errno != ESUCCESS {
		t.Errorf("pwrite to the adopted log = %d, %v", n, errno)
	}
	if got, _ := os.ReadFile(filepath.Join(filepath.Dir(fx.data), "other", "log")); string(got) != "record 1\nrecord 2\n" {
		t.Errorf("log on disk = %q", got)
	}
	if n, errno := h.Pwrite(f.Handle, 6, []byte("!")); n != 1 || errno != ESUCCESS {
		t.Errorf("pwrite to the adopted file = %d, %v", n, errno)
	}
	if st, errno := h.Filestat(f.Handle); st.Size != 7 || errno != ESUCCESS {
		t.Errorf("filestat of the adopted file = %+v, %v", st, errno)
	}

	// The adopted directory resolves paths where the old one did.
	in, errno := h.Open(sub.Handle, "f", OpenRequest{Read: true, Follow: true})
	if errno != ESUCCESS {
		t.Fatalf("open in the adopted directory: %v", errno)
	}
	if in.Handle <= far {
		t.Errorf("new handle %d not above the adopted ones", in.Handle)
	}
	if ents, errno := h.ReadDir(sub.Handle, 0, 10); errno != ESUCCESS || len(ents) != 3 || ents[2].Name != "f" {
		t.Errorf("readdir of the adopted directory = %+v, %v", ents, errno)
	}
	if errno := h.Rename(sub.Handle, "f", 3, "moved"); errno != ESUCCESS {
		t.Errorf("rename from the adopted directory to its preopen: %v", errno)
	}

	// Lost handles: every operation fails, Close succeeds.
	for _, hd := range []Handle{gone.Handle, lost, wrongType} {
		if _, errno := h.Pread(hd, 0, 1); errno != EBADF {
			t.Errorf("pread of lost handle %d = %v", hd, errno)
		}
		if _, errno := h.Pwrite(hd, 0, []byte("x")); errno != EBADF {
			t.Errorf("pwrite of lost handle %d = %v", hd, errno)
		}
		if _, errno := h.Filestat(hd); errno != EBADF {
			t.Errorf("filestat of lost handle %d = %v", hd, errno)
		}
		if _, errno := h.Open(hd, "x", readReq); errno != EBADF {
			t.Errorf("open in lost handle %d = %v", hd, errno)
		}
		if _, errno := h.ReadDir(hd, 0, 1); errno != EBADF {
			t.Errorf("readdir of lost handle %d = %v", hd, errno)
		}
		evs, err := h.Poll(context.Background(), []Subscription{{Type: EventFdRead, Handle: hd}})
		if err != nil || len(evs) != 1 || evs[0].Errno != EBADF {
			t.Errorf("poll of lost handle %d = %+v, %v", hd, evs, err)
		}
		if err := h.Close(hd); err != nil {
			t.Errorf("close of lost handle %d: %v", hd, err)
		}
	}
	if err := h.CloseAll(); err != nil {
		t.Errorf("CloseAll: %v", err)
	}
}

// TestOSHostAdoptConn: an adopted connection is one its peer reset.
func TestOSHostAdoptConn(t *testing.T) {
	const conn = 1<<20 + 7
	h := adopting(t, Config{}, Adoption{Handles: []Adopted{{Handle: conn, Kind: AdoptConn}}})
	ctx := context.Background()
	for _, flags := range []ReadFlags{0, ReadNonblock, ReadWaitAll, ReadPeek} {
		if data, errno, err := h.Read(ctx, conn, 10, flags); len(data) != 0 || errno != ECONNRESET || err != nil {
			t.Errorf("read(%v) = %q, %v, %v; want ECONNRESET", flags, data, errno, err)
		}
	}
	evs, err := h.Poll(ctx, []Subscription{
		{Userdata: 1, Type: EventFdRead, Handle: conn},
		{Userdata: 2, Type: EventFdWrite, Handle: conn},
	})
	if err != nil || len(evs) != 2 || evs[0].Flags&EventFdHangup == 0 || evs[0].Errno != ESUCCESS {
		t.Errorf("poll = %+v, %v; want both ready, the read with a hangup", evs, err)
	}
	if err := h.Write(conn, []byte("into the void")); err != nil {
		t.Errorf("write: %v", err)
	}
	if err := h.Shutdown(conn, ShutRd|ShutWr); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if st, errno := h.Filestat(conn); errno != EBADF {
		t.Errorf("filestat of a connection = %+v, %v", st, errno)
	}
	if err := h.Close(conn); err != nil {
		t.Errorf("close: %v", err)
	}
}

// TestOSHostAdoptClosedStartup: startup handles the guest closed are not
// served, a closed listener is not bound, and files in a closed preopen
// are reopened all the same.
func TestOSHostAdoptClosedStartup(t *testing.T) {
	fx := newAdoptFixture(t)
	cfg := fx.cfg
	cfg.Listeners = []Listener{{Addr: "127.0.0.1:0"}, {Addr: "127.0.0.1:0"}}
	const f = 1 << 20
	h := adopting(t, cfg, Adoption{
		Closed:  []Handle{0, 3, 6},
		Handles: []Adopted{{Handle: f, Kind: AdoptFile, Preopen: 0, Rel: "sub/f", Req: readReq}},
	})
	ctx := context.Background()
	if _, errno, _ := h.Read(ctx, 0, 1, ReadNonblock); errno != EBADF {
		t.Errorf("read of closed stdin = %v", errno)
	}
	if _, errno := h.Open(3, "sub/f", readReq); errno != EBADF {
		t.Errorf("open in closed preopen = %v", errno)
	}
	if data, errno := h.Pread(f, 0, 100); string(data) != "inside" || errno != ESUCCESS {
		t.Errorf("file of the closed preopen = %q, %v", data, errno)
	}
	res, errno := h.Open(4, "x", createReq)
	if errno != ESUCCESS {
		t.Errorf("open in preopen 1 = %v", errno)
	}
	if res.Handle <= f {
		t.Errorf("new handle %d not above the adopted one", res.Handle)
	}
	if _, ok := h.ListenerAddr(0); !ok {
		t.Error("listener 0 not bound")
	}
	if addr, ok := h.ListenerAddr(1); ok {
		t.Errorf("closed listener 1 bound to %v", addr)
	}
	if _, errno, _ := h.Accept(ctx, 6, true); errno != EBADF {
		t.Errorf("accept on closed listener = %v", errno)
	}
	if _, errno, _ := h.Accept(ctx, 5, true); errno != EAGAIN {
		t.Errorf("accept on listener 0 = %v", errno)
	}
	if err := h.Write(1, []byte("stdout is still there\n")); err != nil {
		t.Error(err)
	}
}

// TestOSHostAdoptMonotonicFloor: the adopting host's monotonic and CPU
// clocks start at or above the floors and keep advancing from there; the
// clocks of Poll's absolute timeouts are the same.
func TestOSHostAdoptMonotonicFloor(t *testing.T) {
	plain, err := NewOSHost(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.CloseAll()
	now, _ := plain.ClockTime(ClockMonotonic, 0)
	cpu, _ := plain.ClockTime(ClockProcessCPUTime, 0)
	const ahead = uint64(1000 * time.Hour)
	floor, cpuFloor := now+ahead, cpu+ahead
	h := adopting(t, Config{}, Adoption{MonotonicFloor: floor, CPUTimeFloor: cpuFloor})
	prev := floor
	for range 1000 {
		v, errno := h.ClockTime(ClockMonotonic, 0)
		if errno != ESUCCESS || v < prev {
			t.Fatalf("monotonic clock read %d after %d (%v)", v, prev, errno)
		}
		prev = v
	}
	for _, id := range []ClockID{ClockProcessCPUTime, ClockThreadCPUTime} {
		if v, errno := h.ClockTime(id, 0); errno != ESUCCESS || v < cpuFloor {
			t.Errorf("clock %d = %d, below the floor %d (%v)", id, v, cpuFloor, errno)
		}
	}
	if v, _ := h.ClockTime(ClockRealtime, 0); v >= uint64(time.Now().UnixNano())+ahead/2 {
		t.Errorf("the realtime clock was offset too: %d", v)
	}
	// An absolute timeout a millisecond after the adopted clock's now
	// fires; on the unadjusted clock it would be 1000 hours away.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	evs, err := h.Poll(ctx, []Subscription{{Userdata: 9, Type: EventClock, Clock: ClockMonotonic,
		Timeout: prev + uint64(time.Millisecond), Flags: SubclockAbstime}})
	if err != nil || len(evs) != 1 || evs[0].Userdata != 9 {
		t.Errorf("poll on the adopted clock = %+v, %v", evs, err)
	}
	if v, _ := h.ClockTime(ClockMonotonic, 0); v < prev+uint64(time.Millisecond) {
		t.Errorf("the clock read %d after the timeout at %d fired", v, prev+uint64(time.Millisecond))
	}

	// A floor behind the real clock changes nothing.
	h2 := adopting(t, Config{}, Adoption{MonotonicFloor: 1})
	if v, _ := h2.ClockTime(ClockMonotonic, 0); v < now {
		t.Errorf("clock with a low floor = %d, before %d", v, now)
	}
}

func TestOSHostAdoptRefusesMismatches(t *testing.T) {
	fx := newAdoptFixture(t)
	for name, a := range map[string]Adoption{
		"startup handle":   {Handles: []Adopted{{Handle: 4, Kind: AdoptConn}}},
		"twice":            {Handles: []Adopted{{Handle: 1 << 20, Kind: AdoptConn}, {Handle: 1 << 20, Kind: AdoptLost}}},
		"no such preopen":  {Handles: []Adopted{{Handle: 1 << 20, Kind: AdoptFile, Preopen: 2, Rel: "x"}}},
		"unknown kind":     {Handles: []Adopted{{Handle: 1 << 20}}},
		"closed non-start": {Closed: []Handle{5}},
	} {
		if h, err := NewOSHostAdopting(fx.cfg, nil, a); err == nil {
			h.CloseAll()
			t.Errorf("%s: adoption accepted", name)
		}
	}
}

// TestOSHostListenerReuse: a Shared listener bound by address can be bound
// again by a second host while the first still holds it (a backup going
// live on the machine of a halting primary); once the first closes, the
// second gets every connection. A listener that is not Shared cannot be.
func TestOSHostListenerReuse(t *testing.T) {
	lone, err := NewOSHost(Config{Listeners: []Listener{{Addr: "127.0.0.1:0"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	laddr, _ := lone.ListenerAddr(0)
	if h, err := NewOSHost(Config{Listeners: []Listener{{Addr: laddr.String()}}}, nil); err == nil {
		h.CloseAll()
		t.Error("a second host bound a listener that is not shared")
	}
	lone.CloseAll()

	first, err := NewOSHost(Config{Listeners: []Listener{{Addr: "127.0.0.1:0", Shared: true}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := first.ListenerAddr(0)
	second, err := NewOSHost(Config{Listeners: []Listener{{Addr: addr.String(), Shared: true}}}, nil)
	if err != nil {
		first.CloseAll()
		t.Fatalf("second listener on %v: %v", addr, err)
	}
	defer second.CloseAll()
	if err := first.CloseAll(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, errno, err := second.Accept(context.Background(), 3, false); errno != ESUCCESS || err != nil {
		t.Fatalf("accept on the second host = %v, %v", errno, err)
	}
}
