"""The seam between wasm_sandbox and wasmtime: engines, the compiled-module cache, the epoch
ticker, guest instances and the translation of wasmtime's failures into our errors.

Only this module, ``_compiler.py`` (the compile step, shared with the compiling child process
of a build budget), ``_capi.py``, ``_cdecl.py`` (every C function, declared once) and
``_bind.py`` import wasmtime, all in this subpackage (tests/test_architecture.py holds it so).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import hashlib
import json
import logging
import os
import platform
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import wasmtime

from .._config._limits import WASM_PAGE, OptimizationLevel
from .._errors import (
    HostError,
    InvalidModule,
    MemoryLimitExceeded,
    SnapshotError,
    ToolchainNotFound,
)
from .._observe._callbacks import SafeCallback
from .._wasi._fs import FdTable
from .._wasi._hoststate import capture_host, restore_host
from .._wasi._registry import HOST_FUNCTIONS, SYSCALLS
from . import _capi, _wasm
from ._bind import (
    WASI_MODULE,
    HostBinding,
    bind,
    current,
    define_wasi,
    install_epoch_callback,
)
from ._build import BuildBudget, artifact_file, compile_in_child
from ._cache import artifact_lock, write_atomically
from ._compiler import compile_module, engine_config, first_line
from ._image import MemoryImage, image_of
from ._snapshot import PAGE, InstanceState, Resetter, Snapshot, changed_runs, write_runs
from ._traps import remember_trap_handlers

if TYPE_CHECKING:
    from .._config._mounts import Mount
    from .._wasi._context import WasiContext

__all__ = [
    "TICK_SECONDS",
    "CompiledModule",
    "EngineHandle",
    "GuestFailure",
    "GuestInstance",
    "default_cache_dir",
    "get_engine",
]

INITIALIZE_EXPORT = "_initialize"  # a reactor's set-up function (WASI)
CHILD_COMPILE_BYTES = 1 << 20  # a module this large compiles in a child process
_UNBOUNDED = BuildBudget(max_module_size=None, max_functions=None)  # a child, no limits

log = logging.getLogger("wasm_sandbox")

TICK_SECONDS = 0.005  # epoch granularity: the wall-clock limit is checked this often
UNLIMITED_FUEL = 2**63 - 1


def _wasmtime_version() -> str:
    """wasmtime-py's version, part of every cache key: from its package metadata (the module
    has no ``__version__``; a fixed fallback would let one 49.x release try another's
    artifacts)."""
    # The installed distribution's folder names the version (a glob; importlib.metadata
    # costs ~20 ms of import time, paid only when the folder is not there).
    package = Path(wasmtime.__file__).parent
    for info in sorted(package.parent.glob("wasmtime-*.dist-info")):
        return info.name.removeprefix("wasmtime-").removesuffix(".dist-info")
    import importlib.metadata  # noqa: PLC0415 - ~20 ms of import time, rarely needed

    try:
        return importlib.metadata.version("wasmtime")
    except importlib.metadata.PackageNotFoundError:  # not installed as a distribution
        return str(getattr(wasmtime, "__version__", "") or f"unversioned:{package}")


WASMTIME_VERSION = _wasmtime_version()
_TABLE_ELEMENTS_CAP = 1_000_000
_RECENT_MODULES = 16
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
    """Advances an engine's epoch every TICK_SECONDS while guests run, and for a second after
    the last one stops (so back-to-back calls do not wake a sleeping thread each time)."""

    _LINGER = 1.0

    def __init__(self, engine: wasmtime.Engine) -> None:
        self._engine = engine
        self._active = 0
        self._idle_since = 0.0
        self._sleeping = False
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
            elif self._sleeping:
                self._cond.notify()

    def reset_after_fork(self) -> None:
        """In a forked child the ticker thread is gone: start afresh on the next enter()."""
        self._cond = threading.Condition()
        self._thread = None
        self._active = 0
        self._sleeping = False

    def leave(self) -> None:
        with self._cond:
            self._active -= 1
            if self._active == 0:
                self._idle_since = time.monotonic()

    def _run(self) -> None:
        increment = self._engine.increment_epoch
        cond = self._cond
        while True:
            with cond:
                while self._active == 0 and time.monotonic() - self._idle_since > self._LINGER:
                    self._sleeping = True
                    cond.wait()
                self._sleeping = False
            time.sleep(TICK_SECONDS)
            increment()


@dataclass(frozen=True, slots=True, weakref_slot=True)
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


def _drop_template(templates: dict[int, tuple[_capi.Store, int, int]], key: int) -> None:
    """Release a dropped module's template instance."""
    found = templates.pop(key, None)
    if found is not None:
        found[0].close()


