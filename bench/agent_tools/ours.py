"""The agent's "python" tool on wasm-sandbox (README: *Running code: run_python*): numpy and
pandas bundled, a CSV folder mounted read-only at /data, an output folder writable at /out,
10 s and 256 MiB; every outcome (an exception, a limit) is a JSON answer, never a raise."""

from wasm_sandbox import Mount, run_python


def python_tool(code: str) -> dict:
    mounts = [Mount.directory("data", "/data"), Mount.directory("out", "/out", read_only=False)]
    return run_python(code, timeout=10, memory="256MiB", mounts=mounts).to_dict()
