/* The JSON data ABI written by hand (no helper), to test the host side of data calls. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

__attribute__((export_name("alloc"))) void *alloc(int size) { return malloc(size ? size : 1); }
__attribute__((export_name("dealloc"))) void dealloc(void *ptr, int size) { (void)size; free(ptr); }

static int64_t pack(const char *ptr, int len) {
    return (int64_t)((uint64_t)(uintptr_t)ptr << 32 | (uint32_t)len);
}

static int64_t reply(const char *text) {
    int n = (int)strlen(text);
    char *out = alloc(n);
    memcpy(out, text, (size_t)n);
    return pack(out, n);
}

/* {"ok": <the arguments array>} */
__attribute__((export_name("echo"))) int64_t echo(const char *in, int len) {
    int n = len + 7;
    char *out = alloc(n);
    memcpy(out, "{\"ok\":", 6);
    memcpy(out + 6, in, (size_t)len);
    out[6 + len] = '}';
    return pack(out, n);
}

__attribute__((export_name("fail"))) int64_t fail(const char *in, int len) {
    (void)in; (void)len;
    return reply("{\"error\":{\"type\":\"ValueError\",\"message\":\"bad rows\",\"traceback\":\"at fail()\"}}");
}

__attribute__((export_name("garbage"))) int64_t garbage(const char *in, int len) {
    (void)in; (void)len;
    return reply("{{{ not json");
}

__attribute__((export_name("wild"))) int64_t wild(const char *in, int len) {
    (void)in; (void)len;
    return pack((const char *)0x7ffffff0, 4096);   /* points outside memory */
}

__attribute__((export_name("length"))) int64_t length(const char *in, int len) {
    (void)in;
    char buf[64];
    int n = 0, v = len;
    char digits[16];
    do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    int k = 0;
    memcpy(buf, "{\"ok\":", 6); k = 6;
    while (n) buf[k++] = digits[--n];
    buf[k++] = '}'; buf[k] = 0;
    return reply(buf);
}

__attribute__((export_name("add"))) int add(int a, int b) { return a + b; }
