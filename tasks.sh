#!/usr/bin/env bash
# The project's task file: every command the documentation names.
#   ./tasks.sh demo    install everything, then run an example guest under limits (main job)
#   ./tasks.sh test    install everything, then run the whole test suite
#   ./tasks.sh lint    ruff (check + format), mypy (strict on src/, checked tests/), vulture
#                      (dead code; see [tool.vulture] in pyproject.toml, vulture_allowlist.py)
#   ./tasks.sh bench   the benchmarks (bench/bench_*.py; --quick: short, no peers)
#   ./tasks.sh bench-compare [rev]  the same benchmarks for rev (default 84315e7) and this
#                      working tree, interleaved in one run; flags figures > 5% worse
#                      (bench/compare_revisions.py: --quick, --rounds N, --check)
#   ./tasks.sh soak    the fuzz tests with 20,000 examples (WASM_SANDBOX_FUZZ_EXAMPLES), then
#                      every host-memory attack checked against its bound
#   ./tasks.sh docs    the documentation site: mkdocs build --strict (mkdocs.yml, docs/) into
#                      site/; a broken link, anchor or API reference fails it
#   ./tasks.sh package build the sdist and the wheel, check their LICENSE and metadata, install
#                      the wheel with [python,javascript] in a fresh venv and run a C, a Python
#                      and a JavaScript guest from it (scripts/check_package.py)
#   ./tasks.sh setup   only install: Debian packages (via apt-get), the Python venv, and the
#                      compiled Python and JavaScript runtimes (wasm-sandbox prepare)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
# clang + wasi-libc build the C guests the tests use (Debian's clang-14 targets wasm32-wasi);
# Debian's rustc with the wasm32 standard library builds the Rust guests (/usr/bin/rustc).
APT_PACKAGES="clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 rustc libstd-rust-dev-wasm32 openssl"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "tasks.sh: root (or sudo) is needed to run: $*" >&2; exit 1
    fi
}

setup_system() {
    local missing=""
    for package in $APT_PACKAGES; do
        dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
    done
    if ! "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1; then
        missing="$missing python3-venv"
    fi
    if [ -n "$missing" ]; then
        echo "tasks.sh: installing Debian packages:$missing"
        as_root apt-get update -qq
        # shellcheck disable=SC2086 # one word per package
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    fi
}

setup_python() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"
}

setup_runtimes() {
    # Compile the Python and JavaScript runtimes once, ahead of time, into the user's cache:
    # the first Python sandbox then starts in milliseconds, and no test waits for a compile.
    "$VENV/bin/wasm-sandbox" prepare python javascript
    # zig (wasm-sandbox[c]) builds its own wasi-libc the first time it links (about a minute,
    # then kept in zig's cache): done here, with one C program, so no test waits for it.
    local scratch
    scratch=$(mktemp -d)
    WASM_SANDBOX_C_TOOLCHAIN=zig WASM_SANDBOX_CACHE_DIR="$scratch" "$VENV/bin/python" -c \
        "import wasm_sandbox as ws; ws.WasmSandbox.builder().source('int main(void) { return 0; }').language('c').progress(False).build()"
    rm -rf "$scratch"
}

setup() {
    setup_system
    setup_python
    setup_runtimes
}

task=${1:-}
[ $# -gt 0 ] && shift
case "$task" in
    setup) setup ;;
    demo)
        setup
        "$VENV/bin/wasm-sandbox" run --memory 16MiB --fuel 10M --timeout 5s examples/hello.wat "$@"
        ;;
    test)
        setup
        "$VENV/bin/python" -m pytest "$@"
        ;;
    lint)
        setup_python
        "$VENV/bin/ruff" check src tests bench
        "$VENV/bin/ruff" format --check src tests bench
        "$VENV/bin/mypy"
        "$VENV/bin/mypy" tests
        "$VENV/bin/vulture"  # paths, confidence and allowlist: [tool.vulture] in pyproject.toml
        ;;
    bench)
        setup
        "$VENV/bin/python" bench/bench_core.py "$@"
        "$VENV/bin/python" bench/bench_io.py "$@"
        "$VENV/bin/python" bench/bench_buffering.py "$@"
        "$VENV/bin/python" bench/bench_python.py "$@"
        "$VENV/bin/python" bench/bench_fresh.py "$@"
        "$VENV/bin/python" bench/bench_balancer.py "$@"
        "$VENV/bin/python" bench/bench_build.py "$@"
        "$VENV/bin/python" bench/bench_amplification.py "$@"
        "$VENV/bin/python" bench/bench_descriptors.py "$@"
        "$VENV/bin/python" bench/bench_prepare.py "$@"
        "$VENV/bin/python" bench/bench_preinit.py "$@"
        "$VENV/bin/python" bench/bench_sessions.py "$@"
        "$VENV/bin/python" bench/bench_streaming.py "$@"
        "$VENV/bin/python" bench/bench_host_functions.py "$@"
        "$VENV/bin/python" bench/bench_mcp.py "$@"
        "$VENV/bin/python" bench/bench_agent.py "$@"
        "$VENV/bin/python" bench/bench_c_toolchains.py "$@"
        ;;
    package)
        setup
        "$VENV/bin/python" scripts/check_package.py "$@"
        ;;
    bench-compare)
        setup
        "$VENV/bin/python" bench/compare_revisions.py "$@"
        ;;
    docs)
        setup_python
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[docs]"
        NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict "$@"
        ;;
    soak)
        setup
        WASM_SANDBOX_FUZZ_EXAMPLES=${WASM_SANDBOX_FUZZ_EXAMPLES:-20000} \
            "$VENV/bin/python" -m pytest tests/test_wasi_fuzz.py -q "$@"
        "$VENV/bin/python" bench/bench_amplification.py --check
        ;;
    *)
        sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
