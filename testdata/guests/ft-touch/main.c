// ft-touch holds a large memory and writes one byte of every 4 KiB page of
// it, pass after pass, as fast as it can: a guest that dirties its memory
// faster than any channel carries it, for the tests of how a live clone
// slows such a guest until it converges.
//
// Usage: ft-touch MIB
//
// It serves the first listener in FTVM_LISTEN_FDS between passes; each
// line a client sends is answered with the number of passes made.
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PAGE 4096

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: ft-touch MIB\n");
		return 2;
	}
	size_t pages = (size_t)atol(argv[1]) * 256;
	const char *fds = getenv("FTVM_LISTEN_FDS");
	if (fds == NULL) {
		fprintf(stderr, "ft-touch: no listener (FTVM_LISTEN_FDS)\n");
		return 2;
	}
	int l = atoi(fds);
	uint8_t *mem = calloc(pages, PAGE);
	if (mem == NULL) {
		fprintf(stderr, "ft-touch: out of memory\n");
		return 1;
	}
	unsigned long passes = 0;
	int client = -1;
	for (;;) {
		for (size_t p = 0; p < pages; p++)
			mem[p * PAGE + passes % PAGE]++;
		passes++;
		struct pollfd pfd = {.fd = client >= 0 ? client : l, .events = POLLIN};
		if (poll(&pfd, 1, 0) <= 0 || !pfd.revents)
			continue;
		if (client < 0) {
			client = accept(l, NULL, NULL);
			continue;
		}
		char in[256];
		ssize_t k = read(client, in, sizeof in);
		if (k <= 0) {
			if (k < 0 && errno == EAGAIN)
				continue;
			close(client);
			client = -1;
			continue;
		}
		if (memchr(in, '\n', (size_t)k) != NULL) {
			char out[32];
			int m = snprintf(out, sizeof out, "%lu\n", passes);
			write(client, out, (size_t)m);
		}
	}
}
