"""The build budget of a sandbox that compiles modules it does not trust: size and function
caps checked by our own parser before anything is compiled, and compiling in a child process
that is killed past a wall-clock limit and cannot allocate past a memory limit.

``_engine`` decides when to use it; the child compiles with ``_compiler`` and its artifact
goes back through a file that the parent moves into the compiled-module cache.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .._errors import BuildLimitExceeded, ConfigurationError, HostError, InvalidModule

__all__ = [
    "DEFAULT_MAX_FUNCTIONS",
    "DEFAULT_MAX_MODULE_SIZE",
    "MIN_BUILD_MEMORY",
    "BuildBudget",
    "artifact_file",
    "child_main",
    "compile_in_child",
]

#: Default ``max_module_size``: far above any module a trusted user builds (the CPython
#: runtime is 100 MB), a bound on what one build holds in memory.
DEFAULT_MAX_MODULE_SIZE = 1 << 30
#: Default ``max_functions``: wasmtime's own limit, so the default refuses nothing new.
DEFAULT_MAX_FUNCTIONS = 1_000_000
#: The smallest ``build_memory_limit``: the compiling process (an interpreter with wasmtime
#: loaded) needs about 60 MiB of address space before it compiles anything, and more for
#: each compiler thread (one per core).
MIN_BUILD_MEMORY = 256 << 20

_EXIT_INVALID = 65  # the child found the module invalid; its message is on stdout
_EXIT_MEMORY = 66  # the child ran out of memory in Python code
_PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)
# The child imports the package as a bare namespace (its __init__ not run) and then only
# what compiling needs: it starts in about a third of the time the whole library takes.
_CHILD_CODE = (
    "import sys, types; package = types.ModuleType('wasm_sandbox'); "
    "package.__path__ = [sys.argv[1]]; sys.modules['wasm_sandbox'] = package; "
    "from wasm_sandbox._runtime._build import child_main; child_main(sys.argv[2:])"
)
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)  # wasm_sandbox/


@dataclass(frozen=True, slots=True)
class BuildBudget:
    """What building one module may cost; None: no cap."""

    max_module_size: int | None = DEFAULT_MAX_MODULE_SIZE
    max_functions: int | None = DEFAULT_MAX_FUNCTIONS
    timeout: float | None = None
    """Seconds the compile may take, starting its process included."""
    memory_bytes: int | None = None
    """Address space of the compiling process."""

    @property
    def in_child(self) -> bool:
        """Whether compiling happens in a child process (a time or memory limit is set)."""
        return self.timeout is not None or self.memory_bytes is not None

    def check_size(self, size: int) -> None:
        """Refuse a module of ``size`` bytes over ``max_module_size``."""
        cap = self.max_module_size
        if cap is not None and size > cap:
            raise BuildLimitExceeded("max_module_size", size, cap)

    def check_functions(self, count: int) -> None:
        """Refuse a module defining ``count`` functions, more than ``max_functions``."""
        cap = self.max_functions
        if cap is not None and count > cap:
            raise BuildLimitExceeded("max_functions", count, cap)


@contextlib.contextmanager
def artifact_file(directory: Path | None) -> Iterator[Path]:
    """A new private file for the child's artifact, in ``directory`` (the cache directory,
    so the finished artifact is moved into place, never copied) or else in a private
    temporary directory. Whatever is still there on exit is removed: a killed compile leaves
    nothing behind."""
    made_dir = None
    fd = -1
    if directory is not None:
        with contextlib.suppress(OSError):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, name = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".partial")
    if fd < 0:
        made_dir = tempfile.mkdtemp(prefix="wasm-sandbox-build-")
        fd, name = tempfile.mkstemp(dir=made_dir, suffix=".partial")
    os.close(fd)
    try:
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)


def compile_in_child(
    wasm: bytes, engine: tuple[str, bool, bool], out: Path, budget: BuildBudget
) -> None:
    """Compile ``wasm`` for an engine configured as ``engine`` (optimisation level, debug
    info, fuel metering) in a child process that writes the artifact to ``out``; the child is
    killed at ``budget.timeout`` and cannot map more than ``budget.memory_bytes``."""
    if not sys.executable:
        raise ConfigurationError(
            "build_timeout and build_memory_limit compile in a child process, which needs a "
            "Python interpreter (sys.executable is empty)"
        )
    opt, debug, metered = engine
    command = [
        sys.executable, "-c", _CHILD_CODE, _PACKAGE_DIR, str(os.getpid()), opt,
        str(int(debug)), str(int(metered)), str(budget.memory_bytes or 0), str(out),
    ]  # fmt: skip
    started = time.monotonic()
    child = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        stdout, stderr = child.communicate(wasm, timeout=budget.timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        spent = time.monotonic() - started
        raise BuildLimitExceeded("build_timeout", spent, budget.timeout or 0.0) from None
    finally:
        if child.poll() is None:  # interrupted (Ctrl-C): never leave a compiler running
            child.kill()
            child.wait()
    _check_child(child.returncode, stdout, stderr, budget)


def _check_child(status: int, stdout: bytes, stderr: bytes, budget: BuildBudget) -> None:
    """Turn how the child ended into nothing (it wrote the artifact) or one error."""
    if status == 0:
        return
    if status == _EXIT_INVALID:
        raise InvalidModule(stdout.decode("utf-8", "replace"))
    memory = budget.memory_bytes
    # Out of address space, the compiler (Rust) aborts: "memory allocation of N bytes failed".
    out_of_memory = status in (_EXIT_MEMORY, -signal.SIGABRT) or b"memory allocation of" in stderr
    if memory is not None and out_of_memory:
        raise BuildLimitExceeded("build_memory_limit", None, memory)
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    raise HostError(
        f"Internal error in the wasm-sandbox host layer: the compiling process ended with "
        f"status {status}: {lines[-1] if lines else 'no message'}"
    )


def child_main(argv: list[str]) -> None:
    """The compiling process: limit its own address space, read the module on stdin,
    compile it and write the serialized artifact to the file named last in ``argv``."""
    parent, opt, debug, metered, memory, out = argv
    _die_with(int(parent))
    if int(memory):
        _limit_address_space(int(memory))
    try:
        wasm = sys.stdin.buffer.read()
        from .._config._limits import OptimizationLevel  # noqa: PLC0415 - the child's only use
        from ._compiler import compile_artifact  # noqa: PLC0415 - the child's only use

        artifact = compile_artifact(
            wasm, OptimizationLevel(opt), debug == "1", metered == "1", int(memory) > 0
        )
        with open(out, "wb") as f:
            f.write(artifact)
    except InvalidModule as exc:
        sys.stdout.write(str(exc))
        sys.stdout.flush()
        os._exit(_EXIT_INVALID)
    except MemoryError:
        os._exit(_EXIT_MEMORY)


def _die_with(parent: int) -> None:
    """Be killed when the building process dies (a compile it can no longer stop must not
    go on, nor finish into its cache)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before we asked
        os._exit(1)


def _limit_address_space(limit: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
