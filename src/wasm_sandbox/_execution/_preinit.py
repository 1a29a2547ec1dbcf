"""Pre-initialised states: a script runtime's state after the user's setup code (or after its
source was loaded), made once when a sandbox is built and kept, like compiled modules, in
the on-disk cache, so that a new process does not run the setup again.

A state is keyed by everything it can depend on: the runtime module and engine, wasmtime's
and our instrumentation's versions, the guest drivers' code, the source and setup text,
the language, the environment, the limits, the mounts and the network policy. A cache file
is untrusted input: ``load_snapshot`` checks its checksum and every offset, and a restore is
tried before it is used; a file that fails either is logged, removed and made again.

Not cached (run at every build): states whose setup acted outside the sandbox (a network
connection, a write to a writable host directory), and, by the caller's choice, those of
sandboxes with host-directory mounts (the setup may read files that change later).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import _errors as e
from .._guests._jsdriver import BOOT as JS_DRIVER
from .._guests._pydriver import BOOT as PY_DRIVER
from .._guests._sources import ScriptSource
from .._guests._turns import script_turn
from .._runtime import _wasm
from .._runtime._cache import artifact_lock, write_atomically
from .._runtime._engine import WASMTIME_VERSION, GuestInstance
from .._runtime._snapshot import Snapshot, dump_snapshot, load_snapshot
from ._calls import Call, TurnCall
from ._plan import ExecutionPlan
from ._start import run_and_capture

__all__ = ["Preparation", "boot_state", "preparation", "prepared_state", "state_key"]

log = logging.getLogger("wasm_sandbox")

_FORMAT = 1  # what a key means; raise it when what a state holds changes meaning
_FOLDERS = {"pre-initialised": "snapshots", "boot": "boots"}
_SUFFIX = ".wsnap"
_DRIVERS = hashlib.sha256(f"{PY_DRIVER}\0{JS_DRIVER}".encode()).hexdigest()
_kept: weakref.WeakValueDictionary[str, Snapshot] = weakref.WeakValueDictionary()
_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Preparation:
    """What makes a pre-initialised state, beyond the plan it runs under."""

    call: Call
    """The turn that runs the setup (or loads the source)."""
    env: tuple[bytes, ...]
    """The environment it runs in (``NAME=value``)."""
    identity: dict[str, object]
    """What the state depends on beyond the plan (JSON values): language, source, setup,
    environment; part of its key."""
    cache_dir: Path | None
    """The cache directory that keeps the state on disk; None: not on disk."""
    shareable: bool
    """The state depends on nothing outside the sandbox (no host-directory mounts): other
    sandboxes of this process with the same key may share it."""
    kind: str = "pre-initialised"
    """What the state is, in messages; its cache folder is ``_FOLDERS[kind]``."""


def preparation(
    script: ScriptSource,
    setup: str | None,
    env: tuple[bytes, ...],
    cache_dir: Path | None,
    shareable: bool,
    reserve: int = 0,
    path: tuple[tuple[str, str], ...] = (),
) -> Preparation:
    """The preparation of ``script``'s state: ``setup`` run in the global scope (Python's
    ``__main__``), or without setup the source loaded as ``call()`` loads it; a Python
    state then keeps ``reserve`` bytes of free heap (see ``_pydriver._reserve``). ``path``:
    a Python guest's ``sys.path`` entries (``python_path``), each with the identity of what
    it holds."""
    request: dict[str, object] = {"op": "preinit"}
    if script.language == "python":
        request |= {"setup": setup, "filename": script.filename, "module": script.module}
        request["reserve"] = reserve
        if path:
            request["path"] = [entry for entry, _ in path]
        if setup is None:
            request["source"] = script.text
        code, filename = None, script.filename
    elif setup is None:
        code, filename = script.text, script.filename
    else:
        code, filename = setup, "<setup>"
    identity: dict[str, object] = {
        "language": script.language,
        "source": script.text,
        "filename": script.filename,
        "module": script.module,
        "setup": setup,
        "env": [item.decode("utf-8", "surrogateescape") for item in env],
    }
    if path:
        identity["path"] = [list(item) for item in path]
    call = TurnCall(script_turn(script.language, request, code, filename))
    return Preparation(call, env, identity, cache_dir, shareable)


def state_key(plan: ExecutionPlan, identity: Mapping[str, object], user_code: bool = True) -> str:
    """The key of the state ``identity`` describes, made under ``plan``. ``user_code``: the
    state ran the user's code, so the limits and the I/O and network settings it ran under
    are part of it (a boot runs only our driver)."""
    parts: dict[str, object] = {
        "format": _FORMAT,
        "module": plan.compiled.digest,
        "engine": plan.handle.key,
        "wasmtime": WASMTIME_VERSION,
        "instrument": _wasm.INSTRUMENT_VERSION,
        "drivers": _DRIVERS,
        "mounts": [repr(mount) for mount in plan.mounts],
        "what": dict(identity),
    }
    if user_code:
        parts |= {
            "limits": repr(plan.limits),
            "network": repr(plan.network_policy),
            "strict": [plan.strict_io, plan.strict_network],
            "output": plan.max_output_bytes,
        }
        if plan.host_functions:  # which names a setup could import (calling one: not kept)
            parts["host_functions"] = sorted(plan.host_functions)
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def boot_state(
    plan: ExecutionPlan, language: str, env: tuple[bytes, ...], cache_dir: Path | None
) -> Snapshot | None:
    """The state of ``language``'s runtime with our driver booted, what every fresh
    instance starts from: kept in this process and on disk like a pre-initialised state,
    keyed by what a boot depends on (not the limits: it runs no user code). None when the
    boot fails under ``plan``'s limits (executions then boot each instance, and meet the
    same limit there)."""
    call = TurnCall(script_turn(language, {"op": "boot"}, None, "<wsbx>"))
    identity: dict[str, object] = {
        "boot": language,
        "env": [item.decode("utf-8", "surrogateescape") for item in env],
    }
    key = state_key(plan, identity, user_code=False)
    try:
        return prepared_state(plan, Preparation(call, env, identity, cache_dir, True, "boot"), key)
    except (e.ExecutionError, e.SnapshotError) as exc:
        log.debug("no boot snapshot (%s); instances boot one by one", exc)
        return None


def prepared_state(
    plan: ExecutionPlan, preparation: Preparation, key: str | None = None
) -> Snapshot:
    """The state after ``preparation`` under ``plan``: kept in this process, else read from
    the disk cache, else made now (its failure raised: the guest's error, a limit, a
    ``SnapshotError`` for what a snapshot cannot carry) and kept. ``key``: its cache key,
    when not ``state_key``'s."""
    key = key or state_key(plan, preparation.identity)
    if preparation.shareable:
        with _lock:
            found = _kept.get(key)
        if found is not None:
            return found
    cache_dir = preparation.cache_dir if preparation.shareable else None
    folder = _FOLDERS[preparation.kind]
    path = None if cache_dir is None else cache_dir / folder / f"{key}{_SUFFIX}"
    with artifact_lock(path):  # one process makes it; the others wait and read it
        snapshot = None if path is None else _read(path, key, plan, preparation.kind)
        if snapshot is None:
            snapshot, effects = _make(plan, preparation)
            if effects:
                log.info(
                    "the setup acted outside the sandbox (%s): its state is not cached", effects[0]
                )
                return snapshot
            if path is not None:
                _write(path, key, snapshot, preparation.kind)
    if preparation.shareable:
        with _lock:
            _kept[key] = snapshot
    return snapshot


