package wasi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config describes the devices and the command line of a guest.
//
// System reads Args, Env, the guest paths of Preopens and the names of
// Listeners; it needs nothing else to start, and asks the Host nothing. The
// host-side fields (Stdin, Stdout, Stderr, Preopen.HostDir,
// Listener.Addr, Listener.Listener) are read only by NewOSHost, so a Host
// that replays a log can be paired with a Config that leaves them empty.
type Config struct {
	// Args is the argument vector; Args[0] is conventionally the program
	// name.
	Args []string
	// Env holds "KEY=value" entries. System appends the listener
	// convention's variables when there are listeners (see the package
	// documentation), replacing any entries of the same names.
	Env []string
	// Preopens are the directories the guest may use, as descriptors 3,
	// 4, ... in this order.
	Preopens []Preopen
	// Listeners are TCP listening sockets handed to the guest, as the
	// descriptors following the preopens, in this order.
	Listeners []Listener

	// Stdin, Stdout and Stderr are the process streams NewOSHost serves;
	// nil means empty input and discarded output.
	Stdin          io.Reader
	Stdout, Stderr io.Writer

	// Coalesce is how long OSHost.Poll, once it has waited and something
	// became ready, waits further so that what else arrives meanwhile is
	// reported in the same call: a loaded guest wakes fewer times and
	// handles more per wake-up, for up to Coalesce more latency. It does
	// so only while inputs come from more than one source (the last poll
	// that reported descriptors found more than one ready, or another
	// descriptor had input within 20 coalescing times), so that a lone
	// client is not delayed. Zero turns it off. It changes no result a
	// guest could not have seen anyway (readiness is an input).
	Coalesce time.Duration

	// Sessions, if set, resumes the session connection id on a host that
	// adopts a guest (NewOSHostAdopting): the guest had read in bytes of
	// its input and written out bytes of its output. A session the host
	// cannot resume (nil, or an error) is adopted as a reset connection.
	// See OSHost.Offer for how sessions reach a guest.
	Sessions func(id string, in, out uint64) (net.Conn, error)
}

// Preopen is a directory handed to the guest.
type Preopen struct {
	// GuestPath is the name the guest sees, such as "/data".
	GuestPath string
	// HostDir is the host directory NewOSHost confines it to.
	HostDir string
}

// Listener is a listening TCP socket handed to the guest.
type Listener struct {
	// Name is an optional name for the guest (FTVM_LISTEN_FDNAMES).
	Name string
	// Addr is the TCP address NewOSHost listens on when Listener is nil,
	// such as "127.0.0.1:8080"; one of the two is required.
	Addr string
	// Listener, if set, is an open listener NewOSHost serves (and closes
	// when it is closed).
	Listener net.Listener
	// Shared makes NewOSHost bind Addr with SO_REUSEPORT, so that another
	// process may bind the same address while this one holds it: the
	// backup of a pair on the same machine takes over its primary's
	// address even while a halting old primary still has it. Without it a
	// second bind fails with EADDRINUSE, as it should for lone guests.
	Shared bool
	// Guard, if set, checks a listener NewOSHost opened by address once it
	// is bound: an error (someone else listens there too, say) closes it
	// and fails NewOSHost.
	Guard func(net.Listener) error
}

// The listener convention: the environment variables System sets.
const (
	EnvListenFDs     = "FTVM_LISTEN_FDS"
	EnvListenFDNames = "FTVM_LISTEN_FDNAMES"
)

// ExitError is returned by Call when the guest called proc_exit (or raised
// a signal whose default action terminates it).
type ExitError struct {
	Code uint32
}

func (e *ExitError) Error() string {
	return "wasi: exit status " + strconv.FormatUint(uint64(e.Code), 10)
}

// maxFDs bounds the descriptor table.
const maxFDs = 1 << 15

// maxIO bounds the bytes one read or write moves, as Linux bounds one
// read(2) to a little less than 2 GiB: short transfers are allowed, and
// bounding them keeps every log entry small.
const maxIO = 1 << 20

// maxWrite bounds the bytes one write moves. Iovecs may overlap, so what a
// guest asks to write is not bounded by its memory; beyond maxWrite the
// write is short, which POSIX allows and every libc handles.
const maxWrite = 16 << 20

