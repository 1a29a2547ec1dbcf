/* File-system security and accounting checks for tests/test_fs_security.py.
 *
 * Usage: fs_security MODE ARGS...
 *   xdev A B          rename and hard-link files and directories between mounts A and B
 *   hardlink DIR      hard-link files outside DIR reached through planted symlinks
 *   io DIR N          write N bytes to DIR/io.bin, read them back, check them
 *   create DIR N      create N empty files DIR/f0000.. in DIR
 *   rewrite DIR N SIZE  N times: open DIR/r.bin with O_TRUNC and write SIZE bytes to it
 *   dirfd DIR         open DIR/od, rename it to DIR/moved, make a new DIR/od, then read and
 *                     create files through the descriptor: they are in DIR/moved (POSIX)
 *   stat PATH         stat() and fstat() PATH: result, errno, mtime and atime in seconds
 *   list DIR [N]      (first create N empty files in DIR, as create does, then) print every
 *                     name readdir returns for DIR, one a line, then "count <names>"
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
    /* A/f and A/d, B/g and B/e are created first; every move between A and B must fail.
     * (side of the source, its name, name of the target on the other side) */
    static const struct { int from_b; const char *src, *dst; } moves[] = {
        {0, "f", "f"}, {0, "f", "g"}, {0, "d", "d"}, {0, "d", "e"},
        {1, "g", "g"}, {1, "g", "f"}, {1, "e", "e"}, {1, "e", "d"},
    };
    char from[512], to[512], step[1200];
    join(from, sizeof from, a, "f");
    int fd = open(from, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    report("create A/f", fd < 0 ? -1 : 0);
    if (fd >= 0) { report("write A/f", (int)write(fd, "payload", 7)); close(fd); }
    join(from, sizeof from, b, "g");
    fd = open(from, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    report("create B/g", fd < 0 ? -1 : 0);
    if (fd >= 0) close(fd);
    join(from, sizeof from, a, "d");
    report("mkdir A/d", mkdir(from, 0755));
    join(from, sizeof from, b, "e");
    report("mkdir B/e", mkdir(from, 0755));
    for (size_t i = 0; i < sizeof moves / sizeof *moves; i++) {
        join(from, sizeof from, moves[i].from_b ? b : a, moves[i].src);
        join(to, sizeof to, moves[i].from_b ? a : b, moves[i].dst);
        snprintf(step, sizeof step, "rename %s -> %s", from, to);
        report(step, rename(from, to));
        snprintf(step, sizeof step, "link %s -> %s", from, to);
        report(step, link(from, to));
        snprintf(step, sizeof step, "linkat follow %s -> %s", from, to);
        report(step, linkat(AT_FDCWD, from, AT_FDCWD, to, AT_SYMLINK_FOLLOW));
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

static int rewrite(const char *dir, long times, long size) {
    char path[512];
    join(path, sizeof path, dir, "r.bin");
    char *data = calloc(1, (size_t)size);
    for (long i = 0; i < times; i++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) { printf("rewrite %ld: open -1 %d\n", i, errno); return 0; }
        ssize_t n = write(fd, data, (size_t)size);
        int e = errno;
        close(fd);
        if (n != size) { printf("rewrite %ld: wrote %ld errno %d\n", i, (long)n, e); return 0; }
    }
    printf("rewrote %ld times\n", times);
    return 0;
}

static int dirfd_follows(const char *dir) {
    char od[512], moved[512], inner[512];
    join(od, sizeof od, dir, "od");
    join(moved, sizeof moved, dir, "moved");
    snprintf(inner, sizeof inner, "%s/inner", od);
    report("mkdir od", mkdir(od, 0755));
    int fd = open(inner, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    report("create od/inner", fd < 0 ? -1 : 0);
    if (fd >= 0) { report("write od/inner", (int)write(fd, "inner data", 10)); close(fd); }
    int d = open(od, O_RDONLY | O_DIRECTORY);
    report("open od", d < 0 ? -1 : 0);
    if (d < 0) return 0;
    report("rename od -> moved", rename(od, moved));
    int f = openat(d, "inner", O_RDONLY);
    report("openat(od fd, inner)", f < 0 ? -1 : 0);
    if (f >= 0) {
        char buf[32] = {0};
        report("read it", (int)read(f, buf, sizeof buf - 1));
        printf("content: %s\n", buf);
        close(f);
    }
    report("mkdir od (a new one)", mkdir(od, 0755));
    f = openat(d, "created", O_WRONLY | O_CREAT, 0644);
    report("openat(od fd, created, O_CREAT)", f < 0 ? -1 : 0);
    if (f >= 0) close(f);
    report("mkdirat(od fd, sub)", mkdirat(d, "sub", 0755));
    struct stat st;
    join(inner, sizeof inner, moved, "created");
    report("stat moved/created", stat(inner, &st));
    join(inner, sizeof inner, od, "created");
    report("stat od/created", stat(inner, &st));
    join(inner, sizeof inner, moved, "sub");
    report("stat moved/sub", stat(inner, &st));
    close(d);
    return 0;
}

static int stat_both(const char *path) {
    struct stat st;
    int r = stat(path, &st);
    printf("stat %d errno %d mtime %lld atime %lld\n", r, r ? errno : 0,
           r ? 0LL : (long long)st.st_mtim.tv_sec, r ? 0LL : (long long)st.st_atim.tv_sec);
    int fd = open(path, O_RDONLY);
    if (fd < 0) { printf("open -1 errno %d\n", errno); return 0; }
    r = fstat(fd, &st);
    printf("fstat %d errno %d mtime %lld atime %lld\n", r, r ? errno : 0,
           r ? 0LL : (long long)st.st_mtim.tv_sec, r ? 0LL : (long long)st.st_atim.tv_sec);
    close(fd);
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
    for (;;) {
        errno = 0;                 /* printf may set it (stdout is no tty) */
        if ((e = readdir(d)) == NULL) break;
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
    if (!strcmp(mode, "rewrite") && argc == 5) return rewrite(argv[2], atol(argv[3]), atol(argv[4]));
    if (!strcmp(mode, "create") && argc == 4) return create(argv[2], atol(argv[3]));
    if (!strcmp(mode, "dirfd")) return dirfd_follows(argv[2]);
    if (!strcmp(mode, "stat")) return stat_both(argv[2]);
    if (!strcmp(mode, "list")) {
        if (argc == 4 && create(argv[2], atol(argv[3])) != 0) return 1;
        return list(argv[2]);
    }
    printf("usage\n");
    return 2;
}
