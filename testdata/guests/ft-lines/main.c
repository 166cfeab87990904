// ft-lines prints the numbers 1, 2, 3, ... to stdout, one line each, with
// a short sleep between them, until it is stopped: the tests check that a
// failover loses none of them.
//
// Usage: ft-lines [MICROSECONDS]   (the sleep, default 200)
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
	long us = argc > 1 ? atol(argv[1]) : 200;
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
	for (unsigned long i = 1;; i++) {
		printf("%lu\n", i);
		fflush(stdout);
		nanosleep(&ts, NULL);
	}
}
