"""Let a C guest read one directory and write scratch files in memory, watching every step."""

import tempfile
from pathlib import Path

from wasm_sandbox import ResourceLimits, WasmSandbox

PROGRAM = r"""
#include <stdio.h>
int main(void) {
    char line[128];
    FILE *in = fopen("/data/input.txt", "r");
    FILE *out = fopen("/tmp/upper.txt", "w");
    while (fgets(line, sizeof line, in))
        for (char *c = line; *c; c++) fputc(*c >= 'a' && *c <= 'z' ? *c - 32 : *c, out);
    fclose(in);
    fclose(out);
    FILE *escape = fopen("/data/../../etc/passwd", "r");   /* refused: outside the mount */
    printf("escape %s\n", escape ? "succeeded?!" : "refused");
    return 0;
}
"""

with tempfile.TemporaryDirectory() as data:
    (Path(data) / "input.txt").write_text("hello from the host\n")
    sandbox = (
        WasmSandbox.builder()
        .source(PROGRAM)
        .language("c")
        .mount_directory(data, "/data")  # read-only
        .memory_fs("/tmp", max_bytes=1024 * 1024)
        .resource_limits(ResourceLimits(max_open_files=8, max_file_size=64 * 1024))
        .io_callback(lambda operation: print("  io:", operation))
        .build()
    )
    result = sandbox.run()
    print(result.stdout.decode(), end="")
    report = result.resource_report
    print("file operations:", report.file_operations, "security events:", report.security_events)
