"""The seam between wasm_sandbox and wasmtime: engines, the compiled-module cache, the epoch
ticker, guest instances and the translation of wasmtime's failures into our errors.

Only this module and ``_wasi/_bind.py`` import wasmtime.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime

from . import _wasm
from ._errors import InvalidModule
from ._limits import WASM_PAGE, OptimizationLevel
from ._wasi._bind import WASI_MODULE, HostBinding, bind, define_wasi, install_epoch_callback
from ._wasi._preview1 import SYSCALLS

__all__ = [
    "TICK_SECONDS",
    "CompiledModule",
    "EngineHandle",
    "GuestFailure",
    "GuestInstance",
    "default_cache_dir",
    "get_engine",
]

TICK_SECONDS = 0.005  # epoch granularity: the wall-clock limit is checked this often
UNLIMITED_FUEL = 2**63 - 1
WASMTIME_VERSION = getattr(wasmtime, "__version__", "49")
_TABLE_ELEMENTS_CAP = 1_000_000
_INSTANCES_CAP = 16


def default_cache_dir() -> Path:
    """Where compiled modules are kept: ``$WASM_SANDBOX_CACHE_DIR``, else the user cache dir."""
    env = os.environ.get("WASM_SANDBOX_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "wasm-sandbox"


def _cpu_fingerprint() -> str:
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = line
                    break
    except OSError:
        pass
    return f"{platform.machine()}:{hashlib.sha256(flags.encode()).hexdigest()[:16]}"


_CPU = _cpu_fingerprint()


class _Ticker:
    """Advances an engine's epoch every TICK_SECONDS while at least one guest runs."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._active = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def enter(self) -> None:
        with self._cond:
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="wasm-sandbox-epoch", daemon=True
                )
                self._thread.start()
            elif self._active == 1:
                self._cond.notify()

    def leave(self) -> None:
        with self._cond:
            self._active -= 1

    def _run(self) -> None:
        increment = self._engine.increment_epoch
        while True:
            with self._cond:
                while self._active == 0:
                    self._cond.wait()
            time.sleep(TICK_SECONDS)
            increment()


@dataclass(frozen=True, slots=True)
class CompiledModule:
    """A validated, instrumented, compiled module ready to instantiate."""

    module: wasmtime.Module
    pre: wasmtime.InstancePre
    info: _wasm.ModuleInfo
    functions: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]  # export -> (params, results)
    digest: str
    from_cache: bool

    @property
    def initial_memory_bytes(self) -> int:
        """The size of the module's memory before it runs."""
        return self.info.memories[0].min_pages * WASM_PAGE if self.info.memories else 0


