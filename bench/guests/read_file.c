/* Read the file named by argv[1] in 64 KiB read() calls; print the total and a checksum
 * (so the reads cannot be optimised away).  Benchmark guest of bench/bench_io.py. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static unsigned char buf[CHUNK];

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: read_file PATH\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        perror("open");
        return 1;
    }
    uint64_t total = 0;
    uint64_t sum = 0;
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n < 0) {
            perror("read");
            return 1;
        }
        if (n == 0)
            break;
        total += (uint64_t)n;
        /* cheap checksum: one 64-bit word per 4 KiB page, plus the chunk length */
        for (ssize_t i = 0; i + 8 <= n; i += 4096) {
            uint64_t w;
            __builtin_memcpy(&w, buf + i, 8);
            sum = (sum * 31) ^ w;
        }
        sum += (uint64_t)n;
    }
    close(fd);
    printf("bytes=%llu checksum=%016llx\n", (unsigned long long)total, (unsigned long long)sum);
    return 0;
}