class EngineHandle:
    """One wasmtime Engine per configuration, with its linker, ticker and module cache."""

    def __init__(self, opt_level: OptimizationLevel, debug: bool, metered: bool) -> None:
        self.key = f"{opt_level.value}:{int(debug)}:{int(metered)}"
        self.settings = (opt_level.value, debug, metered)
        self.metered = metered
        self.engine = wasmtime.Engine(engine_config(opt_level, debug, metered))
        remember_trap_handlers()  # wasmtime installed its handlers with the first engine
        self.engine_address = _capi.engine_address(self.engine)
        self.linker = wasmtime.Linker(self.engine)
        self._functypes = define_wasi(self.linker)
        self.ticker = _Ticker(self.engine)
        # Compiled modules stay in memory while a sandbox uses them, plus the most recent few,
        # so a service that builds many different guests does not grow without bound.
        self._modules: weakref.WeakValueDictionary[str, CompiledModule] = (
            weakref.WeakValueDictionary()
        )
        self._recent: collections.deque[CompiledModule] = collections.deque(maxlen=_RECENT_MODULES)
        self._lock = threading.Lock()
        self._compile_lock = threading.Lock()
        # Per compiled module, an instance that never runs: its memory is the module's image.
        self._templates: dict[int, tuple[_capi.Store, int, int]] = {}
        self._template_lock = threading.Lock()

    def template_memory(self, compiled: CompiledModule) -> tuple[int, int]:
        """(address, size) of the memory of ``compiled`` as instantiation leaves it: an
        instance that never runs, kept while the module lives (copy-on-write: reading it
        costs no memory of its own)."""
        key = id(compiled)
        with self._template_lock:
            found = self._templates.get(key)
            if found is None:
                store = _capi.Store(self.engine_address, -1, _TABLE_ELEMENTS_CAP, _INSTANCES_CAP)
                instance = _capi.instantiate_pre(compiled.pre, store.context)
                memory = _capi.export_get(store.context, instance, _wasm.MEMORY_EXPORT)
                address, size = (0, 0)
                if memory is not None and _capi.kind_of(memory) == _capi.EXTERN_MEMORY:
                    address, size = _capi.memory_span(store.context, memory)
                found = self._templates[key] = (store, address, size)
                # No lock there: a finalizer runs wherever the module is dropped, perhaps
                # with a lock of ours held (dict.pop is atomic).
                weakref.finalize(compiled, _drop_template, self._templates, key)
            return found[1], found[2]

    def load_file(
        self,
        wasm_path: Path,
        digest: str,
        cache_dir: Path | None,
        progress: Callable[[str, float], None] | None = None,
    ) -> CompiledModule:
        """The module in ``wasm_path`` whose SHA-256 is ``digest`` (a runtime's, as its package
        recorded it): from memory, else from a prepared artifact and its recorded module info
        without reading or hashing the module (the artifact's stamp vouches for it), else
        read, checked against ``digest`` and loaded as ``load`` does."""
        with self._lock:
            cached = self._modules.get(digest)
        path = self._artifact_path(digest, cache_dir)
        if cached is not None:
            if path is not None and not path.is_file():  # loaded here, from another cache
                with artifact_lock(path):
                    if not path.is_file():
                        _store_artifact(path, cached.module)
                        _write_info(path, cached.info)
            return cached
        if path is not None:
            info = _read_info(path)
            module = self._deserialize(path) if info is not None else None
            if info is not None and module is not None:
                return self._remember(self._finish(module, info, digest, True))
        wasm = wasm_path.read_bytes()
        if hashlib.sha256(wasm).hexdigest() != digest:
            raise ToolchainNotFound(
                f"{wasm_path} does not match the SHA-256 its package recorded: the install is "
                "damaged or was changed; reinstall the package that provides it"
            )
        return self.load(wasm, cache_dir, progress, digest=digest)

    def artifact(self, digest: str, cache_dir: Path | None) -> Path | None:
        """Where the compiled artifact of the module ``digest`` is, if it is in ``cache_dir``."""
        path = self._artifact_path(digest, cache_dir)
        return path if path is not None and path.is_file() else None

    def _artifact_path(self, digest: str, cache_dir: Path | None) -> Path | None:
        if cache_dir is None:
            return None
        key = hashlib.sha256(
            f"{digest}:{_wasm.INSTRUMENT_VERSION}:{WASMTIME_VERSION}:{self.key}:{_CPU}".encode()
        ).hexdigest()
        return cache_dir / f"{key}.cwasm"

    def _remember(self, compiled: CompiledModule) -> CompiledModule:
        """Keep ``compiled`` for its digest, or return the module a concurrent loader of the
        same digest kept first: every caller shares one module."""
        with self._lock:
            kept = self._modules.setdefault(compiled.digest, compiled)
            if kept is compiled:
                self._recent.append(compiled)
        return kept

    def load(
        self,
        wasm: bytes,
        cache_dir: Path | None,
        progress: Callable[[str, float], None] | None = None,
        budget: BuildBudget | None = None,
        digest: str | None = None,
    ) -> CompiledModule:
        """Validate, instrument and compile ``wasm``, or take it from the memory/disk cache;
        a ``budget``'s caps hold whether or not the module is cached. ``digest``: the
        module's SHA-256, when the caller has it already."""
        if budget is not None:
            budget.check_size(len(wasm))
        digest = digest or hashlib.sha256(wasm).hexdigest()
        with self._lock:
            cached = self._modules.get(digest)
        if cached is not None:
            if budget is not None:
                budget.check_functions(cached.info.defined_functions)
            return cached
        info = _parse(wasm)
        if budget is not None:
            budget.check_functions(info.defined_functions)
        _check_imports(info)
        path = self._artifact_path(digest, cache_dir)
        module = self._deserialize(path) if path is not None else None
        from_cache = module is not None
        if module is None:
            # One compile at a time per engine in this process (wasmtime already uses every
            # core), and per artifact across processes: a second builder of the same module
            # waits for the first and loads its artifact instead of compiling it again (a
            # large runtime takes a minute and gigabytes of RAM to compile).
            with self._compile_lock, artifact_lock(path):
                with self._lock:
                    cached = self._modules.get(digest)
                if cached is not None:
                    return cached
                module = self._deserialize(path) if path is not None else None
                from_cache = module is not None
                if module is None:
                    module = self._compile(wasm, path, progress, budget)
        if path is not None and path.is_file() and not _info_path(path).is_file():
            _write_info(path, info)  # the next process loads it without parsing the module
        return self._remember(self._finish(module, info, digest, from_cache))

    def _deserialize(self, path: Path) -> wasmtime.Module | None:
        """Load a cached artifact if its checksum matches; wasmtime checks only the header,
        so a damaged file would otherwise run damaged machine code."""
        if not path.is_file():
            return None
        try:
            expected = _checksum_path(path).read_text(encoding="ascii").strip()
            if _stamp_vouches(path, expected):  # unchanged since it was verified: no re-hash
                return wasmtime.Module.deserialize_file(self.engine, str(path))
            with open(path, "rb") as f:
                actual = hashlib.file_digest(f, "sha256").hexdigest()
            if actual == expected:
                module = wasmtime.Module.deserialize_file(self.engine, str(path))
                _write_stamp(path, actual)
                return module
        except (OSError, ValueError, wasmtime.WasmtimeError):
            pass
        log.warning("compiled-module cache entry %s is damaged or stale; recompiling", path.name)
        for stale in _entry_files(path):
            stale.unlink(missing_ok=True)
        return None

    def _compile(
        self,
        wasm: bytes,
        path: Path | None,
        progress: Callable[[str, float], None] | None,
        budget: BuildBudget | None,
    ) -> wasmtime.Module:
        """Compile ``wasm`` (in a child process when the budget limits time or memory) and
        store the artifact at ``path``."""
        started = time.monotonic()
        done = threading.Event()
        # One raise drops it for the rest of this build: "compiled" included.
        report = None if progress is None else SafeCallback(progress, "progress", "this build")
        if report is not None:
            _start_progress(report, done, started)
        try:
            if budget is not None and budget.in_child:
                return self._compile_in_child(wasm, path, budget)
            if len(wasm) >= CHILD_COMPILE_BYTES and sys.executable:
                # A large module compiles in a child process: gigabytes of compiler memory
                # never land in (or stay with) the caller's process.
                return self._compile_in_child(wasm, path, _UNBOUNDED)
            module = compile_module(self.engine, wasm)
            if path is not None:
                _store_artifact(path, module)
            return module
        finally:
            done.set()
            if report is not None:
                report("compiled", time.monotonic() - started)

    def _compile_in_child(
        self, wasm: bytes, path: Path | None, budget: BuildBudget
    ) -> wasmtime.Module:
        """Have a child process compile ``wasm`` under the budget, then load its artifact
        and move it into the cache. A child that is stopped leaves no file behind."""
        with artifact_file(path.parent if path is not None else None) as out:
            compile_in_child(wasm, self.settings, out, budget)
            with open(out, "rb") as f:
                checksum = hashlib.file_digest(f, "sha256").hexdigest()
            try:
                module = wasmtime.Module.deserialize_file(self.engine, str(out))
            except wasmtime.WasmtimeError as exc:
                raise HostError(
                    "Internal error in the wasm-sandbox host layer: the compiling process "
                    f"wrote an artifact that does not load: {first_line(exc)}"
                ) from None
            if path is not None:
                _publish_artifact(out, path, checksum)
            return module

    def _finish(
        self, module: wasmtime.Module, info: _wasm.ModuleInfo, digest: str, from_cache: bool
    ) -> CompiledModule:
        try:
            pre = self.linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(f"Invalid module: cannot link it: {first_line(exc)}") from None
        # Signatures come from our own parse of the module: asking wasmtime-py for them costs
        # several FFI calls per export (tens of ms for thousands of exports).
        functions = dict(info.functions)
        if info.has_start:
            functions[_wasm.START_EXPORT] = ((), ())
        return CompiledModule(module, pre, info, functions, digest, from_cache)


