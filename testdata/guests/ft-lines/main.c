// ft-lines prints the numbers 1, 2, 3, ... to stdout, one line each, with
// a short sleep between them, until it is stopped or has printed COUNT
// lines: the tests check that a failover loses none of them.
//
// Usage: ft-lines [MICROSECONDS [COUNT [WIDTH]]]
//
// MICROSECONDS is the sleep (default 200, 0 for none), COUNT the lines to
// print before exiting (default 0: no end), WIDTH pads each line with
// dots to that many bytes, its newline included.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
	long us = argc > 1 ? atol(argv[1]) : 200;
	unsigned long count = argc > 2 ? strtoul(argv[2], NULL, 10) : 0;
	int width = argc > 3 ? atoi(argv[3]) : 0;
	struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
	static char pad[1 << 16];
	if (width > (int)sizeof pad)
		width = sizeof pad;
	memset(pad, '.', sizeof pad);
	for (unsigned long i = 1; count == 0 || i <= count; i++) {
		int n = snprintf(NULL, 0, "%lu", i);
		printf("%lu%.*s\n", i, width > n + 1 ? width - n - 1 : 0, pad);
		fflush(stdout);
		if (us > 0)
			nanosleep(&ts, NULL);
	}
	return 0;
}
