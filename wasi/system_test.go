package wasi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"ftvm/wasm"
)

// harness drives a System over a memHost with a real engine memory.
type harness struct {
	t   *testing.T
	s   *System
	h   *memHost
	mem *wasm.Memory
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := newMemHost(len(cfg.Preopens))
	s, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, s: s, h: h, mem: wasm.NewMemory(1, 10)}
}

func (x *harness) call(name string, args ...uint64) Errno {
	x.t.Helper()
	res, err := x.s.Call(context.Background(), x.mem, name, args)
	if err != nil {
		x.t.Fatalf("%s: %v", name, err)
	}
	if len(res) != 1 {
		x.t.Fatalf("%s: %d results", name, len(res))
	}
	return Errno(res[0])
}

func (x *harness) want(want Errno, name string, args ...uint64) {
	x.t.Helper()
	if got := x.call(name, args...); got != want {
		x.t.Errorf("%s%v = %v, want %v", name, args, got, want)
	}
}

func (x *harness) put(off uint32, b []byte) uint64 {
	if !x.mem.Write(off, b) {
		x.t.Fatalf("put at %#x", off)
	}
	return uint64(off)
}

func (x *harness) bytes(off, n uint32) []byte {
	b, ok := x.mem.Read(off, n)
	if !ok {
		x.t.Fatalf("read at %#x", off)
	}
	return slices.Clone(b)
}

func (x *harness) u32(off uint32) uint32 {
	v, _ := x.mem.ReadUint32(off)
	return v
}

func (x *harness) u64(off uint32) uint64 {
	v, _ := x.mem.ReadUint64(off)
	return v
}

// iovs lays out iovecs at off pointing at bufs, each placed after the
// previous, from off+0x100.
func (x *harness) iovs(off uint32, bufs ...[]byte) (uint64, uint64) {
	p := off + 0x100
	for i, b := range bufs {
		x.mem.PutUint32(off+uint32(i)*8, p)
		x.mem.PutUint32(off+uint32(i)*8+4, uint32(len(b)))
		x.put(p, b)
		p += uint32(len(b))
	}
	return uint64(off), uint64(len(bufs))
}

// path writes a path at 0x8000 and returns its pointer and length.
func (x *harness) path(p string) (uint64, uint64) {
	x.put(0x8000, []byte(p))
	return 0x8000, uint64(len(p))
}

// open opens p in the first preopen and returns the descriptor.
func (x *harness) open(p string, oflags uint16, rights uint64, fdflags uint16) uint32 {
	x.t.Helper()
	pp, pl := x.path(p)
	if e := x.call("path_open", 3, 1, pp, pl, uint64(oflags), rights, rights, uint64(fdflags), 0x9000); e != ESUCCESS {
		x.t.Fatalf("path_open %s: %v", p, e)
	}
	return x.u32(0x9000)
}

var bigAddr = uint64(10 << 20) // beyond a 1-page memory

// The functions of wasi_snapshot_preview1, as the witx definition lists
// them.
var preview1 = []string{
	"args_get", "args_sizes_get", "environ_get", "environ_sizes_get",
	"clock_res_get", "clock_time_get",
	"fd_advise", "fd_allocate", "fd_close", "fd_datasync", "fd_fdstat_get",
	"fd_fdstat_set_flags", "fd_fdstat_set_rights", "fd_filestat_get",
	"fd_filestat_set_size", "fd_filestat_set_times", "fd_pread", "fd_prestat_get",
	"fd_prestat_dir_name", "fd_pwrite", "fd_read", "fd_readdir", "fd_renumber",
	"fd_seek", "fd_sync", "fd_tell", "fd_write",
	"path_create_directory", "path_filestat_get", "path_filestat_set_times",
	"path_link", "path_open", "path_readlink", "path_remove_directory",
	"path_rename", "path_symlink", "path_unlink_file",
	"poll_oneoff", "proc_exit", "proc_raise", "random_get", "sched_yield",
	"sock_accept", "sock_recv", "sock_send", "sock_shutdown",
}

func TestFunctionsAndSignatures(t *testing.T) {
	if got := Functions(); !slices.Equal(got, slices.Sorted(slices.Values(preview1))) {
		t.Errorf("Functions() = %v", got)
	}
	i32, i64 := wasm.I32, wasm.I64
	for name, want := range map[string]wasm.FuncType{
		"fd_write":                {Params: []wasm.ValType{i32, i32, i32, i32}, Results: []wasm.ValType{i32}},
		"clock_time_get":          {Params: []wasm.ValType{i32, i64, i32}, Results: []wasm.ValType{i32}},
		"path_open":               {Params: []wasm.ValType{i32, i32, i32, i32, i32, i64, i64, i32, i32}, Results: []wasm.ValType{i32}},
		"fd_seek":                 {Params: []wasm.ValType{i32, i64, i32, i32}, Results: []wasm.ValType{i32}},
		"proc_exit":               {Params: []wasm.ValType{i32}},
		"sched_yield":             {Params: []wasm.ValType{}, Results: []wasm.ValType{i32}},
		"poll_oneoff":             {Params: []wasm.ValType{i32, i32, i32, i32}, Results: []wasm.ValType{i32}},
		"sock_recv":               {Params: []wasm.ValType{i32, i32, i32, i32, i32, i32}, Results: []wasm.ValType{i32}},
		"fd_readdir":              {Params: []wasm.ValType{i32, i32, i32, i64, i32}, Results: []wasm.ValType{i32}},
		"path_filestat_set_times": {Params: []wasm.ValType{i32, i32, i32, i32, i64, i64, i32}, Results: []wasm.ValType{i32}},
	} {
		got, ok := Signature(name)
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("Signature(%s) = %v, %v; want %v", name, got, ok, want)
		}
	}
	if _, ok := Signature("fd_nonesuch"); ok {
		t.Error("Signature of an unknown name")
	}
}

