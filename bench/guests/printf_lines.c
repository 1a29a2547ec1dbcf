/* printf("line %d: some text\n", i) for i < argv[1] (default 100000) to stdout.
 * Benchmark guest of bench/bench_io.py.
 *
 * By default stdio's own buffering decides how often fd_write is called (wasi-libc: a
 * 1 KiB buffer, about one call per 1 KiB of output).  An optional argv[2] gives stdout a
 * full buffer of that many bytes (at most 4 MiB) instead, so that the whole output leaves
 * in a few fd_write calls: the difference between the two is the cost of the calls. */
#include <stdio.h>
#include <stdlib.h>

#define MAX_BUFFER (4 << 20)

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    if (argc > 2) {
        long size = atol(argv[2]);
        if (size > MAX_BUFFER)
            size = MAX_BUFFER;
        char *buffer = size > 0 ? malloc((size_t)size) : NULL;
        if (buffer != NULL) /* wasi-libc ignores a size without a buffer */
            setvbuf(stdout, buffer, _IOFBF, (size_t)size);
    }
    for (int i = 0; i < n; i++)
        printf("line %d: some text\n", i);
    return 0;
}
