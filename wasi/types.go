package wasi

// Handle names a resource of the Host: a file, a directory, a stream of the
// process (stdin, stdout, stderr), a listener or a connection. The Host
// chooses handles; System stores them in its descriptor table and passes
// them back, never interpreting them. A handle is a plain integer so a
// recording Host can log it and a replaying Host can return it again.
type Handle uint64

// Filetype is the type of a file as WASI reports it.
type Filetype uint8

// The filetypes of preview1.
const (
	FiletypeUnknown Filetype = iota
	FiletypeBlockDevice
	FiletypeCharacterDevice
	FiletypeDirectory
	FiletypeRegularFile
	FiletypeSocketDgram
	FiletypeSocketStream
	FiletypeSymbolicLink
)

// File descriptor flags (fdflags).
const (
	FdflagAppend   uint16 = 1 << 0
	FdflagDsync    uint16 = 1 << 1
	FdflagNonblock uint16 = 1 << 2
	FdflagRsync    uint16 = 1 << 3
	FdflagSync     uint16 = 1 << 4

	fdflagsAll  = FdflagAppend | FdflagDsync | FdflagNonblock | FdflagRsync | FdflagSync
	fdflagsSync = FdflagDsync | FdflagRsync | FdflagSync
)

// Open flags (oflags) of path_open.
const (
	OflagCreat     uint16 = 1 << 0
	OflagDirectory uint16 = 1 << 1
	OflagExcl      uint16 = 1 << 2
	OflagTrunc     uint16 = 1 << 3

	oflagsAll = OflagCreat | OflagDirectory | OflagExcl | OflagTrunc
)

// LookupSymlinkFollow is the only lookupflags bit: follow a symbolic link in
// the last component of a path.
const LookupSymlinkFollow uint32 = 1

// Flags of fd_filestat_set_times and path_filestat_set_times (fstflags).
const (
	FstflagAtim    uint16 = 1 << 0
	FstflagAtimNow uint16 = 1 << 1
	FstflagMtim    uint16 = 1 << 2
	FstflagMtimNow uint16 = 1 << 3

	fstflagsAll = FstflagAtim | FstflagAtimNow | FstflagMtim | FstflagMtimNow
)

// Rights of a descriptor, one bit each.
const (
	RightFdDatasync uint64 = 1 << iota
	RightFdRead
	RightFdSeek
	RightFdFdstatSetFlags
	RightFdSync
	RightFdTell
	RightFdWrite
	RightFdAdvise
	RightFdAllocate
	RightPathCreateDirectory
	RightPathCreateFile
	RightPathLinkSource
	RightPathLinkTarget
	RightPathOpen
	RightFdReaddir
	RightPathReadlink
	RightPathRenameSource
	RightPathRenameTarget
	RightPathFilestatGet
	RightPathFilestatSetSize
	RightPathFilestatSetTimes
	RightFdFilestatGet
	RightFdFilestatSetSize
	RightFdFilestatSetTimes
	RightPathSymlink
	RightPathRemoveDirectory
	RightPathUnlinkFile
	RightPollFdReadwrite
	RightSockShutdown
	RightSockAccept

	rightsAll = RightSockAccept<<1 - 1
)

// The rights each kind of descriptor can have at most.
const (
	rightsFile = RightFdDatasync | RightFdRead | RightFdSeek | RightFdFdstatSetFlags |
		RightFdSync | RightFdTell | RightFdWrite | RightFdAdvise | RightFdAllocate |
		RightFdFilestatGet | RightFdFilestatSetSize | RightFdFilestatSetTimes |
		RightPollFdReadwrite

	rightsDir = RightFdFdstatSetFlags | RightFdSync | RightFdDatasync |
		RightPathCreateDirectory | RightPathCreateFile | RightPathLinkSource |
		RightPathLinkTarget | RightPathOpen | RightFdReaddir | RightPathReadlink |
		RightPathRenameSource | RightPathRenameTarget | RightPathFilestatGet |
		RightPathFilestatSetSize | RightPathFilestatSetTimes | RightFdFilestatGet |
		RightFdFilestatSetTimes | RightPathSymlink | RightPathRemoveDirectory |
		RightPathUnlinkFile

	rightsStdin  = RightFdRead | RightFdFdstatSetFlags | RightFdFilestatGet | RightPollFdReadwrite
	rightsStdout = RightFdWrite | RightFdFdstatSetFlags | RightFdFilestatGet | RightPollFdReadwrite

	rightsConn = RightFdRead | RightFdWrite | RightFdFdstatSetFlags | RightFdFilestatGet |
		RightPollFdReadwrite | RightSockShutdown
	rightsListener = RightFdRead | RightFdFdstatSetFlags | RightFdFilestatGet |
		RightPollFdReadwrite | RightSockAccept
)

