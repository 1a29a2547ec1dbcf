/* wasm_sandbox.h - the C guest side of wasm_sandbox's data ABI, in one header.
 *
 * Provides the `alloc` / `dealloc` exports, the WASM_SANDBOX_EXPORT(name, impl) macro that
 * turns a C function into a data function the host can call, error reporting, and a small
 * builder that writes JSON output safely (escaping, UTF-8 repair, numbers, commas).
 * Parsing JSON is out of scope: `impl` receives the raw JSON text of the arguments array.
 *
 * Just include it: no IMPLEMENTATION macro is needed. The helpers are `static`; the exports and
 * the error state are weak (hidden) symbols, so a program of several .c files may include it
 * in each of them and still gets one `alloc`, one `dealloc` and one error state.
 * Builds with clang-14 --target=wasm32-wasi (C99 or later, or C++), clean under -Wall -Wextra.
 *
 *   #include "wasm_sandbox.h"
 *
 *   static char *describe(const char *args, size_t len, const char **error_type) {
 *       (void)error_type;
 *       if (len < 2 || args[0] != '[') return wsbx_error("InvalidInput", "expected an array");
 *       wsbx_builder b;
 *       wsbx_builder_init(&b);
 *       wsbx_json_begin_object(&b);
 *       wsbx_json_key(&b, "bytes");  wsbx_json_int(&b, (long long)len);
 *       wsbx_json_key(&b, "args");   wsbx_json_raw(&b, args);      // echo them back
 *       wsbx_json_key(&b, "note");   wsbx_json_string(&b, "tab\t\"quoted\" é");
 *       wsbx_json_end_object(&b);
 *       return wsbx_builder_finish(&b);              // malloc'd JSON text of the VALUE
 *   }
 *   WASM_SANDBOX_EXPORT(process_data, describe)
 *
 * THE ABI. A data function has the wasm signature (i32 ptr, i32 len) -> i64. The host calls
 * `alloc(len)`, writes the UTF-8 JSON array of the call's positional arguments there (bytes
 * arguments as {"$bytes": "<base64>"}) and calls the function, which returns
 * (out_ptr << 32) | out_len of an `alloc`ed UTF-8 JSON envelope: {"ok": <value>} or
 * {"error": {"type": "<TypeName>", "message": "<text>"}}. The host frees both with `dealloc`.
 *
 * WASM_SANDBOX_EXPORT(name, impl) defines the wasm export `name` (its C symbol is
 * wsbx_export_<name>, so `impl` may not be called `name`; make `impl` static so that it is not
 * exported itself). `impl` has the signature
 *
 *     char *impl(const char *args_json, size_t args_len, const char **error_type);
 *
 *   - args_json is a NUL-terminated copy of the input (args_len bytes without the NUL), the
 *     JSON array of ALL the arguments, e.g. `[{"rows": [1, 2]}, "x", 3]`. Not validated.
 *   - On success return a malloc'd NUL-terminated JSON text of the result value (the wrapper
 *     sends {"ok": <text>} verbatim and free()s it): wsbx_builder_finish() or wsbx_result().
 *   - On failure return NULL. `return wsbx_error("ValueError", "n must be positive");` (or
 *     wsbx_errorf with a printf format) sets the error's type and message; the message is
 *     escaped (and invalid UTF-8 replaced). Setting `*error_type = "SomeType"` and returning
 *     NULL also works (an empty message). NULL with neither gives type "GuestError".
 *   - A trap (e.g. __builtin_trap(), abort(), a bad pointer) aborts the instance: the host
 *     reports a trap, not an error.
 *
 * OUT OF MEMORY. `alloc` returns 0 when malloc fails. A builder that cannot grow stops
 * writing and wsbx_builder_finish() returns NULL with a "MemoryError" error recorded. If even
 * the envelope cannot be allocated, the wrapper traps (`unreachable`).
 *
 * HOST FUNCTIONS. wsbx_host_call("name", "[1, 2]", &len) calls a function the host
 * registered (SandboxBuilder.host_function): its answer is the same envelope, as text.
 *
 * THE BUILDER. It inserts the commas: call the value functions in document order, a key
 * before each member of an object. wsbx_json_number prints NaN and infinities as null,
 * integral values below 2^53 without a fraction, -0 as -0.0 and other values in the shortest
 * form that reads back exactly.
 */
