"""The engine seam: engines, the compiled-module cache, the build budget, instances,
the wasm parser and instrumenter, host-function binding and trap handling. With nothing
else importing wasmtime (``tests/test_architecture.py`` holds it so).
"""