class EngineHandle:
    """One wasmtime Engine per configuration, with its linker, ticker and module cache."""

    def __init__(self, opt_level: OptimizationLevel, debug: bool) -> None:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        config.cranelift_opt_level = opt_level.value
        config.debug_info = debug
        config.wasm_threads = False
        config.wasm_memory64 = False
        config.wasm_multi_memory = False
        self.key = f"{opt_level.value}:{int(debug)}"
        self.engine = wasmtime.Engine(config)
        self.linker = wasmtime.Linker(self.engine)
        self._functypes = define_wasi(self.linker)
        self.ticker = _Ticker(self.engine)
        self._modules: dict[str, CompiledModule] = {}
        self._lock = threading.Lock()

    def load(
        self,
        wasm: bytes,
        cache_dir: Path | None,
        progress: Callable[[str, float], None] | None = None,
    ) -> CompiledModule:
        """Validate, instrument and compile ``wasm``, or take it from the memory/disk cache."""
        digest = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            cached = self._modules.get(digest)
        if cached is not None:
            return cached
        info = _parse(wasm)
        _check_imports(info)
        key = hashlib.sha256(
            f"{digest}:{_wasm.INSTRUMENT_VERSION}:{WASMTIME_VERSION}:{self.key}:{_CPU}".encode()
        ).hexdigest()
        path = cache_dir / f"{key}.cwasm" if cache_dir is not None else None
        module = self._deserialize(path) if path is not None else None
        from_cache = module is not None
        if module is None:
            module = self._compile(wasm, progress)
            if path is not None:
                _store_artifact(path, module)
        compiled = self._finish(module, info, digest, from_cache)
        with self._lock:
            self._modules[digest] = compiled
        return compiled

    def _deserialize(self, path: Path) -> wasmtime.Module | None:
        if not path.is_file():
            return None
        try:
            return wasmtime.Module.deserialize_file(self.engine, str(path))
        except wasmtime.WasmtimeError:
            path.unlink(missing_ok=True)  # stale or foreign artifact: compile afresh
            return None

    def _compile(self, wasm: bytes, progress: Callable[[str, float], None] | None) -> wasmtime.Module:
        try:
            instrumented = _wasm.instrument(wasm)
        except _wasm.WasmFormatError as exc:
            raise InvalidModule(f"Invalid module: {exc}") from None
        started = time.monotonic()
        done = threading.Event()
        if progress is not None:
            _start_progress(progress, done, started)
        try:
            return wasmtime.Module(self.engine, instrumented)
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(f"Invalid module: {_first_line(exc)}") from None
        finally:
            done.set()
            if progress is not None:
                progress("compiled", time.monotonic() - started)

    def _finish(
        self, module: wasmtime.Module, info: _wasm.ModuleInfo, digest: str, from_cache: bool
    ) -> CompiledModule:
        try:
            pre = self.linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(f"Invalid module: cannot link it: {_first_line(exc)}") from None
        functions = {}
        for export in module.exports:
            ty = export.type
            if isinstance(ty, wasmtime.FuncType):
                functions[export.name] = (
                    tuple(str(p) for p in ty.params),
                    tuple(str(r) for r in ty.results),
                )
        return CompiledModule(module, pre, info, functions, digest, from_cache)


def _parse(wasm: bytes) -> _wasm.ModuleInfo:
    try:
        return _wasm.parse_module_info(wasm)
    except _wasm.WasmFormatError as exc:
        raise InvalidModule(f"Invalid module: {exc}") from None


