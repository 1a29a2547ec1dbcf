"""What every execution of one sandbox shares (``ExecutionPlan``: module, engine, limits,
I/O and network settings, monitoring, auto-scaler) and the WASI context each execution starts
from (``ExecutionPlan.context``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import BinaryIO, Protocol

from .._config._hostfns import HostFunction
from .._config._limits import ResourceLimits
from .._config._mounts import Mount
from .._config._policy import NetworkPolicy
from .._observe._iomonitor import IoObserver, IoOperation
from .._observe._monitor import MemoryUsage, ResourceMonitor, ResourceUsage, Sampler
from .._observe._output import STDERR, STDOUT, OutputStreams
from .._runtime._engine import CompiledModule, EngineHandle, GuestInstance
from .._runtime._snapshot import Snapshot
from .._wasi._context import (
    GuestStop,
    OutputBuffer,
    Stdin,
    StopReason,
    WasiContext,
    compose_deadline,
)
from .._wasi._guard import NetLimits, NetworkGuard, NetworkStats
from .._wasi._state import IoLimits, Streams

__all__ = ["ExecutionPlan", "Monitoring", "Scaler", "sampler"]


class Scaler(Protocol):
    """What an execution asks of an auto-scaler (``_scaling._autoscale.AutoScaler``)."""

    def limits_for(self, base: ResourceLimits, floor: int = 0) -> ResourceLimits:
        """``base`` with the scaled limits (memory never under ``floor``)."""
        ...

    def memory_exhausted(self) -> bool:
        """An execution hit its memory cap: True when a retry at a raised cap is allowed."""
        ...

    def timed_out(self) -> None:
        """An execution hit its timeout."""
        ...

    def observe(self, peak_memory: int, elapsed: timedelta) -> None:
        """Account one finished execution's usage."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionPlan:
    """What every execution of one sandbox shares: module, engine, limits, I/O settings."""

    handle: EngineHandle
    compiled: CompiledModule
    limits: ResourceLimits
    max_output_bytes: int
    verbose: bool
    profile: str | None = None
    mounts: tuple[Mount, ...] = ()
    strict_io: bool = False
    io_monitoring: bool = False
    io_callback: Callable[[IoOperation], object] | None = None
    network_policy: NetworkPolicy = NetworkPolicy()  # noqa: RUF009 - frozen, immutable
    network_callback: Callable[[NetworkStats], object] | None = None
    strict_network: bool = False
    on_stdout: Callable[[bytes], object] | None = None  # streamed output (``_observe._output``)
    on_stderr: Callable[[bytes], object] | None = None
    monitoring: Monitoring | None = None
    scaler: Scaler | None = None
    debug: bool = False  # debug_mode: each execution's report logged at DEBUG (INFO if verbose)
    start: Snapshot | None = None  # what every new instance starts from (``_start``)
    host_functions: Mapping[str, HostFunction] = field(default_factory=dict, compare=False)
    # The I/O and network limits and the timeout in seconds of the last limits seen (made
    # once per limits, not per call).
    _parts: list[tuple[ResourceLimits, IoLimits, NetLimits, float | None]] = field(
        default_factory=list, compare=False, repr=False
    )

    def _limit_parts(self, limits: ResourceLimits) -> tuple[IoLimits, NetLimits, float | None]:
        parts = self._parts
        if not parts or parts[0][0] is not limits:
            io_limits = IoLimits.of(limits, self.strict_io)
            net_limits = NetLimits.of(limits, self.strict_network)
            timeout = limits.execution_timeout
            seconds = None if timeout is None else timeout.total_seconds()
            parts[:] = [(limits, io_limits, net_limits, seconds)]
        return parts[0][1], parts[0][2], parts[0][3]

    def context(
        self,
        args: list[bytes],
        env: list[bytes],
        stdin: bytes | BinaryIO | None,
        limits: ResourceLimits | None = None,
        streamed: bool = True,
    ) -> WasiContext:
        """A fresh WASI context whose deadline starts now (``limits``: this execution's own,
        instead of the plan's: an auto-scaler's; ``streamed=False``: its output is not given
        to ``on_stdout``/``on_stderr``: a runtime's boot, a state prepared at build)."""
        limits = limits or self.limits
        cap = self.max_output_bytes
        parts = self._parts
        if parts and parts[0][0] is limits:
            _, io_limits, net_limits, seconds = parts[0]
        else:
            io_limits, net_limits, seconds = self._limit_parts(limits)
        if not streamed or (self.on_stdout is None and self.on_stderr is None):
            streams = Streams(Stdin(stdin), OutputBuffer(cap), OutputBuffer(cap))
        else:
            streams = _streamed(Stdin(stdin), cap, self.on_stdout, self.on_stderr)
        ctx = WasiContext(
            args,
            env,
            streams,
            limits,
            io_limits,
            NetworkGuard(self.network_policy, net_limits, self.network_callback),
            io=IoObserver(self.io_callback) if self.io_monitoring else None,
            host_functions=self.host_functions,
        )
        ctx.deadline = compose_deadline(ctx.start, seconds, ())
        if streams.output is not None:
            _bind_output(streams.output, ctx)
        return ctx