#ifndef WASM_SANDBOX_H
#define WASM_SANDBOX_H

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WSBX_API static __attribute__((unused))
#define WSBX_SHARED __attribute__((weak, visibility("hidden")))

/* A growable JSON text. Zero-initialised (or wsbx_builder_init) it is empty. */
typedef struct wsbx_builder {
    char *data;     /* NUL-terminated once anything was written */
    size_t len;     /* bytes written, without the NUL */
    size_t cap;     /* bytes allocated */
    int need_comma; /* a value was just completed: the next one needs a ',' first */
    int failed;     /* an allocation failed: the text is incomplete */
} wsbx_builder;

typedef char *(*wsbx_impl)(const char *args_json, size_t args_len, const char **error_type);

/* ---- the data ABI's exports ---- */

/* `size` fresh bytes (a unique non-zero pointer for size 0); 0 when out of memory. */
__attribute__((weak, export_name("alloc"))) int32_t wsbx_alloc(int32_t size) {
    size_t n = (size_t)(uint32_t)size;
    return (int32_t)(uintptr_t)malloc(n ? n : 1);
}

/* Frees what `alloc` returned (`size` is not needed by free()). */
__attribute__((weak, export_name("dealloc"))) void wsbx_dealloc(int32_t ptr, int32_t size) {
    (void)size;
    free((void *)(uintptr_t)(uint32_t)ptr);
}

/* ---- errors ---- */

/* The error the current call reports (one per module, shared by every file including this). */
WSBX_SHARED char *wsbx__error_type = NULL;
WSBX_SHARED char *wsbx__error_message = NULL;

WSBX_API char *wsbx__strdup(const char *s) {
    size_t n = strlen(s);
    char *copy = (char *)malloc(n + 1);
    if (copy) memcpy(copy, s, n + 1);
    return copy;
}

WSBX_API void wsbx__clear_error(void) {
    free(wsbx__error_type);
    free(wsbx__error_message);
    wsbx__error_type = NULL;
    wsbx__error_message = NULL;
}

/* Records the error the call reports ({"type": type, "message": message}, both copied; NULL
 * type means "GuestError") and returns NULL, for `return wsbx_error("ValueError", "...");` */
WSBX_API char *wsbx_error(const char *type, const char *message) {
    wsbx__clear_error();
    wsbx__error_type = wsbx__strdup(type ? type : "GuestError");
    wsbx__error_message = wsbx__strdup(message ? message : "");
    return NULL;
}

/* wsbx_error with a printf-style message. */
__attribute__((format(printf, 2, 3))) WSBX_API char *wsbx_errorf(const char *type,
                                                                  const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(NULL, 0, format, ap);
    va_end(ap);
    char *message = n >= 0 ? (char *)malloc((size_t)n + 1) : NULL;
    if (message == NULL) return wsbx_error(type, format);
    va_start(ap, format);
    vsnprintf(message, (size_t)n + 1, format, ap);
    va_end(ap);
    wsbx_error(type, message);
    free(message);
    return NULL;
}

/* ---- the builder ---- */

WSBX_API void wsbx_builder_init(wsbx_builder *b) {
    b->data = NULL;
    b->len = b->cap = 0;
    b->need_comma = b->failed = 0;
}

WSBX_API void wsbx_builder_free(wsbx_builder *b) {
    free(b->data);
    wsbx_builder_init(b);
}