func TestClassify(t *testing.T) {
	for _, name := range preview1 {
		if Classify(name) == Unknown {
			t.Errorf("Classify(%s) = Unknown", name)
		}
	}
	for name, want := range map[string]Kind{
		"args_get": Deterministic, "fd_fdstat_get": Deterministic, "fd_prestat_get": Deterministic,
		"sched_yield": Deterministic, "proc_exit": Deterministic,
		"clock_time_get": Input, "random_get": Input, "poll_oneoff": Input, "fd_read": Input,
		"sock_accept": Input, "sock_recv": Input,
		"fd_close": Output, "sock_shutdown": Output,
		"sock_send": Effect, // a blocking send without credit polls the Host
		"fd_write":  Effect, "path_open": Effect, "path_rename": Effect,
		"nonesuch": Unknown,
	} {
		if got := Classify(name); got != want {
			t.Errorf("Classify(%s) = %v, want %v", name, got, want)
		}
	}
	host := reflect.TypeFor[Host]()
	for i := range host.NumMethod() {
		if m := host.Method(i).Name; ClassifyHost(m) == Unknown {
			t.Errorf("ClassifyHost(%s) = Unknown", m)
		}
	}
	if len(hostKinds) != host.NumMethod() {
		t.Errorf("%d Host methods classified, Host has %d", len(hostKinds), host.NumMethod())
	}
}

// deterministicCalls are the functions that must never reach the Host.
func TestDeterministicCallsDoNotReachHost(t *testing.T) {
	x := newHarness(t, Config{Args: []string{"a"}, Env: []string{"K=v"},
		Preopens: []Preopen{{GuestPath: "/d"}}, Listeners: []Listener{{}}})
	x.call("args_sizes_get", 0x100, 0x104)
	x.call("args_get", 0x200, 0x300)
	x.call("environ_sizes_get", 0x100, 0x104)
	x.call("environ_get", 0x200, 0x300)
	x.call("fd_fdstat_get", 4, 0x100)
	x.call("fd_fdstat_set_flags", 1, uint64(FdflagNonblock))
	x.call("fd_fdstat_set_rights", 1, RightFdWrite, 0)
	x.call("fd_prestat_get", 3, 0x100)
	x.call("fd_prestat_dir_name", 3, 0x200, 2)
	x.call("fd_advise", 3, 0, 0, 0)
	x.call("sched_yield")
	x.call("proc_raise", 0)
	if len(x.h.calls) != 0 {
		t.Errorf("host calls: %v", x.h.calls)
	}
}

func TestArgsEnviron(t *testing.T) {
	x := newHarness(t, Config{Args: []string{"prog", "", "ünï"}, Env: []string{"A=1", "B="}})
	x.want(ESUCCESS, "args_sizes_get", 0x100, 0x104)
	if n, size := x.u32(0x100), x.u32(0x104); n != 3 || size != 5+1+6 {
		t.Errorf("args_sizes_get = %d, %d", n, size)
	}
	x.want(ESUCCESS, "args_get", 0x200, 0x300)
	for i, want := range []string{"prog\x00", "\x00", "ünï\x00"} {
		p := x.u32(0x200 + uint32(i)*4)
		if got := string(x.bytes(p, uint32(len(want)))); got != want {
			t.Errorf("arg %d = %q, want %q", i, got, want)
		}
	}
	x.want(ESUCCESS, "environ_sizes_get", 0x100, 0x104)
	if n, size := x.u32(0x100), x.u32(0x104); n != 2 || size != 4+3 {
		t.Errorf("environ_sizes_get = %d, %d", n, size)
	}
	x.want(ESUCCESS, "environ_get", 0x200, 0x300)
	if got := string(x.bytes(0x300, 7)); got != "A=1\x00B=\x00" {
		t.Errorf("environ = %q", got)
	}
	x.want(EFAULT, "args_get", 0x200, 0xffff)
	x.want(EFAULT, "args_get", bigAddr, 0x300)
	x.want(EFAULT, "environ_sizes_get", 0xfffe, 0x100)

	if _, err := New(Config{Args: []string{"a\x00b"}}, newMemHost(0)); err == nil {
		t.Error("New accepted an argument with a NUL byte")
	}
}

