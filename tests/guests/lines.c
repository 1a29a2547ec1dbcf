/* Streaming tests: writes argv[1] numbered lines, one write() each, alternately to stdout
 * (even lines) and stderr (odd lines). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 10;
    char buf[64];
    for (int i = 0; i < n; i++) {
        int len = snprintf(buf, sizeof buf, "line %d\n", i);
        if (write(i % 2 ? 2 : 1, buf, (size_t)len) != len) return 1;
    }
    return 0;
}
