/* Drives the network layer: argv[1] picks what to do with connections to argv[2]:argv[3],
 * each opened through the host's wasm_sandbox.tcp_connect and then used with ordinary
 * read/write/recv/send/shutdown/poll/close. Failures print the errno's name.
 *
 *   connect HOST PORT              "ok" or "errno NAME"
 *   echo HOST PORT MSG             write MSG, read it back: "echo: MSG"
 *   sendrecv HOST PORT MSG         send MSG, shutdown(SHUT_WR), recv to EOF: "recv: MSG"
 *   upload HOST PORT N [CHUNK [IO]] write N bytes in CHUNK-byte writes (IO: write, send or
 *                                  writev of two halves): "sent K[ then errno NAME]"
 *   download HOST PORT N [IO]      read up to N bytes in 4096-byte reads (IO: read, recv or
 *                                  readv of two halves): "received K[ then errno NAME| then eof]"
 *   read HOST PORT                 one read: "read R[ errno NAME] after MS ms"
 *   multi HOST PORT N              hold N connections open (never closed: the host must):
 *                                  "opened K[ then errno NAME]"
 *   burst HOST PORT N              connect and close N times: "connected K[ then errno NAME]"
 *   many HOST PORT N MSG           N rounds of connect, echo MSG, close: "done N"
 *   http HOST PORT PATH            GET PATH: "status CODE body BODY"
 *   poll HOST PORT MS [MSG]        poll POLLOUT (0 ms), write MSG, poll POLLIN (MS ms; -1 waits
 *                                  for ever): "writable R", "poll R revents FLAGS after T ms",
 *                                  then "read: DATA" when readable
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "errname.h"

__attribute__((import_module("wasm_sandbox"), import_name("tcp_connect")))
int wasm_sandbox_tcp_connect(const char *host, size_t host_len, int port, int *fd_out);

static const char *netname(int e) {
    switch (e) {
    case EAGAIN: return "EAGAIN";
    case ENFILE: return "ENFILE";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case ECONNABORTED: return "ECONNABORTED";
    case EFAULT: return "EFAULT";
    case EPIPE: return "EPIPE";
    case ENOTCONN: return "ENOTCONN";
    case ENOTSOCK: return "ENOTSOCK";
    case ENETUNREACH: return "ENETUNREACH";
    case ENOSYS: return "ENOSYS";
    default: return errname(e);
    }
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A connection's descriptor, or -1 with the WASI errno in *err. */
static int dial(const char *host, int port, int *err) {
    int fd = -1;
    int e = wasm_sandbox_tcp_connect(host, strlen(host), port, &fd);
    if (e != 0) { *err = e; return -1; }
    return fd;
}

static int write_all(int fd, const char *data, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n <= 0) return -1;
        done += (size_t)n;
    }
    return 0;
}

/* Read exactly len bytes (0), EOF first (1) or an error (-1, errno set). */
static int read_exact(int fd, char *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0) return -1;
        if (n == 0) return 1;
        got += (size_t)n;
    }
    return 0;
}

static char big[1 << 16];

