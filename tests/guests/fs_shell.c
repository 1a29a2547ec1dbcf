/* A tiny file-system shell for attack tests (tests/test_fs_confinement.py): each argument
 * is one operation, run in order from the current directory (start with "cd:DIR"):
 *   cd:D  mkdir:D  rmdir:D  symlink:TARGET:LINK  link:OLD:NEW  rename:OLD:NEW  unlink:P
 *   readlink:P  read:P  write:P:TEXT  ls:D  open:P (kept open)  openmany:P:N  closeall
 *   sleep:SECONDS
 * and prints one line each: "<op>: <result>" or "<op>: -1 <ERRNO>". */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errname.h"

static int kept[70000];
static int nkept;

static void result(const char *op, long r) {
    if (r < 0) printf("%s: -1 %s\n", op, errname(errno));
    else printf("%s: %ld\n", op, r);
}

static void do_read(const char *op, const char *path) {
    char buf[4096];
    int fd = open(path, O_RDONLY);
    if (fd < 0) { result(op, -1); return; }
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) { result(op, -1); return; }
    buf[n] = 0;
    for (ssize_t i = 0; i < n; i++) if (buf[i] == '\n') buf[i] = '|';
    printf("%s: [%s]\n", op, buf);
}

static void do_ls(const char *op, const char *path) {
    DIR *d = opendir(path);
    if (!d) { result(op, -1); return; }
    printf("%s:", op);
    struct dirent *e;
    while ((e = readdir(d))) if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) printf(" %s", e->d_name);
    printf("\n");
    closedir(d);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        char *op = argv[i], copy[8192];
        snprintf(copy, sizeof copy, "%s", op);
        char *verb = strtok(copy, ":"), *a = strtok(NULL, ":"), *b = strtok(NULL, "");
        if (!verb || (!a && strcmp(verb, "closeall"))) { printf("%s: bad operation\n", op); return 2; }
        errno = 0;
        if (!strcmp(verb, "cd")) result(op, chdir(a));
        else if (!strcmp(verb, "mkdir")) result(op, mkdir(a, 0755));
        else if (!strcmp(verb, "rmdir")) result(op, rmdir(a));
        else if (!strcmp(verb, "symlink") && b) result(op, symlink(a, b));
        else if (!strcmp(verb, "link") && b) result(op, link(a, b));
        else if (!strcmp(verb, "rename") && b) result(op, rename(a, b));
        else if (!strcmp(verb, "unlink")) result(op, unlink(a));
        else if (!strcmp(verb, "readlink")) {
            char buf[4096];
            ssize_t n = readlink(a, buf, sizeof buf - 1);
            if (n < 0) result(op, -1);
            else { buf[n] = 0; printf("%s: [%s]\n", op, buf); }
        }
        else if (!strcmp(verb, "read")) do_read(op, a);
        else if (!strcmp(verb, "write") && b) {
            int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0) result(op, -1);
            else { result(op, write(fd, b, strlen(b))); close(fd); }
        }
        else if (!strcmp(verb, "ls")) do_ls(op, a);
        else if (!strcmp(verb, "open")) {
            int fd = open(a, O_RDONLY);
            if (fd >= 0 && nkept < 70000) kept[nkept++] = fd;
            result(op, fd);
        }
        else if (!strcmp(verb, "openmany") && b) {
            long want = atol(b), got = 0;
            while (got < want && nkept < 70000) {
                int fd = open(a, O_RDONLY);
                if (fd < 0) break;
                kept[nkept++] = fd;
                got++;
            }
            if (got < want) printf("%s: %ld then -1 %s\n", op, got, errname(errno));
            else printf("%s: %ld\n", op, got);
        }
        else if (!strcmp(verb, "sleep")) {
            printf("%s: start\n", op);
            fflush(stdout);
            result(op, sleep((unsigned)atoi(a)));
        }
        else if (!strcmp(verb, "closeall")) {
            for (int k = 0; k < nkept; k++) close(kept[k]);
            printf("%s: %d\n", op, nkept);
            nkept = 0;
        }
        else { printf("%s: bad operation\n", op); return 2; }
    }
    return 0;
}
