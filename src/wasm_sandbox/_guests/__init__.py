"""Guest languages: turning C and Rust sources into WebAssembly modules (compiled once per
machine, cached by source, flags and compiler version)."""
