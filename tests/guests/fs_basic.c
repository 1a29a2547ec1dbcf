/* File-system basics through ordinary libc, for the differential tests
 * (tests/test_fs_differential.py): run under wasmtime's WASI and under ours on identical
 * fixtures, the transcripts and resulting trees must match.
 *
 * Usage: fs_basic DIR   (DIR is the guest mount, e.g. /data)
 * Expects the fixture: hello.txt ("hello world\n"), notes.txt, afile, inside.txt,
 * sub/nested.txt, sub/deeper/leaf.txt, emptydir/.
 * Prints one line per step: "<step>: <result>", or "<step>: -1 <ERRNO>" on failure.
 * Nothing printed depends on timestamps, inode numbers or directory sizes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "errname.h"

/* "<what>: <r>" or "<what>: -1 <ERRNO>"; errno must be the one set by the call. */
static long report(const char *what, long r) {
    int e = errno;
    if (r < 0) printf("%s: -1 %s\n", what, errname(e));
    else printf("%s: %ld\n", what, r);
    return r;
}

static void print_escaped(const char *what, const char *data, size_t n) {
    printf("%s: [", what);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c == '\n') printf("\\n");
        else if (c >= 32 && c < 127 && c != '\\') putchar(c);
        else printf("\\x%02x", c);
    }
    printf("] (%zu bytes)\n", n);
}

/* Prints the whole content of a file (through a fresh fd). */
static void show_file(const char *path) {
    char label[128], buf[512];
    snprintf(label, sizeof label, "content %s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) { report(label, -1); return; }
    size_t n = 0; ssize_t k;
    while (n < sizeof buf && (k = read(fd, buf + n, sizeof buf - n)) > 0) n += (size_t)k;
    close(fd);
    print_escaped(label, buf, n);
}

static const char *type_of(mode_t m) {
    if (S_ISREG(m)) return "file";
    if (S_ISDIR(m)) return "dir";
    if (S_ISLNK(m)) return "symlink";
    return "other";
}

/* Type, and size for regular files only (directory sizes are host-specific). */
static void show_stat(const char *what, int r, const struct stat *st) {
    int e = errno;
    if (r < 0) { printf("%s: -1 %s\n", what, errname(e)); return; }
    if (S_ISREG(st->st_mode)) printf("%s: file size=%lld\n", what, (long long)st->st_size);
    else printf("%s: %s\n", what, type_of(st->st_mode));
}

static void do_stat(const char *path) {
    char label[128]; struct stat st;
    snprintf(label, sizeof label, "stat %s", path);
    int r = stat(path, &st);
    show_stat(label, r, &st);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *dtype(unsigned char t) {
    switch (t) {
    case DT_REG: return "f";
    case DT_DIR: return "d";
    case DT_LNK: return "l";
    case DT_UNKNOWN: return "?";
    default: return "o";
    }
}

/* Entries of a directory (without . and ..), sorted by name, with their d_type. */
static void list_dir(const char *path) {
    char label[128];
    snprintf(label, sizeof label, "list %s", path);
    DIR *d = opendir(path);
    if (!d) { report(label, -1); return; }
    char *names[256]; size_t n = 0; struct dirent *ent;
    errno = 0;
    while ((ent = readdir(d)) != NULL && n < 256) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..")) continue;
        size_t len = strlen(ent->d_name);
        names[n] = malloc(len + 3);
        snprintf(names[n], len + 3, "%s:%s", ent->d_name, dtype(ent->d_type));
        n++;
    }
    int e = errno;
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_str);
    printf("%s: %zu entries%s%s\n", label, n, e ? " readdir error " : "", e ? errname(e) : "");
    for (size_t i = 0; i < n; i++) { printf("  %s\n", names[i]); free(names[i]); }
}

static uint32_t fnv1a(uint32_t h, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 16777619u; }
    return h;
}