// SendWindow is how many bytes a connection may have queued on the Host,
// written by the guest and not yet taken by the peer. A guest that writes
// more to a connection whose peer does not read waits (a blocking
// descriptor) or gets EAGAIN (a non-blocking one) until Poll reports room,
// as with a socket's send buffer; see Host.Write. It is part of the
// guest's deterministic semantics: a replay must use the same value.
const SendWindow = 256 << 10

// descKind says what a descriptor refers to.
type descKind uint8

const (
	kindStdin    descKind = iota + 1 // a readable stream of the process
	kindStdout                       // a writable stream of the process
	kindFile                         // a file, read and written at offsets
	kindDir                          // a directory
	kindListener                     // a listening socket
	kindConn                         // a connected socket
	kindMax
)

// descriptor is one entry of the descriptor table.
type descriptor struct {
	kind       descKind
	filetype   Filetype
	handle     Handle
	flags      uint16 // fdflags
	rights     uint64
	inheriting uint64
	offset     uint64 // files
	preopen    string // guest path of a preopened directory, else ""
	isPreopen  bool
	shut       uint8 // ShutRd|ShutWr done on a connection
	// credit is how many more bytes the Host accepts on a connection
	// without its queue passing SendWindow (see Host.Write).
	credit uint64
}

// System is the WASI state of one guest: arguments, environment, the
// descriptor table with each descriptor's flags, rights and file offset,
// and whether the guest exited. It is a deterministic state machine: its
// state after a call depends only on its state before, the call's arguments,
// guest memory and the Host's results.
//
// A System is not safe for concurrent use; the VM serialises calls.
type System struct {
	host     Host
	args     []string
	env      []string
	fds      map[uint32]*descriptor
	exited   bool
	exitCode uint32
}

// New returns the System of a guest configured by cfg, whose outside world
// is host. It does not call host.
func New(cfg Config, host Host) (*System, error) {
	if host == nil {
		return nil, errors.New("wasi: nil Host")
	}
	s := &System{host: host, fds: make(map[uint32]*descriptor)}
	for _, a := range cfg.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, fmt.Errorf("wasi: argument %q contains a NUL byte", a)
		}
	}
	s.args = append([]string(nil), cfg.Args...)
	env, err := listenerEnv(cfg)
	if err != nil {
		return nil, err
	}
	for _, e := range env {
		if strings.IndexByte(e, 0) >= 0 {
			return nil, fmt.Errorf("wasi: environment entry %q contains a NUL byte", e)
		}
	}
	s.env = env

	s.fds[0] = &descriptor{kind: kindStdin, filetype: FiletypeCharacterDevice, handle: 0, rights: rightsStdin}
	s.fds[1] = &descriptor{kind: kindStdout, filetype: FiletypeCharacterDevice, handle: 1, rights: rightsStdout}
	s.fds[2] = &descriptor{kind: kindStdout, filetype: FiletypeCharacterDevice, handle: 2, rights: rightsStdout}
	fd := uint32(3)
	for _, p := range cfg.Preopens {
		if p.GuestPath == "" || strings.IndexByte(p.GuestPath, 0) >= 0 {
			return nil, fmt.Errorf("wasi: preopen %d: bad guest path %q", fd-3, p.GuestPath)
		}
		s.fds[fd] = &descriptor{kind: kindDir, filetype: FiletypeDirectory, handle: Handle(fd),
			rights: rightsDir, inheriting: rightsDir | rightsFile, preopen: p.GuestPath, isPreopen: true}
		fd++
	}
	for range cfg.Listeners {
		s.fds[fd] = &descriptor{kind: kindListener, filetype: FiletypeSocketStream, handle: Handle(fd),
			flags: FdflagNonblock, rights: rightsListener, inheriting: rightsConn}
		fd++
	}
	return s, nil
}

