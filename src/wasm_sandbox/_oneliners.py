"""One-line helpers: build a sandbox for a source and call one function in it, or run a
piece of Python or JavaScript code.

``run("calculator.rs", "add", 5, 3)``, ``run_with_timeout(source, "f", *args, timeout)`` and
``run_python(code, timeout=10, memory="256MiB")`` / ``run_javascript(code)``, with their
asyncio twins. Compiled sources, modules and runtimes come from the caches, so repeated
one-liners do not compile again (building a code sandbox again takes about a millisecond).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from ._builder import SandboxBuilder, SandboxConfig, StdinSource
from ._config._limits import ResourceLimits, ResourceProfile, check_timeout
from ._config._mounts import Mount
from ._config._policy import NetworkPolicy
from ._errors import MountChanged
from ._guests._sources import Source
from ._observe._code import CodeResult
from ._sandbox import AsyncWasmSandbox, WasmSandbox
from ._units import count_option, size_option

__all__ = [
    "run",
    "run_async",
    "run_javascript",
    "run_javascript_async",
    "run_python",
    "run_python_async",
    "run_with_timeout",
    "run_with_timeout_async",
]

Mounts = Iterable[Mount] | Mapping[str, "str | os.PathLike[str]"]
"""``Mount`` objects, or ``{guest_path: host_directory}`` (each mounted read-only)."""
PythonPath = Iterable["str | os.PathLike[str]"] | str | os.PathLike[str]
"""Directories and wheels of pure-Python packages (``SandboxBuilder.python_path``)."""
Network = NetworkPolicy | Iterable[str] | str | None
"""A ``NetworkPolicy``, allow patterns (``"api.example.com:443"``, ``"127.0.0.1:*"``), or None
(no network)."""
DEFAULT_CODE_TIMEOUT = timedelta(seconds=30)
DEFAULT_CODE_MEMORY = 256 * 1024 * 1024


def _sandbox(source: Source, limits: ResourceLimits | None) -> WasmSandbox:
    builder = WasmSandbox.builder().source(source)
    if limits is not None:
        builder.resource_limits(limits)
    return builder.build()


def _split_timeout(args: tuple[Any, ...]) -> tuple[tuple[Any, ...], timedelta]:
    """The call's arguments and its timeout, given last (a timedelta, seconds or ``"30s"``)."""
    last = args[-1] if args else None
    if isinstance(last, bool) or not isinstance(last, timedelta | int | float | str):
        raise TypeError("run_with_timeout needs the timeout (a timedelta, seconds or '30s') last")
    return args[:-1], check_timeout("timeout (the last argument)", last)


def _timeout_limits(timeout: timedelta) -> ResourceLimits:
    return ResourceProfile.STANDARD.limits.replace(execution_timeout=timeout)


def run(source: Source, function: str, *args: Any, limits: ResourceLimits | None = None) -> Any:
    """Build a sandbox for ``source`` (STANDARD limits unless ``limits``) and return
    ``function(*args)``: ``run("calculator.rs", "add", 5, 3)``."""
    return _sandbox(source, limits).call(function, *args)


def run_with_timeout(source: Source, function: str, *args: Any) -> Any:
    """Like ``run`` with the wall-clock limit given last (a timedelta, seconds or a duration
    string): ``run_with_timeout("tool.c", "process", 7, "30s")``."""
    call_args, timeout = _split_timeout(args)
    return _sandbox(source, _timeout_limits(timeout)).call(function, *call_args)


async def run_async(
    source: Source, function: str, *args: Any, limits: ResourceLimits | None = None
) -> Any:
    """The asyncio twin of ``run``: compiles and runs off the event loop."""
    builder = WasmSandbox.builder().source(source)
    if limits is not None:
        builder.resource_limits(limits)
    sandbox: AsyncWasmSandbox = await builder.build_async()
    return await sandbox.call(function, *args)


async def run_with_timeout_async(source: Source, function: str, *args: Any) -> Any:
    """The asyncio twin of ``run_with_timeout``."""
    call_args, timeout = _split_timeout(args)
    return await run_async(source, function, *call_args, limits=_timeout_limits(timeout))


