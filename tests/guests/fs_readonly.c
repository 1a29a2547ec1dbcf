/* A read-only mount, for tests/test_fs_differential.py: reads work, every write fails.
 *
 * Usage: fs_readonly DIR   (DIR is the guest mount, e.g. /data, mounted read-only)
 * Expects the fixture: hello.txt ("hello world\n"), notes.txt, sub/nested.txt, emptydir/.
 * Each line is "R <what>: OK ..." / "R <what>: FAIL <ERRNO>" for a read (must succeed) or
 * "W <what>: OK" / "W <what>: FAIL <ERRNO>" for a write (must fail; the errno may differ
 * between WASI implementations: EROFS, EPERM, EACCES, ENOTCAPABLE, EBADF...). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "errname.h"

static void line(char kind, const char *what, long r, const char *detail) {
    int e = errno;
    if (r < 0) printf("%c %s: FAIL %s\n", kind, what, errname(e));
    else printf("%c %s: OK%s%s\n", kind, what, detail ? " " : "", detail ? detail : "");
}

static void w(const char *what, long r) { line('W', what, r, NULL); }

static void read_file(const char *path) {
    char what[160], buf[128], detail[200];
    snprintf(what, sizeof what, "read %s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) { line('R', what, -1, NULL); return; }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int e = errno;
    close(fd);
    if (n < 0) { errno = e; line('R', what, -1, NULL); return; }
    buf[n] = 0;
    for (ssize_t i = 0; i < n; i++) if (buf[i] == '\n') buf[i] = '|';
    snprintf(detail, sizeof detail, "[%s]", buf);
    line('R', what, 0, detail);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_dir(const char *path) {
    char what[160], detail[512] = "";
    snprintf(what, sizeof what, "list %s", path);
    DIR *d = opendir(path);
    if (!d) { line('R', what, -1, NULL); return; }
    char *names[64]; size_t n = 0; struct dirent *ent;
    while ((ent = readdir(d)) != NULL && n < 64) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..")) continue;
        names[n++] = strdup(ent->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_str);
    for (size_t i = 0; i < n; i++) {
        strncat(detail, i ? " " : "", sizeof detail - strlen(detail) - 1);
        strncat(detail, names[i], sizeof detail - strlen(detail) - 1);
        free(names[i]);
    }
    line('R', what, 0, detail);
}

/* A write-mode open must fail; if it does not, say whether writing through it works too. */
static void open_w(const char *path, int flags, const char *flagname) {
    char what[160], detail[64];
    snprintf(what, sizeof what, "open %s %s", path, flagname);
    int fd = open(path, flags, 0644);
    if (fd < 0) { w(what, fd); return; }
    ssize_t n = write(fd, "!", 1);
    snprintf(detail, sizeof detail, "(then write: %s)", n < 0 ? errname(errno) : "OK");
    close(fd);
    line('W', what, 0, detail);
}

static void fopen_w(const char *path, const char *mode) {
    char what[160], detail[64];
    snprintf(what, sizeof what, "fopen %s %s", path, mode);
    FILE *f = fopen(path, mode);
    if (!f) { w(what, -1); return; }
    int r = fputs("!", f) < 0 ? -1 : 0;
    r = fclose(f) ? -1 : r;
    snprintf(detail, sizeof detail, "(then fputs+fclose: %s)", r < 0 ? errname(errno) : "OK");
    line('W', what, 0, detail);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: fs_readonly DIR\n"); return 2; }
    line('R', "chdir", chdir(argv[1]), NULL);

    /* Reads. */
    read_file("hello.txt");
    read_file("sub/nested.txt");
    list_dir(".");
    list_dir("sub");
    struct stat st;
    char detail[64];
    int r = stat("hello.txt", &st);
    snprintf(detail, sizeof detail, "size=%lld", r == 0 ? (long long)st.st_size : -1LL);
    line('R', "stat hello.txt", r, detail);
    line('R', "access hello.txt R_OK", access("hello.txt", R_OK), NULL);
    int fd = open("notes.txt", O_RDONLY);
    line('R', "open notes.txt O_RDONLY", fd, NULL);
    if (fd >= 0) {
        char buf[8];
        ssize_t n = pread(fd, buf, 4, 5);
        for (ssize_t i = 0; i < n; i++) if (buf[i] == '\n') buf[i] = '|';
        snprintf(detail, sizeof detail, "[%.*s]", n > 0 ? (int)n : 0, buf);
        line('R', "pread notes.txt 4 @5", n, detail);
        off_t end = lseek(fd, 0, SEEK_END);
        snprintf(detail, sizeof detail, "%lld", (long long)end);
        line('R', "lseek notes.txt END", end, detail);
        r = fstat(fd, &st);
        snprintf(detail, sizeof detail, "size=%lld", r == 0 ? (long long)st.st_size : -1LL);
        line('R', "fstat notes.txt", r, detail);
        /* Writes through a read-only descriptor. */
        w("write on O_RDONLY fd", write(fd, "x", 1));
        w("pwrite on O_RDONLY fd", pwrite(fd, "x", 1, 0));
        w("ftruncate on O_RDONLY fd", ftruncate(fd, 0));
        struct timespec ts[2] = {{1, 0}, {1, 0}};
        w("futimens on O_RDONLY fd", futimens(fd, ts));
        close(fd);
    }

    /* Writes. */
    fopen_w("new.txt", "w");
    fopen_w("hello.txt", "a");
    fopen_w("hello.txt", "r+");
    open_w("hello.txt", O_WRONLY, "O_WRONLY");
    open_w("hello.txt", O_RDWR, "O_RDWR");
    open_w("hello.txt", O_WRONLY | O_APPEND, "O_WRONLY|O_APPEND");
    open_w("hello.txt", O_RDONLY | O_TRUNC, "O_RDONLY|O_TRUNC");
    open_w("hello.txt", O_WRONLY | O_TRUNC, "O_WRONLY|O_TRUNC");
    open_w("new.txt", O_CREAT | O_WRONLY, "O_CREAT|O_WRONLY");
    open_w("new.txt", O_CREAT | O_RDONLY, "O_CREAT|O_RDONLY");
    open_w("sub/new.txt", O_CREAT | O_EXCL | O_WRONLY, "O_CREAT|O_EXCL|O_WRONLY");
    w("truncate hello.txt 0", truncate("hello.txt", 0));
    w("unlink hello.txt", unlink("hello.txt"));
    w("unlink sub/nested.txt", unlink("sub/nested.txt"));
    w("mkdir newdir", mkdir("newdir", 0755));
    w("mkdir sub/newdir", mkdir("sub/newdir", 0755));
    w("rmdir emptydir", rmdir("emptydir"));
    w("rename hello.txt renamed.txt", rename("hello.txt", "renamed.txt"));
    w("rename hello.txt sub/hello.txt", rename("hello.txt", "sub/hello.txt"));
    w("rename emptydir sub/emptydir", rename("emptydir", "sub/emptydir"));
    w("symlink link -> hello.txt", symlink("hello.txt", "link"));
    w("link hello.txt hl", link("hello.txt", "hl"));
    struct timeval tv[2] = {{1, 0}, {1, 0}};
    w("utimes hello.txt", utimes("hello.txt", tv));
    w("utimes sub", utimes("sub", tv));

    /* Still intact. */
    read_file("hello.txt");
    list_dir(".");
    printf("done\n");
    return 0;
}