func TestListenerConvention(t *testing.T) {
	x := newHarness(t, Config{
		Env:       []string{"FTVM_LISTEN_FDS=99", "KEEP=1"},
		Preopens:  []Preopen{{GuestPath: "/data"}, {GuestPath: "/tmp"}},
		Listeners: []Listener{{Name: "http"}, {Name: "admin"}},
	})
	if want := []string{"KEEP=1", "FTVM_LISTEN_FDS=5,6", "FTVM_LISTEN_FDNAMES=http:admin"}; !slices.Equal(x.s.env, want) {
		t.Errorf("env = %q, want %q", x.s.env, want)
	}
	for fd, want := range map[uint64]struct {
		ft    Filetype
		flags uint16
	}{
		0: {FiletypeCharacterDevice, 0}, 1: {FiletypeCharacterDevice, 0},
		3: {FiletypeDirectory, 0}, 4: {FiletypeDirectory, 0},
		5: {FiletypeSocketStream, FdflagNonblock}, 6: {FiletypeSocketStream, FdflagNonblock},
	} {
		x.want(ESUCCESS, "fd_fdstat_get", fd, 0x100)
		if ft, flags := Filetype(x.bytes(0x100, 1)[0]), binary.LittleEndian.Uint16(x.bytes(0x102, 2)); ft != want.ft || flags != want.flags {
			t.Errorf("fd %d: filetype %d flags %#x, want %d %#x", fd, ft, flags, want.ft, want.flags)
		}
	}
	x.want(EBADF, "fd_fdstat_get", 7, 0x100)

	x.want(ESUCCESS, "fd_prestat_get", 4, 0x100)
	if tag, n := x.bytes(0x100, 1)[0], x.u32(0x104); tag != 0 || n != 4 {
		t.Errorf("prestat of fd 4 = %d, %d", tag, n)
	}
	x.want(ESUCCESS, "fd_prestat_dir_name", 4, 0x200, 4)
	if got := string(x.bytes(0x200, 4)); got != "/tmp" {
		t.Errorf("prestat dir name %q", got)
	}
	x.want(ENAMETOOLONG, "fd_prestat_dir_name", 4, 0x200, 3)
	for _, fd := range []uint64{0, 1, 2, 5, 6, 7, 1 << 31} {
		x.want(EBADF, "fd_prestat_get", fd, 0x100)
	}
	x.want(EFAULT, "fd_prestat_get", 3, bigAddr)
	x.want(EINVAL, "sock_accept", 5, 1<<3, 0x100)
	x.want(EAGAIN, "sock_accept", 5, 0, 0x100)
	x.h.pending[5] = 1
	x.want(ESUCCESS, "sock_accept", 5, uint64(FdflagNonblock), 0x100)
	if fd := x.u32(0x100); fd != 7 {
		t.Errorf("accepted fd %d, want 7", fd)
	}
	x.want(ESUCCESS, "fd_fdstat_get", 7, 0x100)
	if flags := binary.LittleEndian.Uint16(x.bytes(0x102, 2)); flags != FdflagNonblock {
		t.Errorf("accepted connection flags %#x", flags)
	}
	x.want(ENOTSOCK, "sock_accept", 3, 0, 0x100)
	x.want(EINVAL, "sock_accept", 7, 0, 0x100)
}

func TestStreamWrites(t *testing.T) {
	x := newHarness(t, Config{})
	iovs, n := x.iovs(0x1000, []byte("hello, "), []byte(""), []byte("world\n"))
	x.want(ESUCCESS, "fd_write", 1, iovs, n, 0x100)
	if got := x.u32(0x100); got != 13 {
		t.Errorf("nwritten %d", got)
	}
	x.want(ESUCCESS, "fd_write", 2, iovs, 1, 0x100)
	if got := string(x.h.out[1]); got != "hello, world\n" {
		t.Errorf("stdout %q", got)
	}
	if got := string(x.h.out[2]); got != "hello, " {
		t.Errorf("stderr %q", got)
	}
	calls := len(x.h.calls)
	x.want(EBADF, "fd_write", 0, iovs, n, 0x100)
	x.want(EBADF, "fd_write", 9, iovs, n, 0x100)
	x.want(EFAULT, "fd_write", 1, iovs, n, bigAddr)
	x.want(EFAULT, "fd_write", 1, bigAddr, 1, 0x100)
	x.want(EINVAL, "fd_write", 1, iovs, 5000, 0x100)
	x.mem.PutUint32(0x1000, 0xfffd) // an iovec running off the end
	x.want(EFAULT, "fd_write", 1, iovs, n, 0x100)
	x.want(ESPIPE, "fd_seek", 1, 0, 0, 0x100)
	x.want(ESPIPE, "fd_tell", 1, 0x100)
	x.want(ESPIPE, "fd_pwrite", 1, iovs, n, 0, 0x100)
	if len(x.h.calls) != calls {
		t.Errorf("failed writes reached the host: %v", x.h.calls[calls:])
	}

	// Overlapping iovecs may ask for more than memory holds: the write is
	// short, never a huge allocation.
	for i := range 1024 {
		x.mem.PutUint32(0x2000+uint32(i)*8, 0)
		x.mem.PutUint32(0x2000+uint32(i)*8+4, 65536)
	}
	x.want(ESUCCESS, "fd_write", 1, 0x2000, 1024, 0x100)
	if got := x.u32(0x100); got != maxWrite {
		t.Errorf("huge overlapping write wrote %d", got)
	}
}

func TestStdinReads(t *testing.T) {
	x := newHarness(t, Config{})
	x.h.in[0] = []byte("abcdefgh")
	iovs, n := x.iovs(0x1000, make([]byte, 3), make([]byte, 2))
	x.want(ESUCCESS, "fd_read", 0, iovs, n, 0x100)
	if got := x.u32(0x100); got != 5 || string(x.bytes(0x1100, 5)) != "abcde" {
		t.Errorf("read %d bytes %q", got, x.bytes(0x1100, 5))
	}
	if last := x.h.calls[len(x.h.calls)-1]; last != "Read 0 5 0" {
		t.Errorf("host call %q", last)
	}
	x.want(ESUCCESS, "fd_fdstat_set_flags", 0, uint64(FdflagNonblock))
	x.want(ESUCCESS, "fd_read", 0, iovs, n, 0x100)
	if got := x.u32(0x100); got != 3 {
		t.Errorf("read %d bytes", got)
	}
	x.want(EAGAIN, "fd_read", 0, iovs, n, 0x100)
	if last := x.h.calls[len(x.h.calls)-1]; last != "Read 0 5 1" {
		t.Errorf("host call %q", last)
	}
	x.want(ESUCCESS, "fd_fdstat_set_flags", 0, 0)
	x.want(ESUCCESS, "fd_read", 0, iovs, n, 0x100) // the end of stdin
	if got := x.u32(0x100); got != 0 {
		t.Errorf("read %d bytes at the end", got)
	}
	x.want(EBADF, "fd_read", 1, iovs, n, 0x100)
	x.want(EINVAL, "fd_fdstat_set_flags", 0, 1<<5)
	x.want(ENOTCAPABLE, "fd_fdstat_set_rights", 0, RightFdWrite, 0)
	x.want(ESUCCESS, "fd_fdstat_set_rights", 0, 0, 0)
	x.want(ENOTCAPABLE, "fd_read", 0, iovs, n, 0x100)
}