def code_builder(
    language: str,
    *,
    timeout: timedelta | float | str | None = DEFAULT_CODE_TIMEOUT,
    memory: int | str | None = DEFAULT_CODE_MEMORY,
    fuel: int | str | None = None,
    mounts: Mounts = (),
    network: Network = None,
    env: Mapping[str, str] | None = None,
    python_path: PythonPath = (),
) -> SandboxBuilder:
    """The builder ``run_python`` and ``run_javascript`` use: a ``language`` sandbox with no
    source of its own, the STANDARD profile's limits with ``timeout``, ``memory`` and ``fuel``
    instead (None: no fuel budget, the time limit governs), ``mounts``, ``network`` and
    ``env``."""
    limits = ResourceProfile.STANDARD.limits.replace(  # checked under the names users gave
        execution_timeout=None if timeout is None else check_timeout("timeout", timeout),
        memory_bytes=size_option("memory", memory),
        max_fuel=count_option("fuel", fuel),
    )
    builder = WasmSandbox.builder().language(language).source("").resource_limits(limits)
    for mount in _mounts(mounts):
        builder.mount(mount)
    if isinstance(network, NetworkPolicy):
        builder.network_policy(network)
    elif network is not None:
        patterns = [network] if isinstance(network, str) else list(network)
        if not all(isinstance(p, str) for p in patterns):
            raise TypeError("network takes a NetworkPolicy or allow patterns (strings)")
        builder.allow_network(*patterns)
    if env is not None:
        builder.env(env)
    if isinstance(python_path, str | os.PathLike):
        python_path = [python_path]
    if python_path:
        builder.python_path(*python_path)
    return builder


# The sandboxes run_python and run_javascript built lately, by configuration: a repeated
# configuration reuses its sandbox, whose boot state and put-back instances make a fresh run
# cost about a millisecond (a new sandbox per call would reload its boot state and make new
# instances: ~15 ms). A few only: each holds up to two spare instances.
_RECENT = 4
_recent: OrderedDict[SandboxConfig, WasmSandbox] = OrderedDict()
_recent_lock = threading.Lock()


def _cached_sandbox(builder: SandboxBuilder) -> WasmSandbox:
    """The sandbox of ``builder``'s configuration: one built lately, else a new one."""
    config = builder.config()
    try:
        hash(config)
    except TypeError:  # an unhashable part (none of run_python's): a sandbox of its own
        return WasmSandbox(config)
    with _recent_lock:
        sandbox = _recent.get(config)
        if sandbox is not None:
            _recent.move_to_end(config)
            return sandbox
    sandbox = WasmSandbox(config)
    with _recent_lock:
        _recent[config] = sandbox
        while len(_recent) > _RECENT:  # released when its last run ends (no close():
            _recent.popitem(last=False)  # another thread may be running code on it)
    return sandbox


def _forget(builder: SandboxBuilder) -> None:
    """Drop the sandbox kept for ``builder``'s configuration (a mounted directory changed)."""
    with _recent_lock, contextlib.suppress(TypeError):
        _recent.pop(builder.config(), None)


def _run_cached(builder: SandboxBuilder, code: str, stdin: StdinSource) -> CodeResult:
    """``code`` run on the sandbox of ``builder``'s configuration."""
    try:
        return _cached_sandbox(builder).run_code(code, stdin=stdin)
    except MountChanged:  # replaced since the kept sandbox mounted it: mount the new one
        _forget(builder)
        return _cached_sandbox(builder).run_code(code, stdin=stdin)


async def _run_cached_async(builder: SandboxBuilder, code: str, stdin: StdinSource) -> CodeResult:
    """``_run_cached`` off the event loop."""
    import asyncio  # noqa: PLC0415 - ~50 ms of import time; only the async twins need it

    sandbox = await asyncio.to_thread(_cached_sandbox, builder)
    try:
        return await AsyncWasmSandbox(sandbox).run_code(code, stdin=stdin)
    except MountChanged:  # as in _run_cached
        _forget(builder)
    sandbox = await asyncio.to_thread(_cached_sandbox, builder)
    return await AsyncWasmSandbox(sandbox).run_code(code, stdin=stdin)