static void stdio_steps(void) {
    char line[128];
    FILE *f = fopen("new.txt", "w");
    printf("fopen new.txt w: %s\n", f ? "ok" : errname(errno));
    if (!f) return;
    report("fprintf", fprintf(f, "alpha %d\n", 1));
    report("fputs", fputs("beta\n", f) >= 0 ? 0 : -1);
    report("fclose", fclose(f));

    f = fopen("new.txt", "r");
    printf("fopen new.txt r: %s\n", f ? "ok" : errname(errno));
    if (!f) return;
    while (fgets(line, sizeof line, f)) print_escaped("fgets", line, strlen(line));
    printf("feof: %d ferror: %d\n", feof(f) != 0, ferror(f) != 0);
    fclose(f);

    f = fopen("new.txt", "a");
    printf("fopen new.txt a: %s\n", f ? "ok" : errname(errno));
    if (!f) return;
    report("ftell after open a", ftell(f) < 0 ? -1 : 0);
    fputs("gamma\n", f);
    report("fclose", fclose(f));
    show_file("new.txt");

    f = fopen("new.txt", "r+");
    printf("fopen new.txt r+: %s\n", f ? "ok" : errname(errno));
    if (!f) return;
    report("fseek 6 SET", fseek(f, 6, SEEK_SET));
    report("ftell", ftell(f));
    char buf[16] = {0};
    size_t got = fread(buf, 1, 5, f);
    print_escaped("fread 5", buf, got);
    report("ftell", ftell(f));
    report("fseek 0 CUR", fseek(f, 0, SEEK_CUR));
    report("fwrite XY", (long)fwrite("XY", 1, 2, f));
    report("fseek 0 END", fseek(f, 0, SEEK_END));
    report("ftell at end", ftell(f));
    report("fseek -3 END", fseek(f, -3, SEEK_END));
    got = fread(buf, 1, sizeof buf, f);
    print_escaped("fread tail", buf, got);
    report("fclose", fclose(f));
    show_file("new.txt");

    f = fopen("missing.txt", "r");
    printf("fopen missing.txt r: %s\n", f ? "ok" : errname(errno));
    if (f) fclose(f);
    f = fopen("nodir/new.txt", "w");
    printf("fopen nodir/new.txt w: %s\n", f ? "ok" : errname(errno));
    if (f) fclose(f);
}

static void fd_steps(void) {
    char buf[64]; struct stat st;
    int fd = (int)report("open pio.bin O_CREAT|O_RDWR|O_TRUNC", open("pio.bin", O_CREAT | O_RDWR | O_TRUNC, 0644));
    if (fd < 0) return;
    report("pwrite 0123456789 @0", pwrite(fd, "0123456789", 10, 0));
    report("pwrite ab @4", pwrite(fd, "ab", 2, 4));
    ssize_t n = pread(fd, buf, 6, 2);
    if (n < 0) report("pread 6 @2", -1); else print_escaped("pread 6 @2", buf, (size_t)n);
    report("lseek 0 CUR (pread/pwrite keep offset)", lseek(fd, 0, SEEK_CUR));
    n = read(fd, buf, 3);
    if (n < 0) report("read 3", -1); else print_escaped("read 3", buf, (size_t)n);
    report("lseek 0 CUR", lseek(fd, 0, SEEK_CUR));
    report("lseek 0 END", lseek(fd, 0, SEEK_END));
    report("lseek 5 END", lseek(fd, 5, SEEK_END));
    report("write Z past end", write(fd, "Z", 1));
    show_stat("fstat after hole", fstat(fd, &st), &st);
    n = pread(fd, buf, 16, 8);
    if (n < 0) report("pread hole", -1); else print_escaped("pread hole", buf, (size_t)n);
    report("lseek -1 SET", lseek(fd, -1, SEEK_SET));
    report("pread @1000 (eof)", pread(fd, buf, 4, 1000));
    report("ftruncate 40 (grow)", ftruncate(fd, 40));
    show_stat("fstat after grow", fstat(fd, &st), &st);
    n = pread(fd, buf, 8, 32);
    if (n < 0) report("pread grown tail", -1); else print_escaped("pread grown tail", buf, (size_t)n);
    report("ftruncate 3 (shrink)", ftruncate(fd, 3));
    show_stat("fstat after shrink", fstat(fd, &st), &st);
    report("lseek 0 CUR after shrink", lseek(fd, 0, SEEK_CUR));
    report("read at offset past eof", read(fd, buf, 4));
    report("ftruncate -1", ftruncate(fd, -1));
    report("close", close(fd));
    report("close again", close(fd));
    show_file("pio.bin");

    fd = (int)report("open hello.txt O_RDONLY", open("hello.txt", O_RDONLY));
    if (fd >= 0) {
        report("write on O_RDONLY fd", write(fd, "x", 1));
        show_stat("fstat hello.txt", fstat(fd, &st), &st);
        close(fd);
    }
    fd = (int)report("open hello.txt O_WRONLY|O_APPEND", open("hello.txt", O_WRONLY | O_APPEND));
    if (fd >= 0) {
        report("write appended", write(fd, "more\n", 5));
        report("read on O_WRONLY fd", read(fd, buf, 1));
        close(fd);
    }
    show_file("hello.txt");
}

static void stat_steps(void) {
    do_stat("hello.txt");
    do_stat("sub");
    do_stat("sub/nested.txt");
    do_stat("missing.txt");
    do_stat("afile/x");
    do_stat(".");
    do_stat("sub/./deeper/../nested.txt");
}