func TestFileOffsetsAndAppend(t *testing.T) {
	x := newHarness(t, Config{Preopens: []Preopen{{GuestPath: "/"}}})
	rw := rightsFile
	fd := x.open("f.txt", OflagCreat, rw, 0)
	if fd != 4 {
		t.Errorf("first opened fd %d, want 4", fd)
	}
	write := func(fd uint32, s string) {
		t.Helper()
		iovs, n := x.iovs(0x1000, []byte(s))
		x.want(ESUCCESS, "fd_write", uint64(fd), iovs, n, 0x100)
	}
	write(fd, "hello")
	write(fd, " world")
	x.want(ESUCCESS, "fd_tell", uint64(fd), 0x100)
	if got := x.u64(0x100); got != 11 {
		t.Errorf("tell %d", got)
	}
	x.want(ESUCCESS, "fd_seek", uint64(fd), uint64(1<<64-5), uint64(WhenceEnd), 0x100)
	if got := x.u64(0x100); got != 6 {
		t.Errorf("seek end-5 = %d", got)
	}
	x.want(EINVAL, "fd_seek", uint64(fd), uint64(1<<64-100), uint64(WhenceCur), 0x100)
	x.want(EINVAL, "fd_seek", uint64(fd), 0, 3, 0x100)
	x.want(EINVAL, "fd_seek", uint64(fd), 0, 256, 0x100)
	iovs, n := x.iovs(0x1000, make([]byte, 10))
	x.want(ESUCCESS, "fd_read", uint64(fd), iovs, n, 0x100)
	if got := string(x.bytes(0x1100, x.u32(0x100))); got != "world" {
		t.Errorf("read %q", got)
	}
	x.want(ESUCCESS, "fd_pread", uint64(fd), iovs, n, 2, 0x100)
	if got := string(x.bytes(0x1100, x.u32(0x100))); got != "llo world" {
		t.Errorf("pread %q", got)
	}
	x.want(ESUCCESS, "fd_tell", uint64(fd), 0x100)
	if got := x.u64(0x100); got != 11 {
		t.Errorf("pread moved the offset to %d", got)
	}

	// Append: System learns the size from the Host and writes there.
	afd := x.open("f.txt", 0, RightFdWrite, FdflagAppend)
	mark := len(x.h.calls)
	write(afd, "!")
	if got := x.h.calls[mark:]; !slices.Equal(got, []string{"Filestat 1002", `Pwrite 1002 11 "!"`}) {
		t.Errorf("append calls %q", got)
	}
	write(fd, "?") // at its own offset, 11, over the "!"
	if got := string(x.h.files["f.txt"]); got != "hello world?" {
		t.Errorf("file %q", got)
	}

	// A read-only descriptor cannot write, and the reverse: each lacks
	// the right.
	rfd := x.open("f.txt", 0, RightFdRead, 0)
	x.want(ENOTCAPABLE, "fd_write", uint64(rfd), iovs, n, 0x100)
	x.want(ENOTCAPABLE, "fd_read", uint64(afd), iovs, n, 0x100)
	x.want(ESUCCESS, "fd_close", uint64(rfd))
	x.want(EBADF, "fd_close", uint64(rfd))

	x.want(ESUCCESS, "fd_filestat_set_size", uint64(fd), 3)
	x.want(ESUCCESS, "fd_filestat_get", uint64(fd), 0x200)
	if size, ft := x.u64(0x200+32), x.bytes(0x200+16, 1)[0]; size != 3 || Filetype(ft) != FiletypeRegularFile {
		t.Errorf("filestat size %d type %d", size, ft)
	}
	x.want(EINVAL, "fd_filestat_set_times", uint64(fd), 0, 0, uint64(FstflagAtim|FstflagAtimNow))
	x.want(ESUCCESS, "fd_filestat_set_times", uint64(fd), 5, 0, uint64(FstflagAtim|FstflagMtimNow))
	x.want(EINVAL, "fd_allocate", uint64(fd), 0, 0)
	x.want(ESUCCESS, "fd_allocate", uint64(fd), 0, 10)
	x.want(EFBIG, "fd_allocate", uint64(fd), 1<<63, 1)
	x.want(ESUCCESS, "fd_sync", uint64(fd))
	x.want(ESUCCESS, "fd_datasync", uint64(fd))
	x.want(EINVAL, "fd_sync", 1)
	x.want(ESUCCESS, "fd_advise", uint64(fd), 0, 0, 5)
	x.want(EINVAL, "fd_advise", uint64(fd), 0, 0, 6)
	x.want(ESPIPE, "fd_advise", 0, 0, 0, 0)

	// Renumbering closes the target and moves the descriptor.
	x.want(ESUCCESS, "fd_renumber", uint64(fd), uint64(afd))
	x.want(EBADF, "fd_tell", uint64(fd), 0x100)
	x.want(ESUCCESS, "fd_tell", uint64(afd), 0x100)
	if got := x.u64(0x100); got != 12 {
		t.Errorf("renumbered descriptor at %d", got)
	}
	x.want(EBADF, "fd_renumber", uint64(afd), 99)
}

