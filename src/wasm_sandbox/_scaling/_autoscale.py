"""The auto-scaler: a sandbox's memory limit and timeout move, across successive executions,
within ``[min_limit, max_limit]`` from the usage observed.

- An execution that used ``scale_up_threshold`` (a fraction) of its limit or more raises the
  limit for the next ones by ``step`` (a factor), up to ``max_limit``.
- An execution that hit its memory cap below ``max_limit`` is retried once at the raised cap
  when the policy has ``retry=True`` (the default); the raised cap stays.
- ``window`` successive executions each at or under ``scale_down_threshold`` of the limit lower
  it by ``step``, down to ``min_limit``.

Every change is a ``ScalingEvent``: kept in ``events``, logged on ``wasm_sandbox.autoscale``
(sizes and durations written for people: ``memory limit 4 MiB -> 8 MiB (the limit was
hit)``) and given to the ``on_scale`` callback. An ``on_scale`` that raises is logged once and
dropped from this scaler (``_callbacks``; ``on_scale(fn)`` sets one again); the execution
that caused the event is not affected.

The scaler's state lives in the process that built the sandbox. With a ``ProcessBackend`` or
a ``RayBackend``, that process chooses each job's limits and the worker reports what the job
used back to it (``_remote``): the scaler itself never travels.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from .._config._limits import WASM_PAGE, ResourceLimits
from .._errors import ConfigurationError
from .._observe._callbacks import SafeCallback
from .._units import (
    duration_value,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
    size_value,
)

__all__ = ["AutoScaler", "ScalingEvent", "ScalingPolicy"]

log = logging.getLogger("wasm_sandbox.autoscale")
_EVENTS_KEPT = 1000


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    """How one limit may move. Memory limits are bytes or size strings (``"64MiB"``);
    timeouts are seconds, timedeltas or duration strings (``"30s"``)."""

    min_limit: float | timedelta | str
    max_limit: float | timedelta | str
    scale_up_threshold: float = 0.8
    """Usage (a fraction of the limit) at which the limit rises for the next executions."""
    scale_down_threshold: float = 0.3
    """Usage at or under which, ``window`` times in a row, the limit falls."""
    step: float = 2.0
    """The factor a limit rises or falls by."""
    window: int = 5
    retry: bool = True
    """Retry, once, an execution that hit its memory cap below ``max_limit``."""

    def __post_init__(self) -> None:
        for name in ("min_limit", "max_limit"):
            _check_quantity(name, getattr(self, name))
        if not isinstance(self.min_limit, str) and not isinstance(self.max_limit, str):
            _check_bounds(_number(self.min_limit), _number(self.max_limit))
        # A string's unit depends on the limit scaled: checked by ``bounds`` (memory_policy,
        # timeout_policy).
        if not 0 <= self.scale_down_threshold < self.scale_up_threshold <= 1:
            raise ConfigurationError(
                "ScalingPolicy needs 0 <= scale_down_threshold < scale_up_threshold <= 1"
            )
        if not self.step > 1:
            raise ConfigurationError(f"ScalingPolicy.step must be > 1, got {self.step}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ConfigurationError(f"ScalingPolicy.window must be an int >= 1, got {self.window}")

    @property
    def low(self) -> float:
        """``min_limit`` as a number (bytes or seconds; not for a string, whose unit only
        ``bounds`` knows)."""
        return _number(self.min_limit)

    @property
    def high(self) -> float:
        """``max_limit`` as a number (bytes or seconds; not for a string)."""
        return _number(self.max_limit)

    def bounds(self, resource: str) -> tuple[float, float]:
        """``min_limit`` and ``max_limit`` as numbers for ``resource``: bytes for
        ``"memory"`` (a string is a size), seconds for ``"timeout"`` (a string is a
        duration, parsed by the one duration parser)."""
        parse = _seconds if resource == "timeout" else _bytes
        low, high = parse("min_limit", self.min_limit), parse("max_limit", self.max_limit)
        _check_bounds(low, high)
        return low, high


def _check_bounds(low: float, high: float) -> None:
    if not 0 < low <= high:
        raise ConfigurationError(
            f"ScalingPolicy needs 0 < min_limit <= max_limit, got {low:g} and {high:g}"
        )


def _check_quantity(name: str, value: float | timedelta | str) -> None:
    """A string limit is a size or a duration (which one, ``bounds`` decides); else refused
    now, naming the field, rather than when the policy is given to a scaler."""
    if not isinstance(value, str):
        return
    for parse in (parse_size, parse_duration):
        try:
            parse(value)
            return
        except ValueError:
            pass
    raise ConfigurationError(
        f"ScalingPolicy.{name}: {value!r} is neither a size ('64MiB') nor a duration ('30s')"
    )


def _number(value: float | timedelta | str) -> float:
    """A number, or a timedelta in seconds; a string's unit is known only by ``bounds``."""
    if isinstance(value, str):
        raise TypeError(f"the scaling limit {value!r} is a string: use bounds(resource)")
    if isinstance(value, timedelta):
        return _seconds("a scaling limit", value)
    return _bytes("a scaling limit", value)


