/* net_tls: a C guest using the shipped wasm_sandbox_net.h.
 *   net_tls tls|tcp HOST PORT PATH   GET PATH over TLS (or plain TCP); prints the body, or
 *                                    "errno NAME" when the connection fails. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "errname.h"
#include "wasm_sandbox_net.h"

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: net_tls tls|tcp HOST PORT PATH\n");
        return 2;
    }
    int port = atoi(argv[3]);
    int fd = strcmp(argv[1], "tls") == 0 ? wsbx_tls_connect(argv[2], port)
                                          : wsbx_tcp_connect(argv[2], port);
    if (fd < 0) {
        printf("errno %s\n", errname(errno));
        return 1;
    }
    char request[512];
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n", argv[4], argv[2]);
    if (write(fd, request, (size_t)n) != n) {
        printf("write errno %s\n", errname(errno));
        return 1;
    }
    static char response[65536];
    size_t total = 0;
    ssize_t got;
    while ((got = read(fd, response + total, sizeof response - 1 - total)) > 0) total += (size_t)got;
    response[total] = '\0';
    close(fd);
    char *body = strstr(response, "\r\n\r\n");
    printf("%s\n", body ? body + 4 : response);
    return 0;
}