def _mounts(mounts: Mounts) -> list[Mount]:
    if isinstance(mounts, Mapping):
        return [Mount.directory(host, guest) for guest, host in mounts.items()]
    if isinstance(mounts, str | bytes | Mount):
        raise TypeError("mounts takes a list of Mount objects or a {guest_path: host_dir} dict")
    listed = list(mounts)
    for mount in listed:
        if not isinstance(mount, Mount):
            raise TypeError(f"mounts holds a {type(mount).__name__}, not a Mount")
    return listed


def run_python(
    code: str,
    *,
    timeout: timedelta | float | str | None = DEFAULT_CODE_TIMEOUT,
    memory: int | str | None = DEFAULT_CODE_MEMORY,
    fuel: int | str | None = None,
    mounts: Mounts = (),
    network: Network = None,
    env: Mapping[str, str] | None = None,
    stdin: StdinSource = None,
    python_path: PythonPath = (),
) -> CodeResult:
    """Run Python ``code`` in a fresh sandboxed interpreter and return a ``CodeResult``:
    what it printed, the value of its last statement if that is an expression (as in a
    notebook cell, converted to JSON values), the error that stopped it (an exception, a
    limit: never raised) and its ``ResourceReport``.

    ``timeout``: wall-clock limit (seconds, a ``timedelta`` or ``"10s"``; default 30 s);
    ``memory``: bytes or ``"256MiB"`` (the default); ``fuel``: an instruction budget (default
    none: CPython runs ~15 billion instructions a second, so the timeout is the better
    bound); ``mounts``: ``Mount`` objects or ``{guest_path: host_dir}``
    (read-only); ``network``: allow patterns or a ``NetworkPolicy`` (default: none);
    ``env`` and ``stdin`` for the code; ``python_path``: directories and wheels of pure-Python
    packages it may import (``SandboxBuilder.python_path``). Bad arguments raise
    ``ConfigurationError`` or ``TypeError``; nothing the code does raises."""
    builder = code_builder(
        "python", timeout=timeout, memory=memory, fuel=fuel, mounts=mounts, network=network,
        env=env, python_path=python_path,
    )  # fmt: skip
    return _run_cached(builder, code, stdin)


def run_javascript(
    code: str,
    *,
    timeout: timedelta | float | str | None = DEFAULT_CODE_TIMEOUT,
    memory: int | str | None = DEFAULT_CODE_MEMORY,
    fuel: int | str | None = None,
    mounts: Mounts = (),
    network: Network = None,
    env: Mapping[str, str] | None = None,
    stdin: StdinSource = None,
) -> CodeResult:
    """``run_python`` for JavaScript ``code`` (QuickJS-NG): ``result`` is the completion
    value of its last statement (a promise is awaited)."""
    builder = code_builder(
        "javascript", timeout=timeout, memory=memory, fuel=fuel, mounts=mounts,
        network=network, env=env,
    )  # fmt: skip
    return _run_cached(builder, code, stdin)


async def run_python_async(
    code: str,
    *,
    timeout: timedelta | float | str | None = DEFAULT_CODE_TIMEOUT,
    memory: int | str | None = DEFAULT_CODE_MEMORY,
    fuel: int | str | None = None,
    mounts: Mounts = (),
    network: Network = None,
    env: Mapping[str, str] | None = None,
    stdin: StdinSource = None,
    python_path: PythonPath = (),
) -> CodeResult:
    """The asyncio twin of ``run_python``: builds and runs off the event loop."""
    builder = code_builder(
        "python", timeout=timeout, memory=memory, fuel=fuel, mounts=mounts, network=network,
        env=env, python_path=python_path,
    )  # fmt: skip
    return await _run_cached_async(builder, code, stdin)


async def run_javascript_async(
    code: str,
    *,
    timeout: timedelta | float | str | None = DEFAULT_CODE_TIMEOUT,
    memory: int | str | None = DEFAULT_CODE_MEMORY,
    fuel: int | str | None = None,
    mounts: Mounts = (),
    network: Network = None,
    env: Mapping[str, str] | None = None,
    stdin: StdinSource = None,
) -> CodeResult:
    """The asyncio twin of ``run_javascript``."""
    builder = code_builder(
        "javascript", timeout=timeout, memory=memory, fuel=fuel, mounts=mounts,
        network=network, env=env,
    )  # fmt: skip
    return await _run_cached_async(builder, code, stdin)
