/* File-system security and accounting checks for tests/test_fs_security.py.
 *
 * Usage: fs_security MODE ARGS...
 *   xdev A B          rename and hard-link files and directories between mounts A and B
 *   hardlink DIR      hard-link files outside DIR reached through planted symlinks
 *   io DIR N          write N bytes to DIR/io.bin, read them back, check them
 *   create DIR N      create N empty files DIR/f0000.. in DIR
 *   list DIR          print every name readdir returns for DIR, one a line, then "count N"
 * Every step prints "<step>: <result>" with -1 and the errno number on failure. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void report(const char *what, int r) {
    if (r < 0) printf("%s: -1 %d\n", what, errno);
    else printf("%s: %d\n", what, r);
}

static void join(char *out, size_t size, const char *dir, const char *name) {
    snprintf(out, size, "%s/%s", dir, name);
}

static int xdev(const char *a, const char *b) {
    /* A/f and A/d, B/g and B/e are created first; every move between A and B must fail */
    static const char *moves[][2] = {{"f", "f"}, {"d", "d"}, {"f", "g"}, {"d", "e"}};
    char from[512], to[512], step[1200];
    join(from, sizeof from, a, "f");
    int fd = open(from, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    report("create A/f", fd);
    if (fd >= 0) { report("write A/f", (int)write(fd, "payload", 7)); close(fd); }
    join(from, sizeof from, b, "g");
    fd = open(from, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    report("create B/g", fd);
    if (fd >= 0) close(fd);
    join(from, sizeof from, a, "d");
    report("mkdir A/d", mkdir(from, 0755));
    join(from, sizeof from, b, "e");
    report("mkdir B/e", mkdir(from, 0755));
    for (size_t i = 0; i < sizeof moves / sizeof *moves; i++) {
        for (int back = 0; back < 2; back++) {
            const char *src_dir = back ? b : a, *dst_dir = back ? a : b;
            const char *src = moves[i][back], *dst = moves[i][!back];
            join(from, sizeof from, src_dir, src);
            join(to, sizeof to, dst_dir, dst);
            snprintf(step, sizeof step, "rename %s -> %s", from, to);
            report(step, rename(from, to));
            snprintf(step, sizeof step, "link %s -> %s", from, to);
            report(step, link(from, to));
            snprintf(step, sizeof step, "linkat follow %s -> %s", from, to);
            report(step, linkat(AT_FDCWD, from, AT_FDCWD, to, AT_SYMLINK_FOLLOW));
        }
    }
    return 0;
}

static int hardlink(const char *dir) {
    /* link_abs -> /abs/outside/secret.txt, link_rel -> ../outside/secret.txt,
     * dir_abs -> /abs/outside, dir_rel -> ../outside (all planted by the host) */
    static const char *sources[] = {"link_abs", "link_rel", "dir_abs/secret.txt",
                                    "dir_rel/secret.txt", "../outside/secret.txt"};
    char src[512], dst[512], step[1200];
    for (size_t i = 0; i < sizeof sources / sizeof *sources; i++) {
        join(src, sizeof src, dir, sources[i]);
        snprintf(dst, sizeof dst, "%s/hard%zu", dir, i);
        snprintf(step, sizeof step, "link follow %s", sources[i]);
        report(step, linkat(AT_FDCWD, src, AT_FDCWD, dst, AT_SYMLINK_FOLLOW));
        snprintf(dst, sizeof dst, "%s/nofollow%zu", dir, i);
        snprintf(step, sizeof step, "link nofollow %s", sources[i]);
        report(step, linkat(AT_FDCWD, src, AT_FDCWD, dst, 0));
    }
    return 0;
}

static int io(const char *dir, long want) {
    char path[512];
    join(path, sizeof path, dir, "io.bin");
    char *data = malloc((size_t)want), *back = malloc((size_t)want + 1);
    for (long i = 0; i < want; i++) data[i] = (char)(i * 7 + 3);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { printf("open: -1 %d\n", errno); return 1; }
    long written = 0, got = 0;
    while (written < want) {       /* in uneven chunks */
        long chunk = want - written < 1000 ? want - written : 1000;
        ssize_t n = write(fd, data + written, (size_t)chunk);
        if (n <= 0) { printf("write: -1 %d\n", errno); return 1; }
        written += n;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) { printf("lseek: -1 %d\n", errno); return 1; }
    for (;;) {                     /* until end of file, in 4000-byte reads */
        ssize_t n = read(fd, back + got, (size_t)(want + 1 - got < 4000 ? want + 1 - got : 4000));
        if (n < 0) { printf("read: -1 %d\n", errno); return 1; }
        if (n == 0) break;
        got += n;
    }
    close(fd);
    printf("wrote %ld read %ld %s\n", written, got,
           got == want && memcmp(data, back, (size_t)want) == 0 ? "same" : "DIFFERENT");
    return 0;
}

static int create(const char *dir, long n) {
    char path[512];
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/f%04ld", dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) { printf("create %s: -1 %d\n", path, errno); return 1; }
        close(fd);
    }
    printf("created %ld\n", n);
    return 0;
}

static int list(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) { printf("opendir: -1 %d\n", errno); return 1; }
    long count = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        printf("%s\n", e->d_name);
        count++;
    }
    if (errno) printf("readdir: -1 %d\n", errno);
    closedir(d);
    printf("count %ld\n", count);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    const char *mode = argv[1];
    if (!strcmp(mode, "xdev") && argc == 4) return xdev(argv[2], argv[3]);
    if (!strcmp(mode, "hardlink")) return hardlink(argv[2]);
    if (!strcmp(mode, "io") && argc == 4) return io(argv[2], atol(argv[3]));
    if (!strcmp(mode, "create") && argc == 4) return create(argv[2], atol(argv[3]));
    if (!strcmp(mode, "list")) return list(argv[2]);
    printf("usage\n");
    return 2;
}