func TestPathChecks(t *testing.T) {
	x := newHarness(t, Config{Preopens: []Preopen{{GuestPath: "/data"}}})
	x.put(0x9100, []byte("x"))
	calls := len(x.h.calls)
	for p, want := range map[string]Errno{
		"/etc/passwd":             ENOTCAPABLE,
		"..":                      ENOTCAPABLE,
		"../data":                 ENOTCAPABLE,
		"a/../../b":               ENOTCAPABLE,
		"a/./../..":               ENOTCAPABLE,
		"":                        ENOENT,
		"a\x00b":                  EINVAL,
		"\xff":                    EILSEQ,
		strings.Repeat("a", 5000): ENAMETOOLONG,
	} {
		pp, pl := x.path(p)
		x.want(want, "path_open", 3, 1, pp, pl, 0, RightFdRead, 0, 0, 0x100)
		x.want(want, "path_create_directory", 3, pp, pl)
		x.want(want, "path_filestat_get", 3, 1, pp, pl, 0x100)
		x.want(want, "path_unlink_file", 3, pp, pl)
		x.want(want, "path_rename", 3, pp, pl, 3, 0x9100, 1)
		x.want(want, "path_rename", 3, 0x9100, 1, 3, pp, pl)
	}
	if len(x.h.calls) != calls {
		t.Errorf("bad paths reached the host: %v", x.h.calls[calls:])
	}
	pp, pl := x.path("/abs")
	x.want(ENOTCAPABLE, "path_symlink", pp, pl, 3, 0x9100, 1)
	pp, pl = x.path("a/../b")
	x.want(ENOENT, "path_filestat_get", 3, 1, pp, pl, 0x100) // reaches the host
	if last := x.h.calls[len(x.h.calls)-1]; last != "PathFilestat 3 a/../b true" {
		t.Errorf("host call %q", last)
	}
	x.want(ENOTDIR, "path_filestat_get", 1, 1, pp, pl, 0x100)
	x.want(EBADF, "path_filestat_get", 42, 1, pp, pl, 0x100)
	x.want(EFAULT, "path_filestat_get", 3, 1, bigAddr, 1, 0x100)
	x.want(EINVAL, "path_open", 3, 1, pp, pl, 1<<4, 0, 0, 0, 0x100)
	x.want(EINVAL, "path_open", 3, 1, pp, pl, 0, 0, 0, 1<<5, 0x100)
}

func TestDirectories(t *testing.T) {
	x := newHarness(t, Config{Preopens: []Preopen{{GuestPath: "/"}}})
	pp, pl := x.path("sub")
	x.want(ESUCCESS, "path_create_directory", 3, pp, pl)
	x.want(EEXIST, "path_create_directory", 3, pp, pl)
	for _, name := range []string{"b", "a", "c-with-a-longer-name"} {
		fd := x.open("sub/"+name, OflagCreat, RightFdWrite, 0)
		x.want(ESUCCESS, "fd_close", uint64(fd))
	}
	dfd := x.open("sub", OflagDirectory, RightFdReaddir|RightPathFilestatGet|RightPathUnlinkFile, 0)
	x.want(ESUCCESS, "fd_fdstat_get", uint64(dfd), 0x100)
	if ft := Filetype(x.bytes(0x100, 1)[0]); ft != FiletypeDirectory {
		t.Errorf("opened directory has filetype %d", ft)
	}
	x.want(EISDIR, "fd_read", uint64(dfd), 0x1000, 0, 0x100)
	x.want(ENOTDIR, "fd_readdir", 1, 0x1000, 100, 0, 0x100)

	// Read the listing through a buffer that holds about one entry,
	// following the cookies.
	var names []string
	cookie := uint64(0)
	for range 20 {
		x.want(ESUCCESS, "fd_readdir", uint64(dfd), 0x1000, 48, cookie, 0x100)
		used := x.u32(0x100)
		if used < direntSize {
			break
		}
		next, namelen := x.u64(0x1000), x.u32(0x1000+16)
		if direntSize+namelen > used {
			t.Fatalf("entry of %d bytes does not fit %d: the guest must retry with a larger buffer", namelen, used)
		}
		names = append(names, string(x.bytes(0x1000+direntSize, namelen)))
		cookie = next
	}
	if want := []string{".", "..", "a", "b", "c-with-a-longer-name"}; !slices.Equal(names, want) {
		t.Errorf("listing %q, want %q", names, want)
	}
	x.want(ESUCCESS, "fd_readdir", uint64(dfd), 0x1000, 4096, 0, 0x100)
	if used := x.u32(0x100); used != 5*direntSize+1+2+1+1+20 {
		t.Errorf("whole listing used %d bytes", used)
	}
	x.want(ESUCCESS, "fd_readdir", uint64(dfd), 0x1000, 0, 0, 0x100)
	x.want(EFAULT, "fd_readdir", uint64(dfd), 0xffff, 100, 0, 0x100)

	// Paths resolve relative to the opened directory.
	pp, pl = x.path("a")
	x.want(ESUCCESS, "path_filestat_get", uint64(dfd), 0, pp, pl, 0x200)
	x.want(ESUCCESS, "path_unlink_file", uint64(dfd), pp, pl)
	x.want(ENOENT, "path_unlink_file", uint64(dfd), pp, pl)
	pp, pl = x.path("sub/b")
	x.want(ENOTDIR, "path_open", 3, 1, pp, pl, uint64(OflagDirectory), RightFdRead, 0, 0, 0x100)

	// A buffer too small for the next entry is filled to the brim: the
	// guest sees a full buffer and retries with a larger one.
	x.want(ESUCCESS, "fd_readdir", uint64(dfd), 0x1000, 30, 3, 0x100)
	if used := x.u32(0x100); used != 30 {
		t.Errorf("truncated entry used %d bytes", used)
	}
}

