// ft-counter (C) is a TCP counter server, the default guest of ftvm run.
// It speaks the protocol of the Go guest testdata/guests/ft-counter: it
// serves the first listener the host hands it (FTVM_LISTEN_FDS), and every
// line a client sends is one request: "get" (surrounding white space
// ignored) answers the current value, anything else increments the counter
// and answers the new value, one decimal number and "\n" per request. A
// last line without "\n" before the client's end of input is a request too.
//
// It serves many clients at once from a single thread: one poll() loop over
// the listener and every client socket, all non-blocking, with partial
// lines and unsent replies buffered per client. Beyond MAX_CLIENTS clients
// it refuses new connections by closing them at once.
//
// With -file PATH the counter starts from the value in PATH (0 if the file
// is new or empty; anything but a decimal number there is an error, where
// the Go guest would start from 0), and is written to PATH before each
// answer to an increment, at offset 0 as a fixed-width line ("%020llu\n")
// overwritten in place. A failed write ends the program with status 1.
//
// Build: scripts/build-default-guest (clang --target=wasm32-wasi and
// wasi-libc), which writes cmd/ftvm/defaultguest/counter.wasm.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wasi/api.h>

#define PROG "ft-counter"

// MAX_CLIENTS bounds the connections served at once.
#define MAX_CLIENTS 256
// MAX_LINE bounds a request line, as bufio.Scanner bounds the Go guest's;
// a client that sends a longer one is disconnected.
#define MAX_LINE 65536
// OUT_CAP is each client's buffer of unsent replies. A client that does not
// read its replies gets no more requests served until it does.
#define OUT_CAP 512
// REPLY_MAX is the longest reply: 20 digits and "\n".
#define REPLY_MAX 21
// PERSIST_LEN is the length of the record -file keeps: "%020llu\n".
#define PERSIST_LEN 21
// ACCEPT_BACKOFF_MS is how long the listener rests after accept fails
// other than with EAGAIN, so that a persistent error does not spin.
#define ACCEPT_BACKOFF_MS 100

struct client {
	int fd;
	bool eof; // the client has sent all it will
	char *in; // received bytes not yet answered: partial lines
	size_t in_len, in_cap;
	char out[OUT_CAP]; // replies not yet sent
	size_t out_len;
};

static uint64_t value;
static int persist_fd = -1;
static const char *persist_path;

static struct client *clients[MAX_CLIENTS];
static size_t nclients;
// One pollfd for the listener and one per client, in clients' order.
static struct pollfd pfds[1 + MAX_CLIENTS];

static void usage(FILE *f) {
	fprintf(f, "usage: " PROG " [-file PATH]\n"
	           "Serves a counter on the first listener in FTVM_LISTEN_FDS: each line a\n"
	           "client sends is a request; \"get\" answers the value, anything else\n"
	           "increments it and answers the new value.\n"
	           "  -file PATH  start from the value in PATH and write it there before\n"
	           "              answering each increment\n");
}

