"""One-line helpers: build a sandbox for a source and call one function in it.

``run("calculator.rs", "add", 5, 3)`` and ``run_with_timeout(source, "f", *args, timeout)``,
with their asyncio twins. Compiled sources and modules come from the caches, so repeated
one-liners on the same source do not compile again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ._config._limits import ResourceLimits, ResourceProfile
from ._guests._sources import Source
from ._sandbox import AsyncWasmSandbox, WasmSandbox

__all__ = ["run", "run_async", "run_with_timeout", "run_with_timeout_async"]


def _sandbox(source: Source, limits: ResourceLimits | None) -> WasmSandbox:
    builder = WasmSandbox.builder().source(source)
    if limits is not None:
        builder.resource_limits(limits)
    return builder.build()


def _split_timeout(args: tuple[Any, ...]) -> tuple[tuple[Any, ...], timedelta | float]:
    if not args or isinstance(args[-1], bool) or not isinstance(args[-1], timedelta | int | float):
        raise TypeError("run_with_timeout needs the timeout (a timedelta or seconds) last")
    return args[:-1], args[-1]


def _timeout_limits(timeout: timedelta | float) -> ResourceLimits:
    return ResourceProfile.STANDARD.limits.replace(execution_timeout=timeout)


def run(source: Source, function: str, *args: Any, limits: ResourceLimits | None = None) -> Any:
    """Build a sandbox for ``source`` (STANDARD limits unless ``limits``) and return
    ``function(*args)``: ``run("calculator.rs", "add", 5, 3)``."""
    return _sandbox(source, limits).call(function, *args)


def run_with_timeout(source: Source, function: str, *args: Any) -> Any:
    """Like ``run`` with the wall-clock limit given last:
    ``run_with_timeout("tool.c", "process", 7, timedelta(seconds=30))``."""
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