func TestPollOneoff(t *testing.T) {
	x := newHarness(t, Config{Listeners: []Listener{{}}})
	sub := func(i int, userdata uint64, typ EventType, fdOrClock uint32, timeout uint64, flags uint16) {
		b := make([]byte, subscriptionSize)
		binary.LittleEndian.PutUint64(b[0:], userdata)
		b[8] = byte(typ)
		binary.LittleEndian.PutUint32(b[16:], fdOrClock)
		binary.LittleEndian.PutUint64(b[24:], timeout)
		binary.LittleEndian.PutUint16(b[40:], flags)
		x.put(0x1000+uint32(i)*subscriptionSize, b)
	}
	sub(0, 11, EventClock, uint32(ClockMonotonic), 1e6, 0)
	sub(1, 12, EventFdRead, 0, 0, 0)
	sub(2, 13, EventFdRead, 3, 0, 0)
	x.h.in[0] = []byte("x")
	x.want(ESUCCESS, "poll_oneoff", 0x1000, 0x2000, 3, 0x100)
	if last := x.h.calls[len(x.h.calls)-1]; last != "Poll 11:0:0 12:1:0 13:1:3" {
		t.Errorf("host call %q", last)
	}
	if n := x.u32(0x100); n != 2 {
		t.Fatalf("%d events", n)
	}
	if ud, typ, nbytes := x.u64(0x2000+eventSize), x.bytes(0x2000+eventSize+10, 1)[0], x.u64(0x2000+eventSize+16); ud != 12 || EventType(typ) != EventFdRead || nbytes != 1 {
		t.Errorf("second event: userdata %d type %d nbytes %d", ud, typ, nbytes)
	}

	// A bad descriptor answers at once, without waiting in the Host.
	calls := len(x.h.calls)
	sub(2, 13, EventFdWrite, 77, 0, 0)
	x.want(ESUCCESS, "poll_oneoff", 0x1000, 0x2000, 3, 0x100)
	if n, errno := x.u32(0x100), binary.LittleEndian.Uint16(x.bytes(0x2000+8, 2)); n != 1 || Errno(errno) != EBADF || x.u64(0x2000) != 13 {
		t.Errorf("%d events, first errno %v userdata %d", n, Errno(errno), x.u64(0x2000))
	}
	sub(2, 14, EventClock, 9, 0, 0)
	x.want(ESUCCESS, "poll_oneoff", 0x1000, 0x2000, 3, 0x100)
	if errno := binary.LittleEndian.Uint16(x.bytes(0x2000+8, 2)); Errno(errno) != EINVAL {
		t.Errorf("bad clock errno %v", Errno(errno))
	}
	if len(x.h.calls) != calls {
		t.Errorf("host called: %v", x.h.calls[calls:])
	}
	sub(2, 14, 7, 0, 0, 0)
	x.want(EINVAL, "poll_oneoff", 0x1000, 0x2000, 3, 0x100)
	x.want(EINVAL, "poll_oneoff", 0x1000, 0x2000, 0, 0x100)
	x.want(EFAULT, "poll_oneoff", 0x1000, 0xffd0, 3, 0x100)
	x.want(EFAULT, "poll_oneoff", 0x1000, 0x2000, 1<<30, 0x100)
}

func TestClockRandomYield(t *testing.T) {
	x := newHarness(t, Config{})
	x.want(ESUCCESS, "clock_time_get", uint64(ClockRealtime), 1, 0x100)
	x.want(ESUCCESS, "clock_time_get", uint64(ClockMonotonic), 1, 0x108)
	if a, b := x.u64(0x100), x.u64(0x108); a != 1000 || b != 2000 {
		t.Errorf("clock readings %d %d", a, b)
	}
	x.want(ESUCCESS, "clock_res_get", uint64(ClockProcessCPUTime), 0x100)
	x.want(EINVAL, "clock_time_get", 4, 1, 0x100)
	x.want(EINVAL, "clock_res_get", 1<<31, 0x100)
	x.want(EFAULT, "clock_time_get", 0, 1, 0xfffc)
	x.want(ESUCCESS, "random_get", 0x1000, 16)
	if got := x.bytes(0x1000, 4); !bytes.Equal(got, []byte{1, 2, 3, 4}) {
		t.Errorf("random %v", got)
	}
	x.want(ESUCCESS, "random_get", 0x1000, 0)
	x.want(EFAULT, "random_get", 0xfff0, 32)
	x.want(ESUCCESS, "sched_yield")
}