static bool is_space(char c) {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// parse_value parses a decimal number surrounded by optional white space.
static bool parse_value(const char *s, size_t n, uint64_t *out) {
	size_t i = 0;
	while (i < n && is_space(s[i]))
		i++;
	if (i == n || s[i] < '0' || s[i] > '9')
		return false;
	uint64_t v = 0;
	for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
		uint64_t d = (uint64_t)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	while (i < n && is_space(s[i]))
		i++;
	if (i != n)
		return false;
	*out = v;
	return true;
}

// open_persist opens (creating) the -file and reads the starting value.
static void open_persist(const char *path) {
	persist_fd = open(path, O_RDWR | O_CREAT, 0644);
	if (persist_fd < 0) {
		fprintf(stderr, PROG ": open %s: %s\n", path, strerror(errno));
		exit(1);
	}
	char buf[64];
	ssize_t n = pread(persist_fd, buf, sizeof buf, 0);
	if (n < 0) {
		fprintf(stderr, PROG ": read %s: %s\n", path, strerror(errno));
		exit(1);
	}
	if (n == 0)
		return; // a new file: the counter starts at 0
	if (!parse_value(buf, (size_t)n, &value)) {
		fprintf(stderr, PROG ": %s does not hold a counter value (one decimal number)\n", path);
		exit(1);
	}
}

// persist writes the value to the -file, or ends the program.
static void persist(void) {
	if (persist_fd < 0)
		return;
	char rec[PERSIST_LEN + 1];
	snprintf(rec, sizeof rec, "%020llu\n", (unsigned long long)value);
	ssize_t n = pwrite(persist_fd, rec, PERSIST_LEN, 0);
	if (n != PERSIST_LEN) {
		fprintf(stderr, PROG ": persist: write %s: %s\n", persist_path,
		        n < 0 ? strerror(errno) : "short write");
		exit(1);
	}
}

// answer applies one request line and queues its reply; out has room.
static void answer(struct client *c, const char *line, size_t n) {
	while (n > 0 && is_space(line[0])) {
		line++;
		n--;
	}
	while (n > 0 && is_space(line[n - 1]))
		n--;
	if (!(n == 3 && memcmp(line, "get", 3) == 0)) {
		value++;
		persist();
	}
	int k = snprintf(c->out + c->out_len, OUT_CAP - c->out_len, "%llu\n",
	                 (unsigned long long)value);
	c->out_len += (size_t)k;
}

static bool out_has_room(const struct client *c) {
	return OUT_CAP - c->out_len >= REPLY_MAX;
}

// process answers the complete lines buffered, as long as replies fit, and
// at the client's end of input also a last line without "\n".
static void process(struct client *c) {
	size_t start = 0;
	while (out_has_room(c)) {
		char *nl = memchr(c->in + start, '\n', c->in_len - start);
		if (nl == NULL)
			break;
		size_t end = (size_t)(nl - c->in);
		answer(c, c->in + start, end - start);
		start = end + 1;
	}
	if (c->eof && start < c->in_len && out_has_room(c)) {
		answer(c, c->in + start, c->in_len - start);
		start = c->in_len;
	}
	memmove(c->in, c->in + start, c->in_len - start);
	c->in_len -= start;
}

static void close_client(size_t i) {
	struct client *c = clients[i];
	close(c->fd);
	free(c->in);
	free(c);
	clients[i] = clients[nclients - 1];
	clients[nclients - 1] = NULL;
	nclients--;
}

// flush sends queued replies until none are left or the socket takes no
// more, and keeps the unsent rest. It returns false if the connection
// failed.
static bool flush(struct client *c) {
	size_t sent = 0;
	while (sent < c->out_len) {
		ssize_t k = send(c->fd, c->out + sent, c->out_len - sent, 0);
		if (k < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return false; // the client went away
		}
		sent += (size_t)k;
	}
	memmove(c->out, c->out + sent, c->out_len - sent);
	c->out_len -= sent;
	return true;
}

// receive reads what the client sent. It returns false if the connection
// failed or the client sent a line longer than MAX_LINE.
static bool receive(struct client *c) {
	if (c->in_len == c->in_cap) {
		if (c->in_cap >= MAX_LINE) {
			fprintf(stderr, PROG ": a client sent a line over %d bytes; disconnecting it\n", MAX_LINE);
			return false;
		}
		size_t cap = c->in_cap * 2;
		char *in = realloc(c->in, cap);
		if (in == NULL) {
			fprintf(stderr, PROG ": out of memory for a client's request; disconnecting it\n");
			return false;
		}
		c->in = in;
		c->in_cap = cap;
	}
	ssize_t k = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
	if (k < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK;
	if (k == 0)
		c->eof = true;
	c->in_len += (size_t)k;
	return true;
}

// pending reports whether the client has a request buffered: a complete
// line, or after its end of input any last bytes.
static bool pending(const struct client *c) {
	return c->in_len > 0 && (c->eof || memchr(c->in, '\n', c->in_len) != NULL);
}

// serve answers the client's buffered requests and sends the replies,
// until it has answered them all or the socket takes no more. It returns
// false if the connection failed.
static bool serve(struct client *c) {
	for (;;) {
		process(c);
		if (!flush(c))
			return false;
		if (c->out_len > 0 || !pending(c))
			return true;
	}
}

// accept_all accepts the pending connections. It returns false if accept
// failed with an error other than "none pending".
static bool accept_all(int lfd) {
	for (;;) {
		struct sockaddr_storage addr;
		socklen_t len = sizeof addr;
		// wasi-libc's accept writes through addr and len: they must not
		// be NULL.
		int fd = accept4(lfd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return true;
			if (errno == ECONNABORTED)
				continue;
			fprintf(stderr, PROG ": accept: %s\n", strerror(errno));
			return false;
		}
		if (nclients == MAX_CLIENTS) {
			fprintf(stderr, PROG ": %d clients connected already; refusing one more\n", MAX_CLIENTS);
			close(fd);
			continue;
		}
		struct client *c = calloc(1, sizeof *c);
		char *in = malloc(256);
		if (c == NULL || in == NULL) {
			fprintf(stderr, PROG ": out of memory for a new client; refusing it\n");
			free(c);
			free(in);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->in = in;
		c->in_cap = 256;
		clients[nclients++] = c;
	}
}

// listener_fd returns the first descriptor in FTVM_LISTEN_FDS, checked to
// be a socket and made non-blocking.
static int listener_fd(void) {
	const char *s = getenv("FTVM_LISTEN_FDS");
	if (s == NULL || *s < '0' || *s > '9') {
		fprintf(stderr, PROG ": no listener in FTVM_LISTEN_FDS (run it with a listener, such as ftvm exec --listen ADDR)\n");
		exit(2);
	}
	char *end;
	errno = 0;
	unsigned long fd = strtoul(s, &end, 10);
	if (errno != 0 || (*end != '\0' && *end != ',') || fd > INT32_MAX) {
		fprintf(stderr, PROG ": bad FTVM_LISTEN_FDS %s\n", s);
		exit(2);
	}
	__wasi_fdstat_t st;
	__wasi_errno_t e = __wasi_fd_fdstat_get((__wasi_fd_t)fd, &st);
	if (e != 0) {
		fprintf(stderr, PROG ": listener (descriptor %lu): %s\n", fd, strerror(e));
		exit(1);
	}
	if (st.fs_filetype != __WASI_FILETYPE_SOCKET_STREAM) {
		fprintf(stderr, PROG ": descriptor %lu in FTVM_LISTEN_FDS is not a stream socket\n", fd);
		exit(1);
	}
	if (fcntl((int)fd, F_SETFL, O_NONBLOCK) != 0) {
		fprintf(stderr, PROG ": listener (descriptor %lu): %s\n", fd, strerror(errno));
		exit(1);
	}
	return (int)fd;
}

// parse_args parses the command line as Go's flag package would parse the
// Go guest's: -file PATH, -file=PATH, with one or two dashes.
static void parse_args(int argc, char **argv) {
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "-help") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		const char *name = a[0] == '-' ? a + 1 : NULL;
		if (name != NULL && name[0] == '-')
			name++;
		if (name != NULL && strcmp(name, "file") == 0 && i + 1 < argc) {
			persist_path = argv[++i];
		} else if (name != NULL && strncmp(name, "file=", 5) == 0) {
			persist_path = name + 5;
		} else {
			if (name != NULL && strcmp(name, "file") == 0)
				fprintf(stderr, PROG ": flag needs an argument: %s\n", a);
			else
				fprintf(stderr, PROG ": %s %s\n", name != NULL ? "unknown flag" : "unexpected argument", a);
			usage(stderr);
			exit(2);
		}
		if (persist_path[0] == '\0') {
			fprintf(stderr, PROG ": -file needs a path\n");
			exit(2);
		}
	}
}

int main(int argc, char **argv) {
	parse_args(argc, argv);
	if (persist_path != NULL)
		open_persist(persist_path);
	int lfd = listener_fd();
	printf(PROG " listening, value %llu\n", (unsigned long long)value);
	fflush(stdout);

	bool backoff = false;
	for (;;) {
		pfds[0].fd = backoff ? -1 : lfd;
		pfds[0].events = POLLIN;
		for (size_t i = 0; i < nclients; i++) {
			struct client *c = clients[i];
			// Unsent replies hold back reading: a client that does not
			// read what it is sent is not served further. A client
			// always waits for one of the two (see serve).
			pfds[1 + i].fd = c->fd;
			pfds[1 + i].events = c->out_len > 0 ? POLLOUT : POLLIN;
		}
		size_t n = nclients;
		if (poll(pfds, 1 + n, backoff ? ACCEPT_BACKOFF_MS : -1) < 0) {
			fprintf(stderr, PROG ": poll: %s\n", strerror(errno));
			exit(1);
		}
		// Clients first, from the last: close_client moves the last one
		// into the slot it frees, which is then done already.
		for (size_t i = n; i-- > 0;) {
			struct client *c = clients[i];
			short re = pfds[1 + i].revents;
			if (re == 0)
				continue;
			bool ok = (re & POLLNVAL) == 0;
			if (ok && (re & (POLLIN | POLLHUP | POLLERR)) && c->out_len == 0)
				ok = receive(c);
			if (ok)
				ok = serve(c);
			// Gone, or answered and sent all it will ever ask.
			if (!ok || (c->eof && c->in_len == 0 && c->out_len == 0))
				close_client(i);
		}
		backoff = false;
		if (pfds[0].revents != 0)
			backoff = !accept_all(lfd);
	}
}
