/* Symbolic and hard links through ordinary libc, for the differential tests
 * (tests/test_fs_differential.py).
 *
 * Usage: fs_links DIR   (DIR is the guest mount, e.g. /data)
 * Expects the fixture: hello.txt ("hello world\n"), afile, sub/nested.txt, sub/deeper/.
 * Every link target is relative and points down (no '..').
 * Prints one line per step: "<step>: <result>", or "<step>: -1 <ERRNO>" on failure. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errname.h"

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

/* Opens PATH with FLAGS and prints what it reads (or the errno). */
static void show_file(const char *path, int flags) {
    char label[160], buf[256];
    snprintf(label, sizeof label, "read %s%s", path, flags & O_NOFOLLOW ? " O_NOFOLLOW" : "");
    int fd = open(path, O_RDONLY | flags);
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

/* stat or lstat: type, size (files and symlinks: a symlink's size is its target's length)
 * and, for files, the link count. */
static void do_stat(const char *path, int follow) {
    char label[160]; struct stat st;
    snprintf(label, sizeof label, "%s %s", follow ? "stat" : "lstat", path);
    int r = follow ? stat(path, &st) : lstat(path, &st);
    int e = errno;
    if (r < 0) { printf("%s: -1 %s\n", label, errname(e)); return; }
    if (S_ISREG(st.st_mode))
        printf("%s: file size=%lld nlink=%llu\n", label, (long long)st.st_size, (unsigned long long)st.st_nlink);
    else if (S_ISLNK(st.st_mode))
        printf("%s: symlink size=%lld\n", label, (long long)st.st_size);
    else printf("%s: %s\n", label, type_of(st.st_mode));
}

static void do_readlink(const char *path) {
    char label[160], buf[256];
    snprintf(label, sizeof label, "readlink %s", path);
    ssize_t n = readlink(path, buf, sizeof buf);
    if (n < 0) report(label, -1); else print_escaped(label, buf, (size_t)n);
}

static void do_symlink(const char *target, const char *path) {
    char label[200];
    snprintf(label, sizeof label, "symlink %s -> %s", path, target);
    report(label, symlink(target, path));
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

static void list_dir(const char *path) {
    char label[128];
    snprintf(label, sizeof label, "list %s", path);
    DIR *d = opendir(path);
    if (!d) { report(label, -1); return; }
    char *names[256]; size_t n = 0; struct dirent *ent;
    while ((ent = readdir(d)) != NULL && n < 256) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..")) continue;
        size_t len = strlen(ent->d_name);
        names[n] = malloc(len + 3);
        snprintf(names[n], len + 3, "%s:%s", ent->d_name, dtype(ent->d_type));
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof names[0], cmp_str);
    printf("%s: %zu entries\n", label, n);
    for (size_t i = 0; i < n; i++) { printf("  %s\n", names[i]); free(names[i]); }
}

static void symlink_steps(void) {
    do_symlink("hello.txt", "link_hello");
    do_readlink("link_hello");
    show_file("link_hello", 0);
    do_stat("link_hello", 0);
    do_stat("link_hello", 1);
    show_file("link_hello", O_NOFOLLOW);

    char small[4];
    ssize_t n = readlink("link_hello", small, sizeof small);
    if (n < 0) report("readlink into 4-byte buffer", -1); else print_escaped("readlink into 4-byte buffer", small, (size_t)n);

    do_symlink("sub/nested.txt", "link_nested");
    show_file("link_nested", 0);
    do_symlink("sub", "link_sub");
    do_stat("link_sub", 0);
    do_stat("link_sub", 1);
    show_file("link_sub/nested.txt", 0);
    list_dir("link_sub");
    /* Links only point down: wasm-sandbox refuses '..' in a link target (see
     * tests/test_fs_confinement.py), so none is made here. */
    do_symlink("nested.txt", "sub/same_dir_link");
    do_readlink("sub/same_dir_link");
    show_file("sub/same_dir_link", 0);
    do_symlink("deeper/leaf.txt", "sub/down_link");
    show_file("sub/down_link", 0);
    do_symlink("link_hello", "chain");
    show_file("chain", 0);
    do_readlink("chain");

    /* Writing through a symlink writes the target. */
    int fd = (int)report("open link_nested O_WRONLY|O_APPEND", open("link_nested", O_WRONLY | O_APPEND));
    if (fd >= 0) { report("write through link", write(fd, "via link\n", 9)); close(fd); }
    show_file("sub/nested.txt", 0);

    do_symlink("loop_b", "loop_a");
    do_symlink("loop_a", "loop_b");
    show_file("loop_a", 0);
    do_stat("loop_a", 1);
    do_stat("loop_a", 0);
    do_symlink("self", "self");
    show_file("self", 0);
    show_file("loop_a/x", 0);

    do_symlink("nowhere.txt", "dangling");
    show_file("dangling", 0);
    do_stat("dangling", 1);
    do_stat("dangling", 0);
    do_readlink("dangling");

    do_symlink("hello.txt", "link_hello");
    do_symlink("anything", "afile");
    do_symlink("anything", "sub");
    do_symlink("anything", "nodir/x");
    do_readlink("hello.txt");
    do_readlink("sub");
    do_readlink("missing");

    report("rename link_sub link_sub2", rename("link_sub", "link_sub2"));
    do_readlink("link_sub2");
    do_stat("link_sub2", 1);
    report("unlink link_nested", unlink("link_nested"));
    do_stat("link_nested", 0);
    do_stat("sub/nested.txt", 1);
    report("unlink loop_b", unlink("loop_b"));
    show_file("loop_a", 0);
    report("rmdir link_sub2 (symlink to dir)", rmdir("link_sub2"));
    do_stat("sub", 0);
}

static void hardlink_steps(void) {
    report("link hello.txt hard.txt", link("hello.txt", "hard.txt"));
    do_stat("hello.txt", 1);
    do_stat("hard.txt", 1);
    show_file("hard.txt", 0);
    int fd = (int)report("open hard.txt O_WRONLY|O_APPEND", open("hard.txt", O_WRONLY | O_APPEND));
    if (fd >= 0) { report("write through hard link", write(fd, "shared\n", 7)); close(fd); }
    show_file("hello.txt", 0);
    report("link hello.txt sub/deeper/hard2.txt", link("hello.txt", "sub/deeper/hard2.txt"));
    do_stat("hello.txt", 1);
    report("unlink hello.txt", unlink("hello.txt"));
    do_stat("hello.txt", 1);
    do_stat("hard.txt", 1);
    show_file("sub/deeper/hard2.txt", 0);
    do_stat("link_hello", 1);
    show_file("chain", 0);
    report("link sub sub_hard (directory)", link("sub", "sub_hard"));
    report("link missing x", link("missing", "x"));
    report("link hard.txt afile (exists)", link("hard.txt", "afile"));
    report("link hard.txt nodir/x", link("hard.txt", "nodir/x"));
    report("link afile/x y", link("afile/x", "y"));
    report("link dangling hl_dangling", link("dangling", "hl_dangling"));
    do_stat("hl_dangling", 0);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: fs_links DIR\n"); return 2; }
    if (report("chdir", chdir(argv[1])) < 0) return 1;
    symlink_steps();
    hardlink_steps();
    list_dir(".");
    list_dir("sub");
    list_dir("sub/deeper");
    printf("done\n");
    return 0;
}
