// wasi-dirops is a C guest (clang + wasi-libc) for ftvm's WASI tests: it
// calls WASI functions directly on the first preopened directory (fd 3)
// and prints each errno, for what makes no sense on a directory and for
// renames of directories, which a test compares with wazero's answers;
// and, given the argument "rights", for the rights model, which wazero
// does not implement.
//
// Usage: wasi-dirops [rights]
#include <stdio.h>
#include <string.h>
#include <wasi/api.h>

#define DIRFD 3

static void show(const char *what, __wasi_errno_t e) { printf("%s: %d\n", what, e); }

static __wasi_errno_t mkdir_(const char *p) { return __wasi_path_create_directory(DIRFD, p); }

static __wasi_errno_t open_(const char *p, __wasi_oflags_t oflags, __wasi_rights_t base, __wasi_fd_t *fd) {
	return __wasi_path_open(DIRFD, 0, p, oflags, base, base, 0, fd);
}

static __wasi_errno_t put(const char *p, const char *data) {
	__wasi_fd_t fd;
	__wasi_errno_t e = open_(p, __WASI_OFLAGS_CREAT | __WASI_OFLAGS_TRUNC,
		__WASI_RIGHTS_FD_WRITE | __WASI_RIGHTS_FD_SEEK, &fd);
	if (e != 0) {
		return e;
	}
	__wasi_ciovec_t iov = {(const uint8_t *)data, strlen(data)};
	__wasi_size_t n;
	e = __wasi_fd_write(fd, &iov, 1, &n);
	__wasi_fd_close(fd);
	return e;
}

static void dirops(void) {
	__wasi_filesize_t off;
	uint8_t buf[16];
	__wasi_iovec_t iov = {buf, sizeof buf};
	__wasi_ciovec_t ciov = {buf, sizeof buf};
	__wasi_size_t n;
	__wasi_fdstat_t st;
	show("fd_seek set", __wasi_fd_seek(DIRFD, 0, __WASI_WHENCE_SET, &off));
	show("fd_seek cur", __wasi_fd_seek(DIRFD, 0, __WASI_WHENCE_CUR, &off));
	show("fd_seek end", __wasi_fd_seek(DIRFD, 0, __WASI_WHENCE_END, &off));
	show("fd_tell", __wasi_fd_tell(DIRFD, &off));
	show("fd_read", __wasi_fd_read(DIRFD, &iov, 1, &n));
	show("fd_pread", __wasi_fd_pread(DIRFD, &iov, 1, 0, &n));
	show("fd_pwrite", __wasi_fd_pwrite(DIRFD, &ciov, 1, 0, &n));
	show("fd_write", __wasi_fd_write(DIRFD, &ciov, 1, &n));
	show("fd_filestat_set_size", __wasi_fd_filestat_set_size(DIRFD, 0));
	// Not fd_allocate and fd_advise, which wazero lets succeed on a
	// directory (a no-op); System fails them (EISDIR, EBADF).
	if (__wasi_fd_fdstat_get(DIRFD, &st) == 0) {
		printf("directory seek right: %s\n", st.fs_rights_base & __WASI_RIGHTS_FD_SEEK ? "yes" : "no");
	}

	// Renames of directories, as rename(2).
	show("mkdir a", mkdir_("a"));
	show("put a/x", put("a/x", "x"));
	show("mkdir empty", mkdir_("empty"));
	show("rename a onto empty", __wasi_path_rename(DIRFD, "a", DIRFD, "empty"));
	__wasi_filestat_t fst;
	show("stat empty/x", __wasi_path_filestat_get(DIRFD, 0, "empty/x", &fst));
	show("stat a", __wasi_path_filestat_get(DIRFD, 0, "a", &fst));
	show("mkdir c", mkdir_("c"));
	show("rename c onto non-empty", __wasi_path_rename(DIRFD, "c", DIRFD, "empty"));
	show("put file", put("file", "f"));
	show("rename dir onto file", __wasi_path_rename(DIRFD, "c", DIRFD, "file"));
	show("rename file onto dir", __wasi_path_rename(DIRFD, "file", DIRFD, "c"));
	show("rename dir onto itself", __wasi_path_rename(DIRFD, "c", DIRFD, "c"));
}

static void rights(void) {
	__wasi_fdstat_t st;
	__wasi_fd_fdstat_get(DIRFD, &st);
	__wasi_rights_t base = st.fs_rights_base, inh = st.fs_rights_inheriting;
	__wasi_fd_t fd;
	uint8_t buf[16];
	__wasi_iovec_t iov = {buf, sizeof buf};
	__wasi_size_t n;
	__wasi_filesize_t off;

	show("put f", put("f", "data"));
	show("raise directory to seek", __wasi_fd_fdstat_set_rights(DIRFD, base | __WASI_RIGHTS_FD_SEEK, inh));
	show("drop path_filestat_set_size",
		__wasi_fd_fdstat_set_rights(DIRFD, base & ~__WASI_RIGHTS_PATH_FILESTAT_SET_SIZE, inh));
	show("open O_TRUNC", open_("f", __WASI_OFLAGS_TRUNC, __WASI_RIGHTS_FD_WRITE, &fd));
	show("open", open_("f", 0, __WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_SEEK | __WASI_RIGHTS_FD_TELL, &fd));
	show("read", __wasi_fd_read(fd, &iov, 1, &n));
	show("drop fd_read", __wasi_fd_fdstat_set_rights(fd, __WASI_RIGHTS_FD_SEEK | __WASI_RIGHTS_FD_TELL, 0));
	show("read without fd_read", __wasi_fd_read(fd, &iov, 1, &n));
	show("raise fd_read again", __wasi_fd_fdstat_set_rights(fd, __WASI_RIGHTS_FD_READ, 0));
	show("seek", __wasi_fd_seek(fd, 0, __WASI_WHENCE_SET, &off));
	__wasi_fd_fdstat_get(fd, &st);
	printf("file rights: %#llx\n", (unsigned long long)st.fs_rights_base);
	show("drop path_unlink_file", __wasi_fd_fdstat_set_rights(DIRFD,
		base & ~__WASI_RIGHTS_PATH_FILESTAT_SET_SIZE & ~__WASI_RIGHTS_PATH_UNLINK_FILE, inh));
	show("unlink without the right", __wasi_path_unlink_file(DIRFD, "f"));
}

int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "rights") == 0) {
		rights();
	} else {
		dirops();
	}
	return 0;
}