def _parse(wasm: bytes) -> _wasm.ModuleInfo:
    try:
        return _wasm.parse_module_info(wasm)
    except _wasm.WasmFormatError as exc:
        raise InvalidModule(f"Invalid module: {exc}") from None


def _check_imports(info: _wasm.ModuleInfo) -> None:
    memories = [f"{mod}.{name}" for mod, name, kind in info.imports if kind == "memory"]
    if memories:
        # The sandbox has no memory to give: an instance's memory is the one its module
        # defines, which the grow hook caps and monitoring measures.
        raise InvalidModule(
            f"Invalid module: it imports its linear memory ({memories[0]}); the sandbox runs "
            "only modules that define their own memory (drop the import, e.g. link without "
            "--import-memory)"
        )
    missing = [
        f"{mod}.{name} ({kind})"
        for mod, name, kind in info.imports
        if kind != "func"
        or (name not in SYSCALLS if mod == WASI_MODULE else f"{mod}.{name}" not in HOST_FUNCTIONS)
    ]
    if missing:
        raise InvalidModule(
            "Invalid module: it imports what the sandbox does not provide: "
            + ", ".join(missing[:10])
            + (" ..." if len(missing) > 10 else "")
            + f" (only {WASI_MODULE} functions are available)"
        )


def _start_progress(
    report: SafeCallback[[str, float]], done: threading.Event, started: float
) -> None:
    """Report "compiling" every 0.25 s from a thread of ours until ``done`` (or it raises)."""

    def run() -> None:
        while not done.wait(0.25):
            if not report.detached("compiling", time.monotonic() - started):
                return

    threading.Thread(target=run, name="wasm-sandbox-progress", daemon=True).start()


