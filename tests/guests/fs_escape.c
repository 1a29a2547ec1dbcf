/* Attempts to reach outside the mounted directory, for tests/test_fs_differential.py.
 *
 * Usage: fs_escape DIR   (DIR is the guest mount, e.g. /data)
 * The host side lays out   parent/outside.txt   (a secret, next to the mount)
 *                          parent/data/         (mounted at DIR) with inside.txt, sub/deeper/,
 *                          escape_link -> /etc  (only read through),
 *                          escape_dir -> parent/outside_dir  (absolute; holds secret.txt, and
 *                                        is what the write attempts aim at, not /etc),
 *                          escape_file -> ../outside.txt
 * Every escape attempt prints exactly one line
 *     "ATTEMPT <what>: FAIL <ERRNO>"       when refused (the expected outcome), or
 *     "ATTEMPT <what>: OK <what it got>"   when it got through (with the bytes it read),
 * and the errno may differ between WASI implementations. Intermediate steps that may
 * legitimately succeed (creating a symlink whose target points outside, say) print
 * "step <what>: ..." lines instead. */
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

static int attempts = 0, leaks = 0;

static void fail(const char *what) {
    int e = errno;
    printf("ATTEMPT %s: FAIL %s\n", what, errname(e));
    attempts++;
}

static void ok(const char *what, const char *detail) {
    printf("ATTEMPT %s: OK %s\n", what, detail);
    attempts++;
    leaks++;
}

/* "OK read=[...]" with the first bytes readable from fd (the secret, if it leaked). */
static void ok_fd(const char *what, int fd) {
    char buf[64], detail[160];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0) snprintf(detail, sizeof detail, "opened, read failed %s", errname(errno));
    else {
        buf[n] = 0;
        for (ssize_t i = 0; i < n; i++) if (buf[i] == '\n') buf[i] = '|';
        snprintf(detail, sizeof detail, "read=[%s]", buf);
    }
    close(fd);
    ok(what, detail);
}

static void open_label(char *what, size_t size, const char *path, int flags) {
    int acc = flags & O_ACCMODE;
    snprintf(what, size, "open %s %s%s%s%s%s", path,
             acc == O_RDWR ? "O_RDWR" : acc == O_WRONLY ? "O_WRONLY" : "O_RDONLY",
             flags & O_CREAT ? "|O_CREAT" : "", flags & O_EXCL ? "|O_EXCL" : "",
             flags & O_TRUNC ? "|O_TRUNC" : "", flags & O_APPEND ? "|O_APPEND" : "");
}

static void try_open(const char *path, int flags) {
    char what[200];
    open_label(what, sizeof what, path, flags);
    int fd = open(path, flags, 0644);
    if (fd < 0) fail(what); else ok_fd(what, fd);
}

static void try_openat(int dirfd, const char *dirname, const char *path) {
    char what[200];
    snprintf(what, sizeof what, "openat(%s) %s", dirname, path);
    int fd = openat(dirfd, path, O_RDONLY);
    if (fd < 0) fail(what); else ok_fd(what, fd);
}

static void try_stat(const char *path, int follow) {
    char what[200], detail[64]; struct stat st;
    snprintf(what, sizeof what, "%s %s", follow ? "stat" : "lstat", path);
    int r = follow ? stat(path, &st) : lstat(path, &st);
    if (r < 0) { fail(what); return; }
    snprintf(detail, sizeof detail, "size=%lld", (long long)st.st_size);
    ok(what, detail);
}

static void try_opendir(const char *path) {
    char what[200], detail[160] = "entries:";
    snprintf(what, sizeof what, "opendir %s", path);
    DIR *d = opendir(path);
    if (!d) { fail(what); return; }
    struct dirent *ent; int n = 0;
    while ((ent = readdir(d)) != NULL && n < 8) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, "..")) continue;
        strncat(detail, " ", sizeof detail - strlen(detail) - 1);
        strncat(detail, ent->d_name, sizeof detail - strlen(detail) - 1);
        n++;
    }
    closedir(d);
    ok(what, detail);
}

static void try_result(const char *what, int r) {
    if (r < 0) fail(what); else ok(what, "returned 0");
}

static void step(const char *what, int r) {
    int e = errno;
    if (r < 0) printf("step %s: -1 %s\n", what, errname(e));
    else printf("step %s: %d\n", what, r);
}

/* Creates LINK -> TARGET (a step: refusing it is fine), then opens OPEN_PATH through it
 * (the attempt). When the symlink was refused the attempt is reported as failed without
 * being made, since e.g. an O_CREAT open would then just create a plain file inside. */
