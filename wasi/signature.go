package wasi

import (
	"slices"

	"ftvm/wasm"
)

// ModuleName is the import module name of WASI preview 1.
const ModuleName = "wasi_snapshot_preview1"

// function describes one preview1 function: its parameters ('i' for i32,
// 'I' for i64), whether it returns an errno (all but proc_exit do), its
// kind and its implementation.
type function struct {
	params  string
	noErrno bool
	kind    Kind
	impl    func(s *System, c *call) (Errno, error)
}

// functions is the whole of wasi_snapshot_preview1. It is never modified.
var functions = map[string]function{
	"args_get":          {"ii", false, Deterministic, (*System).argsGet},
	"args_sizes_get":    {"ii", false, Deterministic, (*System).argsSizesGet},
	"environ_get":       {"ii", false, Deterministic, (*System).environGet},
	"environ_sizes_get": {"ii", false, Deterministic, (*System).environSizesGet},

	"clock_res_get":  {"ii", false, Input, (*System).clockResGet},
	"clock_time_get": {"iIi", false, Input, (*System).clockTimeGet},

	"fd_advise":             {"iIIi", false, Deterministic, (*System).fdAdvise},
	"fd_allocate":           {"iII", false, Effect, (*System).fdAllocate},
	"fd_close":              {"i", false, Output, (*System).fdClose},
	"fd_datasync":           {"i", false, Effect, (*System).fdDatasync},
	"fd_fdstat_get":         {"ii", false, Deterministic, (*System).fdFdstatGet},
	"fd_fdstat_set_flags":   {"ii", false, Deterministic, (*System).fdFdstatSetFlags},
	"fd_fdstat_set_rights":  {"iII", false, Deterministic, (*System).fdFdstatSetRights},
	"fd_filestat_get":       {"ii", false, Input, (*System).fdFilestatGet},
	"fd_filestat_set_size":  {"iI", false, Effect, (*System).fdFilestatSetSize},
	"fd_filestat_set_times": {"iIIi", false, Effect, (*System).fdFilestatSetTimes},
	"fd_pread":              {"iiiIi", false, Input, (*System).fdPread},
	"fd_prestat_get":        {"ii", false, Deterministic, (*System).fdPrestatGet},
	"fd_prestat_dir_name":   {"iii", false, Deterministic, (*System).fdPrestatDirName},
	"fd_pwrite":             {"iiiIi", false, Effect, (*System).fdPwrite},
	"fd_read":               {"iiii", false, Input, (*System).fdRead},
	"fd_readdir":            {"iiiIi", false, Input, (*System).fdReaddir},
	"fd_renumber":           {"ii", false, Output, (*System).fdRenumber},
	"fd_seek":               {"iIii", false, Input, (*System).fdSeek},
	"fd_sync":               {"i", false, Effect, (*System).fdSync},
	"fd_tell":               {"ii", false, Deterministic, (*System).fdTell},
	"fd_write":              {"iiii", false, Effect, (*System).fdWrite},

	"path_create_directory":   {"iii", false, Effect, (*System).pathCreateDirectory},
	"path_filestat_get":       {"iiiii", false, Input, (*System).pathFilestatGet},
	"path_filestat_set_times": {"iiiiIIi", false, Effect, (*System).pathFilestatSetTimes},
	"path_link":               {"iiiiiii", false, Effect, (*System).pathLink},
	"path_open":               {"iiiiiIIii", false, Effect, (*System).pathOpen},
	"path_readlink":           {"iiiiii", false, Input, (*System).pathReadlink},
	"path_remove_directory":   {"iii", false, Effect, (*System).pathRemoveDirectory},
	"path_rename":             {"iiiiii", false, Effect, (*System).pathRename},
	"path_symlink":            {"iiiii", false, Effect, (*System).pathSymlink},
	"path_unlink_file":        {"iii", false, Effect, (*System).pathUnlinkFile},

	"poll_oneoff": {"iiii", false, Input, (*System).pollOneoff},
	"sched_yield": {"", false, Deterministic, (*System).schedYield},

	"proc_exit":  {"i", true, Deterministic, (*System).procExit},
	"proc_raise": {"i", false, Deterministic, (*System).procRaise},

	"random_get": {"ii", false, Input, (*System).randomGet},

	"sock_accept":   {"iii", false, Input, (*System).sockAccept},
	"sock_recv":     {"iiiiii", false, Input, (*System).sockRecv},
	"sock_send":     {"iiiii", false, Effect, (*System).sockSend},
	"sock_shutdown": {"ii", false, Output, (*System).sockShutdown},
}

// Signature returns the type of the preview1 function name, as a module
// importing it from ModuleName must declare it.
func Signature(name string) (wasm.FuncType, bool) {
	f, ok := functions[name]
	if !ok {
		return wasm.FuncType{}, false
	}
	ft := wasm.FuncType{Params: make([]wasm.ValType, len(f.params))}
	for i := range len(f.params) {
		if f.params[i] == 'I' {
			ft.Params[i] = wasm.I64
		} else {
			ft.Params[i] = wasm.I32
		}
	}
	if !f.noErrno {
		ft.Results = []wasm.ValType{wasm.I32}
	}
	return ft, true
}

// Functions returns the names of all preview1 functions, sorted.
func Functions() []string {
	names := make([]string, 0, len(functions))
	for name := range functions {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