func TestSockets(t *testing.T) {
	x := newHarness(t, Config{Listeners: []Listener{{}}})
	x.h.pending[3] = 1
	x.want(ESUCCESS, "sock_accept", 3, 0, 0x100)
	conn := uint64(x.u32(0x100))
	x.h.in[1001] = []byte("ping")
	iovs, n := x.iovs(0x1000, make([]byte, 8))
	x.want(ESUCCESS, "sock_recv", conn, iovs, n, uint64(RecvPeek), 0x100, 0x104)
	x.want(ESUCCESS, "sock_recv", conn, iovs, n, 0, 0x100, 0x104)
	if got := string(x.bytes(0x1100, x.u32(0x100))); got != "ping" {
		t.Errorf("received %q", got)
	}
	if got := x.h.calls[len(x.h.calls)-2:]; !slices.Equal(got, []string{"Read 1001 8 2", "Read 1001 8 0"}) {
		t.Errorf("host calls %q", got)
	}
	x.want(EINVAL, "sock_recv", conn, iovs, n, 4, 0x100, 0x104)
	siovs, sn := x.iovs(0x2000, []byte("pong"))
	x.want(ESUCCESS, "sock_send", conn, siovs, sn, 0, 0x100)
	if got := string(x.h.out[1001]); got != "pong" || x.u32(0x100) != 4 {
		t.Errorf("sent %q, %d", got, x.u32(0x100))
	}
	x.want(EINVAL, "sock_send", conn, siovs, sn, 1, 0x100)
	x.want(ENOTSOCK, "sock_send", 1, siovs, sn, 0, 0x100)
	x.want(ENOTCONN, "sock_send", 3, siovs, sn, 0, 0x100)
	x.want(ENOTCONN, "sock_recv", 3, iovs, n, 0, 0x100, 0x104)
	x.want(ENOTCONN, "fd_read", 3, iovs, n, 0x100)
	x.want(EINVAL, "sock_shutdown", conn, 0)
	x.want(EINVAL, "sock_shutdown", conn, 4)
	x.want(ENOTCONN, "sock_shutdown", 3, 1)
	x.want(ESUCCESS, "sock_shutdown", conn, uint64(ShutWr))
	x.want(EPIPE, "sock_send", conn, siovs, sn, 0, 0x100)
	x.want(EPIPE, "fd_write", conn, siovs, sn, 0x100)
	x.want(ESUCCESS, "sock_shutdown", conn, uint64(ShutRd))
	x.want(ESUCCESS, "fd_read", conn, iovs, n, 0x100)
	if got := x.u32(0x100); got != 0 {
		t.Errorf("read %d bytes after shutdown", got)
	}
	x.want(ESUCCESS, "fd_filestat_get", conn, 0x200)
	if ft := Filetype(x.bytes(0x200+16, 1)[0]); ft != FiletypeSocketStream {
		t.Errorf("socket filetype %d", ft)
	}
	x.want(ESUCCESS, "fd_close", conn)
	if last := x.h.calls[len(x.h.calls)-1]; last != "Close 1001" {
		t.Errorf("host call %q", last)
	}
}

// A connection takes SendWindow bytes after accept, then what the fd_write
// events of poll_oneoff grant: a non-blocking write beyond gets EAGAIN, a
// blocking one polls the Host itself.
func TestSendCredit(t *testing.T) {
	x := newHarness(t, Config{Listeners: []Listener{{}}})
	x.h.pending[3] = 2
	x.want(ESUCCESS, "sock_accept", 3, uint64(FdflagNonblock), 0x100)
	nb := uint64(x.u32(0x100))
	x.want(ESUCCESS, "sock_accept", 3, 0, 0x100)
	blocking := uint64(x.u32(0x100))
	// Eight overlapping iovecs of 48 KiB: 384 KiB, more than SendWindow.
	const iovs, piece = 0x400, 48 << 10
	for i := range uint32(8) {
		x.mem.PutUint32(iovs+i*8, 0x1000)
		x.mem.PutUint32(iovs+i*8+4, piece)
	}
	send := func(fd uint64) (Errno, uint32) {
		e := x.call("sock_send", fd, iovs, 8, 0, 0x100)
		return e, x.u32(0x100)
	}
	if e, n := send(nb); e != ESUCCESS || n != SendWindow {
		t.Fatalf("first send = %v, %d; want all of SendWindow", e, n)
	}
	x.mem.PutUint32(0x100, 0)
	if e, _ := send(nb); e != EAGAIN {
		t.Fatalf("send without credit = %v, want EAGAIN", e)
	}
	// poll_oneoff reports 1000 bytes of room.
	x.h.room[1001] = 1000
	sub := make([]byte, subscriptionSize)
	binary.LittleEndian.PutUint64(sub[0:], 42)
	sub[8] = byte(EventFdWrite)
	binary.LittleEndian.PutUint32(sub[16:], uint32(nb))
	x.put(0x3000, sub)
	x.want(ESUCCESS, "poll_oneoff", 0x3000, 0x3100, 1, 0x3200)
	if e, n := send(nb); e != ESUCCESS || n != 1000 {
		t.Fatalf("send after poll = %v, %d; want 1000", e, n)
	}
	if e, _ := send(nb); e != EAGAIN {
		t.Fatalf("send with the credit spent = %v, want EAGAIN", e)
	}
	// An event whose userdata also names stdout's subscription could be
	// either's: it grants nothing.
	binary.LittleEndian.PutUint32(sub[16:], 1)
	x.put(0x3030, sub)
	x.want(ESUCCESS, "poll_oneoff", 0x3000, 0x3100, 2, 0x3200)
	if e, _ := send(nb); e != EAGAIN {
		t.Fatalf("send after an ambiguous event = %v, want EAGAIN", e)
	}

	// The blocking descriptor spends its window, then asks the Host.
	if e, n := send(blocking); e != ESUCCESS || n != SendWindow {
		t.Fatalf("blocking send = %v, %d", e, n)
	}
	x.h.room[1002] = 5
	calls := len(x.h.calls)
	if e, n := send(blocking); e != ESUCCESS || n != 5 {
		t.Fatalf("blocking send without credit = %v, %d; want 5 after a poll", e, n)
	}
	if got := x.h.calls[calls]; got != fmt.Sprintf("Poll 0:%d:1002", EventFdWrite) {
		t.Errorf("host call %q, want the write poll", got)
	}
	// A Host that reports no room figure (NBytes 0) does not bound its
	// queue: the window renews.
	delete(x.h.room, 1002)
	if e, n := send(blocking); e != ESUCCESS || n != SendWindow {
		t.Fatalf("send after an unbounded poll = %v, %d", e, n)
	}
	// The credit travels with the state.
	x.h.room[1001] = 777
	x.want(ESUCCESS, "poll_oneoff", 0x3000, 0x3100, 1, 0x3200)
	st, err := x.s.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	y := newHarness(t, Config{Listeners: []Listener{{}}})
	if err := y.s.UnmarshalState(st); err != nil {
		t.Fatal(err)
	}
	if got := y.s.fds[uint32(nb)].credit; got != 777 {
		t.Errorf("credit after a state round trip %d, want 777", got)
	}
}