static void via_symlink(const char *target, const char *link, const char *open_path, int flags) {
    char what[300];
    snprintf(what, sizeof what, "symlink %s -> %s", link, target);
    int r = symlink(target, link);
    int e = errno;
    step(what, r);
    if (r == 0) { try_open(open_path, flags); return; }
    open_label(what, sizeof what, open_path, flags);
    printf("ATTEMPT %s: FAIL %s (symlink refused)\n", what, errname(e));
    attempts++;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: fs_escape DIR\n"); return 2; }
    const char *root = argv[1];
    char path[300];
    step("chdir", chdir(root));

    /* Plain dot-dot paths, relative and absolute. */
    try_open("../outside.txt", O_RDONLY);
    try_open("sub/../../outside.txt", O_RDONLY);
    try_open("sub/deeper/../../../outside.txt", O_RDONLY);
    try_open("sub/./../.././outside.txt", O_RDONLY);
    try_open("./../outside.txt", O_RDONLY);
    snprintf(path, sizeof path, "%s/../outside.txt", root);
    try_open(path, O_RDONLY);
    try_open("/etc/passwd", O_RDONLY);
    try_open("/outside.txt", O_RDONLY);
    try_open("..", O_RDONLY);

    /* Symlinks planted by the host: to an absolute directory, and to ../outside.txt. */
    try_open("escape_link/passwd", O_RDONLY);
    try_open("escape_link/hostname", O_RDONLY);
    try_open("escape_file", O_RDONLY);
    try_open("escape_file", O_RDWR);
    try_open("escape_file", O_WRONLY | O_APPEND);
    try_stat("escape_link", 1);
    try_stat("escape_file", 1);
    try_stat("escape_link/passwd", 0);
    try_stat("../outside.txt", 1);
    try_stat("../outside.txt", 0);
    try_stat("sub/../../outside.txt", 1);
    try_opendir("escape_link");
    try_opendir("escape_dir");
    try_open("escape_dir/secret.txt", O_RDONLY);
    try_stat("escape_dir/secret.txt", 1);
    try_opendir("..");
    try_opendir("sub/../..");
    try_opendir("escape_link/..");
    {
        char what[] = "access ../outside.txt";
        try_result(what, access("../outside.txt", F_OK));
    }

    /* Relative to a directory fd other than the mount's own. */
    int sub = open("sub", O_RDONLY | O_DIRECTORY);
    step("open sub O_DIRECTORY", sub);
    if (sub >= 0) {
        try_openat(sub, "sub", "../../outside.txt");
        try_openat(sub, "sub", "deeper/../../../outside.txt");
        try_openat(sub, "sub", "/etc/passwd");
        try_openat(sub, "sub", "../escape_file");
        close(sub);
    }

    /* Changing directory out of the mount, then a relative open. */
    step("chdir ..", chdir(".."));
    try_open("outside.txt", O_RDONLY);
    step("chdir DIR", chdir(root));
    snprintf(path, sizeof path, "%s/..", root);
    step("chdir DIR/..", chdir(path));
    try_open("outside.txt", O_RDONLY);
    step("chdir DIR", chdir(root));
    step("chdir sub/../..", chdir("sub/../.."));
    try_open("outside.txt", O_RDONLY);
    step("chdir DIR", chdir(root));

    /* Creating and modifying things outside. */
    try_open("../created.txt", O_CREAT | O_WRONLY);
    try_open("sub/../../created2.txt", O_CREAT | O_WRONLY | O_EXCL);
    try_open("../outside.txt", O_WRONLY | O_TRUNC);
    try_open("escape_file", O_WRONLY | O_TRUNC);
    try_open("escape_dir/created.txt", O_CREAT | O_WRONLY);
    try_open("escape_dir/secret.txt", O_WRONLY | O_APPEND);
    try_result("mkdir ../newdir", mkdir("../newdir", 0755));
    try_result("mkdir escape_dir/newdir", mkdir("escape_dir/newdir", 0755));
    try_result("unlink escape_dir/secret.txt", unlink("escape_dir/secret.txt"));
    try_result("rename escape_dir/secret.txt stolen2.txt", rename("escape_dir/secret.txt", "stolen2.txt"));
    try_result("symlink escape_dir/link -> x", symlink("x", "escape_dir/link"));
    try_result("unlink ../outside.txt", unlink("../outside.txt"));
    try_result("truncate ../outside.txt", truncate("../outside.txt", 0));
    try_result("truncate escape_file", truncate("escape_file", 0));
    {
        struct timeval tv[2] = {{1, 0}, {1, 0}};
        try_result("utimes ../outside.txt", utimes("../outside.txt", tv));
        try_result("utimes escape_file", utimes("escape_file", tv));
    }
    try_result("rename inside.txt ../moved.txt", rename("inside.txt", "../moved.txt"));
    try_result("rename ../outside.txt stolen.txt", rename("../outside.txt", "stolen.txt"));
    try_result("rename sub ../sub_moved", rename("sub", "../sub_moved"));
    try_result("rmdir ../data", rmdir("../data"));
    try_result("link ../outside.txt hl", link("../outside.txt", "hl"));
    try_result("link inside.txt ../hl_out", link("inside.txt", "../hl_out"));
    try_result("symlink ../link_out -> inside.txt", symlink("inside.txt", "../link_out"));
    try_result("symlink sub/../../link_out2 -> x", symlink("x", "sub/../../link_out2"));

    /* Symlinks the guest creates itself: making them may work, following them must not. */
    via_symlink("../outside.txt", "new_link", "new_link", O_RDONLY);
    try_stat("new_link", 1);
    via_symlink("../../outside.txt", "sub/up2", "sub/up2", O_RDONLY);
    via_symlink("/etc/passwd", "abs_link", "abs_link", O_RDONLY);
    via_symlink("/", "root_link", "root_link/etc/passwd", O_RDONLY);
    via_symlink("..", "dotdot_link", "dotdot_link/outside.txt", O_RDONLY);
    try_opendir("dotdot_link");
    via_symlink("sub/..", "hop", "hop/../outside.txt", O_RDONLY);
    via_symlink("escape_file", "chain", "chain", O_RDONLY);
    via_symlink("../created3.txt", "create_out", "create_out", O_CREAT | O_WRONLY);
    via_symlink("escape_dir/created4.txt", "create_out2", "create_out2", O_CREAT | O_WRONLY);
    step("link escape_file hl_link (hard link to the symlink itself)", link("escape_file", "hl_link"));
    try_open("hl_link", O_RDONLY);

    printf("attempts: %d leaks: %d\n", attempts, leaks);
    return 0;
}
