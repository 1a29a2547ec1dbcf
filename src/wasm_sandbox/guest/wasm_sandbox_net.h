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
#include <string.h>

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

#endif /* WASM_SANDBOX_NET_H */
