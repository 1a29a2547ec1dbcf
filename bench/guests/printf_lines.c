/* printf("line %d: some text\n", i) for i < argv[1] (default 100000) to stdout, using
 * stdio's own buffering.  Benchmark guest of bench/bench_io.py. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 100000;
    for (int i = 0; i < n; i++)
        printf("line %d: some text\n", i);
    return 0;
}