def _seconds(name: str, value: float | timedelta | str) -> float:
    return duration_value(name, value).total_seconds()


def _bytes(name: str, value: float | timedelta | str) -> float:
    if isinstance(value, str):
        return float(size_value(name, value))
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be bytes (a number or a size string), got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class ScalingEvent:
    """One change of a limit."""

    resource: str
    """``"memory"`` (bytes) or ``"timeout"`` (seconds)."""
    old: float
    new: float
    reason: str

    def __str__(self) -> str:
        """``memory limit 4 MiB -> 8 MiB (the limit was hit)``."""
        return f"{self.resource} limit {_show(self.resource, self.old)} -> " + (
            f"{_show(self.resource, self.new)} ({self.reason})"
        )


def _show(resource: str, value: float) -> str:
    """A memory limit as a size, a timeout as a duration."""
    return format_size(value) if resource == "memory" else format_duration(value)


class _Track:
    """One scaled limit."""

    def __init__(self, resource: str, policy: ScalingPolicy) -> None:
        self.resource, self.policy = resource, policy
        self.low, self.high = policy.bounds(resource)
        self.current: float | None = None
        self.low_runs = 0

    def start(self, base: float | None) -> float:
        if self.current is None:
            start = self.low if base is None else base
            self.current = min(self.high, max(self.low, start))
        return self.current

    def observe(self, used: float) -> tuple[float, float, str] | None:
        current, policy = self.current, self.policy
        assert current is not None
        if used >= policy.scale_up_threshold * current and current < self.high:
            usage = f"used {_show(self.resource, used)} of {_show(self.resource, current)}"
            return self._move(min(self.high, current * policy.step), usage)
        if used <= policy.scale_down_threshold * current:
            self.low_runs += 1
            if self.low_runs >= policy.window and current > self.low:
                return self._move(
                    max(self.low, current / policy.step),
                    f"{policy.window} executions at or under {policy.scale_down_threshold:.0%}",
                )
        else:
            self.low_runs = 0
        return None

    def raise_for_retry(self) -> tuple[float, float, str] | None:
        current = self.current
        assert current is not None
        if current >= self.high:
            return None
        return self._move(min(self.high, current * self.policy.step), "the limit was hit")

    def _move(self, new: float, reason: str) -> tuple[float, float, str]:
        old, self.current, self.low_runs = self.current or 0.0, new, 0
        return old, new, reason