def _make(plan: ExecutionPlan, preparation: Preparation) -> tuple[Snapshot, tuple[str, ...]]:
    started = time.monotonic()
    try:
        snapshot, effects = run_and_capture(plan, preparation.call, list(preparation.env))
    except e.SnapshotError as exc:
        raise e.SnapshotError(f"preinitialize: {exc}") from None
    log.debug(
        "%s state made in %.3f s (%d bytes of memory changed)",
        preparation.kind,
        time.monotonic() - started,
        snapshot.memory.changed_bytes,
    )
    _check_restores(plan, snapshot)  # and a large state's image is made now, not at a call
    return snapshot, effects


def _read(path: Path, key: str, plan: ExecutionPlan, kind: str) -> Snapshot | None:
    """The state kept at ``path``, or None when there is none or it is unusable (then the
    file is removed, with a warning)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the %s state %s (%s); making it again", kind, path, exc)
        return None
    try:
        snapshot, meta = load_snapshot(data)
        if meta.get("key") != key or snapshot.memory.digest != plan.compiled.digest:
            raise ValueError("it was made for another sandbox")
        _check_restores(plan, snapshot)
    except (ValueError, e.SnapshotError, e.MemoryLimitExceeded) as exc:
        log.warning(
            "the %s state %s is damaged or stale (%s); making it again", kind, path.name, exc
        )
        path.unlink(missing_ok=True)
        return None
    log.debug("%s state read from %s", kind, path)
    return snapshot


def _check_restores(plan: ExecutionPlan, snapshot: Snapshot) -> None:
    """Restore ``snapshot`` into a new instance of ``plan`` (and drop it): a state that
    does not fit the module fails here, at build, not at every call; the memory image of a
    large one is made on the way (``_runtime._image``)."""
    ctx = plan.context([b"wsbx-check"], [], None)
    instance = GuestInstance.create(plan.handle, plan.compiled, ctx, plan.mounts)
    try:
        instance.restore(snapshot)
    finally:
        instance.close()


def _write(path: Path, key: str, snapshot: Snapshot, kind: str) -> None:
    """Keep ``snapshot`` at ``path`` (atomically); a cache that cannot be written is skipped
    with a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(path, dump_snapshot(snapshot, {"key": key}))
    except OSError as exc:
        log.warning("not caching the %s state in %s: %s", kind, path.parent, exc)
