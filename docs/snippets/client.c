/* A C guest of the documentation's Network example: one HTTPS request through the host. */
#include "wasm_sandbox_net.h"

int main(void) {
    wsbx_http_response response;
    if (wsbx_http_request("GET", "https://api.example.com/v1/items", NULL, NULL, 0, &response)) {
        perror("request");
        return 1;
    }
    printf("%d %s\n", response.status, response.body);
    wsbx_http_response_free(&response);
    return 0;
}