class AutoScaler:
    """Adapts a sandbox's memory limit and timeout to observed usage (see the module notes).
    Give it to ``SandboxBuilder.auto_scaler``; one scaler serves one sandbox."""

    def __init__(self) -> None:
        self._memory: _Track | None = None
        self._timeout: _Track | None = None
        self._callback: SafeCallback[[ScalingEvent]] | None = None
        self._lock = threading.Lock()
        self._floor = 0  # the sandbox's module's initial memory: no limit goes under it
        self.events: list[ScalingEvent] = []
        """The changes so far (the latest 1,000)."""

    def memory_policy(self, policy: ScalingPolicy) -> AutoScaler:
        """Scale the memory limit (bytes)."""
        self._memory = _Track("memory", _policy(policy))
        return self

    def timeout_policy(self, policy: ScalingPolicy) -> AutoScaler:
        """Scale the execution timeout (seconds or timedeltas)."""
        self._timeout = _Track("timeout", _policy(policy))
        return self

    def on_scale(self, callback: Callable[[ScalingEvent], object]) -> AutoScaler:
        """Called with each ``ScalingEvent`` (after it is logged), in the process that built
        the sandbox, on the thread that ran (or submitted) the execution that caused it. One
        that raises is logged once and dropped from this scaler; ``on_scale`` sets one anew."""
        if not callable(callback):
            raise TypeError(f"on_scale needs a callable, got {type(callback).__name__}")
        self._callback = SafeCallback(callback, "on_scale", "this AutoScaler")
        return self

    @property
    def memory_limit(self) -> int | None:
        """The memory limit the next execution gets: from the time the scaler is given to a
        sandbox (whose configured limit, within the policy's bounds, is the first), until
        then None; also None without a memory policy."""
        current = self._memory.current if self._memory is not None else None
        return None if current is None else self._memory_bytes(current)

    @property
    def timeout(self) -> timedelta | None:
        """The timeout the next execution gets: from the time the scaler is given to a
        sandbox (whose configured timeout, within the policy's bounds, is the first), until
        then None; also None without a timeout policy."""
        current = self._timeout.current if self._timeout is not None else None
        return None if current is None else timedelta(seconds=current)

    def _memory_bytes(self, current: float) -> int:
        """A scaled memory limit as the guest gets it: never under the module's initial
        memory, in whole pages."""
        memory = max(self._floor, int(current))
        return max(WASM_PAGE, memory // WASM_PAGE * WASM_PAGE)

    def limits_for(self, base: ResourceLimits, floor: int = 0) -> ResourceLimits:
        """``base`` with the scaled memory limit (never under ``floor``, the module's initial
        memory, rounded to whole pages) and timeout. The first call (when the sandbox is
        built) starts each scaled limit from ``base``'s, within the policy's bounds."""
        with self._lock:
            changes: dict[str, object] = {}
            self._floor = max(self._floor, floor)
            if self._memory is not None:
                changes["memory_bytes"] = self._memory_bytes(self._memory.start(base.memory_bytes))
            if self._timeout is not None:
                start = base.execution_timeout.total_seconds() if base.execution_timeout else None
                changes["execution_timeout"] = timedelta(seconds=self._timeout.start(start))
            return base.replace(**changes) if changes else base

    def observe(self, peak_memory: int, elapsed: timedelta) -> None:
        """Account one finished execution's usage."""
        with self._lock:
            moves = []
            if self._memory is not None and self._memory.current is not None:
                moves.append(("memory", self._memory.observe(float(peak_memory))))
            if self._timeout is not None and self._timeout.current is not None:
                moves.append(("timeout", self._timeout.observe(elapsed.total_seconds())))
        for resource, move in moves:
            if move is not None:
                self._emit(resource, move)

    def memory_exhausted(self) -> bool:
        """An execution hit its memory cap: raise it; True when a retry is allowed."""
        track = self._memory
        if track is None or track.current is None:
            return False
        with self._lock:
            move = track.raise_for_retry()
        if move is None:
            return False
        self._emit("memory", move)
        return track.policy.retry

    def timed_out(self) -> None:
        """An execution hit its timeout: raise it for the next ones."""
        track = self._timeout
        if track is None or track.current is None:
            return
        with self._lock:
            move = track.raise_for_retry()
        if move is not None:
            self._emit("timeout", move)

    def _emit(self, resource: str, move: tuple[float, float, str]) -> None:
        event = ScalingEvent(resource, *move)
        with self._lock:
            self.events.append(event)
            del self.events[:-_EVENTS_KEPT]
        log.info("%s", event, extra={"scaling": event})
        if self._callback is not None:
            self._callback(event)  # one that raises is dropped: never breaks an execution


def _policy(policy: ScalingPolicy) -> ScalingPolicy:
    if not isinstance(policy, ScalingPolicy):
        raise TypeError(f"expected a ScalingPolicy, got {type(policy).__name__}")
    return policy