// listenerEnv returns cfg.Env with the listener convention applied.
func listenerEnv(cfg Config) ([]string, error) {
	env := append([]string(nil), cfg.Env...)
	if len(cfg.Listeners) == 0 {
		return env, nil
	}
	env = slices.DeleteFunc(env, func(e string) bool {
		return strings.HasPrefix(e, EnvListenFDs+"=") || strings.HasPrefix(e, EnvListenFDNames+"=")
	})
	fds := make([]string, len(cfg.Listeners))
	names := make([]string, len(cfg.Listeners))
	for i, l := range cfg.Listeners {
		if strings.ContainsAny(l.Name, ":\x00") {
			return nil, fmt.Errorf("wasi: listener %d: name %q contains ':' or NUL", i, l.Name)
		}
		fds[i] = strconv.Itoa(3 + len(cfg.Preopens) + i)
		names[i] = l.Name
	}
	env = append(env, EnvListenFDs+"="+strings.Join(fds, ","), EnvListenFDNames+"="+strings.Join(names, ":"))
	return env, nil
}

// call is one invocation: its context, memory and arguments.
type call struct {
	ctx  context.Context
	mem  Memory
	args []uint64
}

func (c *call) u32(i int) uint32 { return uint32(c.args[i]) }
func (c *call) u64(i int) uint64 { return c.args[i] }

// Call performs the preview1 function name for the guest whose memory is
// mem (nil for a module without memory), with the arguments as the engine
// passes them (an i32 as uint64(uint32(v)), an i64 as uint64(v)). It returns
// the function's results: the errno, or nothing for proc_exit.
//
// Every guest error, however malformed the arguments or memory, is an
// errno. err is non-nil only for proc_exit (an *ExitError), a Host failure
// or cancellation of ctx during a blocking call, or a call the engine got
// wrong (unknown name, wrong argument count); the VM stops then.
func (s *System) Call(ctx context.Context, mem Memory, name string, args []uint64) (results []uint64, err error) {
	f, ok := functions[name]
	if !ok {
		return nil, fmt.Errorf("wasi: unknown function %s.%s", ModuleName, name)
	}
	if len(args) != len(f.params) {
		return nil, fmt.Errorf("wasi: %s: %d arguments, want %d", name, len(args), len(f.params))
	}
	if s.exited {
		return nil, fmt.Errorf("wasi: %s called after the guest exited with status %d", name, s.exitCode)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if mem == nil {
		mem = noMemory{}
	}
	defer func() {
		if r := recover(); r != nil {
			results = nil
			err = fmt.Errorf("wasi: %s: internal error: %v\n%s", name, r, debug.Stack())
		}
	}()
	errno, err := f.impl(s, &call{ctx: ctx, mem: mem, args: args})
	if err != nil {
		var exit *ExitError
		if errors.As(err, &exit) {
			return nil, err
		}
		return nil, fmt.Errorf("wasi: %s: %w", name, err)
	}
	if f.noErrno {
		return nil, nil
	}
	return []uint64{uint64(errno)}, nil
}

// Exited reports whether the guest exited, and with which status.
func (s *System) Exited() (code uint32, exited bool) { return s.exitCode, s.exited }

// Host returns the System's Host.
func (s *System) Host() Host { return s.host }

// SetHost replaces the System's Host, between calls. The new Host must
// serve every handle the descriptor table holds, as the old one did: a
// backup going live hands its guest from the Host that replayed the log to
// one that adopted the handles (see NewOSHostAdopting).
func (s *System) SetHost(h Host) error {
	if h == nil {
		return errors.New("wasi: nil Host")
	}
	s.host = h
	return nil
}

// get returns the descriptor fd.
func (s *System) get(fd uint32) (*descriptor, Errno) {
	d, ok := s.fds[fd]
	if !ok {
		return nil, EBADF
	}
	return d, ESUCCESS
}

// has reports whether d holds every right in need. A call lacking one
// fails with ENOTCAPABLE, after the checks of what the descriptor is (a
// directory has no fd_seek right, but seeking it is EISDIR, as elsewhere).
func (d *descriptor) has(need uint64) bool { return d.rights&need == need }

// getDir returns the directory descriptor fd.
func (s *System) getDir(fd uint32) (*descriptor, Errno) {
	d, errno := s.get(fd)
	if errno != ESUCCESS {
		return nil, errno
	}
	if d.kind != kindDir {
		return nil, ENOTDIR
	}
	return d, ESUCCESS
}

// free returns the lowest unused descriptor number.
func (s *System) free() (uint32, Errno) {
	if len(s.fds) >= maxFDs {
		return 0, EMFILE
	}
	for fd := uint32(0); ; fd++ {
		if _, used := s.fds[fd]; !used {
			return fd, ESUCCESS
		}
	}
}
