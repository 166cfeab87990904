// ft-mem holds a large memory and rewrites it, for the tests and benchmarks
// of live clones: how a clone converges with a guest that dirties its
// memory, and whether the memory survives a clone and a failover intact.
//
// Usage: ft-mem MIB [PAGES]
//
// It allocates MIB MiB in 4 KiB pages, fills page p with a pattern of p and
// the page's version (0 to start), and then, at every turn of its loop,
// rewrites PAGES pages (default 0: an idle guest) round-robin, each with
// its next version. A turn waits up to 1 ms for clients, so an idle guest
// still turns 1,000 times a second. It serves the first listener in
// FTVM_LISTEN_FDS; each line is a request:
//
//	inc     increment a counter and answer its value
//	check   verify every page against its version and answer
//	        "ok VERSIONS" (the sum of all versions) or "bad page P"
//	turns   answer how many turns the loop made
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PAGE 4096
#define MAX_CLIENTS 64

static uint8_t *mem;
static uint32_t *version;
static size_t pages;

static void fill(size_t p) {
	uint32_t v = version[p];
	uint8_t *b = mem + p * PAGE;
	for (size_t i = 0; i < PAGE; i += 8) {
		uint64_t x = (uint64_t)p * 0x9e3779b97f4a7c15ull ^ (uint64_t)v << 32 ^ i;
		memcpy(b + i, &x, 8);
	}
}

static long check(void) {
	for (size_t p = 0; p < pages; p++) {
		uint32_t v = version[p];
		uint8_t *b = mem + p * PAGE;
		for (size_t i = 0; i < PAGE; i += 8) {
			uint64_t x = (uint64_t)p * 0x9e3779b97f4a7c15ull ^ (uint64_t)v << 32 ^ i, y;
			memcpy(&y, b + i, 8);
			if (x != y)
				return (long)p;
		}
	}
	return -1;
}

struct client {
	int fd;
	char in[256];
	size_t len;
};

int main(int argc, char **argv) {
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: ft-mem MIB [PAGES]\n");
		return 2;
	}
	pages = (size_t)atol(argv[1]) * 256;
	size_t rate = argc == 3 ? (size_t)atol(argv[2]) : 0;
	const char *fds = getenv("FTVM_LISTEN_FDS");
	if (fds == NULL) {
		fprintf(stderr, "ft-mem: no listener (FTVM_LISTEN_FDS)\n");
		return 2;
	}
	int l = atoi(fds);
	mem = malloc(pages * PAGE);
	version = calloc(pages, sizeof *version);
	if (mem == NULL || version == NULL) {
		fprintf(stderr, "ft-mem: out of memory\n");
		return 1;
	}
	for (size_t p = 0; p < pages; p++)
		fill(p);
	printf("ft-mem: %zu pages, rewriting %zu a turn\n", pages, rate);
	fflush(stdout);

	struct client clients[MAX_CLIENTS];
	size_t n = 0, next = 0;
	unsigned long counter = 0, turns = 0;
	struct pollfd pfd[1 + MAX_CLIENTS];
	for (;;) {
		turns++;
		for (size_t k = 0; k < rate; k++) {
			version[next]++;
			fill(next);
			next = (next + 1) % pages;
		}
		pfd[0] = (struct pollfd){.fd = l, .events = POLLIN};
		for (size_t i = 0; i < n; i++)
			pfd[1 + i] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
		if (poll(pfd, 1 + n, 1) < 0 && errno != EINTR) {
			perror("ft-mem: poll");
			return 1;
		}
		if (pfd[0].revents && n < MAX_CLIENTS) {
			int c = accept(l, NULL, NULL);
			if (c >= 0)
				clients[n++] = (struct client){.fd = c};
		}
		for (size_t i = 0; i < n; i++) {
			if (!pfd[1 + i].revents)
				continue;
			struct client *c = &clients[i];
			ssize_t k = read(c->fd, c->in + c->len, sizeof c->in - c->len);
			if (k <= 0) {
				if (k < 0 && errno == EAGAIN)
					continue;
				close(c->fd);
				clients[i] = clients[--n];
				pfd[1 + i] = pfd[1 + n];
				i--;
				continue;
			}
			c->len += (size_t)k;
			char *nl;
			while ((nl = memchr(c->in, '\n', c->len)) != NULL) {
				*nl = 0;
				char out[64];
				int m;
				if (strcmp(c->in, "check") == 0) {
					long bad = check();
					unsigned long sum = 0;
					for (size_t p = 0; p < pages; p++)
						sum += version[p];
					m = bad < 0 ? snprintf(out, sizeof out, "ok %lu\n", sum) : snprintf(out, sizeof out, "bad page %ld\n", bad);
				} else if (strcmp(c->in, "turns") == 0) {
					m = snprintf(out, sizeof out, "%lu\n", turns);
				} else {
					m = snprintf(out, sizeof out, "%lu\n", ++counter);
				}
				(void)!write(c->fd, out, (size_t)m);
				c->len -= (size_t)(nl + 1 - c->in);
				memmove(c->in, nl + 1, c->len);
			}
			if (c->len == sizeof c->in)
				c->len = 0;
		}
	}
}
