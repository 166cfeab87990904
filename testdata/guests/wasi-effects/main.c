// wasi-effects performs every kind of effect a guest can have on its disk,
// checks each result, and prints one line per step: the tests of exactly-
// once effects cut a primary's run at every step (the effect performed or
// not, its entry logged or not) and check that the backup, going live
// there, ends with the output and the disk of an uninterrupted run.
//
// Usage: wasi-effects DIR [ROUNDS]
//
// In DIR it appends to a journal (O_APPEND), writes at offsets and
// sequentially, truncates, allocates, syncs, creates exclusively (and
// checks that a second exclusive create fails), makes and removes
// directories, renames (to a new name and over an existing file), links,
// makes a symbolic link, unlinks, sets times (explicit and now), and
// unlinks a file it holds open and goes on writing it through its
// descriptor. Then, ROUNDS times (default 4), the pattern of a careful
// service: mkdir a lock directory, write a temporary file, rename it over
// the state, remove the lock, append a journal line. Any result other
// than the expected one ends it with status 1 and a message on stderr.
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wasi/api.h>

static const char *dir;
static int steps;

static const char *at(const char *name) {
	static char buf[4][512];
	static int i;
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
	return buf[i];
}

static void fail(const char *what) {
	fprintf(stderr, "wasi-effects: step %d: %s: %s\n", steps, what, strerror(errno));
	exit(1);
}

static void step(const char *what) {
	steps++;
	printf("%d %s\n", steps, what);
	fflush(stdout);
}

static void check(int ok, const char *what) {
	if (!ok)
		fail(what);
	step(what);
}

static void write_all(int fd, const char *s, const char *what) {
	ssize_t n = write(fd, s, strlen(s));
	check(n == (ssize_t)strlen(s), what);
}

static void append_line(int fd, int n, const char *tag) {
	char line[64];
	snprintf(line, sizeof line, "%d %s\n", n, tag);
	write_all(fd, line, "append");
}

static off_t size_of(const char *path) {
	struct stat st;
	if (stat(path, &st) != 0)
		fail("stat");
	return st.st_size;
}

