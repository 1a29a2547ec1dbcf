"""Resource limits, the predefined resource profiles and the compiler optimisation level.

``ResourceLimits`` is a frozen value validated at construction; ``ResourceProfile`` names a
set of limits. Both are plain data: enforcement lives in ``_execution`` and the WASI layer.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

from .._errors import ConfigurationError
from .._units import check_range, count_option, duration_within, size_option, size_value

__all__ = ["OptimizationLevel", "ProfileBuilder", "ResourceLimits", "ResourceProfile"]

WASM_PAGE = 65536
MAX_MEMORY_BYTES = 4 * 1024**3  # a 32-bit linear memory cannot be larger
MAX_FUEL = 2**63 - 1
MAX_TIMEOUT = timedelta(days=30)

_DURATION_FIELDS = ("execution_timeout", "network_timeout", "connect_timeout", "host_call_timeout")
_SIZE_FIELDS = (
    "memory_bytes",
    "memory_growth_limit",
    "max_file_size",
    "max_total_file_size",
    "buffer_size",
    "max_upload_bytes",
    "max_download_bytes",
)


class OptimizationLevel(enum.Enum):
    """How hard wasmtime's compiler (Cranelift) optimises the guest's machine code."""

    SPEED = "speed"
    """Fastest code (Cranelift ``speed``); the default."""
    SIZE = "speed_and_size"
    """Smaller code at a small cost in speed (Cranelift ``speed_and_size``)."""
    NONE = "none"
    """No optimisation: the quickest compile, the slowest code (Cranelift ``none``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ResourceLimits:
    """The limits one execution runs under. ``None`` means unlimited.

    Every field that is set is enforced. The network fields apply to the connections a guest
    opens through the host (``wasm_sandbox.tcp_connect``; see ``NetworkPolicy``).

    Sizes in bytes also take size strings (``memory_bytes="64MiB"``), durations a
    ``timedelta``, seconds or a duration string (``execution_timeout="30s"``), counts a count
    string (``max_fuel="10M"``), parsed as the command line parses them; the fields hold
    ints and ``timedelta``s.
    """

    memory_bytes: int | None = None
    """Cap on the guest's linear memory, in bytes (>= 65536, one wasm page; <= 4 GiB)."""
    memory_growth_limit: int | None = None
    """Cap on the bytes one ``memory.grow`` may add (>= 65536)."""
    execution_timeout: timedelta | None = None
    """Wall-clock limit of one call or run; a number is taken as seconds."""
    max_fuel: int | None = None
    """Fuel budget of one call or run (wasmtime fuel: roughly one unit per wasm instruction)."""
    max_file_size: int | None = None
    """Largest size a guest may give a file, in bytes (a write or resize past it: EFBIG)."""
    max_total_file_size: int | None = None
    """Bytes a guest may write to files in one execution (past it: EDQUOT)."""
    max_open_files: int | None = None
    """Files and directories a guest may hold open at once, mounts aside (past it: EMFILE)."""
    max_file_operations: int | None = None
    """File-system calls a guest may make in one execution (past it: EDQUOT)."""
    max_directory_entries: int | None = None
    """Entries a directory may hold: creating one more fails with ENOSPC."""
    io_batch_size: int | None = None
    """Buffer sequential file writes: one host write per this many guest writes (at most).
    Buffers are flushed before any other file operation, on close and at the end of a call."""
    buffer_size: int | None = None
    """Buffer sequential file writes: one host write per this many bytes (default 64 KiB
    when only ``io_batch_size`` is set; 1 B .. 64 MiB)."""
    max_connections: int | None = None
    """Concurrent network connections (more: the guest's connect fails with ENFILE)."""
    max_requests_per_second: int | None = None
    """Connection attempts per second: a token bucket whose burst is the rate (EAGAIN)."""
    max_upload_bytes: int | None = None
    """Bytes a guest may send over the network (a write is cut to the rest, then EDQUOT)."""
    max_download_bytes: int | None = None
    """Bytes a guest may receive over the network (reads stop there, then EDQUOT)."""
    network_timeout: timedelta | None = None
    """Longest a network read or write may wait (ETIMEDOUT)."""
    connect_timeout: timedelta | None = None
    """Longest a connection may take to be established (ETIMEDOUT)."""
    max_host_calls: int | None = None
    """Host-function calls a guest may make in one execution (one more ends it with
    ``HostCallLimitExceeded``)."""
    host_call_timeout: timedelta | None = None
    """Longest one host-function call may run: past it the guest's call raises
    ``TimeoutError`` (the host thread running it cannot be killed and finishes unobserved)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name in _DURATION_FIELDS:
                object.__setattr__(self, f.name, check_timeout(f.name, value))
                continue
            parse = size_option if f.name in _SIZE_FIELDS else count_option
            number = parse(f.name, value)
            _check_int(f.name, number)
            object.__setattr__(self, f.name, number)
        _check_int_range("memory_bytes", self.memory_bytes, WASM_PAGE, MAX_MEMORY_BYTES)
        _check_int_range(
            "memory_growth_limit", self.memory_growth_limit, WASM_PAGE, MAX_MEMORY_BYTES
        )
        _check_int_range("max_fuel", self.max_fuel, 1, MAX_FUEL)
        _check_int_range("io_batch_size", self.io_batch_size, 1, 1 << 30)
        _check_int_range("buffer_size", self.buffer_size, 1, 64 * 1024 * 1024)
        _check_int_range("max_connections", self.max_connections, 1, 1_000_000)
        _check_int_range("max_requests_per_second", self.max_requests_per_second, 1, 10**9)

    def replace(self, **changes: Any) -> ResourceLimits:
        """A copy with some fields changed (validated like a new value)."""
        return dataclasses.replace(self, **changes)

    def merged_over(self, base: ResourceLimits) -> ResourceLimits:
        """These limits, with each unset (``None``) field taken from ``base``."""
        values = {
            f.name: getattr(self, f.name)
            if getattr(self, f.name) is not None
            else getattr(base, f.name)
            for f in dataclasses.fields(self)
        }
        return ResourceLimits(**values)


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ConfigurationError(f"{name} must be >= 0 or None, got {value}")


def _check_int_range(name: str, value: int | None, low: int, high: int) -> None:
    if value is not None:
        check_range(name, value, low, high)


def check_timeout(name: str, value: timedelta | float | str) -> timedelta:
    """``value`` (a timedelta, seconds or ``"30s"``) as a timedelta, > 0 and <= 30 days."""
    return duration_within(name, value, high=MAX_TIMEOUT)


@dataclass(frozen=True, slots=True)
class ResourceProfile:
    """A named set of resource limits.

    ``LIGHTWEIGHT``: 16 MiB memory, 5 s, 100 million fuel, 64 open files — small scripts and
    plug-in hooks.
    ``STANDARD``: 64 MiB memory, 30 s, 10 billion fuel, 1,024 open files — the builder's
    default.
    ``HIGH_PERFORMANCE``: 512 MiB memory, 300 s, unlimited fuel, 4,096 open files — heavy,
    trusted-ish work.
    ``ResourceProfile.custom()`` builds your own.
    """

    name: str
    limits: ResourceLimits = field(default_factory=ResourceLimits)

    LIGHTWEIGHT: ClassVar[ResourceProfile]
    STANDARD: ClassVar[ResourceProfile]
    HIGH_PERFORMANCE: ClassVar[ResourceProfile]

    @staticmethod
    def custom(base: ResourceProfile | None = None) -> ProfileBuilder:
        """A builder for a custom profile, starting from ``base`` (default: no limits)."""
        return ProfileBuilder(base.limits if base is not None else ResourceLimits())

    @staticmethod
    def by_name(name: str) -> ResourceProfile:
        """The predefined profile called ``name`` (``lightweight``, ``standard``,
        ``high-performance``; case and ``-``/``_`` are ignored)."""
        key = name.strip().lower().replace("-", "_")
        profiles = _PREDEFINED
        if key not in profiles:
            raise ConfigurationError(
                f"unknown resource profile {name!r}; known: lightweight, standard, high-performance"
            )
        return profiles[key]


class ProfileBuilder:
    """Fluent builder returned by ``ResourceProfile.custom()``; finish with ``build()``."""

    def __init__(self, base: ResourceLimits) -> None:
        self._limits = base
        self._name = "custom"

    def _set(self, **changes: Any) -> ProfileBuilder:
        self._limits = self._limits.replace(**changes)
        return self

    def name(self, name: str) -> ProfileBuilder:
        """Name the profile (shown in reports); default ``custom``."""
        self._name = name
        return self

    def memory_mb(self, megabytes: int | str) -> ProfileBuilder:
        """Linear-memory cap in MiB, or a size string with its unit (``"1GiB"``)."""
        return self._set(memory_bytes=_mebibytes("memory_mb", megabytes))

    def timeout_seconds(self, seconds: timedelta | float | str | None) -> ProfileBuilder:
        """Wall-clock limit in seconds, a ``timedelta`` or a duration string (``"2m"``);
        None: unlimited."""
        timeout = None if seconds is None else check_timeout("timeout_seconds", seconds)
        return self._set(execution_timeout=timeout)

    def fuel_limit(self, fuel: int | str | None) -> ProfileBuilder:
        """Fuel budget per call or run (an int or ``"50M"``); ``None`` for unlimited."""
        return self._set(max_fuel=count_option("fuel_limit", fuel))

    def memory_growth_limit_mb(self, megabytes: int | str) -> ProfileBuilder:
        """Cap on the MiB one ``memory.grow`` may add, or a size string (``"16MiB"``)."""
        return self._set(memory_growth_limit=_mebibytes("memory_growth_limit_mb", megabytes))

    def max_file_size_mb(self, megabytes: int | str) -> ProfileBuilder:
        """Largest file a guest may write, in MiB, or a size string (``"200MiB"``)."""
        return self._set(max_file_size=_mebibytes("max_file_size_mb", megabytes))

    def max_open_files(self, count: int | str) -> ProfileBuilder:
        """Files a guest may hold open at once."""
        return self._set(max_open_files=count_option("max_open_files", count))

    def max_connections(self, count: int | str) -> ProfileBuilder:
        """Concurrent network connections."""
        return self._set(max_connections=count_option("max_connections", count))

    def build(self) -> ResourceProfile:
        """The finished profile."""
        return ResourceProfile(self._name, self._limits)


def _mebibytes(name: str, value: int | str) -> int:
    """Bytes from an int of MiB, or from a size string, which carries its own unit."""
    if isinstance(value, str):
        return size_value(name, value)
    _check_int(name, value)
    return value * 1024 * 1024


_PREDEFINED = {
    "lightweight": ResourceProfile(
        "lightweight",
        ResourceLimits(
            memory_bytes=16 * 1024**2,
            execution_timeout=timedelta(seconds=5),
            max_fuel=100_000_000,
            max_open_files=64,
        ),
    ),
    "standard": ResourceProfile(
        "standard",
        ResourceLimits(
            memory_bytes=64 * 1024**2,
            execution_timeout=timedelta(seconds=30),
            max_fuel=10_000_000_000,
            max_open_files=1024,
        ),
    ),
    "high_performance": ResourceProfile(
        "high-performance",
        ResourceLimits(
            memory_bytes=512 * 1024**2,
            execution_timeout=timedelta(seconds=300),
            max_open_files=4096,
        ),
    ),
}
ResourceProfile.LIGHTWEIGHT = _PREDEFINED["lightweight"]
ResourceProfile.STANDARD = _PREDEFINED["standard"]
ResourceProfile.HIGH_PERFORMANCE = _PREDEFINED["high_performance"]
