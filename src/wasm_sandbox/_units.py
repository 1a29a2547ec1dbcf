"""Parsing of sizes (``"64MiB"``), counts (``"10M"``) and durations (``"30s"``), and the
reverse: sizes and durations written for people (``"2 MiB"``, ``"1.5 s"``) in messages.

The one place where human-written quantities become numbers; the Python API and the
command line share it, so both accept exactly the same spellings (what the formatters write,
to three significant digits, is one of them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import timedelta
from fractions import Fraction
from typing import Any

from ._errors import ConfigurationError

__all__ = [
    "check_range",
    "count_option",
    "count_value",
    "duration_option",
    "duration_value",
    "duration_within",
    "format_duration",
    "format_size",
    "parse_count",
    "parse_duration",
    "parse_size",
    "size_option",
    "size_value",
    "to_timedelta",
]

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_COUNT_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9, "t": 10**12}
_DURATION_UNITS = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
}
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-zA-Z]*)\s*$")
_MAX_SECONDS = timedelta.max.total_seconds() / 2


def _split(text: str, what: str, units: dict[str, float] | dict[str, int]) -> Fraction:
    """The quantity ``text`` in base units, exactly (no float rounding of large values)."""
    match = _QUANTITY.match(text.replace("_", ""))
    if match is None:
        raise ValueError(f"invalid {what} {text!r}: expected a number with an optional unit")
    unit = match.group(2).lower()
    if unit not in units:
        known = ", ".join(sorted(u for u in units if u))
        raise ValueError(f"invalid {what} {text!r}: unknown unit {unit!r} (known: {known})")
    return Fraction(match.group(1)) * Fraction(units[unit])


def _parse_whole(value: int | str, what: str, units: dict[str, int]) -> int:
    """A non-negative whole quantity from an int or a string with a unit."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"a {what} must be an int or a string, got {type(value).__name__}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a {what} must be >= 0, got {value}")
        return value
    result = _split(value, what, units)
    if result.denominator != 1:
        raise ValueError(f"invalid {what} {value!r}: not a whole number")
    return int(result)


def parse_size(value: int | str) -> int:
    """Bytes from an int or a string such as ``"64MiB"``, ``"64MB"``, ``"1.5G"`` or ``"4096"``.

    Decimal units (k, M, G) are powers of 1000; binary ones (KiB, MiB, GiB) of 1024.
    """
    return _parse_whole(value, "size", _SIZE_UNITS)


def parse_count(value: int | str) -> int:
    """A count from an int or a string such as ``"10M"`` (10,000,000) or ``"1.5k"``."""
    return _parse_whole(value, "count", _COUNT_UNITS)


def parse_duration(value: timedelta | float | int | str) -> timedelta:
    """A duration from a ``timedelta``, seconds as a number, or ``"30s"``, ``"500ms"``, ``"2m"``."""
    if isinstance(value, str):
        return to_timedelta(float(_split(value, "duration", _DURATION_UNITS)))
    return to_timedelta(value)


def _option(name: str, value: object, kinds: str, parse: Callable[[str], Any]) -> Any:
    """An option's ``value``: a string parsed (a bad one is a ConfigurationError naming the
    option), anything else checked to be one of ``kinds`` (else a TypeError saying which)."""
    if isinstance(value, str):
        try:
            return parse(value)
        except ValueError as exc:
            raise ConfigurationError(f"{name}: {exc}") from None
    accepted = (int, float, timedelta) if "seconds" in kinds else (int,)
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise TypeError(f"{name} must be {kinds}, or None, got {type(value).__name__} {value!r}")
    return value


def size_value(name: str, value: int | str) -> int:
    """A size option's bytes: an int, or a string such as ``"64MiB"``."""
    size: int = _option(name, value, "an int (bytes), a size string such as '64MiB'", parse_size)
    return size


def count_value(name: str, value: int | str) -> int:
    """A count option's value: an int, or a string such as ``"10M"``."""
    count: int = _option(name, value, "an int, a count string such as '10M'", parse_count)
    return count


