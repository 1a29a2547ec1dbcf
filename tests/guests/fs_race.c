/* The guest side of the symlink-swap race in tests/test_fs_security.py.
 *
 * Usage: fs_race DIR COUNT   (DIR is the guest mount; the host keeps swapping DIR/sub
 *                             between a real directory and a symlink leading out of it)
 * Tries COUNT times to open and read DIR/sub/secret.txt, alternating open() with a
 * descriptor-relative openat() through an opened DIR/sub. Prints one line per attempt:
 * "ok <content>" (content with newlines dropped) or "err <errno>", then "done". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void read_all(int fd) {
    char buf[256];
    size_t n = 0;
    ssize_t k;
    while (n < sizeof buf - 1 && (k = read(fd, buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)k;
    buf[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\n') buf[i] = ' ';
    printf("ok %s\n", buf);
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *dir = argv[1];
    long count = atol(argv[2]);
    char file[512], sub[512];
    snprintf(file, sizeof file, "%s/sub/secret.txt", dir);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    for (long i = 0; i < count; i++) {
        int fd;
        if (i % 2 == 0) {
            fd = open(file, O_RDONLY);
        } else {
            int d = open(sub, O_RDONLY | O_DIRECTORY);
            if (d < 0) { printf("err %d\n", errno); continue; }
            fd = openat(d, "secret.txt", O_RDONLY);
            int saved = errno;
            close(d);
            errno = saved;
        }
        if (fd < 0) { printf("err %d\n", errno); continue; }
        read_all(fd);
        close(fd);
    }
    printf("done\n");
    return 0;
}