def _check_imports(info: _wasm.ModuleInfo) -> None:
    missing = [
        f"{mod}.{name} ({kind})"
        for mod, name, kind in info.imports
        if mod != WASI_MODULE or name not in SYSCALLS or kind != "func"
    ]
    if missing:
        raise InvalidModule(
            "Invalid module: it imports what the sandbox does not provide: "
            + ", ".join(missing[:10])
            + (" ..." if len(missing) > 10 else "")
            + f" (only {WASI_MODULE} functions are available)"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _start_progress(
    progress: Callable[[str, float], None], done: threading.Event, started: float
) -> None:
    def report() -> None:
        while not done.wait(0.25):
            try:
                progress("compiling", time.monotonic() - started)
            except Exception:  # a broken progress callback must not break the compile
                return

    threading.Thread(target=report, name="wasm-sandbox-progress", daemon=True).start()


def _store_artifact(path: Path, module: wasmtime.Module) -> None:
    """Write a compiled artifact atomically; a cache that cannot be written is only skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = module.serialize()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".cwasm")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        print(f"wasm-sandbox: not caching compiled module in {path.parent}: {exc}", file=sys.stderr)


_ENGINES: dict[tuple[OptimizationLevel, bool], EngineHandle] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(opt_level: OptimizationLevel, debug: bool) -> EngineHandle:
    """The shared engine for this configuration (created on first use)."""
    key = (opt_level, debug)
    with _ENGINES_LOCK:
        handle = _ENGINES.get(key)
        if handle is None:
            handle = _ENGINES[key] = EngineHandle(opt_level, debug)
        return handle


class GuestFailure(Exception):  # noqa: N818 - carries wasmtime's verdict to _execution
    """A guest call that did not return normally; ``trap_code`` is None for non-trap errors."""

    def __init__(self, message: str, trap_code: str | None, backtrace: str) -> None:
        super().__init__(message)
        self.trap_code = trap_code
        self.backtrace = backtrace


def _failure(exc: wasmtime.Trap | wasmtime.WasmtimeError) -> GuestFailure:
    text = str(exc)
    code = None
    if isinstance(exc, wasmtime.Trap) and exc.trap_code is not None:
        code = exc.trap_code.name.lower()
    return GuestFailure(_first_line(exc), code, text)


class GuestInstance:
    """A store and an instance of a compiled module, with its limits. One thread at a time."""

    def __init__(
        self,
        handle: EngineHandle,
        compiled: CompiledModule,
        binding: HostBinding,
        memory_bytes: int | None,
        growth_bytes: int | None,
    ) -> None:
        self.handle = handle
        self.compiled = compiled
        self.binding = binding
        store = wasmtime.Store(handle.engine)
        store.set_limits(
            memory_size=memory_bytes if memory_bytes is not None else -1,
            table_elements=_TABLE_ELEMENTS_CAP,
            instances=_INSTANCES_CAP,
            tables=_INSTANCES_CAP,
            memories=1,
        )
        install_epoch_callback(store)
        self.store = store
        self._funcs: dict[str, wasmtime.Func] = {}
        with bind(binding):
            try:
                self.instance = compiled.pre.instantiate(store)
            except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                raise _failure(exc) from None
        exports = self.instance.exports(store)
        memory = exports.get("memory")
        self.memory = memory if isinstance(memory, wasmtime.Memory) else None
        if self.memory is not None:
            binding.memory_address = ctypes.addressof(self.memory._memory)
        self._globals = {
            name: exports.get(name)
            for name in (
                _wasm.GROW_MAX_PAGES_EXPORT,
                _wasm.MEM_MAX_PAGES_EXPORT,
                _wasm.DENIED_KIND_EXPORT,
                _wasm.DENIED_PAGES_EXPORT,
                _wasm.DENIED_DELTA_EXPORT,
            )
        }
        if growth_bytes is not None:
            self._set_global(_wasm.GROW_MAX_PAGES_EXPORT, growth_bytes // WASM_PAGE)
        if memory_bytes is not None:
            self._set_global(_wasm.MEM_MAX_PAGES_EXPORT, memory_bytes // WASM_PAGE)

    def _set_global(self, name: str, value: int) -> None:
        glob = self._globals.get(name)
        if isinstance(glob, wasmtime.Global):
            glob.set_value(self.store, value)

    def _get_global(self, name: str) -> int:
        glob = self._globals.get(name)
        if isinstance(glob, wasmtime.Global):
            value = glob.value(self.store)
            return int(value) if isinstance(value, int) else 0
        return 0

    def function(self, name: str) -> wasmtime.Func | None:
        """The exported function ``name``, or None."""
        func = self._funcs.get(name)
        if func is None:
            export = self.instance.exports(self.store).get(name)
            if not isinstance(export, wasmtime.Func):
                return None
            func = self._funcs[name] = export
        return func

    def invoke(self, name: str, args: tuple[Any, ...], fuel: int | None) -> Any:
        """Call export ``name`` (with a fresh ``fuel`` budget unless None); raises
        GuestFailure if it does not return."""
        func = self.function(name)
        if func is None:
            raise KeyError(name)
        store = self.store
        if fuel is not None:
            store.set_fuel(fuel)
        store.set_epoch_deadline(1)
        ticker = self.handle.ticker
        ticker.enter()
        try:
            with bind(self.binding):
                return func(store, *args)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise _failure(exc) from None
        finally:
            ticker.leave()

    def fuel_left(self) -> int:
        """Fuel remaining in the store."""
        return self.store.get_fuel()

    def memory_bytes(self) -> int:
        """Current (and, since memory never shrinks, peak) linear-memory size in bytes."""
        return self.memory.data_len(self.store) if self.memory is not None else 0

    def memory_denial(self) -> tuple[int, int, int] | None:
        """(kind, attempted total pages, requested pages) of the first refused memory.grow."""
        kind = self._get_global(_wasm.DENIED_KIND_EXPORT)
        if kind == 0:
            return None
        pages = self._get_global(_wasm.DENIED_PAGES_EXPORT)
        delta = self._get_global(_wasm.DENIED_DELTA_EXPORT)
        return kind, pages, delta

    def close(self) -> None:
        """Release the store now rather than at garbage collection."""
        self._funcs.clear()
        self.store.close()


def wat_to_wasm(text: str | bytes) -> bytes:
    """Assemble WebAssembly text; a syntax error is an InvalidModule naming the line."""
    try:
        return bytes(wasmtime.wat2wasm(text))
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(f"Invalid module: WAT text does not assemble: {str(exc).strip()}") from None
