//go:build linux

package wasi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"ftvm/wasm"
)

// osFixture lays out a directory tree for OSHost tests:
//
//	outside/secret
//	data/                   preopen 3
//	data/sub/f              "inside"
//	data/sub/up -> ../top    (inside the preopen, outside sub)
//	data/top                "top"
//	data/abs -> /etc
//	data/rel -> ../outside   (outside the preopen)
//	data/inner -> sub/f
//	other/                  preopen 4
type osFixture struct {
	root string
	host *OSHost
}

func newOSFixture(t *testing.T, cfg Config) *osFixture {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"outside", "data", "data/sub", "other"} {
		must(os.Mkdir(filepath.Join(root, d), 0o755))
	}
	must(os.WriteFile(filepath.Join(root, "outside", "secret"), []byte("secret"), 0o644))
	must(os.WriteFile(filepath.Join(root, "data", "sub", "f"), []byte("inside"), 0o644))
	must(os.WriteFile(filepath.Join(root, "data", "top"), []byte("top"), 0o644))
	must(os.Symlink("../top", filepath.Join(root, "data", "sub", "up")))
	must(os.Symlink("/etc", filepath.Join(root, "data", "abs")))
	must(os.Symlink("../outside", filepath.Join(root, "data", "rel")))
	must(os.Symlink("sub/f", filepath.Join(root, "data", "inner")))
	cfg.Preopens = []Preopen{{GuestPath: "/data", HostDir: filepath.Join(root, "data")},
		{GuestPath: "/other", HostDir: filepath.Join(root, "other")}}
	h, err := NewOSHost(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.CloseAll() })
	return &osFixture{root: root, host: h}
}

var (
	readReq   = OpenRequest{Read: true, Follow: true}
	createReq = OpenRequest{Oflags: OflagCreat, Read: true, Write: true, Follow: true}
)