// maxRights returns the rights a descriptor of kind k can have at most.
func maxRights(k descKind) uint64 {
	switch k {
	case kindStdin:
		return rightsStdin
	case kindStdout:
		return rightsStdout
	case kindFile:
		return rightsFile
	case kindDir:
		return rightsDir
	case kindListener:
		return rightsListener
	case kindConn:
		return rightsConn
	}
	return 0
}

// ClockID identifies a clock.
type ClockID uint32

// The clocks of preview1.
const (
	ClockRealtime ClockID = iota
	ClockMonotonic
	ClockProcessCPUTime
	ClockThreadCPUTime
)

// Whence values of fd_seek.
const (
	WhenceSet uint8 = iota
	WhenceCur
	WhenceEnd
)

// EventType is the type of a poll_oneoff subscription and of its event.
type EventType uint8

// The event types of preview1.
const (
	EventClock EventType = iota
	EventFdRead
	EventFdWrite
)

// SubclockAbstime marks a clock subscription's timeout as an absolute time
// of its clock rather than a duration.
const SubclockAbstime uint16 = 1

// EventFdHangup is set in Event.Flags when the peer of a stream has closed
// it.
const EventFdHangup uint16 = 1

// Flags of sock_recv (riflags) and its result (roflags), and the sdflags of
// sock_shutdown.
const (
	RecvPeek    uint16 = 1 << 0
	RecvWaitall uint16 = 1 << 1

	RecvDataTruncated uint16 = 1

	ShutRd uint8 = 1 << 0
	ShutWr uint8 = 1 << 1
)

// ReadFlags qualify Host.Read.
type ReadFlags uint8

const (
	// ReadNonblock asks Host.Read to return EAGAIN at once when no data is
	// available instead of waiting for some.
	ReadNonblock ReadFlags = 1 << iota
	// ReadPeek leaves the data read in the stream (sock_recv RECV_PEEK).
	ReadPeek
	// ReadWaitAll waits until all n bytes arrived, the stream ended or
	// failed (sock_recv RECV_WAITALL).
	ReadWaitAll
)

// Filestat is the metadata of a file, as fd_filestat_get and
// path_filestat_get report it. Times are nanoseconds since the Unix epoch.
type Filestat struct {
	Dev      uint64
	Ino      uint64
	Filetype Filetype
	Nlink    uint64
	Size     uint64
	Atim     uint64
	Mtim     uint64
	Ctim     uint64
}

// Dirent is one directory entry as Host.ReadDir returns it. Next is the
// cookie that continues the listing after this entry.
type Dirent struct {
	Next uint64
	Ino  uint64
	Type Filetype
	Name string
}

// OpenRequest is what path_open asks of Host.Open. Oflags are the oflags
// of the call (OflagCreat, OflagDirectory, OflagExcl, OflagTrunc). Fdflags
// holds only the synchronisation flags (FdflagDsync, FdflagRsync,
// FdflagSync): System implements APPEND and NONBLOCK itself, so the Host
// must open files without O_APPEND and may leave them blocking. Read and
// Write say how the file is to be opened; Follow says whether a symbolic
// link in the last component is followed (without it, such a link fails
// with ELOOP, or EEXIST with OflagCreat|OflagExcl).
type OpenRequest struct {
	Oflags  uint16
	Fdflags uint16
	Read    bool
	Write   bool
	Follow  bool
}

// OpenResult is what Host.Open returns: the new handle and what it refers
// to. FiletypeDirectory makes it a directory the guest may resolve paths
// in; anything else is a file read and written at explicit offsets.
type OpenResult struct {
	Handle   Handle
	Filetype Filetype
}

// Subscription is one poll_oneoff subscription, translated for the Host:
// descriptors are replaced by the Host's handles.
//
// For EventClock, Clock, Timeout, Precision and Flags (SubclockAbstime)
// describe the timer. For EventFdRead and EventFdWrite, Handle is the
// resource to watch.
type Subscription struct {
	Userdata  uint64
	Type      EventType
	Clock     ClockID
	Timeout   uint64
	Precision uint64
	Flags     uint16
	Handle    Handle
}

// Event is one poll_oneoff event. Userdata and Type are those of the
// subscription it answers. For fd events, NBytes is how many bytes can be
// read or written without blocking (a hint; zero is allowed) and Flags may
// hold EventFdHangup. A subscription that failed has Errno set.
type Event struct {
	Userdata uint64
	Errno    Errno
	Type     EventType
	NBytes   uint64
	Flags    uint16
}
