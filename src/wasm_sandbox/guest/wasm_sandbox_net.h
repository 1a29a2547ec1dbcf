/* wasm_sandbox_net.h - outgoing TCP connections for C guests of wasm_sandbox.
 *
 * WASI preview1 cannot open connections, so the host opens them for the guest: it checks the
 * sandbox's network policy (deny by default; the host allows `host:port` patterns) and its
 * limits, resolves the name itself, connects, and hands back an ordinary descriptor that
 * read(), write(), recv(), send(), shutdown(), poll() and close() work on.
 *
 *   #include "wasm_sandbox_net.h"
 *
 *   int fd = wsbx_tcp_connect("127.0.0.1", 8080);
 *   if (fd < 0) { perror("connect"); return 1; }   // errno says why, see below
 *   write(fd, "ping\n", 5);
 *   char buf[64]; ssize_t n = read(fd, buf, sizeof buf);
 *   close(fd);
 *
 *   wsbx_http_response r;                          // or a whole HTTP request
 *   if (wsbx_http_request("GET", "https://api.example.com/v1/items", NULL, NULL, 0, &r) == 0) {
 *       printf("%d %s\n", r.status, r.body);
 *       wsbx_http_response_free(&r);
 *   }
 *
 * Why a connection fails (errno): EACCES refused by the policy (or a plain connection under
 * require_tls); ECONNABORTED the TLS certificate or name did not verify; ENFILE max_connections
 * reached; EAGAIN max_requests_per_second; EMFILE max_open_files; EHOSTUNREACH the name does
 * not resolve; ECONNREFUSED nobody listens; ETIMEDOUT connect_timeout; EINVAL a bad port or
 * host. On the descriptor: EDQUOT once max_upload_bytes / max_download_bytes is used up (a
 * write is first cut to what remains), ETIMEDOUT after network_timeout. The execution's own
 * timeout interrupts any wait.
 *
 * Builds with clang-14 --target=wasm32-wasi; wasi-libc's errno values are WASI's.
 */
#ifndef WASM_SANDBOX_NET_H
#define WASM_SANDBOX_NET_H

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* The raw host import: 0 and the descriptor in *fd_out, or a WASI errno. */
__attribute__((import_module("wasm_sandbox"), import_name("tcp_connect")))
int wasm_sandbox_tcp_connect(const char *host, size_t host_len, int port, int *fd_out);

/* The same, with TLS done by the host (certificate and name verified against the trust store
 * the sandbox's NetworkPolicy names): the guest reads and writes plaintext. */
__attribute__((import_module("wasm_sandbox"), import_name("tls_connect")))
int wasm_sandbox_tls_connect(const char *host, size_t host_len, int port, int *fd_out);

static inline int wsbx__connected(int rc, int fd) {
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    return fd;
}

/* Connect to host:port (a name, an IPv4 address or a bracketed IPv6 address); returns the
 * descriptor, or -1 with errno set. */
static inline int wsbx_tcp_connect(const char *host, int port) {
    int fd = -1;
    return wsbx__connected(wasm_sandbox_tcp_connect(host, strlen(host), port, &fd), fd);
}

/* Connect with TLS (the host verifies the server; ECONNABORTED when it cannot). */
static inline int wsbx_tls_connect(const char *host, int port) {
    int fd = -1;
    return wsbx__connected(wasm_sandbox_tls_connect(host, strlen(host), port, &fd), fd);
}

/* ---- HTTP/1.0 requests over wsbx_tcp_connect / wsbx_tls_connect ------------------------ */

typedef struct {
    int status;          /* 200, 404, ... */
    char *head;          /* the status line and headers, NUL-terminated (malloc'd) */
    char *body;          /* the body, NUL-terminated for convenience (malloc'd) */
    size_t body_len;
} wsbx_http_response;

static inline void wsbx_http_response_free(wsbx_http_response *r) {
    free(r->head);
    free(r->body);
    r->head = r->body = NULL;
}

/* The value of header `name` in a response (case-insensitive), copied into buf; NULL if absent. */
static inline const char *wsbx_http_header(const wsbx_http_response *r, const char *name,
                                           char *buf, size_t cap) {
    size_t n = strlen(name);
    for (const char *line = strstr(r->head, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        const char *p = line + 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            p += n + 1;
            while (*p == ' ') p++;
            size_t len = strcspn(p, "\r\n");
            if (len >= cap) len = cap - 1;
            memcpy(buf, p, len);
            buf[len] = '\0';
            return buf;
        }
    }
    return NULL;
}