func TestOSHostConfinement(t *testing.T) {
	fx := newOSFixture(t, Config{})
	h := fx.host
	open := func(dir Handle, p string, req OpenRequest) (OpenResult, Errno) {
		t.Helper()
		res, errno := h.Open(dir, p, req)
		if errno == ESUCCESS {
			t.Cleanup(func() { h.Close(res.Handle) })
		}
		return res, errno
	}
	for _, c := range []struct {
		p    string
		req  OpenRequest
		want Errno
	}{
		{"abs/passwd", readReq, ENOTCAPABLE},
		{"abs", readReq, ENOTCAPABLE},
		{"rel/secret", readReq, ENOTCAPABLE},
		{"rel", OpenRequest{Oflags: OflagDirectory, Read: true, Follow: true}, ENOTCAPABLE},
		{"rel/new", createReq, ENOTCAPABLE},
		{"../outside/secret", readReq, ENOTCAPABLE},
		{"sub/../../outside/secret", readReq, ENOTCAPABLE},
		{"inner", readReq, ESUCCESS},
		{"inner", OpenRequest{Read: true}, ELOOP},
		{"inner", OpenRequest{Oflags: OflagCreat | OflagExcl, Write: true}, EEXIST},
		{"sub/up", readReq, ESUCCESS},
		{"missing", readReq, ENOENT},
		{"top/x", readReq, ENOTDIR},
	} {
		if _, got := open(3, c.p, c.req); got != c.want {
			t.Errorf("Open(%q, %+v) = %v, want %v", c.p, c.req, got, c.want)
		}
	}
	if res, errno := open(3, "inner", readReq); errno == ESUCCESS {
		if data, _ := h.Pread(res.Handle, 0, 100); string(data) != "inside" {
			t.Errorf("read through inner link: %q", data)
		}
	}
	for name, got := range map[string]Errno{
		"stat rel":          second(h.PathFilestat(3, "rel", true)),
		"mkdir rel/x":       h.Mkdir(3, "rel/x"),
		"unlink rel/secret": h.Unlink(3, "rel/secret"),
		"rename out":        h.Rename(3, "top", 3, "rel/stolen"),
		"rename in":         h.Rename(3, "rel/secret", 3, "got"),
		"link out":          h.Link(3, "rel/secret", false, 3, "got"),
		"link follow":       h.Link(3, "rel", true, 3, "got"),
		"symlink in rel":    h.Symlink("x", 3, "rel/x"),
		"set times":         h.PathSetTimes(3, "rel/secret", true, 0, 0, FstflagMtimNow),
		"readlink via abs":  second(h.Readlink(3, "abs/x")),
	} {
		if got != ENOTCAPABLE {
			t.Errorf("%s = %v, want ENOTCAPABLE", name, got)
		}
	}
	if st, errno := h.PathFilestat(3, "rel", false); errno != ESUCCESS || st.Filetype != FiletypeSymbolicLink {
		t.Errorf("lstat of rel = %+v, %v", st, errno)
	}
	if target, errno := h.Readlink(3, "rel"); errno != ESUCCESS || target != "../outside" {
		t.Errorf("readlink rel = %q, %v", target, errno)
	}

	// A directory opened inside the preopen confines paths to itself.
	sub, errno := open(3, "sub", OpenRequest{Oflags: OflagDirectory, Read: true, Follow: true})
	if errno != ESUCCESS || sub.Filetype != FiletypeDirectory {
		t.Fatalf("open sub = %+v, %v", sub, errno)
	}
	if _, errno := open(sub.Handle, "up", readReq); errno != ENOTCAPABLE {
		t.Errorf("sub/up from sub = %v, want ENOTCAPABLE", errno)
	}
	if _, errno := open(sub.Handle, "..", readReq); errno != ENOTCAPABLE {
		t.Errorf(".. from sub = %v, want ENOTCAPABLE", errno)
	}
	if errno := h.Rename(sub.Handle, "f", 3, "moved"); errno != ESUCCESS {
		t.Errorf("rename between directories of one preopen = %v", errno)
	}
	if errno := h.Rename(3, "moved", 4, "moved"); errno != EXDEV {
		t.Errorf("rename between preopens = %v, want EXDEV", errno)
	}
	if _, err := os.Stat(filepath.Join(fx.root, "outside", "secret")); err != nil {
		t.Errorf("the outside file is gone: %v", err)
	}
	for _, name := range []string{"stolen", "got"} {
		if _, err := os.Lstat(filepath.Join(fx.root, "outside", name)); err == nil {
			t.Errorf("outside/%s was created", name)
		}
	}
}

func second[T any](_ T, e Errno) Errno { return e }