def _checksum_path(path: Path) -> Path:
    return path.with_suffix(".sha256")


def _stamp_path(path: Path) -> Path:
    return path.with_suffix(".stamp")


def _info_path(path: Path) -> Path:
    return path.with_suffix(".info")


def _entry_files(path: Path) -> tuple[Path, ...]:
    """Every file of one cache entry: artifact, checksum, stamp, module info."""
    return (path, _checksum_path(path), _stamp_path(path), _info_path(path))


def _stamp_of(path: Path, checksum: str) -> dict[str, int | str]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "sha256": checksum}


def _write_stamp(path: Path, checksum: str) -> None:
    """Record that the artifact at ``path``, as it is now (size, mtime, inode), was verified
    to have ``checksum`` (computed when it was written or read): later loads trust it
    without hashing hundreds of megabytes again. A stamp that cannot be written only costs
    a re-hash."""
    with contextlib.suppress(OSError):
        write_atomically(_stamp_path(path), json.dumps(_stamp_of(path, checksum)).encode())


def _stamp_vouches(path: Path, checksum: str) -> bool:
    """True when the stamp describes the artifact as it is now, with ``checksum``."""
    try:
        stamp = json.loads(_stamp_path(path).read_text(encoding="ascii"))
        return bool(stamp == _stamp_of(path, checksum))
    except (OSError, ValueError):
        return False


def _write_info(path: Path, info: _wasm.ModuleInfo) -> None:
    """Keep the module's parsed info next to its artifact (best effort)."""
    with contextlib.suppress(OSError):
        write_atomically(_info_path(path), _wasm.info_to_json(info).encode())


