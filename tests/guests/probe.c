/* A multi-purpose WASI command used by the tests: argv[1] picks the behaviour. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char *volatile keep[4096];  /* allocations stay reachable, so none is optimised away */

static int recurse(int n) { volatile char pad[256]; pad[0] = (char)n; return recurse(n + 1) + pad[0]; }

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "hello";
    if (!strcmp(mode, "hello")) { printf("hello from wasm\n"); return 0; }
    if (!strcmp(mode, "args")) { for (int i = 0; i < argc; i++) printf("[%s]", argv[i]); printf("\n"); return 0; }
    if (!strcmp(mode, "env")) { const char *v = getenv(argv[2]); printf("%s\n", v ? v : "(unset)"); return 0; }
    if (!strcmp(mode, "cat")) {
        char buf[4096]; ssize_t n; size_t total = 0;
        while ((n = read(0, buf, sizeof buf)) > 0) { fwrite(buf, 1, (size_t)n, stdout); total += (size_t)n; }
        fprintf(stderr, "read %zu bytes\n", total);
        return n < 0 ? 1 : 0;
    }
    if (!strcmp(mode, "sleep")) { usleep((useconds_t)atoi(argv[2]) * 1000u); printf("woke\n"); return 0; }
    if (!strcmp(mode, "nanosleep")) {
        struct timespec ts = { atoi(argv[2]) / 1000, (atoi(argv[2]) % 1000) * 1000000L };
        nanosleep(&ts, NULL); printf("woke\n"); return 0;
    }
    if (!strcmp(mode, "spin")) { volatile unsigned long x = 0; for (;;) x++; }
    if (!strcmp(mode, "alloc")) {            /* allocate N MiB in 1 MiB chunks, touching each */
        int mib = atoi(argv[2]);
        for (int i = 0; i < mib; i++) {
            char *p = malloc(1 << 20);
            if (!p) { fprintf(stderr, "malloc failed after %d MiB\n", i); return 12; }
            memset(p, 1, 1 << 20);
            keep[i % 4096] = p;
        }
        printf("allocated %d MiB\n", mib); return 0;
    }
    if (!strcmp(mode, "alloc_abort")) {      /* like alloc, but abort() when malloc fails */
        for (int i = 0;; i++) { char *p = malloc(1 << 20); if (!p) abort(); memset(p, 1, 1 << 20); keep[i % 4096] = p; }
    }
    if (!strcmp(mode, "exit")) { exit(atoi(argv[2])); }
    if (!strcmp(mode, "abort")) { abort(); }
    if (!strcmp(mode, "stack")) { return recurse(0); }
    if (!strcmp(mode, "print")) {            /* write N bytes to stdout in 4 KiB chunks */
        long n = atol(argv[2]); static char buf[4096]; memset(buf, 'x', sizeof buf);
        while (n > 0) { long k = n < 4096 ? n : 4096; fwrite(buf, 1, (size_t)k, stdout); n -= k; }
        return 0;
    }
    if (!strcmp(mode, "clock")) {
        struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a); usleep(20000); clock_gettime(CLOCK_MONOTONIC, &b);
        long ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
        printf("%ld %lld\n", ms, (long long)time(NULL)); return 0;
    }
    if (!strcmp(mode, "random")) {
        unsigned char r[32]; arc4random_buf(r, sizeof r);
        for (size_t i = 0; i < sizeof r; i++) printf("%02x", r[i]); printf("\n"); return 0;
    }
    if (!strcmp(mode, "open")) {             /* no file system is mounted: opening must fail */
        int fd = open(argv[2], O_RDONLY);
        printf("fd=%d errno=%d %s\n", fd, fd < 0 ? errno : 0, fd < 0 ? strerror(errno) : "");
        return fd < 0 ? 0 : 1;
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}
