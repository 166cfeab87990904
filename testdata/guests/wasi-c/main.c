// wasi-c is a C guest (clang + wasi-libc) for ftvm's WASI tests: it prints
// its arguments and an environment variable, works with files in a
// preopened directory, and, when FTVM_LISTEN_FDS names a listener, serves
// one connection with sock_accept, recv (sock_recv) and send (sock_send):
// it reads a line and answers it upper-cased.
//
// Usage: wasi-c DIR
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <wasi/api.h>

static int failed;

static void check(const char *step, int ok) {
	if (ok) {
		printf("%s: ok\n", step);
	} else {
		printf("%s: FAIL %s\n", step, strerror(errno));
		failed = 1;
	}
}

static int cmp(const void *a, const void *b) {
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list(const char *dir) {
	DIR *d = opendir(dir);
	if (!d) {
		printf("list: FAIL %s\n", strerror(errno));
		failed = 1;
		return;
	}
	char *names[64];
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < 64) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof names[0], cmp);
	printf("list:");
	for (int i = 0; i < n; i++) {
		printf(" %s", names[i]);
		free(names[i]);
	}
	printf("\n");
}

static void serve(int lfd) {
	// The listener is handed over non-blocking; block in sock_accept.
	check("set blocking", fcntl(lfd, F_SETFL, 0) == 0);
	__wasi_fd_t conn;
	__wasi_errno_t e = __wasi_sock_accept(lfd, 0, &conn);
	if (e != 0) {
		printf("accept: FAIL errno %d\n", e);
		failed = 1;
		return;
	}
	char buf[256];
	size_t n = 0;
	while (n < sizeof buf) {
		ssize_t k = recv(conn, buf + n, sizeof buf - n, 0);
		if (k <= 0)
			break;
		n += k;
		if (buf[n - 1] == '\n')
			break;
	}
	for (size_t i = 0; i < n; i++)
		buf[i] = toupper((unsigned char)buf[i]);
	check("send", send(conn, buf, n, 0) == (ssize_t)n);
	check("shutdown", shutdown(conn, SHUT_WR) == 0);
	char rest[16];
	while (recv(conn, rest, sizeof rest, 0) > 0) {
	}
	check("close conn", close(conn) == 0);
	printf("served %zu bytes\n", n);
}

int main(int argc, char **argv) {
	for (int i = 0; i < argc; i++)
		printf("arg %d %s\n", i, argv[i]);
	const char *greeting = getenv("GREETING");
	printf("GREETING=%s\n", greeting ? greeting : "(unset)");
	const char *dir = argc > 1 ? argv[1] : "/data";

	char path[512], sub[512], buf[128];
	snprintf(path, sizeof path, "%s/c.txt", dir);
	snprintf(sub, sizeof sub, "%s/csub", dir);

	FILE *f = fopen(path, "w");
	check("fopen w", f != NULL);
	if (!f)
		return 1;
	fprintf(f, "from C %d\n", 42);
	check("fclose", fclose(f) == 0);
	f = fopen(path, "a");
	fputs("appended\n", f);
	fclose(f);
	f = fopen(path, "r");
	check("fopen r", f != NULL);
	while (f && fgets(buf, sizeof buf, f))
		printf("read: %s", buf);
	if (f)
		fclose(f);
	struct stat st;
	check("stat", stat(path, &st) == 0);
	printf("size %lld\n", (long long)st.st_size);
	int fd = open(path, O_RDONLY);
	check("lseek", lseek(fd, 5, SEEK_SET) == 5);
	ssize_t k = read(fd, buf, 4);
	printf("pread-ish: %.*s\n", (int)(k > 0 ? k : 0), buf);
	close(fd);
	check("mkdir", mkdir(sub, 0755) == 0);
	list(dir);
	check("unlink", unlink(path) == 0);
	check("rmdir", rmdir(sub) == 0);
	errno = 0;
	check("open ../ fails", open("/data/../../etc/passwd", O_RDONLY) < 0);
	list(dir);

	const char *fds = getenv("FTVM_LISTEN_FDS");
	if (fds)
		serve(atoi(fds));
	return failed;
}