def _read_info(path: Path) -> _wasm.ModuleInfo | None:
    """The module info kept next to the artifact at ``path``, or None."""
    try:
        return _wasm.info_from_json(_info_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store_artifact(path: Path, module: wasmtime.Module) -> None:
    """Write a compiled artifact and its checksum atomically; a cache that cannot be written
    is skipped with a warning, never an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = bytes(module.serialize())
        checksum = hashlib.sha256(data).hexdigest()
        write_atomically(path, data)
        write_atomically(_checksum_path(path), checksum.encode())
        _write_stamp(path, checksum)
    except OSError as exc:
        print(f"wasm-sandbox: not caching compiled module in {path.parent}: {exc}", file=sys.stderr)


def _publish_artifact(out: Path, path: Path, checksum: str) -> None:
    """Move a finished artifact into the cache under its key, with its checksum; a cache that
    cannot be written is skipped with a warning (the module is loaded already)."""
    try:
        # The checksum first: a concurrent reader never finds the artifact without it.
        write_atomically(_checksum_path(path), checksum.encode())
        os.replace(out, path)
        _write_stamp(path, checksum)
    except OSError as exc:
        print(f"wasm-sandbox: not caching compiled module in {path.parent}: {exc}", file=sys.stderr)


_ENGINES: dict[tuple[OptimizationLevel, bool, bool], EngineHandle] = {}
_ENGINES_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    for handle in _ENGINES.values():
        handle.ticker.reset_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def get_engine(opt_level: OptimizationLevel, debug: bool, metered: bool = True) -> EngineHandle:
    """The shared engine for this configuration (created on first use). ``metered`` engines
    count fuel; unmetered ones skip wasmtime's fuel instrumentation (about 1.9x faster on
    call-heavy code) and are used when no fuel limit is set."""
    key = (opt_level, debug, metered)
    with _ENGINES_LOCK:
        handle = _ENGINES.get(key)
        if handle is None:
            handle = _ENGINES[key] = EngineHandle(opt_level, debug, metered)
        return handle


class GuestFailure(Exception):
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
    return GuestFailure(_cause(text), code, text)


def _cause(text: str) -> str:
    """The reason in wasmtime's error text: the 'Caused by:' part when there is a backtrace."""
    head, sep, cause = text.partition("Caused by:")
    lines = [line.strip() for line in (cause if sep else head).strip().splitlines()]
    reason = next((line for line in lines if line), "")
    return reason.removeprefix("wasm trap: ") or first_line(Exception(text))


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
        self._handle = handle
        self._compiled = compiled
        self._binding = binding
        self._metered = handle.metered
        # One cap on table elements, instances and tables alike; one memory.
        store = _capi.Store(
            handle.engine_address,
            memory_bytes if memory_bytes is not None else -1,
            _TABLE_ELEMENTS_CAP,
            _INSTANCES_CAP,
        )
        self._store = store
        self._context = context = store.context
        install_epoch_callback(store.address, context)
        self._callers: dict[str, _capi.FuncCaller] = {}
        self.script_ready = False  # a script runtime's driver is loaded in this instance
        # Made from a snapshot and not run since: its per-execution state (randomness, the
        # environment) is the snapshot's until the first turn renews it.
        self.reseed = False
        self.restored = False  # made from a snapshot (its start function ran in the original)
        self.snapshot_env: tuple[bytes, ...] = ()  # the environment the guest state holds
        self._image: MemoryImage | None = None  # the image its memory maps, if any
        self._mounts: tuple[Mount, ...] = ()  # what its descriptor table was made for
        # A script runtime's statements may be sent bare (False once its driver's turn hook
        # was found missing: ``_guests._turns``).
        self.raw_turns = True
        with bind(binding):
            try:
                self._instance = _capi.instantiate_pre(compiled.pre, context)
            except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
                raise _failure(exc) from None
        remember_trap_handlers()  # the first instance may adjust them (see _traps)
        # The WASI ABI's memory (what preview1 calls and the data ABI use) is the export
        # named "memory"; usage is measured on the module's memory whatever it exports, so
        # a guest cannot hide from monitoring by not exporting it.
        self._memory = self._memory_export("memory")
        if self._memory is not None:
            binding.memory_address = ctypes.addressof(self._memory.of.memory)
        self._measured = self._memory
        if self._measured is None and compiled.info.memories:
            self._measured = self._memory_export(_wasm.MEMORY_EXPORT)
        # The hook's globals: limits are written once, the denial is read after failures.
        self._memory_cap = memory_bytes
        self._limited = memory_bytes is not None or growth_bytes is not None
        self._denied_kind = self._global(_wasm.DENIED_KIND_EXPORT) if self._limited else None
        # False when the refusal global is known to be 0 (read so since the guest last ran):
        # then a kept instance's next call need not reset it.
        self._maybe_denied = self._denied_kind is not None
        if growth_bytes is not None:
            self._set_global(_wasm.GROW_MAX_PAGES_EXPORT, False, growth_bytes // WASM_PAGE)
        if memory_bytes is not None:
            self._set_global(_wasm.MEM_MAX_PAGES_EXPORT, True, memory_bytes // WASM_PAGE)

    @property
    def digest(self) -> str:
        """The SHA-256 of the module this is an instance of."""
        return self._compiled.digest

    def _memory_export(self, name: str) -> _capi.Extern | None:
        item = _capi.export_get(self._context, self._instance, name)
        return item if item is not None and _capi.kind_of(item) == _capi.EXTERN_MEMORY else None

    def _global(self, name: str) -> _capi.Extern | None:
        item = _capi.export_get(self._context, self._instance, name)
        return item if item is not None and _capi.kind_of(item) == _capi.EXTERN_GLOBAL else None

    def _set_global(self, name: str, is_i64: bool, value: int) -> None:
        item = self._global(name)
        if item is not None:
            _capi.global_set(self._context, item, is_i64, value)

    def _caller(self, name: str) -> _capi.FuncCaller | None:
        """A raw caller for the exported function ``name``, or None."""
        caller = self._callers.get(name)
        if caller is None:
            signature = self._compiled.functions.get(name)
            item = _capi.export_get(self._context, self._instance, name)
            if signature is None or item is None or _capi.kind_of(item) != _capi.EXTERN_FUNC:
                return None
            caller = self._callers[name] = _capi.FuncCaller(self._context, item, *signature)
        return caller

    def invoke(self, name: str, args: tuple[Any, ...], fuel: int | None) -> Any:
        """Call export ``name`` (with a fresh ``fuel`` budget unless None); raises
        GuestFailure if it does not return."""
        caller = self._caller(name)
        if caller is None:
            raise KeyError(name)
        if fuel is not None and self._metered:
            _capi.set_fuel(self._context, fuel)
        self._maybe_denied = self._denied_kind is not None  # the guest may grow now
        ticker = self._handle.ticker
        ticker.enter()
        local = current
        previous = getattr(local, "binding", None)
        local.binding = self._binding  # bind() inline: this is every call's hot path
        try:
            return caller(args)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise _failure(exc) from None
        finally:
            local.binding = previous
            ticker.leave()

    def invoke_on_copy(self, alloc: str, name: str, data: bytes) -> int | None:
        """Copy ``data`` into guest memory that export ``alloc(size)`` allocates, then call
        export ``name(pointer, size)`` (both without a fuel budget of their own): its i32
        result, or None when the allocation failed. One entry into the guest's binding and
        ticker for both calls (a script turn's hot path)."""
        allocate, call = self._caller(alloc), self._caller(name)
        if allocate is None or call is None:
            raise KeyError(alloc if allocate is None else name)
        self._maybe_denied = self._denied_kind is not None  # the guest may grow now
        ticker = self._handle.ticker
        ticker.enter()
        local = current
        previous = getattr(local, "binding", None)
        local.binding = self._binding
        try:
            size = len(data)
            ptr = int(allocate((size,))) & 0xFFFFFFFF
            if ptr == 0 or not self.write_memory(ptr, data):
                return None
            return int(call((ptr, size)))
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise _failure(exc) from None
        finally:
            local.binding = previous
            ticker.leave()

    def set_fuel(self, fuel: int) -> None:
        """Give the store a fresh fuel budget (no-op on an unmetered engine)."""
        if self._metered:
            _capi.set_fuel(self._context, fuel)

    def fuel_left(self) -> int | None:
        """Fuel remaining in the store; None on an unmetered engine."""
        return _capi.get_fuel(self._context) if self._metered else None

    def memory_bytes(self) -> int:
        """Current (and, since memory never shrinks, peak) linear-memory size in bytes,
        exported or not (0 only for a module without memory)."""
        measured = self._measured
        return _capi.memory_size(self._context, measured) if measured is not None else 0

    def read_memory(self, ptr: int, length: int) -> bytes | None:
        """Bytes of the guest's memory (None when out of bounds or it has no memory)."""
        if self._memory is None:
            return None
        return _capi.memory_read(self._context, self._memory, ptr, length)

    def write_memory(self, ptr: int, data: bytes) -> bool:
        """Write into the guest's memory; False when out of bounds or it has no memory."""
        return self._memory is not None and _capi.memory_write(
            self._context, self._memory, ptr, data
        )

    def memory_denial(self) -> tuple[int, int, int] | None:
        """(kind, attempted total pages, requested pages) of the first refused memory.grow."""
        kind_global = self._denied_kind
        if kind_global is None:
            return None
        kind = _capi.global_get(self._context, kind_global)
        if kind == 0:
            self._maybe_denied = False
            return None
        pages = self._global(_wasm.DENIED_PAGES_EXPORT)
        delta = self._global(_wasm.DENIED_DELTA_EXPORT)
        return (
            kind,
            _capi.global_get(self._context, pages) if pages is not None else 0,
            _capi.global_get(self._context, delta) if delta is not None else 0,
        )

    def reset_denial(self) -> None:
        """Forget a recorded memory.grow refusal (a kept instance starts each call clean)."""
        kind_global = self._denied_kind
        if not self._maybe_denied or kind_global is None:
            return
        if _capi.global_get(self._context, kind_global) != 0:
            _capi.global_set(self._context, kind_global, False, 0)
        self._maybe_denied = False

    def capture(self) -> Snapshot:
        """This instance's whole state, between calls into it (``SnapshotError`` when it
        holds what a snapshot cannot carry: see ``_wasi._hoststate``)."""
        host = capture_host(self._binding.fds)
        env = tuple(self._binding.wasi.env)
        return Snapshot(self._memory_state(), host, self.script_ready, env)

    def restore(self, snapshot: Snapshot) -> None:
        """Make this new instance (its start function not run) hold ``snapshot``, taken from
        an instance of the same module with the same mounts."""
        self._restore_memory(snapshot.memory)
        restore_host(self._binding.fds, snapshot.host)
        self.script_ready = snapshot.script_ready
        self.snapshot_env = snapshot.env
        self.reseed = self.restored = True

    def reset(self, snapshot: Snapshot, resetter: Resetter) -> bool:
        """Put this used instance, made from ``snapshot``, back to it between executions, as
        a new instance made from it would be: its memory (only the pages written since it
        was made are rewritten: from the snapshot's mapped image, or by ``resetter``), its
        globals and a new descriptor table. True when done; False (then close it) when it
        cannot be: its memory grew, too much of it was written, or the kernel cannot say
        what was."""
        measured = self._measured
        if measured is None:
            return False
        data, size = _capi.memory_span(self._context, measured)
        image = self._image
        if image is not None:
            if snapshot.memory.image[:1] != [image] or not image.reset(data, size):
                return False
        else:
            base, base_size = self._handle.template_memory(self._compiled)
            if not resetter.reset(data, size, base, base_size):
                return False
        self._set_globals(snapshot.memory)
        fds, old = FdTable(self._mounts), self._binding.fds
        self._binding.fds = fds
        old.close()  # and with it whatever the guest left open
        restore_host(fds, snapshot.host)
        self.reset_denial()
        self.script_ready = snapshot.script_ready
        self.snapshot_env = snapshot.env
        self.reseed = True
        return True

    def _memory_state(self) -> InstanceState:
        """The memory pages that differ from the module's image, and the mutable globals."""
        compiled = self._compiled
        runs: tuple[tuple[int, bytes], ...] = ()
        pages = 0
        if self._measured is not None:
            data, size = _capi.memory_span(self._context, self._measured)
            base, base_size = self._handle.template_memory(compiled)
            runs = changed_runs(data, size, base, base_size, self._image is None)
            pages = size // PAGE
        values = []
        for index, kind in compiled.info.mutable_globals:
            item = self._global(f"{_wasm.GLOBAL_EXPORT_PREFIX}{index}")
            if item is None:
                raise SnapshotError(f"global {index} of the module is not reachable")
            try:
                values.append((index, kind, _capi.global_value(self._context, item, kind)))
            except ValueError as exc:
                raise SnapshotError(f"the module's global {index}: {exc}") from None
        return InstanceState(compiled.digest, pages, runs, tuple(values))

    def _restore_memory(self, state: InstanceState) -> None:
        """Write ``state`` into this instance; ``MemoryLimitExceeded`` when its memory is
        over this instance's cap."""
        compiled = self._compiled
        if state.digest != compiled.digest:
            raise SnapshotError("the snapshot was taken from another module")
        measured = self._measured
        if measured is None:
            if state.pages or state.runs:
                raise SnapshotError("the snapshot holds memory, the module has none")
        else:
            size = _capi.memory_span(self._context, measured)[1]
            if state.pages * PAGE > size:
                try:
                    _capi.memory_grow(self._context, measured, state.pages - size // PAGE)
                except (wasmtime.Trap, wasmtime.WasmtimeError):
                    raise MemoryLimitExceeded(
                        state.pages * PAGE, self._memory_cap or state.pages * PAGE
                    ) from None
            data, size = _capi.memory_span(self._context, measured)
            image = image_of(state, lambda: self._handle.template_memory(compiled))
            if image is not None:  # large: mapped copy-on-write (see _image)
                image.map_over(data, size)
                self._image = image
            else:
                try:
                    write_runs(data, size, state.runs)
                except ValueError as exc:
                    raise SnapshotError(str(exc)) from None
        self._set_globals(state)

    def _set_globals(self, state: InstanceState) -> None:
        """Set every mutable global to its value in ``state``."""
        kinds = dict(self._compiled.info.mutable_globals)
        for index, kind, raw in state.globals:
            item = self._global(f"{_wasm.GLOBAL_EXPORT_PREFIX}{index}")
            if item is None or kinds.get(index) != kind:
                raise SnapshotError(f"the snapshot's global {index} ({kind}) is not the module's")
            try:
                _capi.set_global_value(self._context, item, kind, raw)
            except (ValueError, wasmtime.WasmtimeError) as exc:
                raise SnapshotError(f"the snapshot's global {index}: {exc}") from None
        if len(state.globals) != len(kinds):
            raise SnapshotError("the snapshot does not hold every global of the module")

    @staticmethod
    def create(
        handle: EngineHandle, compiled: CompiledModule, wasi: WasiContext, mounts: tuple[Mount, ...]
    ) -> GuestInstance:
        """A new instance for the execution ``wasi``, with descriptors for ``mounts`` and the
        memory caps of its limits (its start function not run yet: ``start``)."""
        fds = FdTable(mounts)
        try:
            limits = wasi.limits
            binding = HostBinding(wasi, fds)
            instance = GuestInstance(
                handle, compiled, binding, limits.memory_bytes, limits.memory_growth_limit
            )
            instance._mounts = mounts
            return instance
        except BaseException:
            fds.close()
            raise

    def start(self, initialize: bool) -> None:
        """Run the module's start function, then, with ``initialize``, a reactor's
        ``_initialize`` (under the fuel budget set)."""
        functions = self._compiled.functions
        for setup in (_wasm.START_EXPORT, INITIALIZE_EXPORT if initialize else None):
            if setup is not None and setup in functions:
                self.invoke(setup, (), fuel=None)

    def rebind(self, wasi: WasiContext) -> None:
        """Let the next call on this (kept) instance belong to the execution ``wasi``, with
        the instance's descriptors."""
        self._binding.wasi = wasi
        wasi.bind_fds(self._binding.fds)

    def on_tick(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` on every epoch tick while the guest runs (None: stop)."""
        self._binding.on_tick = callback

    def close(self) -> None:
        """Release the store and the guest's host descriptors now."""
        self._callers.clear()
        self._binding.memory_address = None
        self._binding.fds.close()
        self._store.close()


def wat_to_wasm(text: str | bytes) -> bytes:
    """Assemble WebAssembly text; a syntax error is an InvalidModule naming the line."""
    try:
        return bytes(wasmtime.wat2wasm(text))
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(
            f"Invalid module: WAT text does not assemble: {str(exc).strip()}"
        ) from None


# --- Installing an artifact compiled elsewhere (artifact bundles, _bundle.py) ---------------


def cache_key(handle: EngineHandle, digest: str) -> str:
    """The cache key of the module ``digest`` compiled by ``handle``'s engine on this machine:
    the name, without suffix, of its entry's files."""
    path = handle._artifact_path(digest, Path())
    return "" if path is None else path.stem  # never None: a cache directory is given


def install_artifact(
    handle: EngineHandle,
    digest: str,
    source: Path,
    checksum: str,
    info: _wasm.ModuleInfo,
    cache_dir: Path,
) -> tuple[Path, bool]:
    """Make ``source`` (an artifact file in ``cache_dir`` whose SHA-256, ``checksum``, the
    caller has verified) the cache entry of the module ``digest`` with its module ``info``.
    It must load in ``handle``'s engine, link, and export the functions ``info`` lists, else
    ``InvalidModule``. Under the entry's lock, an intact entry already there is kept;
    otherwise checksum and info are written, ``source`` is moved in and stamped (``OSError``
    when the cache cannot be written). Returns the artifact's path and whether it was
    installed now."""
    try:
        module = wasmtime.Module.deserialize_file(handle.engine, str(source))
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(f"the artifact does not load here: {first_line(exc)}") from None
    handle._finish(module, info, digest, True)  # links, else InvalidModule
    exported = {
        e.name: (tuple(map(str, e.type.params)), tuple(map(str, e.type.results)))
        for e in module.exports
        if isinstance(e.type, wasmtime.FuncType)
    }
    if exported != info.functions:
        raise InvalidModule("the artifact's exported functions are not the ones its info lists")
    path = cache_dir / f"{cache_key(handle, digest)}.cwasm"
    with artifact_lock(path):
        if _intact(path):
            if not _info_path(path).is_file():
                write_atomically(_info_path(path), _wasm.info_to_json(info).encode())
            return path, False
        write_atomically(_checksum_path(path), checksum.encode())
        write_atomically(_info_path(path), _wasm.info_to_json(info).encode())
        os.replace(source, path)
        _write_stamp(path, checksum)
    return path, True


def _intact(path: Path) -> bool:
    """True when the cache entry at ``path`` has its artifact and that matches its checksum."""
    try:
        expected = _checksum_path(path).read_text(encoding="ascii").strip()
        if _stamp_vouches(path, expected):
            return True
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == expected
    except OSError:
        return False


# --- cache entries shipped between machines (the Ray backend) ----------------------------
# A driver whose cache holds a module's artifact sends the whole entry to workers whose
# cache lacks it, so no worker compiles what the driver has (the CPython runtime: 85 s).


@dataclass(frozen=True, slots=True)
class EntryLabel:
    """What names a cache entry on any machine: the module's SHA-256, the engine's settings
    (optimisation level, debug info, fuel metering) and the entry's file name, whose key also
    covers the wasmtime version, our instrumentation's version and the CPU."""

    digest: str
    settings: tuple[str, bool, bool]
    name: str

    def path(self, cache_dir: Path) -> Path | None:
        """Where this machine keeps the entry in ``cache_dir``; None when its key differs
        here (another CPU, wasmtime or instrumentation: the artifact would not load)."""
        opt_level, debug, metered = self.settings
        handle = get_engine(OptimizationLevel(opt_level), debug, metered)
        path = handle._artifact_path(self.digest, cache_dir)
        return path if path is not None and path.name == self.name else None


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One whole cache entry, as bytes: the artifact, its SHA-256 and the module info."""

    label: EntryLabel
    checksum: str
    info: str  # the module info, as JSON
    artifact: bytes


def read_entry(
    handle: EngineHandle, compiled: CompiledModule, cache_dir: Path | None
) -> CacheEntry:
    """The cache entry of ``compiled`` (compiled by ``handle``'s engine): read from
    ``cache_dir`` when it is there whole (artifact, checksum, module info), else serialized
    from memory (a module taken from another cache, or built without one)."""
    # Not None: a directory is given (the current one when there is no cache, for the name).
    path = cast(Path, handle._artifact_path(compiled.digest, cache_dir or Path()))
    label = EntryLabel(digest=compiled.digest, settings=handle.settings, name=path.name)
    if cache_dir is not None:
        try:
            with artifact_lock(path):  # never a half-replaced entry
                checksum = _checksum_path(path).read_text(encoding="ascii").strip()
                info = _info_path(path).read_text(encoding="utf-8")
                artifact = path.read_bytes()
            return CacheEntry(label=label, checksum=checksum, info=info, artifact=artifact)
        except OSError:
            pass
    artifact = bytes(compiled.module.serialize())
    checksum = hashlib.sha256(artifact).hexdigest()
    info = _wasm.info_to_json(compiled.info)
    return CacheEntry(label=label, checksum=checksum, info=info, artifact=artifact)


def install_entry(entry: CacheEntry, cache_dir: Path) -> Path | None:
    """Put ``entry`` (from another machine) into ``cache_dir`` unless it is there already:
    its artifact is checked against its SHA-256 and moved into place whole (a temporary file
    renamed), then its checksum, stamp and module info are written, all under the entry's
    lock. The artifact's path, or None when the entry does not fit this machine, is damaged
    or cannot be written (a build then compiles the module as usual)."""
    path = entry.label.path(cache_dir)
    if path is None:
        return None
    if hashlib.sha256(entry.artifact).hexdigest() != entry.checksum:
        log.warning("compiled module %s arrived damaged; not caching it", path.name)
        return None
    try:
        with artifact_lock(path):
            if path.is_file() and _info_path(path).is_file():
                return path  # another worker of this machine installed it first
            write_atomically(_checksum_path(path), entry.checksum.encode())
            write_atomically(path, entry.artifact)
            _write_stamp(path, entry.checksum)
            write_atomically(_info_path(path), entry.info.encode())
    except OSError as exc:
        log.warning("not caching compiled module %s in %s: %s", path.name, cache_dir, exc)
        return None
    return path