int main(int argc, char **argv) {
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: wasi-effects DIR [ROUNDS]\n");
		return 2;
	}
	dir = argv[1];
	int rounds = argc == 3 ? atoi(argv[2]) : 4;

	// Appends: each write's offset is the file's size, which the write
	// takes from the host.
	int journal = open(at("journal"), O_WRONLY | O_CREAT | O_APPEND, 0644);
	check(journal >= 0, "open journal for appending");
	for (int i = 1; i <= 3; i++)
		append_line(journal, i, "start");
	check(size_of(at("journal")) == 24, "journal holds three lines");

	// Writes at offsets and sequential ones, truncation, allocation, sync.
	int data = open(at("data"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	check(data >= 0, "open data");
	check(pwrite(data, "head", 4, 0) == 4, "pwrite at 0");
	check(pwrite(data, "tail", 4, 100) == 4, "pwrite at 100");
	check(lseek(data, 10, SEEK_SET) == 10, "seek to 10");
	write_all(data, "middle", "write at the offset");
	write_all(data, "+more", "write after it");
	check(ftruncate(data, 50) == 0, "truncate to 50");
	check(size_of(at("data")) == 50, "size 50");
	check(posix_fallocate(data, 0, 4096) == 0, "allocate 4096");
	check(size_of(at("data")) == 4096, "size 4096");
	check(fsync(data) == 0, "fsync");
	check(fdatasync(data) == 0, "fdatasync");

	// Exclusive creation: the second one must fail.
	int excl = open(at("excl"), O_WRONLY | O_CREAT | O_EXCL, 0644);
	check(excl >= 0, "create excl exclusively");
	write_all(excl, "exclusive", "write excl");
	check(close(excl) == 0, "close excl");
	errno = 0;
	check(open(at("excl"), O_WRONLY | O_CREAT | O_EXCL, 0644) < 0 && errno == EEXIST,
	      "a second exclusive create fails with EEXIST");

	// Directories.
	check(mkdir(at("dir"), 0755) == 0, "mkdir dir");
	check(mkdir(at("dir/sub"), 0755) == 0, "mkdir dir/sub");
	errno = 0;
	check(mkdir(at("dir"), 0755) != 0 && errno == EEXIST, "mkdir of an existing dir fails");
	check(rmdir(at("dir/sub")) == 0, "rmdir dir/sub");
	errno = 0;
	check(rmdir(at("dir/sub")) != 0 && errno == ENOENT, "rmdir of a missing dir fails");

	// Renames: to a new name, and over an existing file.
	check(rename(at("excl"), at("dir/moved")) == 0, "rename excl to dir/moved");
	int a = open(at("a"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	check(a >= 0, "create a");
	write_all(a, "old a", "write a");
	check(close(a) == 0, "close a");
	check(rename(at("dir/moved"), at("a")) == 0, "rename dir/moved over a");
	errno = 0;
	check(rename(at("dir/moved"), at("b")) != 0 && errno == ENOENT, "rename of a missing file fails");

	// Links.
	check(link(at("a"), at("a-link")) == 0, "link a to a-link");
	check(symlink("a", at("a-sym")) == 0, "symlink a-sym to a");
	errno = 0;
	check(symlink("a", at("a-sym")) != 0 && errno == EEXIST, "a second symlink fails");
	check(unlink(at("a-link")) == 0, "unlink a-link");
	errno = 0;
	check(unlink(at("a-link")) != 0 && errno == ENOENT, "unlink of a missing file fails");

	// Times: explicit, then now.
	struct timespec ts[2] = {{.tv_sec = 1000000000, .tv_nsec = 5}, {.tv_sec = 1234567890, .tv_nsec = 7}};
	check(utimensat(AT_FDCWD, at("a"), ts, 0) == 0, "set the times of a");
	struct stat st;
	check(stat(at("a"), &st) == 0 && st.st_mtim.tv_sec == 1234567890 && st.st_mtim.tv_nsec == 7,
	      "a has its mtime");
	check(futimens(data, ts) == 0, "set the times of data");
	// Straight to WASI: this wasi-libc's <sys/stat.h> defines a UTIME_NOW
	// that its own futimens refuses.
	check(__wasi_fd_filestat_set_times(journal, 0, 0,
	                                   __WASI_FSTFLAGS_ATIM_NOW | __WASI_FSTFLAGS_MTIM_NOW) == 0,
	      "set the times of journal to now");

	// A file unlinked while open lives on through its descriptor.
	int scratch = open(at("scratch"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	check(scratch >= 0, "create scratch");
	write_all(scratch, "scratch", "write scratch");
	check(unlink(at("scratch")) == 0, "unlink scratch while open");
	write_all(scratch, "+after", "write scratch after unlinking it");
	char buf[32] = {0};
	check(pread(scratch, buf, sizeof buf - 1, 0) == 13 && strcmp(buf, "scratch+after") == 0,
	      "read scratch back");
	check(fstat(scratch, &st) == 0 && st.st_nlink == 0, "scratch has no link left");
	check(close(scratch) == 0, "close scratch");

	// A file replaced by a rename while open lives on through its
	// descriptor too.
	int victim = open(at("victim"), O_RDWR | O_CREAT | O_TRUNC, 0644);
	check(victim >= 0, "create victim");
	write_all(victim, "old", "write victim");
	int repl = open(at("replacement"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	check(repl >= 0, "create replacement");
	write_all(repl, "new", "write replacement");
	check(close(repl) == 0, "close replacement");
	check(rename(at("replacement"), at("victim")) == 0, "rename replacement over the open victim");
	write_all(victim, "+more", "write the replaced victim");
	memset(buf, 0, sizeof buf);
	check(pread(victim, buf, sizeof buf - 1, 0) == 8 && strcmp(buf, "old+more") == 0, "read the replaced victim back");
	check(fstat(victim, &st) == 0 && st.st_nlink == 0, "the replaced victim has no link left");
	check(close(victim) == 0, "close the replaced victim");
	check(size_of(at("victim")) == 3, "victim holds the replacement");

	// A careful service's update, round after round.
	for (int r = 1; r <= rounds; r++) {
		char lock[32], state[32];
		snprintf(lock, sizeof lock, "lock-%d", r);
		check(mkdir(at(lock), 0755) == 0, "mkdir the lock");
		int tmp = open(at("state.tmp"), O_WRONLY | O_CREAT | O_EXCL, 0644);
		check(tmp >= 0, "create state.tmp exclusively");
		snprintf(state, sizeof state, "state %d\n", r);
		write_all(tmp, state, "write state.tmp");
		check(close(tmp) == 0, "close state.tmp");
		check(rename(at("state.tmp"), at("state")) == 0, "rename state.tmp over state");
		check(rmdir(at(lock)) == 0, "rmdir the lock");
		append_line(journal, 3 + r, "round");
	}
	check(close(journal) == 0, "close journal");
	check(close(data) == 0, "close data");
	printf("effects ok: %d steps\n", steps);
	return 0;
}
