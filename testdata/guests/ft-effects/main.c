// ft-effects is a server that performs one effect on its disk per request,
// for the tests that kill a primary at an exact point of an effect (before
// it, after it, after its entry left) and check that the survivor applies
// every effect exactly once and that the guest sees the result an
// uninterrupted run gets.
//
// Usage: ft-effects DIR
//
// It serves the first listener in FTVM_LISTEN_FDS, one client at a time.
// Each line is a request; the reply is "ok" or "err MESSAGE". The guest
// expects every request to succeed (the tests ask for effects that can),
// and remembers each request's outcome; "results" answers them all, one
// "N REQUEST: ok" line each, then "end". The requests, on files in DIR:
//
//	append TAG        append "N TAG" to journal (opened once, O_APPEND),
//	                  N counting appends
//	pwrite OFF TEXT   write TEXT at OFF in data
//	truncate N        truncate data to N bytes
//	allocate N        allocate N bytes of data (fd_allocate)
//	sync              fsync data
//	futimes           set data's times (fd_filestat_set_times)
//	utimes NAME       set NAME's times (path_filestat_set_times)
//	create NAME       create or truncate NAME, write NAME into it
//	create-excl NAME  create NAME exclusively, write NAME into it
//	mkdir NAME | rmdir NAME | unlink NAME
//	rename OLD NEW | link OLD NEW | symlink TARGET NAME
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LINE 512
#define MAX_RESULTS 4096

static const char *dir;
static int journal = -1, data = -1;
static int appends;
static char *results[MAX_RESULTS];
static int nresults;

static const char *at(const char *name) {
	static char buf[2][MAX_LINE + 64];
	static int i;
	i ^= 1;
	snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
	return buf[i];
}

static void die(const char *what) {
	fprintf(stderr, "ft-effects: %s: %s\n", what, strerror(errno));
	exit(1);
}

static bool write_all(int fd, const char *s, size_t n) {
	while (n > 0) {
		ssize_t k = write(fd, s, n);
		if (k < 0) {
			if (errno == EAGAIN) {
				struct pollfd p = {.fd = fd, .events = POLLOUT};
				poll(&p, 1, -1);
				continue;
			}
			return false;
		}
		s += k;
		n -= (size_t)k;
	}
	return true;
}

static bool put_file(const char *name, int flags) {
	int fd = open(at(name), O_WRONLY | O_CREAT | flags, 0644);
	if (fd < 0)
		return false;
	bool ok = write_all(fd, name, strlen(name));
	return close(fd) == 0 && ok;
}

// perform carries out one request and reports whether it succeeded.
static bool perform(char *req) {
	char a[MAX_LINE], b[MAX_LINE];
	long n;
	struct timespec ts[2] = {{.tv_sec = 1000000000, .tv_nsec = 1}, {.tv_sec = 1500000000, .tv_nsec = 2}};
	if (sscanf(req, "append %511s", a) == 1) {
		char line[MAX_LINE + 32];
		int len = snprintf(line, sizeof line, "%d %s\n", appends + 1, a);
		if (write(journal, line, (size_t)len) != len)
			return false;
		appends++;
		return true;
	}
	if (sscanf(req, "pwrite %ld %511s", &n, a) == 2)
		return pwrite(data, a, strlen(a), n) == (ssize_t)strlen(a);
	if (sscanf(req, "truncate %ld", &n) == 1)
		return ftruncate(data, n) == 0;
	if (sscanf(req, "allocate %ld", &n) == 1)
		return posix_fallocate(data, 0, n) == 0;
	if (strcmp(req, "sync") == 0)
		return fsync(data) == 0;
	if (strcmp(req, "futimes") == 0)
		return futimens(data, ts) == 0;
	if (sscanf(req, "utimes %511s", a) == 1)
		return utimensat(AT_FDCWD, at(a), ts, 0) == 0;
	if (sscanf(req, "create-excl %511s", a) == 1)
		return put_file(a, O_EXCL);
	if (sscanf(req, "create %511s", a) == 1)
		return put_file(a, O_TRUNC);
	if (sscanf(req, "mkdir %511s", a) == 1)
		return mkdir(at(a), 0755) == 0;
	if (sscanf(req, "rmdir %511s", a) == 1)
		return rmdir(at(a)) == 0;
	if (sscanf(req, "unlink %511s", a) == 1)
		return unlink(at(a)) == 0;
	if (sscanf(req, "rename %511s %511s", a, b) == 2)
		return rename(at(a), at(b)) == 0;
	if (sscanf(req, "link %511s %511s", a, b) == 2)
		return link(at(a), at(b)) == 0;
	if (sscanf(req, "symlink %511s %511s", a, b) == 2)
		return symlink(a, at(b)) == 0;
	errno = EINVAL;
	return false;
}

static void serve(int c, char *line) {
	if (strcmp(line, "results") == 0) {
		char buf[MAX_LINE + 64];
		for (int i = 0; i < nresults; i++) {
			int len = snprintf(buf, sizeof buf, "%d %s\n", i + 1, results[i]);
			if (!write_all(c, buf, (size_t)len))
				return;
		}
		write_all(c, "end\n", 4);
		return;
	}
	errno = 0;
	bool ok = perform(line);
	char buf[MAX_LINE + 64];
	int len = ok ? snprintf(buf, sizeof buf, "%s: ok", line)
	             : snprintf(buf, sizeof buf, "%s: err %s", line, strerror(errno));
	if (nresults < MAX_RESULTS)
		results[nresults++] = strdup(buf);
	len = ok ? snprintf(buf, sizeof buf, "ok\n") : snprintf(buf, sizeof buf, "err %s\n", strerror(errno));
	write_all(c, buf, (size_t)len);
}

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: ft-effects DIR\n");
		return 2;
	}
	dir = argv[1];
	const char *fds = getenv("FTVM_LISTEN_FDS");
	if (fds == NULL) {
		fprintf(stderr, "ft-effects: no listener (FTVM_LISTEN_FDS)\n");
		return 2;
	}
	int l = atoi(fds);
	journal = open(at("journal"), O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (journal < 0)
		die("open journal");
	data = open(at("data"), O_RDWR | O_CREAT, 0644);
	if (data < 0)
		die("open data");
	printf("ft-effects listening\n");
	fflush(stdout);
	for (;;) {
		struct pollfd p = {.fd = l, .events = POLLIN};
		if (poll(&p, 1, -1) < 0)
			die("poll");
		int c = accept(l, NULL, NULL);
		if (c < 0) {
			if (errno == EAGAIN)
				continue;
			die("accept");
		}
		char buf[MAX_LINE + 1];
		size_t len = 0;
		for (;;) {
			struct pollfd q = {.fd = c, .events = POLLIN};
			poll(&q, 1, -1);
			ssize_t k = read(c, buf + len, MAX_LINE - len);
			if (k < 0 && errno == EAGAIN)
				continue;
			if (k <= 0)
				break;
			len += (size_t)k;
			char *nl;
			while ((nl = memchr(buf, '\n', len)) != NULL) {
				*nl = 0;
				serve(c, buf);
				len -= (size_t)(nl + 1 - buf);
				memmove(buf, nl + 1, len);
			}
			if (len == MAX_LINE)
				len = 0; // a line too long: dropped
		}
		close(c);
	}
}
