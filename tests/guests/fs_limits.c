/* Drives the file-system limits: argv[1] picks what to do inside the directory argv[2]. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *mode = argv[1], *dir = argv[2];
    char path[512];
    if (!strcmp(mode, "write")) {            /* write argv[3] bytes to dir/big in 1000-byte chunks */
        long want = atol(argv[3]), done = 0;
        snprintf(path, sizeof path, "%s/big", dir);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) { printf("open: errno %d\n", errno); return 1; }
        static char buf[1000];
        memset(buf, 'x', sizeof buf);
        while (done < want) {
            ssize_t n = write(fd, buf, (size_t)(want - done < 1000 ? want - done : 1000));
            if (n <= 0) { printf("wrote %ld then errno %d\n", done, errno); close(fd); return 0; }
            done += n;
        }
        close(fd);
        printf("wrote %ld\n", done);
        return 0;
    }
    if (!strcmp(mode, "files")) {            /* create files until one fails */
        for (int i = 0; i < 10000; i++) {
            snprintf(path, sizeof path, "%s/f%d", dir, i);
            int fd = open(path, O_WRONLY | O_CREAT, 0644);
            if (fd < 0) { printf("opened %d then errno %d\n", i, errno); return 0; }
        }
        printf("opened all\n");
        return 0;
    }
    if (!strcmp(mode, "entries")) {          /* create and close entries until one fails */
        for (int i = 0; i < 10000; i++) {
            snprintf(path, sizeof path, "%s/e%d", dir, i);
            int fd = open(path, O_WRONLY | O_CREAT, 0644);
            if (fd < 0) { printf("created %d then errno %d\n", i, errno); return 0; }
            close(fd);
        }
        printf("created all\n");
        return 0;
    }
    if (!strcmp(mode, "stats")) {            /* stat the directory until it fails */
        struct stat st;
        for (int i = 0; i < 100000; i++) {
            if (stat(dir, &st) != 0) { printf("stat %d then errno %d\n", i, errno); return 0; }
        }
        printf("stat all\n");
        return 0;
    }
    if (!strcmp(mode, "truncate")) {         /* grow a file with ftruncate to argv[3] bytes */
        snprintf(path, sizeof path, "%s/sparse", dir);
        int fd = open(path, O_WRONLY | O_CREAT, 0644);
        int r = ftruncate(fd, atol(argv[3]));
        printf("truncate %d errno %d\n", r, r ? errno : 0);
        return 0;
    }
    if (!strcmp(mode, "smallwrites")) {      /* argv[3] tiny writes, then read back via a new fd */
        int lines = atoi(argv[3]);
        snprintf(path, sizeof path, "%s/lines", dir);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        long total = 0;
        for (int i = 0; i < lines; i++) {
            char line[32];
            int n = snprintf(line, sizeof line, "line %d\n", i);
            if (write(fd, line, (size_t)n) != n) { printf("write failed: errno %d\n", errno); return 1; }
            total += n;
        }
        int rd = open(path, O_RDONLY);
        static char buf[1 << 20];
        long got = 0; ssize_t k;
        while ((k = read(rd, buf, sizeof buf)) > 0) got += k;
        close(rd);
        close(fd);
        printf("wrote %ld read %ld\n", total, got);
        return 0;
    }
    if (!strcmp(mode, "tempfiles")) {        /* open, unlink, write 2000 bytes, close; repeat */
        static char buf[2000];
        int rounds = atoi(argv[3]);
        snprintf(path, sizeof path, "%s/tmpfile", dir);
        for (int i = 0; i < rounds; i++) {
            int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
            unlink(path);
            if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) { printf("round %d: errno %d\n", i, errno); return 1; }
            close(fd);
        }
        printf("rounds %d\n", rounds);
        return 0;
    }
    if (!strcmp(mode, "cat")) {              /* print a file */
        FILE *f = fopen(dir, "r");
        if (!f) { printf("open: errno %d\n", errno); return 1; }
        char buf[4096]; size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
        fclose(f);
        return 0;
    }
    printf("unknown mode\n");
    return 2;
}