func TestOSHostFiles(t *testing.T) {
	fx := newOSFixture(t, Config{})
	h := fx.host
	res, errno := h.Open(3, "new", createReq)
	if errno != ESUCCESS || res.Filetype != FiletypeRegularFile {
		t.Fatalf("create = %+v, %v", res, errno)
	}
	f := res.Handle
	if n, errno := h.Pwrite(f, 3, []byte("abc")); n != 3 || errno != ESUCCESS {
		t.Errorf("pwrite = %d, %v", n, errno)
	}
	if data, _ := h.Pread(f, 0, 10); !bytes.Equal(data, []byte("\x00\x00\x00abc")) {
		t.Errorf("pread %q", data)
	}
	if data, errno := h.Pread(f, 100, 10); len(data) != 0 || errno != ESUCCESS {
		t.Errorf("pread past the end = %q, %v", data, errno)
	}
	if errno := h.Allocate(f, 0, 100); errno != ESUCCESS {
		t.Error(errno)
	}
	if st, _ := h.Filestat(f); st.Size != 100 || st.Filetype != FiletypeRegularFile || st.Nlink != 1 || st.Ino == 0 {
		t.Errorf("filestat %+v", st)
	}
	if errno := h.SetSize(f, 2); errno != ESUCCESS {
		t.Error(errno)
	}
	when := uint64(time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano())
	if errno := h.SetTimes(f, 0, when, FstflagMtim); errno != ESUCCESS {
		t.Error(errno)
	}
	if st, _ := h.Filestat(f); st.Size != 2 || st.Mtim != when {
		t.Errorf("after truncate and set times: %+v", st)
	}
	for _, dataOnly := range []bool{false, true} {
		if errno := h.Sync(f, dataOnly); errno != ESUCCESS {
			t.Error(errno)
		}
	}
	if errno := h.Close(f); errno != nil {
		t.Error(errno)
	}
	if err := h.Close(f); err == nil {
		t.Error("closing a closed handle succeeded")
	}
	if _, errno := h.Pread(f, 0, 1); errno != EBADF {
		t.Errorf("pread of a closed handle = %v", errno)
	}

	// Symbolic links' own times.
	if errno := h.PathSetTimes(3, "inner", false, when, when, FstflagAtim|FstflagMtim); errno != ESUCCESS {
		t.Error(errno)
	}
	if st, _ := h.PathFilestat(3, "inner", false); st.Mtim != when {
		t.Errorf("link mtime %d, want %d", st.Mtim, when)
	}
	if st, _ := h.PathFilestat(3, "inner", true); st.Mtim == when {
		t.Error("setting the link's times changed its target's")
	}

	if errno := h.Unlink(3, "sub"); errno != EISDIR {
		t.Errorf("unlink dir = %v", errno)
	}
	if errno := h.Rmdir(3, "top"); errno != ENOTDIR {
		t.Errorf("rmdir file = %v", errno)
	}
	if errno := h.Rmdir(3, "sub"); errno != ENOTEMPTY {
		t.Errorf("rmdir non-empty = %v", errno)
	}
	if errno := h.Unlink(3, "top/"); errno != ENOTDIR {
		t.Errorf("unlink file/ = %v", errno)
	}
	if errno := h.Mkdir(3, "d"); errno != ESUCCESS {
		t.Error(errno)
	}
	if errno := h.Mkdir(3, "d"); errno != EEXIST {
		t.Errorf("mkdir twice = %v", errno)
	}
	if errno := h.Link(3, "inner", true, 3, "hard"); errno != ESUCCESS {
		t.Errorf("link following = %v", errno)
	}
	if st, _ := h.PathFilestat(3, "hard", false); st.Filetype != FiletypeRegularFile || st.Nlink != 2 {
		t.Errorf("hard link %+v", st)
	}

	// Listing in pieces, following cookies.
	d, errno := h.Open(3, ".", OpenRequest{Oflags: OflagDirectory, Read: true})
	if errno != ESUCCESS {
		t.Fatal(errno)
	}
	var names []string
	for cookie := uint64(0); ; {
		list, errno := h.ReadDir(d.Handle, cookie, 2)
		if errno != ESUCCESS {
			t.Fatal(errno)
		}
		for _, e := range list {
			names = append(names, e.Name)
			cookie = e.Next
		}
		if len(list) < 2 {
			break
		}
	}
	want := []string{".", "..", "abs", "d", "hard", "inner", "new", "rel", "sub", "top"}
	if !slices.Equal(names, want) {
		t.Errorf("listing %q, want %q", names, want)
	}
	if _, errno := h.ReadDir(f, 0, 10); errno != EBADF {
		t.Errorf("readdir of a closed file = %v", errno)
	}
}

