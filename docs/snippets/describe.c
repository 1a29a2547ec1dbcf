#include "wasm_sandbox.h"                   /* alloc/dealloc, a JSON builder, errors */
static char *describe(const char *args_json, size_t len, const char **error_type) {
    if (len <= 2) return wsbx_error("ValueError", "expected arguments");
    wsbx_builder b; wsbx_builder_init(&b);
    wsbx_json_begin_object(&b); wsbx_json_key(&b, "args"); wsbx_json_raw(&b, args_json);
    wsbx_json_end_object(&b);
    return wsbx_builder_finish(&b);            /* the value; the wrapper sends {"ok": ...} */
}
WASM_SANDBOX_EXPORT(process_data, describe)