def duration_value(name: str, value: timedelta | float | str) -> timedelta:
    """A duration option's value: a ``timedelta``, seconds, or a string such as ``"30s"``."""
    kinds = "a timedelta, a number of seconds, a duration string such as '30s'"
    duration = _option(name, value, kinds, parse_duration)
    try:
        return to_timedelta(duration)
    except ValueError as exc:
        raise ConfigurationError(f"{name}: {exc}") from None


def size_option(name: str, value: int | str | None) -> int | None:
    """``size_value``, or None for None (no limit)."""
    return None if value is None else size_value(name, value)


def count_option(name: str, value: int | str | None) -> int | None:
    """``count_value``, or None for None (no limit)."""
    return None if value is None else count_value(name, value)


def duration_option(name: str, value: timedelta | float | str | None) -> timedelta | None:
    """``duration_value``, or None for None (no limit)."""
    return None if value is None else duration_value(name, value)


def check_range(name: str, value: int | float, low: float, high: float | None = None) -> None:
    """The one bounds check of sizes and counts: ``low <= value`` (and ``<= high``), else a
    ConfigurationError naming the option, the bound and the value."""
    if value < low:
        raise ConfigurationError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ConfigurationError(f"{name} must be <= {high}, got {value}")


def duration_within(
    name: str,
    value: timedelta | float | str,
    low: timedelta | None = None,
    high: timedelta | None = None,
) -> timedelta:
    """The one bounds check of durations: ``duration_value``, > 0 (and ``>= low``, ``<= high``
    when given), else a ConfigurationError naming the option, the bound and the value."""
    duration = duration_value(name, value)
    if duration <= timedelta(0):
        raise ConfigurationError(f"{name} must be > 0, got {duration.total_seconds():g} seconds")
    if low is not None and duration < low:
        raise ConfigurationError(f"{name} must be >= {_bound(low)}, got {_bound(duration)}")
    if high is not None and duration > high:
        raise ConfigurationError(f"{name} must be <= {_bound(high)}, got {_bound(duration)}")
    return duration


def _bound(duration: timedelta) -> str:
    """A bound for a message: whole days as days (``30 days``), else ``format_duration``."""
    if duration.days and duration == timedelta(days=duration.days):
        return f"{duration.days} days"
    return format_duration(duration)


def to_timedelta(value: timedelta | float | int) -> timedelta:
    """A ``timedelta`` from a ``timedelta`` or a number of seconds; refuses NaN and infinity."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"a duration must be a timedelta or a number of seconds, got {type(value).__name__}"
        )
    if not math.isfinite(value) or abs(value) > _MAX_SECONDS:
        raise ValueError(f"a duration must be a finite number of seconds, got {value}")
    return timedelta(seconds=value)


_BINARY = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def _figure(value: float) -> str:
    """``value`` with at most three significant digits, without trailing zeros."""
    text = f"{value:.3g}"
    return f"{value:.0f}" if "e" in text else text  # 999.99 rounds to 1e+03: write 1000


def format_size(size: float) -> str:
    """A byte count for people, in binary units: ``"512 B"``, ``"64 KiB"``, ``"2.1 MiB"``."""
    for unit, factor in _BINARY:
        if abs(size) >= factor:
            return f"{_figure(size / factor)} {unit}"
    return f"{size:.0f} B"


def format_duration(value: timedelta | float) -> str:
    """A duration for people: ``"0.042 ms"``, ``"12.5 ms"``, ``"1.5 s"``, ``"5 min"``, ``"3 h"``."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if abs(seconds) >= 7200:
        return f"{_figure(seconds / 3600)} h"
    if abs(seconds) >= 120:
        return f"{_figure(seconds / 60)} min"
    if abs(seconds) >= 1:
        return f"{_figure(seconds)} s"
    if abs(seconds) >= 1e-3:
        return f"{_figure(seconds * 1e3)} ms"
    return f"{seconds * 1e3:.3f}".rstrip("0").rstrip(".") + " ms"  # to the microsecond