def _streamed(
    stdin: Stdin,
    cap: int,
    on_stdout: Callable[[bytes], object] | None,
    on_stderr: Callable[[bytes], object] | None,
) -> Streams:
    """Standard streams whose kept output is also delivered to the callbacks."""
    output = OutputStreams(on_stdout, on_stderr)
    sinks = [
        functools.partial(output.put, stream) if output.wants(stream) else None
        for stream in (STDOUT, STDERR)
    ]
    return Streams(stdin, OutputBuffer(cap, sinks[0]), OutputBuffer(cap, sinks[1]), output)


def _bind_output(output: OutputStreams, ctx: WasiContext) -> None:
    """A full queue makes the guest wait under its deadline and cancellation; a callback's
    KeyboardInterrupt or SystemExit stops the guest and is raised to the caller."""

    def never() -> BaseException:  # no end of its own: the deadline ends the wait
        return GuestStop(StopReason.TIMEOUT)

    def interrupt(exc: BaseException) -> None:
        ctx.stop(StopReason.INTERRUPTED, exc)
        ctx.cancel()

    output.wait = functools.partial(ctx.wait_until, end=None, on_timeout=never)
    output.on_interrupt = interrupt


@dataclass(frozen=True, slots=True)
class Monitoring:
    """Live monitoring of every execution: sample interval, sample callback, thresholds."""

    interval: float
    callback: Callable[[ResourceUsage], object] | None
    monitor: ResourceMonitor | None


def sampler(
    monitoring: Monitoring, ctx: WasiContext, instance: GuestInstance, fuel: int
) -> Sampler:
    """A sampler reading this execution on the guest's thread (epoch ticks and the end)."""
    cpu_start = time.thread_time()
    memory_limit = ctx.limits.memory_bytes

    def read(final: bool) -> ResourceUsage:
        left = instance.fuel_left()
        counted = ctx.counters.snapshot(ctx.net, ctx.streams)
        return ResourceUsage(
            elapsed=timedelta(seconds=time.monotonic() - ctx.start),
            memory=MemoryUsage(instance.memory_bytes(), memory_limit),
            fuel_consumed=None if left is None else fuel - left,
            cpu_time=timedelta(seconds=time.thread_time() - cpu_start),
            file_operations=counted.file_operations,
            bytes_read=counted.bytes_read,
            bytes_written=counted.bytes_written,
            network_bytes_sent=counted.network_bytes_sent,
            network_bytes_received=counted.network_bytes_received,
            active_connections=counted.active_connections,
            final=final,
        )

    return Sampler(monitoring.interval, read, monitoring.callback, monitoring.monitor)