/* One request: method ("GET", "POST", ...), an http:// or https:// URL, extra header lines
 * ("Name: value\r\n" each, or NULL) and a body (or NULL, 0). The host's network policy and
 * limits apply to the connection; https is verified by the host. Returns 0 and fills *out
 * (free it with wsbx_http_response_free), or -1 with errno set (EINVAL: a bad URL or an answer
 * that is not HTTP; ENOMEM; or the connection's errno). */
static inline int wsbx_http_request(const char *method, const char *url, const char *headers,
                                    const void *body, size_t body_len, wsbx_http_response *out) {
    int tls;
    const char *rest;
    if (strncmp(url, "http://", 7) == 0) { tls = 0; rest = url + 7; }
    else if (strncmp(url, "https://", 8) == 0) { tls = 1; rest = url + 8; }
    else { errno = EINVAL; return -1; }
    size_t hostport_len = strcspn(rest, "/?#");
    if (hostport_len == 0 || hostport_len >= 300) { errno = EINVAL; return -1; }
    char hostport[300], host[300];
    memcpy(hostport, rest, hostport_len);
    hostport[hostport_len] = '\0';
    const char *path = rest[hostport_len] ? rest + hostport_len : "/";
    int port = tls ? 443 : 80;
    const char *colon = hostport[0] == '[' ? strstr(hostport, "]:") : strrchr(hostport, ':');
    size_t host_len = hostport_len;
    if (colon) {
        if (hostport[0] == '[') colon++;
        port = atoi(colon + 1);
        host_len = (size_t)(colon - hostport);
    }
    memcpy(host, hostport, host_len);
    host[host_len] = '\0';
    int fd = tls ? wsbx_tls_connect(host, port) : wsbx_tcp_connect(host, port);
    if (fd < 0) return -1;
    size_t cap = strlen(method) + strlen(path) + hostport_len + (headers ? strlen(headers) : 0) + 128;
    char *request = (char *)malloc(cap);
    if (!request) { close(fd); errno = ENOMEM; return -1; }
    int n = snprintf(request, cap, "%s %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n%s",
                     method, path, hostport, headers ? headers : "");
    if (body_len) n += snprintf(request + n, cap - (size_t)n, "Content-Length: %zu\r\n", body_len);
    n += snprintf(request + n, cap - (size_t)n, "\r\n");
    int failed = 0;
    for (size_t done = 0; !failed && done < (size_t)n;) {
        ssize_t w = write(fd, request + done, (size_t)n - done);
        if (w <= 0) failed = 1; else done += (size_t)w;
    }
    for (size_t done = 0; !failed && done < body_len;) {
        ssize_t w = write(fd, (const char *)body + done, body_len - done);
        if (w <= 0) failed = 1; else done += (size_t)w;
    }
    free(request);
    size_t size = 0, room = 16384;
    char *data = failed ? NULL : (char *)malloc(room);
    if (!failed && !data) { errno = ENOMEM; failed = 1; }
    while (!failed) {
        if (size + 4096 > room) {
            char *bigger = (char *)realloc(data, room *= 2);
            if (!bigger) { errno = ENOMEM; failed = 1; break; }
            data = bigger;
        }
        ssize_t got = read(fd, data + size, room - size - 1);
        if (got < 0) failed = 1;
        else if (got == 0) break;
        else size += (size_t)got;
    }
    int saved = errno;
    close(fd);
    if (failed) { free(data); errno = saved; return -1; }
    data[size] = '\0';
    char *split = strstr(data, "\r\n\r\n");
    if (!split || strncmp(data, "HTTP/", 5) != 0 || !strchr(data, ' ')) {
        free(data); errno = EINVAL; return -1;
    }
    out->status = atoi(strchr(data, ' ') + 1);
    out->body_len = size - (size_t)(split + 4 - data);
    out->body = (char *)malloc(out->body_len + 1);
    if (!out->body) { free(data); errno = ENOMEM; return -1; }
    memcpy(out->body, split + 4, out->body_len);
    out->body[out->body_len] = '\0';
    split[2] = '\0';
    out->head = data;
    return 0;
}

#endif /* WASM_SANDBOX_NET_H */
