/* Preview1 rights, fdflags and trailing slashes through the raw WASI calls, for the
 * differential tests (tests/test_fs_differential.py); found by the WASI conformance suite.
 *
 * Usage: fs_rights DIR   (DIR is the guest mount, e.g. /data)
 * Prints one line per step: "<step>: <result>" or "<step>: errno <n>". */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <wasi/api.h>

static int dir;

static void check(const char *what, __wasi_errno_t e) {
    if (e) printf("%s: errno %d\n", what, e);
    else printf("%s: ok\n", what);
}

static __wasi_fd_t open_at(const char *what, const char *path, __wasi_oflags_t oflags,
                           __wasi_rights_t base, __wasi_fdflags_t fdflags) {
    __wasi_fd_t fd = (__wasi_fd_t)-1;
    __wasi_errno_t e = __wasi_path_open(dir, 0, path, oflags, base, base, fdflags, &fd);
    check(what, e);
    return e ? (__wasi_fd_t)-1 : fd;
}

/* Prints the file type and fdflags, and which of a few telling rights the descriptor has. */
static void show_fdstat(const char *what, __wasi_fd_t fd) {
    __wasi_fdstat_t st;
    __wasi_errno_t e = __wasi_fd_fdstat_get(fd, &st);
    if (e) { check(what, e); return; }
    __wasi_rights_t r = st.fs_rights_base;
    printf("%s: type=%d flags=%d read=%d write=%d seek=%d set_size=%d readdir=%d\n", what,
           st.fs_filetype, st.fs_flags, !!(r & __WASI_RIGHTS_FD_READ),
           !!(r & __WASI_RIGHTS_FD_WRITE), !!(r & __WASI_RIGHTS_FD_SEEK),
           !!(r & __WASI_RIGHTS_FD_FILESTAT_SET_SIZE), !!(r & __WASI_RIGHTS_FD_READDIR));
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    dir = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (dir < 0) { printf("open %s failed\n", argv[1]); return 1; }
    __wasi_fdstat_t root;
    __wasi_fd_fdstat_get(dir, &root);
    const __wasi_rights_t rw = __WASI_RIGHTS_FD_READ | __WASI_RIGHTS_FD_WRITE;

    /* Directories: opened with the rights the parent reports, never for writing. */
    __wasi_fd_t sub = open_at("open sub with the parent's rights", "sub",
                              __WASI_OFLAGS_DIRECTORY, root.fs_rights_base, 0);
    show_fdstat("fdstat sub", sub);
    open_at("open sub O_DIRECTORY read+write", "sub", __WASI_OFLAGS_DIRECTORY, rw, 0);
    open_at("open sub O_DIRECTORY|O_CREAT", "sub",
            __WASI_OFLAGS_DIRECTORY | __WASI_OFLAGS_CREAT, 0, 0);
    show_fdstat("fdstat root", dir);

    /* Files: fdflags reported back; rights only shrink, and read/write follow them. */
    __wasi_fd_t f = open_at("create new.txt APPEND", "new.txt", __WASI_OFLAGS_CREAT,
                            rw | __WASI_RIGHTS_FD_SEEK, __WASI_FDFLAGS_APPEND);
    show_fdstat("fdstat new.txt", f);
    __wasi_fdstat_t st;
    __wasi_fd_fdstat_get(f, &st);
    check("drop read and write",
          __wasi_fd_fdstat_set_rights(f, st.fs_rights_base & ~rw, st.fs_rights_inheriting));
    show_fdstat("fdstat after the drop", f);
    char byte = 'x';
    __wasi_ciovec_t out = {(const uint8_t *)&byte, 1};
    size_t n;
    check("write without the right", __wasi_fd_write(f, &out, 1, &n));
    check("grant read back",
          __wasi_fd_fdstat_set_rights(f, st.fs_rights_base, st.fs_rights_inheriting));
    __wasi_fd_close(f);
    check("unlink new.txt", __wasi_path_unlink_file(dir, "new.txt"));

    /* Trailing slashes. */
    check("symlink to new/", __wasi_path_symlink("x", dir, "new/"));
    check("symlink over sub/", __wasi_path_symlink("x", dir, "sub/"));
    check("symlink over afile/", __wasi_path_symlink("x", dir, "afile/"));
    check("link afile to new/", __wasi_path_link(dir, 0, "afile", dir, "new/"));
    check("unlink afile/", __wasi_path_unlink_file(dir, "afile/"));
    check("unlink sub/", __wasi_path_unlink_file(dir, "sub/"));
    check("unlink sub", __wasi_path_unlink_file(dir, "sub"));
    check("unlink missing/", __wasi_path_unlink_file(dir, "missing/"));
    /* Captured stdio is no terminal: wasi-libc would line-buffer printf on one. */
    printf("isatty: %d %d %d\n", isatty(0), isatty(1), isatty(2));
    printf("done\n");
    return 0;
}