/* One write, read, send, recv, writev or readv of len bytes of buf, as `io` names it. */
static ssize_t transfer(const char *io, int fd, char *buf, size_t len) {
    struct iovec iov[2] = {{buf, len / 2}, {buf + len / 2, len - len / 2}};
    if (!strcmp(io, "write")) return write(fd, buf, len);
    if (!strcmp(io, "send")) return send(fd, buf, len, 0);
    if (!strcmp(io, "writev")) return writev(fd, iov, 2);
    if (!strcmp(io, "read")) return read(fd, buf, len);
    if (!strcmp(io, "recv")) return recv(fd, buf, len, 0);
    if (!strcmp(io, "readv")) return readv(fd, iov, 2);
    errno = ENOSYS;
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 4) { printf("usage: net_client MODE HOST PORT ...\n"); return 2; }
    const char *mode = argv[1], *host = argv[2];
    int port = atoi(argv[3]), err = 0;

    if (!strcmp(mode, "connect")) {
        int fd = dial(host, port, &err);
        if (fd < 0) { printf("errno %s\n", netname(err)); return 0; }
        printf("ok\n");
        close(fd);
        return 0;
    }
    if (!strcmp(mode, "echo") || !strcmp(mode, "sendrecv")) {
        const char *msg = argv[4];
        size_t len = strlen(msg);
        int fd = dial(host, port, &err);
        if (fd < 0) { printf("connect: errno %s\n", netname(err)); return 1; }
        if (!strcmp(mode, "echo")) {
            if (write_all(fd, msg, len) != 0) { printf("write: errno %s\n", netname(errno)); return 1; }
            int r = read_exact(fd, big, len);
            if (r < 0) { printf("read: errno %s\n", netname(errno)); return 1; }
            if (r > 0) { printf("read: early eof\n"); return 1; }
            printf("echo: %.*s\n", (int)len, big);
        } else {
            if (send(fd, msg, len, 0) != (ssize_t)len) { printf("send: errno %s\n", netname(errno)); return 1; }
            if (shutdown(fd, SHUT_WR) != 0) { printf("shutdown: errno %s\n", netname(errno)); return 1; }
            size_t got = 0;
            ssize_t n;
            while ((n = recv(fd, big + got, sizeof big - got, 0)) > 0) got += (size_t)n;
            if (n < 0) { printf("recv: errno %s\n", netname(errno)); return 1; }
            printf("recv: %.*s\n", (int)got, big);
        }
        close(fd);
        return 0;
    }
    if (!strcmp(mode, "upload")) {
        long want = atol(argv[4]), done = 0;
        long chunk = argc > 5 ? atol(argv[5]) : 1000;
        const char *io = argc > 6 ? argv[6] : "write";
        if (chunk > (long)sizeof big) chunk = sizeof big;
        memset(big, 'u', sizeof big);
        int fd = dial(host, port, &err);
        if (fd < 0) { printf("connect: errno %s\n", netname(err)); return 1; }
        while (done < want) {
            ssize_t n = transfer(io, fd, big, (size_t)(want - done < chunk ? want - done : chunk));
            if (n < 0) { printf("sent %ld then errno %s\n", done, netname(errno)); close(fd); return 0; }
            if (n == 0) { printf("sent %ld then zero\n", done); close(fd); return 0; }
            done += n;
        }
        printf("sent %ld\n", done);
        close(fd);
        return 0;
    }
    if (!strcmp(mode, "download")) {
        long want = atol(argv[4]), got = 0;
        const char *io = argc > 5 ? argv[5] : "read";
        int fd = dial(host, port, &err);
        if (fd < 0) { printf("connect: errno %s\n", netname(err)); return 1; }
        while (got < want) {
            size_t room = want - got < 4096 ? (size_t)(want - got) : 4096;
            ssize_t n = transfer(io, fd, big, room);
            if (n < 0) { printf("received %ld then errno %s\n", got, netname(errno)); close(fd); return 0; }
            if (n == 0) { printf("received %ld then eof\n", got); close(fd); return 0; }
            got += n;
        }
        printf("received %ld\n", got);
        close(fd);
        return 0;
    }
    if (!strcmp(mode, "read")) {
        int fd = dial(host, port, &err);
        if (fd < 0) { printf("connect: errno %s\n", netname(err)); return 1; }
        long start = now_ms();
        ssize_t n = read(fd, big, 100);
        int e = errno;
        long took = now_ms() - start;
        if (n < 0) printf("read -1 errno %s after %ld ms\n", netname(e), took);
        else printf("read %ld after %ld ms\n", (long)n, took);
        close(fd);
        return 0;
    }
    if (!strcmp(mode, "multi") || !strcmp(mode, "burst")) {
        int n = atoi(argv[4]), opened = 0;
        int hold = !strcmp(mode, "multi");
        for (; opened < n; opened++) {
            int fd = dial(host, port, &err);
            if (fd < 0) {
                printf("%s %d then errno %s\n", hold ? "opened" : "connected", opened, netname(err));
                return 0;
            }
            if (!hold) close(fd);
        }
        printf("%s %d\n", hold ? "opened" : "connected", opened);
        return 0;   /* multi leaves its connections open: ending the execution must close them */
    }
    if (!strcmp(mode, "many")) {
        int rounds = atoi(argv[4]);
        const char *msg = argv[5];
        size_t len = strlen(msg);
        for (int i = 0; i < rounds; i++) {
            int fd = dial(host, port, &err);
            if (fd < 0) { printf("round %d: connect errno %s\n", i, netname(err)); return 1; }
            if (write_all(fd, msg, len) != 0) { printf("round %d: write errno %s\n", i, netname(errno)); return 1; }
            int r = read_exact(fd, big, len);
            if (r != 0 || memcmp(big, msg, len) != 0) { printf("round %d: read %d errno %s\n", i, r, netname(errno)); return 1; }
            if (close(fd) != 0) { printf("round %d: close errno %s\n", i, netname(errno)); return 1; }
        }
        printf("done %d\n", rounds);
        return 0;
    }
    if (!strcmp(mode, "http")) {
        char request[512];
        int len = snprintf(request, sizeof request,
                           "GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n",
                           argv[4], host, port);
        int fd = dial(host, port, &err);
        if (fd < 0) { printf("connect: errno %s\n", netname(err)); return 1; }
        if (write_all(fd, request, (size_t)len) != 0) { printf("write: errno %s\n", netname(errno)); return 1; }
        size_t got = 0;
        ssize_t n;
        while (got < sizeof big - 1 && (n = read(fd, big + got, sizeof big - 1 - got)) > 0) got += (size_t)n;
        big[got] = 0;
        close(fd);
        int status = 0;
        if (sscanf(big, "HTTP/1.%*d %d", &status) != 1) { printf("bad response: %s\n", big); return 1; }
        char *body = strstr(big, "\r\n\r\n");
        printf("status %d body %s\n", status, body ? body + 4 : "");
        return 0;
    }
    if (!strcmp(mode, "poll")) {
        int ms = atoi(argv[4]);
        int fd = dial(host, port, &err);
        if (fd < 0) { printf("connect: errno %s\n", netname(err)); return 1; }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r = poll(&p, 1, 0);
        printf("writable %d%s\n", r, (r == 1 && (p.revents & POLLOUT)) ? " POLLOUT" : "");
        if (argc > 5 && write_all(fd, argv[5], strlen(argv[5])) != 0) {
            printf("write: errno %s\n", netname(errno));
            return 1;
        }
        p.events = POLLIN;
        p.revents = 0;
        long start = now_ms();
        r = poll(&p, 1, ms);
        long took = now_ms() - start;
        if (r < 0) { printf("poll -1 errno %s after %ld ms\n", netname(errno), took); return 0; }
        printf("poll %d revents%s%s%s after %ld ms\n", r, (p.revents & POLLIN) ? " IN" : "",
               (p.revents & POLLHUP) ? " HUP" : "", (p.revents & POLLERR) ? " ERR" : "", took);
        if (p.revents & POLLIN) {
            ssize_t n = read(fd, big, sizeof big);
            if (n < 0) printf("read: errno %s\n", netname(errno));
            else printf("read: %.*s\n", (int)n, big);
        }
        close(fd);
        return 0;
    }
    printf("unknown mode %s\n", mode);
    return 2;
}