static void rename_steps(void) {
    report("rename new.txt renamed.txt", rename("new.txt", "renamed.txt"));
    do_stat("new.txt");
    show_file("renamed.txt");
    report("rename renamed.txt sub/deeper/moved.txt", rename("renamed.txt", "sub/deeper/moved.txt"));
    show_file("sub/deeper/moved.txt");
    report("rename sub/deeper/moved.txt notes.txt (replace)", rename("sub/deeper/moved.txt", "notes.txt"));
    show_file("notes.txt");
    report("rename missing.txt x", rename("missing.txt", "x"));
    report("rename emptydir sub/emptydir2", rename("emptydir", "sub/emptydir2"));
    do_stat("sub/emptydir2");
    report("rename afile sub (file onto dir)", rename("afile", "sub"));
    report("rename sub/emptydir2 afile (dir onto file)", rename("sub/emptydir2", "afile"));
    report("mkdir full", mkdir("full", 0755));
    int fd = open("full/x", O_CREAT | O_WRONLY, 0644);
    if (fd >= 0) close(fd);
    report("rename sub/emptydir2 full (onto non-empty dir)", rename("sub/emptydir2", "full"));
    report("rename sub/emptydir2 emptydir (back)", rename("sub/emptydir2", "emptydir"));
    report("rename hello.txt hello.txt (same)", rename("hello.txt", "hello.txt"));
    report("rename sub sub/deeper/inner (into itself)", rename("sub", "sub/deeper/inner"));
}

static void unlink_dir_steps(void) {
    int fd = open("doomed.txt", O_CREAT | O_WRONLY, 0644);
    if (fd >= 0) close(fd);
    report("unlink doomed.txt", unlink("doomed.txt"));
    report("unlink doomed.txt again", unlink("doomed.txt"));
    report("unlink sub (a directory)", unlink("sub"));
    report("mkdir newdir", mkdir("newdir", 0755));
    report("mkdir newdir again", mkdir("newdir", 0755));
    report("mkdir hello.txt (exists as file)", mkdir("hello.txt", 0755));
    report("mkdir nodir/x", mkdir("nodir/x", 0755));
    report("mkdir newdir/a", mkdir("newdir/a", 0755));
    report("rmdir newdir (non-empty)", rmdir("newdir"));
    report("rmdir newdir/a", rmdir("newdir/a"));
    report("rmdir newdir", rmdir("newdir"));
    report("rmdir newdir again", rmdir("newdir"));
    report("rmdir sub (non-empty)", rmdir("sub"));
    report("rmdir hello.txt (a file)", rmdir("hello.txt"));
    report("rmdir full (non-empty)", rmdir("full"));
}

static void listing_steps(void) {
    report("mkdir listdir", mkdir("listdir", 0755));
    const char *names[] = {"zeta", "alpha", "mid", "Beta", "_under", "a.b"};
    char path[64];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "listdir/%s", names[i]);
        int fd = open(path, O_CREAT | O_WRONLY, 0644);
        if (fd >= 0) close(fd);
    }
    report("mkdir listdir/subdir", mkdir("listdir/subdir", 0755));
    list_dir("listdir");
    list_dir("emptydir");
    list_dir("sub");
    list_dir("missing");
    list_dir("hello.txt");
}

static void access_steps(void) {
    report("access hello.txt F_OK", access("hello.txt", F_OK));
    report("access hello.txt R_OK|W_OK", access("hello.txt", R_OK | W_OK));
    report("access sub F_OK", access("sub", F_OK));
    report("access missing.txt F_OK", access("missing.txt", F_OK));
    report("access afile/x F_OK", access("afile/x", F_OK));
}

