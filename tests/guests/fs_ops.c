/* A fixed sequence of file operations in argv[1], for the monitoring tests. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char a[256], b[256], d[256], buf[64];
    snprintf(a, sizeof a, "%s/a.txt", argv[1]);
    snprintf(b, sizeof b, "%s/b.txt", argv[1]);
    snprintf(d, sizeof d, "%s/dir", argv[1]);
    int fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(fd, "hello world", 11);
    close(fd);
    fd = open(a, O_RDONLY);
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    rename(a, b);
    mkdir(d, 0755);
    DIR *dir = opendir(argv[1]);
    while (readdir(dir)) {}
    closedir(dir);
    unlink(b);
    rmdir(d);
    printf("done %zd\n", n);
    return 0;
}
