/* net_http: the shipped HTTP helper of wasm_sandbox_net.h.
 *   net_http METHOD URL [BODY]   prints "STATUS CONTENT-TYPE" then the body, or "errno NAME" */
#include <stdio.h>
#include <string.h>

#include "errname.h"
#include "wasm_sandbox_net.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: net_http METHOD URL [BODY]\n");
        return 2;
    }
    const char *body = argc > 3 ? argv[3] : NULL;
    wsbx_http_response r;
    if (wsbx_http_request(argv[1], argv[2], "Accept: */*\r\n", body, body ? strlen(body) : 0, &r)) {
        printf("errno %s\n", errname(errno));
        return 1;
    }
    char type[64];
    const char *found = wsbx_http_header(&r, "content-type", type, sizeof type);
    printf("%d %s\n%s\n", r.status, found ? found : "-", r.body);
    wsbx_http_response_free(&r);
    return 0;
}
