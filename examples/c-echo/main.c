// c-echo is a TCP echo server written as an ftvm guest in C (wasi-libc): it
// sends every client back what the client sends, on the first listener ftvm
// hands it (FTVM_LISTEN_FDS). WASI preview 1 has no threads, so one poll()
// loop serves every client, with non-blocking sockets.
//
// Build and run:
//
//   clang --target=wasm32-wasi --sysroot=/usr -O2 -o c-echo.wasm main.c
//   ftvm run --listen 127.0.0.1:7001 c-echo.wasm
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 64
#define BUF_SIZE 4096

struct client {
	int fd;
	char buf[BUF_SIZE]; // received, not yet sent back
	size_t len;
};

static struct client clients[MAX_CLIENTS];
static int nclients;
static unsigned long served; // connections accepted so far

// listener_fd returns the first descriptor in FTVM_LISTEN_FDS, made
// non-blocking. (The listener is not at a fixed descriptor: preopened
// directories such as /disk come first.)
static int listener_fd(void) {
	const char *s = getenv("FTVM_LISTEN_FDS");
	if (s == NULL || *s == '\0') {
		fprintf(stderr, "c-echo: no listener in FTVM_LISTEN_FDS (run it with ftvm run --listen ADDR)\n");
		exit(2);
	}
	int fd = atoi(s); // the first of a comma-separated list
	if (fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
		fprintf(stderr, "c-echo: listener %d: %s\n", fd, strerror(errno));
		exit(1);
	}
	return fd;
}

static void drop(int i) {
	close(clients[i].fd);
	clients[i] = clients[--nclients];
}

// accept_all accepts every pending connection.
static void accept_all(int lfd) {
	for (;;) {
		// wasi-libc's accept writes through addr and len: they must not
		// be NULL.
		struct sockaddr_storage addr;
		socklen_t len = sizeof addr;
		int fd = accept4(lfd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
				fprintf(stderr, "c-echo: accept: %s\n", strerror(errno));
			return;
		}
		if (nclients == MAX_CLIENTS) {
			close(fd); // full: refuse it
			continue;
		}
		clients[nclients].fd = fd;
		clients[nclients].len = 0;
		nclients++;
		served++;
		printf("c-echo: connection %lu\n", served);
	}
}

// serve reads what the client sent and sends it back. It returns 0 once the
// client is gone (its end of input, or an error such as the reset every
// connection sees when a backup takes over).
static int serve(struct client *c) {
	if (c->len == 0) {
		ssize_t n = recv(c->fd, c->buf, sizeof c->buf, 0);
		if (n == 0)
			return 0;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK;
		c->len = (size_t)n;
	}
	ssize_t k = send(c->fd, c->buf, c->len, 0);
	if (k < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK;
	memmove(c->buf, c->buf + k, c->len - (size_t)k);
	c->len -= (size_t)k;
	return 1;
}

int main(void) {
	// Each line out at once, whatever stdout is (ftvm presents it as a
	// character device, which wasi-libc line-buffers already).
	setvbuf(stdout, NULL, _IOLBF, 0);
	int lfd = listener_fd();
	printf("c-echo: serving\n");
	static struct pollfd pfds[1 + MAX_CLIENTS];
	for (;;) {
		pfds[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
		for (int i = 0; i < nclients; i++) {
			// Wait to send what is left before reading more: a client
			// that does not read its echo gets nothing more read.
			pfds[1 + i] = (struct pollfd){.fd = clients[i].fd,
			                              .events = clients[i].len > 0 ? POLLOUT : POLLIN};
		}
		int n = nclients;
		if (poll(pfds, 1 + n, -1) < 0) {
			fprintf(stderr, "c-echo: poll: %s\n", strerror(errno));
			return 1;
		}
		// From the last: drop moves the last client into the freed slot.
		for (int i = n - 1; i >= 0; i--) {
			if (pfds[1 + i].revents != 0 && !serve(&clients[i]))
				drop(i);
		}
		if (pfds[0].revents & POLLIN)
			accept_all(lfd);
	}
}
