package vmm

import (
	"fmt"

	"ftvm/replog"
)

// Entry types. A log entry is written for each import call of the guest
// that took something from outside (an Input or Effect result of the Host);
// its type is the WASI function called. The numbers are part of the log
// format and never change: new functions take new numbers.
var callNames = [...]string{
	1: "args_get", 2: "args_sizes_get", 3: "environ_get", 4: "environ_sizes_get",
	5: "clock_res_get", 6: "clock_time_get",
	7: "fd_advise", 8: "fd_allocate", 9: "fd_close", 10: "fd_datasync",
	11: "fd_fdstat_get", 12: "fd_fdstat_set_flags", 13: "fd_fdstat_set_rights",
	14: "fd_filestat_get", 15: "fd_filestat_set_size", 16: "fd_filestat_set_times",
	17: "fd_pread", 18: "fd_prestat_get", 19: "fd_prestat_dir_name", 20: "fd_pwrite",
	21: "fd_read", 22: "fd_readdir", 23: "fd_renumber", 24: "fd_seek", 25: "fd_sync",
	26: "fd_tell", 27: "fd_write",
	28: "path_create_directory", 29: "path_filestat_get", 30: "path_filestat_set_times",
	31: "path_link", 32: "path_open", 33: "path_readlink", 34: "path_remove_directory",
	35: "path_rename", 36: "path_symlink", 37: "path_unlink_file",
	38: "poll_oneoff", 39: "proc_exit", 40: "proc_raise", 41: "random_get",
	42: "sched_yield", 43: "sock_accept", 44: "sock_recv", 45: "sock_send",
	46: "sock_shutdown",
}

// TypeEnd is the last entry of a recording: how and where the guest ended.
// Its data is the end kind (EndExit or EndTrap, a uvarint), the exit
// status or trap code (uvarint) and a message (string).
const TypeEnd replog.Type = 100

// End kinds in a TypeEnd entry.
const (
	EndExit = 0
	EndTrap = 1
)

// callType returns the entry type of WASI function name.
func callType(name string) (replog.Type, bool) {
	for i, n := range callNames {
		if n == name && n != "" {
			return replog.Type(i), true
		}
	}
	return 0, false
}

// TypeName names an entry type for people.
func TypeName(t replog.Type) string {
	if t == TypeEnd {
		return "end"
	}
	if t == TypeIntent {
		return "intent"
	}
	if int(t) < len(callNames) && callNames[t] != "" {
		return callNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Host method identifiers inside an entry's data. Each result recorded for
// a call starts with the method's identifier, so replay checks that the
// call asks the Host for the same things in the same order.
type method uint8

const (
	mClockResolution method = iota + 1
	mClockTime
	mRandom
	mPoll
	mRead
	mAccept
	mPread
	mFilestat
	mReadDir
	mPathFilestat
	mReadlink
	mOpen
	mPwrite
	mSetSize
	mSetTimes
	mSync
	mAllocate
	mMkdir
	mRmdir
	mUnlink
	mRename
	mLink
	mSymlink
	mPathSetTimes
	mLast
)

var methodNames = [...]string{
	mClockResolution: "ClockResolution", mClockTime: "ClockTime", mRandom: "Random",
	mPoll: "Poll", mRead: "Read", mAccept: "Accept", mPread: "Pread",
	mFilestat: "Filestat", mReadDir: "ReadDir", mPathFilestat: "PathFilestat",
	mReadlink: "Readlink", mOpen: "Open", mPwrite: "Pwrite", mSetSize: "SetSize",
	mSetTimes: "SetTimes", mSync: "Sync", mAllocate: "Allocate", mMkdir: "Mkdir",
	mRmdir: "Rmdir", mUnlink: "Unlink", mRename: "Rename", mLink: "Link",
	mSymlink: "Symlink", mPathSetTimes: "PathSetTimes",
}

func (m method) String() string {
	if m > 0 && m < mLast {
		return methodNames[m]
	}
	return fmt.Sprintf("method(%d)", uint8(m))
}
