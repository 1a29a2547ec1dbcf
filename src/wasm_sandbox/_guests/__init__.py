"""Guest languages: turning C and Rust sources into WebAssembly modules (``_compile``:
compiled once per machine, cached by source, mode and compiler version), and the script
runtimes, CPython (``_python``, driven by ``_pydriver``; with ``_pydata``, matplotlib's data,
and ``_pypath``, extra packages) and QuickJS (``_javascript``, driven by ``_jsdriver``)."""