func TestProcExitAndRaise(t *testing.T) {
	x := newHarness(t, Config{})
	x.want(ESUCCESS, "proc_raise", 27) // SIGWINCH is ignored
	x.want(EINVAL, "proc_raise", 31)
	res, err := x.s.Call(context.Background(), x.mem, "proc_exit", []uint64{3})
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Code != 3 || res != nil {
		t.Fatalf("proc_exit = %v, %v", res, err)
	}
	if code, exited := x.s.Exited(); !exited || code != 3 {
		t.Errorf("Exited() = %d, %v", code, exited)
	}
	if _, err := x.s.Call(context.Background(), x.mem, "sched_yield", nil); err == nil {
		t.Error("a call after exit succeeded")
	}
	y := newHarness(t, Config{})
	_, err = y.s.Call(context.Background(), y.mem, "proc_raise", []uint64{6}) // SIGABRT
	if !errors.As(err, &exit) || exit.Code != 128+6 {
		t.Errorf("proc_raise(SIGABRT) = %v", err)
	}
}

func TestCallErrors(t *testing.T) {
	x := newHarness(t, Config{})
	if _, err := x.s.Call(context.Background(), x.mem, "fd_nonesuch", nil); err == nil {
		t.Error("unknown function accepted")
	}
	if _, err := x.s.Call(context.Background(), x.mem, "fd_close", nil); err == nil {
		t.Error("wrong argument count accepted")
	}
	// A module without memory gets EFAULT, never a panic.
	res, err := x.s.Call(context.Background(), nil, "fd_write", []uint64{1, 0, 1, 0})
	if err != nil || Errno(res[0]) != EFAULT {
		t.Errorf("fd_write without memory = %v, %v", res, err)
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("New accepted a nil Host")
	}
}

// Every write into guest memory must reach the dirty-page tracking.
func TestDirtyPages(t *testing.T) {
	x := newHarness(t, Config{Args: []string{"a"}})
	x.mem.ResetDirty()
	x.want(ESUCCESS, "args_sizes_get", 0x3000, 0x5004)
	x.want(ESUCCESS, "random_get", 0x7ff0, 32)
	x.want(ESUCCESS, "clock_time_get", 0, 0, 0xa000)
	if got, want := x.mem.DirtyPages(), []uint32{3, 5, 7, 8, 10}; !slices.Equal(got, want) {
		t.Errorf("dirty pages %v, want %v", got, want)
	}
}

// The same calls with the same Host results leave two Systems, and their
// memories, identical.
func TestDeterminism(t *testing.T) {
	run := func() ([]byte, []byte) {
		x := newHarness(t, Config{Args: []string{"p"}, Preopens: []Preopen{{GuestPath: "/"}}, Listeners: []Listener{{}}})
		x.h.pending[4] = 2
		fd := x.open("f", OflagCreat, RightFdRead|RightFdWrite, 0)
		iovs, n := x.iovs(0x1000, []byte("data"))
		x.call("fd_write", uint64(fd), iovs, n, 0x100)
		x.call("sock_accept", 4, 0, 0x104)
		x.call("clock_time_get", 1, 0, 0x108)
		x.call("random_get", 0x200, 64)
		x.call("fd_readdir", 3, 0x3000, 512, 0, 0x110)
		st, err := x.s.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		return st, slices.Clone(x.mem.Bytes())
	}
	s1, m1 := run()
	s2, m2 := run()
	if !bytes.Equal(s1, s2) || !bytes.Equal(m1, m2) {
		t.Error("two identical runs diverged")
	}
}

func TestMarshalState(t *testing.T) {
	x := newHarness(t, Config{Args: []string{"p", "q"}, Env: []string{"A=b"},
		Preopens: []Preopen{{GuestPath: "/data"}}, Listeners: []Listener{{Name: "l"}}})
	fd := x.open("f", OflagCreat, RightFdRead|RightFdWrite|RightFdTell, FdflagAppend)
	iovs, n := x.iovs(0x1000, []byte("data"))
	x.want(ESUCCESS, "fd_write", uint64(fd), iovs, n, 0x100)
	x.want(ESUCCESS, "fd_close", 0)
	st, err := x.s.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	y := newHarness(t, Config{})
	y.h = x.h
	y.s.host = x.h
	if err := y.s.UnmarshalState(st); err != nil {
		t.Fatal(err)
	}
	st2, _ := y.s.MarshalState()
	if !bytes.Equal(st, st2) {
		t.Error("state changed through a round trip")
	}
	if !reflect.DeepEqual(x.s.fds, y.s.fds) || !slices.Equal(x.s.args, y.s.args) || !slices.Equal(x.s.env, y.s.env) {
		t.Error("restored state differs")
	}
	y.want(ESUCCESS, "fd_tell", uint64(fd), 0x100)
	if got := y.u64(0x100); got != 4 {
		t.Errorf("restored offset %d", got)
	}
	y.want(EBADF, "fd_read", 0, iovs, n, 0x100)

	before, _ := y.s.MarshalState()
	for _, bad := range [][]byte{nil, []byte("ftvmWASI"), append([]byte("ftvmWASI"), 9), st[:len(st)-1], append(slices.Clone(st), 0)} {
		if err := y.s.UnmarshalState(bad); err == nil {
			t.Errorf("UnmarshalState accepted %q", bad)
		}
	}
	if after, _ := y.s.MarshalState(); !bytes.Equal(before, after) {
		t.Error("a failed UnmarshalState changed the state")
	}
}
