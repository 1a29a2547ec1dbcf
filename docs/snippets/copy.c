/* A C guest of the documentation's Files example: copies /data/input.txt to /out/copy.txt
 * through a scratch file in /tmp, with ordinary stdio. */
#include <stdio.h>

static int copy(const char *from, const char *to) {
    FILE *in = fopen(from, "r"), *out = fopen(to, "w");
    if (in == NULL || out == NULL) return 1;
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, in)) > 0) fwrite(buffer, 1, n, out);
    fclose(in);
    return fclose(out) != 0;
}

int main(void) {
    if (copy("/data/input.txt", "/tmp/scratch.txt") || copy("/tmp/scratch.txt", "/out/copy.txt")) {
        perror("copy");
        return 1;
    }
    puts("copied");
    return 0;
}