func TestOSHostStreams(t *testing.T) {
	pr, pw := io.Pipe()
	var stdout bytes.Buffer
	h, err := NewOSHost(Config{Stdin: pr, Stdout: &stdout}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.CloseAll()
	ctx := context.Background()

	if _, errno, _ := h.Read(ctx, 0, 10, ReadNonblock); errno != EAGAIN {
		t.Errorf("non-blocking read of empty stdin = %v", errno)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		pw.Write([]byte("line\n"))
	}()
	start := time.Now()
	events, err := h.Poll(ctx, []Subscription{
		{Userdata: 1, Type: EventClock, Clock: ClockMonotonic, Timeout: uint64(10 * time.Second)},
		{Userdata: 2, Type: EventFdRead, Handle: 0},
		{Userdata: 3, Type: EventFdWrite, Handle: 0},
	})
	if err != nil || len(events) != 1 || events[0].Userdata != 2 || events[0].NBytes != 5 {
		t.Errorf("poll = %+v, %v", events, err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("poll took %v", el)
	}
	if data, errno, err := h.Read(ctx, 0, 3, ReadPeek); string(data) != "lin" || errno != ESUCCESS || err != nil {
		t.Errorf("peek = %q, %v, %v", data, errno, err)
	}
	if data, _, _ := h.Read(ctx, 0, 10, 0); string(data) != "line\n" {
		t.Errorf("read %q", data)
	}
	pw.Close()
	if data, errno, err := h.Read(ctx, 0, 10, 0); len(data) != 0 || errno != ESUCCESS || err != nil {
		t.Errorf("read at the end = %q, %v, %v", data, errno, err)
	}
	if events, _ := h.Poll(ctx, []Subscription{{Userdata: 4, Type: EventFdRead}}); len(events) != 1 || events[0].Flags != EventFdHangup {
		t.Errorf("poll at the end = %+v", events)
	}

	// Timers, relative and absolute.
	start = time.Now()
	events, err = h.Poll(ctx, []Subscription{
		{Userdata: 5, Type: EventClock, Clock: ClockMonotonic, Timeout: uint64(30 * time.Millisecond)},
		{Userdata: 6, Type: EventClock, Clock: ClockRealtime, Timeout: uint64(time.Hour)},
	})
	if el := time.Since(start); err != nil || len(events) != 1 || events[0].Userdata != 5 || el < 30*time.Millisecond {
		t.Errorf("timer poll = %+v, %v after %v", events, err, time.Since(start))
	}
	now, _ := h.ClockTime(ClockRealtime, 0)
	start = time.Now()
	events, _ = h.Poll(ctx, []Subscription{{Userdata: 7, Type: EventClock, Clock: ClockRealtime,
		Timeout: now + uint64(20*time.Millisecond), Flags: SubclockAbstime}})
	if el := time.Since(start); len(events) != 1 || el < 10*time.Millisecond {
		t.Errorf("absolute timer poll = %+v after %v", events, el)
	}
	if events, _ := h.Poll(ctx, []Subscription{{Userdata: 8, Type: EventFdWrite, Handle: 1}, {Userdata: 9, Type: EventFdRead, Handle: 12345}}); len(events) != 2 || events[1].Errno != EBADF {
		t.Errorf("poll stdout and a bad handle = %+v", events)
	}

	// Cancellation.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := h.Poll(cctx, []Subscription{{Type: EventFdRead, Handle: 1}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled poll = %v", err)
	}

	if err := h.Write(1, []byte("out")); err != nil || stdout.String() != "out" {
		t.Errorf("write = %v, stdout %q", err, stdout.String())
	}
	if err := h.Write(0, []byte("x")); err == nil {
		t.Error("write to stdin succeeded")
	}
	for _, id := range []ClockID{ClockRealtime, ClockMonotonic, ClockProcessCPUTime, ClockThreadCPUTime} {
		if res, errno := h.ClockResolution(id); errno != ESUCCESS || res == 0 {
			t.Errorf("resolution of clock %d = %d, %v", id, res, errno)
		}
		if v, errno := h.ClockTime(id, 0); errno != ESUCCESS || v == 0 {
			t.Errorf("clock %d = %d, %v", id, v, errno)
		}
	}
	if b, err := h.Random(32); err != nil || len(b) != 32 {
		t.Errorf("random = %v, %v", b, err)
	}
}

func TestOSHostSockets(t *testing.T) {
	h, lnAddr := listeningHost(t, Config{})
	ctx := context.Background()
	if addr, ok := h.ListenerAddr(0); !ok || addr.String() != lnAddr {
		t.Errorf("ListenerAddr = %v, %v", addr, ok)
	}
	if _, errno, _ := h.Accept(ctx, 3, true); errno != EAGAIN {
		t.Errorf("accept with nothing pending = %v", errno)
	}
	c, err := net.Dial("tcp", lnAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if events, err := h.Poll(ctx, []Subscription{{Userdata: 1, Type: EventFdRead, Handle: 3}}); err != nil || len(events) != 1 {
		t.Fatalf("poll listener = %+v, %v", events, err)
	}
	conn, errno, err := h.Accept(ctx, 3, true)
	if errno != ESUCCESS || err != nil {
		t.Fatalf("accept = %v, %v", errno, err)
	}
	if err := h.Write(conn, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Errorf("client read %q, %v", buf, err)
	}
	c.Write([]byte("0123456789"))
	if data, errno, _ := h.Read(ctx, conn, 10, ReadWaitAll); string(data) != "0123456789" || errno != ESUCCESS {
		t.Errorf("read all = %q, %v", data, errno)
	}
	if err := h.Shutdown(conn, ShutWr); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Errorf("client after shutdown: %q, %v", rest, err)
	}
	c.Close()
	if data, errno, err := h.Read(ctx, conn, 10, 0); len(data) != 0 || errno != ESUCCESS || err != nil {
		t.Errorf("read after the client closed = %q, %v, %v", data, errno, err)
	}
	if err := h.Shutdown(3, ShutWr); err == nil {
		t.Error("shutdown of a listener succeeded")
	}
	if err := h.Close(conn); err != nil {
		t.Fatal(err)
	}
	if err := h.CloseAll(); err != nil {
		t.Error(err)
	}
	if _, errno, _ := h.Accept(ctx, 3, false); errno != EBADF {
		t.Errorf("accept after CloseAll = %v", errno)
	}
	if _, err := net.Dial("tcp", lnAddr); err == nil {
		t.Error("the listener still accepts after CloseAll")
	}
}

func TestOSHostErrors(t *testing.T) {
	if _, err := NewOSHost(Config{Preopens: []Preopen{{GuestPath: "/x", HostDir: "/nonexistent/dir"}}}, nil); err == nil ||
		!strings.Contains(err.Error(), "preopen 0") {
		t.Errorf("NewOSHost with a missing directory: %v", err)
	}
	if _, err := NewOSHost(Config{Listeners: []Listener{{Addr: "256.0.0.1:0"}}}, nil); err == nil {
		t.Error("NewOSHost with a bad listen address succeeded")
	}
	if _, err := NewOSHost(Config{Listeners: []Listener{{Name: "x"}}}, nil); err == nil {
		t.Error("NewOSHost with a listener without address succeeded")
	}
}

// Opening a non-directory as a directory fails with ENOTDIR, as open(2)
// with O_DIRECTORY does. Go's os.ReadDir of a file and its os.Root walking
// a path through a file (each intermediate component is opened with
// O_DIRECTORY) both depend on it.
func TestOSHostOpenDirectoryNotDir(t *testing.T) {
	fx := newOSFixture(t, Config{})
	h := fx.host
	dirReq := OpenRequest{Oflags: OflagDirectory, Read: true, Follow: true}
	for _, c := range []struct {
		p    string
		req  OpenRequest
		want Errno
	}{
		{"top", dirReq, ENOTDIR},
		{"sub/f", dirReq, ENOTDIR},
		{"inner", dirReq, ENOTDIR}, // a link to a file, followed
		{"inner", OpenRequest{Oflags: OflagDirectory, Read: true}, ELOOP},
		{"missing", dirReq, ENOENT},
		{"top/x", dirReq, ENOTDIR},
		{"sub", dirReq, ESUCCESS},
	} {
		res, got := h.Open(3, c.p, c.req)
		if got == ESUCCESS {
			h.Close(res.Handle)
		}
		if got != c.want {
			t.Errorf("Open(%q, %+v) = %v, want %v", c.p, c.req, got, c.want)
		}
	}

	// Through System, path_open with OFLAGS_DIRECTORY on a file.
	s, err := New(Config{Preopens: []Preopen{{GuestPath: "/data"}, {GuestPath: "/other"}}}, h)
	if err != nil {
		t.Fatal(err)
	}
	mem := wasm.NewMemory(1, 1)
	mem.Write(0x100, []byte("top"))
	res, err := s.Call(context.Background(), mem, "path_open",
		[]uint64{3, 1, 0x100, 3, uint64(OflagDirectory), RightFdReaddir, 0, 0, 0x200})
	if err != nil {
		t.Fatal(err)
	}
	if got := Errno(res[0]); got != ENOTDIR {
		t.Errorf("path_open(top, OFLAGS_DIRECTORY) = %v, want ENOTDIR", got)
	}
}

// TestOSHostRenameDirectories checks rename(2)'s rules for directories:
// os.Root.Rename, which OSHost used before, refused to replace an empty
// directory (EEXIST).
func TestOSHostRenameDirectories(t *testing.T) {
	fx := newOSFixture(t, Config{})
	h := fx.host
	data := filepath.Join(fx.root, "data")
	for _, d := range []string{"a", "empty", "c", "full", "full/sub"} {
		if err := os.Mkdir(filepath.Join(data, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(data, "a", "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from, to string
		want     Errno
	}{
		{"a", "empty", ESUCCESS},  // replaces the empty directory
		{"c", "full", ENOTEMPTY},  // not a non-empty one
		{"c", "top", ENOTDIR},     // a directory onto a file
		{"top", "c", EISDIR},      // a file onto a directory
		{"top", "new/", ENOTDIR},  // a trailing slash asks for a directory
		{"c", "c2/", ESUCCESS},    // which c is
		{"sub/.", "z", EBUSY},     // as rename(2) of "."
		{"missing", "m", ENOENT},  //
		{"rel", "rel2", ESUCCESS}, // the link itself, not its target
	} {
		if got := h.Rename(3, c.from, 3, c.to); got != c.want {
			t.Errorf("Rename(%q, %q) = %v, want %v", c.from, c.to, got, c.want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(data, "empty", "x")); err != nil || string(b) != "x" {
		t.Errorf("empty/x after the rename: %q, %v", b, err)
	}
	for _, gone := range []string{"a", "c"} {
		if _, err := os.Lstat(filepath.Join(data, gone)); err == nil {
			t.Errorf("%s still exists", gone)
		}
	}
	if target, err := os.Readlink(filepath.Join(data, "rel2")); err != nil || target != "../outside" {
		t.Errorf("rel2 = %q, %v", target, err)
	}
	if _, err := os.Stat(filepath.Join(fx.root, "outside", "secret")); err != nil {
		t.Errorf("the outside file is gone: %v", err)
	}
}

// Unlisten frees a listener's address for another process while the
// guest keeps its connections; Relisten takes the address again. A
// switchover's old primary does this while it waits for its backup to
// take over.
func TestOSHostUnlisten(t *testing.T) {
	ctx := context.Background()
	h, err := NewOSHost(Config{Listeners: []Listener{{Addr: "127.0.0.1:0", Shared: true}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.CloseAll()
	a, _ := h.ListenerAddr(0)
	addr := a.String()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var conn Handle
	for deadline := time.Now().Add(10 * time.Second); ; {
		var errno Errno
		if conn, errno, err = h.Accept(ctx, 3, true); errno == ESUCCESS && err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("accept = %v, %v", errno, err)
		}
		time.Sleep(time.Millisecond)
	}

	h.Unlisten()
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("the address still accepts after Unlisten")
	}
	// Another socket may bind the address (without SO_REUSEPORT).
	other, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the address is not free after Unlisten: %v", err)
	}
	if _, errno, _ := h.Accept(ctx, 3, true); errno != EAGAIN {
		t.Errorf("accept while unlistened = %v, want EAGAIN", errno)
	}
	// The accepted connection still works both ways.
	if err := h.Write(conn, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("client read %q, %v", buf, err)
	}
	if err := h.Relisten(); err == nil {
		t.Error("Relisten succeeded with the address taken")
	}
	other.Close()
	if err := h.Relisten(); err != nil {
		t.Fatal(err)
	}
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("no listener after Relisten: %v", err)
	}
	defer c2.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, errno, err := h.Accept(ctx, 3, true); errno == ESUCCESS && err == nil {
			break
		} else if time.Now().After(deadline) || (errno != EAGAIN && errno != ESUCCESS) {
			t.Fatalf("accept after Relisten = %v, %v", errno, err)
		}
		time.Sleep(time.Millisecond)
	}
	if err := h.CloseAll(); err != nil {
		t.Error(err)
	}
}