static void open_error_steps(void) {
    int fd;
    fd = (int)report("open hello.txt O_CREAT|O_EXCL", open("hello.txt", O_CREAT | O_EXCL | O_WRONLY, 0644));
    if (fd >= 0) close(fd);
    fd = (int)report("open sub O_CREAT|O_EXCL", open("sub", O_CREAT | O_EXCL | O_WRONLY, 0644));
    if (fd >= 0) close(fd);
    fd = (int)report("open excl.txt O_CREAT|O_EXCL (new)", open("excl.txt", O_CREAT | O_EXCL | O_WRONLY, 0644));
    if (fd >= 0) close(fd);
    fd = (int)report("open sub O_WRONLY", open("sub", O_WRONLY));
    if (fd >= 0) close(fd);
    fd = (int)report("open sub O_RDWR", open("sub", O_RDWR));
    if (fd >= 0) close(fd);
    fd = (int)report("open sub O_RDONLY", open("sub", O_RDONLY));
    if (fd >= 0) {
        char c;
        report("read on a directory fd", read(fd, &c, 1));
        close(fd);
    }
    fd = (int)report("open hello.txt O_DIRECTORY", open("hello.txt", O_RDONLY | O_DIRECTORY));
    if (fd >= 0) close(fd);
    fd = (int)report("open afile/x O_RDONLY", open("afile/x", O_RDONLY));
    if (fd >= 0) close(fd);
    fd = (int)report("open afile/x O_CREAT|O_WRONLY", open("afile/x", O_CREAT | O_WRONLY, 0644));
    if (fd >= 0) close(fd);
    fd = (int)report("open missing.txt O_RDONLY", open("missing.txt", O_RDONLY));
    if (fd >= 0) close(fd);
    fd = (int)report("open sub/deeper/leaf.txt O_RDONLY", open("sub/deeper/leaf.txt", O_RDONLY));
    if (fd >= 0) close(fd);
    fd = (int)report("open notes.txt O_WRONLY|O_TRUNC", open("notes.txt", O_WRONLY | O_TRUNC));
    if (fd >= 0) { report("write after O_TRUNC", write(fd, "short\n", 6)); close(fd); }
    show_file("notes.txt");
    char longname[300];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    fd = (int)report("open 299-char name O_CREAT", open(longname, O_CREAT | O_WRONLY, 0644));
    if (fd >= 0) close(fd);
    report("close -1", close(-1));
    report("close 99", close(99));
}

static void time_steps(void) {
    struct timeval tv[2] = {{1000000000, 0}, {1000000000, 0}};
    struct stat st;
    report("utimes hello.txt", utimes("hello.txt", tv));
    if (stat("hello.txt", &st) == 0) printf("mtime hello.txt: %lld\n", (long long)st.st_mtime);
    int fd = open("sub/nested.txt", O_RDWR);
    if (fd >= 0) {
        struct timespec ts[2] = {{1200000000, 0}, {1200000000, 500}};
        report("futimens sub/nested.txt", futimens(fd, ts));
        if (fstat(fd, &st) == 0) printf("mtime sub/nested.txt: %lld\n", (long long)st.st_mtime);
        /* No UTIME_NOW/UTIME_OMIT nor a NULL times: Debian's wasi-libc (2022-05) rejects the
         * former itself (EINVAL) and turns the latter into "set both to 0". */
        close(fd);
    }
    report("utimes missing.txt", utimes("missing.txt", tv));
}

static void big_file_steps(void) {
    enum { CHUNK = 64 * 1024, TOTAL = 1024 * 1024 };
    static unsigned char chunk[CHUNK], back[CHUNK];
    uint32_t want = 2166136261u, got = 2166136261u;
    int fd = (int)report("open big.bin O_CREAT|O_WRONLY|O_TRUNC", open("big.bin", O_CREAT | O_WRONLY | O_TRUNC, 0644));
    if (fd < 0) return;
    long written = 0, short_writes = 0;
    for (int c = 0; c < TOTAL / CHUNK; c++) {
        for (int i = 0; i < CHUNK; i++) chunk[i] = (unsigned char)((i * 31 + c * 7 + (i >> 9)) & 0xff);
        want = fnv1a(want, chunk, CHUNK);
        size_t off = 0;
        while (off < CHUNK) {
            ssize_t k = write(fd, chunk + off, CHUNK - off);
            if (k <= 0) { report("write big chunk", -1); close(fd); return; }
            if ((size_t)k < CHUNK - off) short_writes++;
            off += (size_t)k;
            written += k;
        }
    }
    printf("big written: %ld\n", written);
    (void)short_writes; /* may differ between hosts; not printed */
    report("close big.bin", close(fd));
    do_stat("big.bin");
    fd = (int)report("open big.bin O_RDONLY", open("big.bin", O_RDONLY));
    if (fd < 0) return;
    long total = 0; ssize_t k;
    while ((k = read(fd, back, CHUNK)) > 0) { got = fnv1a(got, back, (size_t)k); total += k; }
    if (k < 0) report("read big", -1);
    report("close big.bin", close(fd));
    printf("big read: %ld checksum=%08x %s\n", total, got, got == want && total == TOTAL ? "match" : "MISMATCH");
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: fs_basic DIR\n"); return 2; }
    if (report("chdir", chdir(argv[1])) < 0) return 1;
    stdio_steps();
    fd_steps();
    stat_steps();
    rename_steps();
    unlink_dir_steps();
    listing_steps();
    access_steps();
    open_error_steps();
    time_steps();
    big_file_steps();
    list_dir(".");
    printf("done\n");
    return 0;
}