/* The text written (malloc'd, NUL-terminated; the caller frees it, or returns it from an
 * impl); the builder is empty again. NULL, with a "MemoryError" recorded, if an allocation
 * failed on the way. */
WSBX_API char *wsbx_builder_finish(wsbx_builder *b) {
    char *text;
    if (b->failed) {
        wsbx_builder_free(b);
        return wsbx_error("MemoryError", "out of memory while building the result");
    }
    text = b->data ? b->data : wsbx__strdup("");
    if (text == NULL) return wsbx_error("MemoryError", "out of memory");
    wsbx_builder_init(b);
    return text;
}

WSBX_API int wsbx__reserve(wsbx_builder *b, size_t extra) {
    size_t need, cap;
    char *data;
    if (b->failed) return 0;
    if (extra >= SIZE_MAX - b->len) {
        b->failed = 1;
        return 0;
    }
    need = b->len + extra + 1; /* + the NUL */
    if (need <= b->cap) return 1;
    cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    data = (char *)realloc(b->data, cap);
    if (data == NULL) {
        b->failed = 1;
        return 0;
    }
    b->data = data;
    b->cap = cap;
    return 1;
}

WSBX_API void wsbx__append(wsbx_builder *b, const char *text, size_t n) {
    if (!wsbx__reserve(b, n)) return;
    memcpy(b->data + b->len, text, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* Before a value: the ',' that separates it from the previous one. */
WSBX_API void wsbx__value(wsbx_builder *b) {
    if (b->need_comma) wsbx__append(b, ",", 1);
    b->need_comma = 0;
}

/* Appends a complete JSON value written by the caller, verbatim (not checked). */
WSBX_API void wsbx_json_raw_n(wsbx_builder *b, const char *json, size_t n) {
    wsbx__value(b);
    wsbx__append(b, json, n);
    b->need_comma = 1;
}

WSBX_API void wsbx_json_raw(wsbx_builder *b, const char *json) {
    wsbx_json_raw_n(b, json, strlen(json));
}

WSBX_API void wsbx_json_null(wsbx_builder *b) { wsbx_json_raw_n(b, "null", 4); }

WSBX_API void wsbx_json_bool(wsbx_builder *b, int value) {
    if (value)
        wsbx_json_raw_n(b, "true", 4);
    else
        wsbx_json_raw_n(b, "false", 5);
}

WSBX_API void wsbx_json_int(wsbx_builder *b, long long value) {
    char text[32];
    int n = snprintf(text, sizeof text, "%lld", value);
    wsbx_json_raw_n(b, text, (size_t)n);
}

WSBX_API void wsbx_json_number(wsbx_builder *b, double x) {
    char text[40];
    int n, precision;
    if (!isfinite(x)) {
        wsbx_json_raw_n(b, "null", 4);
        return;
    }
    if (x == 0.0 && signbit(x)) {
        wsbx_json_raw_n(b, "-0.0", 4);
        return;
    }
    if (x == trunc(x) && fabs(x) < 9007199254740992.0) {
        wsbx_json_int(b, (long long)x);
        return;
    }
    n = 0;
    for (precision = 15; precision <= 17; precision++) {
        n = snprintf(text, sizeof text, "%.*g", precision, x);
        if (strtod(text, NULL) == x) break;
    }
    if (strpbrk(text, ".e") == NULL && n + 2 < (int)sizeof text) {
        memcpy(text + n, ".0", 3); /* an integral value beyond 2^53 stays a float */
        n += 2;
    }
    wsbx_json_raw_n(b, text, (size_t)n);
}

/* The length of the valid UTF-8 sequence at s (at most n bytes long), 0 if invalid. */
WSBX_API size_t wsbx__utf8_sequence(const unsigned char *s, size_t n) {
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t len, i;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    if (len > n) return 0;
    if (c == 0xE0) lo = 0xA0;      /* overlong */
    else if (c == 0xED) hi = 0x9F; /* surrogates */
    else if (c == 0xF0) lo = 0x90; /* overlong */
    else if (c == 0xF4) hi = 0x8F; /* beyond U+10FFFF */
    if (s[1] < lo || s[1] > hi) return 0;
    for (i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

/* Appends n bytes of text as a JSON string: quotes, backslashes and control characters
 * escaped, NUL bytes as \u0000, each byte of invalid UTF-8 replaced by U+FFFD. */
WSBX_API void wsbx_json_string_n(wsbx_builder *b, const char *text, size_t n) {
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, start = 0, seq;
    char escape[8];
    wsbx__value(b);
    wsbx__reserve(b, n + 2);
    wsbx__append(b, "\"", 1);
    while (i < n) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0x80 && (seq = wsbx__utf8_sequence(s + i, n - i)) != 0) {
            i += seq;
            continue;
        }
        wsbx__append(b, text + start, i - start);
        switch (c) {
            case '"': wsbx__append(b, "\\\"", 2); break;
            case '\\': wsbx__append(b, "\\\\", 2); break;
            case '\n': wsbx__append(b, "\\n", 2); break;
            case '\r': wsbx__append(b, "\\r", 2); break;
            case '\t': wsbx__append(b, "\\t", 2); break;
            case '\b': wsbx__append(b, "\\b", 2); break;
            case '\f': wsbx__append(b, "\\f", 2); break;
            default:
                if (c < 0x20) {
                    snprintf(escape, sizeof escape, "\\u%04x", c);
                    wsbx__append(b, escape, 6);
                } else {
                    wsbx__append(b, "\\ufffd", 6); /* a byte of invalid UTF-8 */
                }
        }
        i++;
        start = i;
    }
    wsbx__append(b, text + start, n - start);
    wsbx__append(b, "\"", 1);
    b->need_comma = 1;
}

WSBX_API void wsbx_json_string(wsbx_builder *b, const char *text) {
    wsbx_json_string_n(b, text, strlen(text));
}

WSBX_API void wsbx_json_begin_array(wsbx_builder *b) {
    wsbx__value(b);
    wsbx__append(b, "[", 1);
}

WSBX_API void wsbx_json_end_array(wsbx_builder *b) {
    wsbx__append(b, "]", 1);
    b->need_comma = 1;
}

WSBX_API void wsbx_json_begin_object(wsbx_builder *b) {
    wsbx__value(b);
    wsbx__append(b, "{", 1);
}

WSBX_API void wsbx_json_end_object(wsbx_builder *b) {
    wsbx__append(b, "}", 1);
    b->need_comma = 1;
}

/* The key of the next object member (escaped like wsbx_json_string). */
WSBX_API void wsbx_json_key(wsbx_builder *b, const char *key) {
    wsbx_json_string(b, key);
    wsbx__append(b, ":", 1);
    b->need_comma = 0;
}

/* A malloc'd copy of a JSON text, to return from an impl: `return wsbx_result("null");` */
WSBX_API char *wsbx_result(const char *json) {
    char *copy = wsbx__strdup(json);
    return copy ? copy : wsbx_error("MemoryError", "out of memory");
}

/* ---- the wrapper behind WASM_SANDBOX_EXPORT ---- */

WSBX_API int64_t wsbx__call(int32_t ptr, int32_t len, wsbx_impl impl) {
    size_t n = (size_t)(uint32_t)len;
    const char *error_type = NULL;
    char *args, *result;
    wsbx_builder out;
    args = (char *)malloc(n + 1);
    if (args == NULL) __builtin_trap();
    if (n) memcpy(args, (const char *)(uintptr_t)(uint32_t)ptr, n);
    args[n] = '\0';
    wsbx__clear_error();
    result = impl(args, n, &error_type);
    free(args);
    wsbx_builder_init(&out);
    if (result != NULL) {
        wsbx__append(&out, "{\"ok\":", 6);
        wsbx__append(&out, result, strlen(result));
        wsbx__append(&out, "}", 1);
        free(result);
    } else {
        const char *type = wsbx__error_type ? wsbx__error_type
                           : error_type     ? error_type
                                            : "GuestError";
        const char *message = wsbx__error_message ? wsbx__error_message
                              : error_type        ? ""
                                                  : "the function returned NULL";
        wsbx__append(&out, "{\"error\":{\"type\":", 17);
        wsbx_json_string(&out, type);
        wsbx__append(&out, ",\"message\":", 11);
        out.need_comma = 0;
        wsbx_json_string(&out, message);
        wsbx__append(&out, "}}", 2);
    }
    wsbx__clear_error();
    if (out.failed || out.data == NULL) __builtin_trap();
    /* out.data is malloc'd, as `alloc` would: the host's dealloc(out_ptr, out_len) frees it */
    return (int64_t)(((uint64_t)(uint32_t)(uintptr_t)out.data << 32) | (uint32_t)out.len);
}

/* ---- host functions (SandboxBuilder.host_function) ---- */

/* The host's import: the UTF-8 JSON request {"host": "<name>", "args": [...]} at (ptr, len)
 * in, (answer_ptr << 32) | answer_len out, the answer placed with this module's `alloc`
 * (the caller frees it); 0 when it could not be placed. Call it through wsbx_host_call. */
__attribute__((import_module("wasm_sandbox_host"), import_name("call"))) int64_t
wsbx__host_import(int32_t ptr, int32_t len);

/* Calls the host function `name` with `args_json`, the JSON array of its positional
 * arguments (NULL: none), e.g. wsbx_host_call("lookup", "[\"paris\", 3]", &n). Returns the
 * malloc'd, NUL-terminated answer envelope (*answer_len bytes without the NUL; free() it):
 * {"ok": <value>} or {"error": {"type": "<TypeName>", "message": "<text>"}} when the function
 * raised, timed out ("TimeoutError") or does not exist ("NameError"). NULL (and a
 * "MemoryError" recorded, see wsbx_error) when memory ran out. The call counts against the
 * sandbox's max_host_calls and deadline: past either the host ends the execution. */
WSBX_API char *wsbx_host_call(const char *name, const char *args_json, size_t *answer_len) {
    wsbx_builder b;
    wsbx_builder_init(&b);
    wsbx_json_begin_object(&b);
    wsbx_json_key(&b, "host");
    wsbx_json_string(&b, name);
    wsbx_json_key(&b, "args");
    wsbx_json_raw(&b, args_json != NULL ? args_json : "[]");
    wsbx_json_end_object(&b);
    char *request = wsbx_builder_finish(&b);
    if (request == NULL) return NULL;
    int64_t packed = wsbx__host_import((int32_t)(uintptr_t)request, (int32_t)strlen(request));
    free(request);
    char *answer = (char *)(uintptr_t)(uint32_t)((uint64_t)packed >> 32);
    size_t n = (size_t)(uint32_t)packed;
    char *text = answer != NULL ? (char *)realloc(answer, n + 1) : NULL;
    if (text == NULL) {
        free(answer);
        wsbx_error("MemoryError", "no memory for the host function's answer");
        return NULL;
    }
    text[n] = '\0';
    if (answer_len != NULL) *answer_len = n;
    return text;
}

/* Exports `impl` (see the top of this file) as the data function `name`. */
#define WASM_SANDBOX_EXPORT(name, impl)                                                         \
    __attribute__((export_name(#name))) int64_t wsbx_export_##name(int32_t ptr, int32_t len); \
    __attribute__((export_name(#name))) int64_t wsbx_export_##name(int32_t ptr, int32_t len) { \
        return wsbx__call(ptr, len, impl);                                                      \
    }

#ifdef __cplusplus
}
#endif

#endif /* WASM_SANDBOX_H */
