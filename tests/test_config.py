"""ResourceLimits, profiles, size/duration parsing, the error tree and the public surface."""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wasm_sandbox as ws
from wasm_sandbox import _errors
from wasm_sandbox._units import format_duration, format_size

# --- ResourceLimits --------------------------------------------------------------------------


def test_default_limits_are_unlimited() -> None:
    """ResourceLimits() sets nothing: every field None."""
    limits = ws.ResourceLimits()
    assert all(getattr(limits, f.name) is None for f in dataclasses.fields(limits))


def test_limits_are_frozen_and_keyword_only() -> None:
    """Limits cannot be mutated or given positionally."""
    limits = ws.ResourceLimits(memory_bytes=1 << 20)
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.memory_bytes = 2 << 20  # type: ignore[misc]
    with pytest.raises(TypeError):
        ws.ResourceLimits(1 << 20)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("memory_bytes", 100, "memory_bytes must be >= 65536, got 100"),
        ("memory_bytes", 5 * 1024**3, "memory_bytes must be <= 4294967296"),
        ("memory_bytes", -1, "memory_bytes must be >= 0"),
        ("memory_growth_limit", 1, "memory_growth_limit must be >= 65536, got 1"),
        ("max_fuel", 0, "max_fuel must be >= 1, got 0"),
        ("max_fuel", 2**64, "max_fuel must be <= "),
        ("execution_timeout", 0, "execution_timeout must be > 0"),
        ("execution_timeout", -5.0, "execution_timeout must be > 0"),
        ("execution_timeout", float("nan"), "execution_timeout"),
        ("execution_timeout", timedelta(days=400), "execution_timeout must be <= 30 days"),
    ],
    ids=lambda v: str(v)[:30],
)
def test_invalid_limits_are_refused_naming_the_field(
    field: str, value: object, message: str
) -> None:
    """Negative, zero or absurd values raise ConfigurationError with the field and value."""
    with pytest.raises(ws.ConfigurationError, match=message.replace("(", r"\(")):
        ws.ResourceLimits(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["64MiB", 1.5, True, [1]], ids=repr)
def test_wrong_types_are_type_errors(value: object) -> None:
    """A non-int memory limit is a TypeError naming the field."""
    with pytest.raises(TypeError, match="memory_bytes must be an int"):
        ws.ResourceLimits(memory_bytes=value)  # type: ignore[arg-type]


def test_timeout_accepts_seconds_and_timedelta() -> None:
    """Numbers are seconds; both forms become a timedelta."""
    seconds = ws.ResourceLimits(execution_timeout=1.5)  # type: ignore[arg-type]
    assert seconds.execution_timeout == timedelta(seconds=1.5)
    assert ws.ResourceLimits(execution_timeout=timedelta(minutes=2)).execution_timeout == timedelta(
        minutes=2
    )


@pytest.mark.parametrize(
    "field",
    ["max_connections", "max_requests_per_second", "max_upload_bytes", "max_download_bytes"],
)
def test_network_counts_are_validated(field: str) -> None:
    """The network limits take positive ints, like the others."""
    assert getattr(ws.ResourceLimits(**{field: 10}), field) == 10  # type: ignore[arg-type]
    with pytest.raises(ws.ConfigurationError):
        ws.ResourceLimits(**{field: -1})  # type: ignore[arg-type]
    if field in ("max_connections", "max_requests_per_second"):
        with pytest.raises(ws.ConfigurationError, match=">= 1"):
            ws.ResourceLimits(**{field: 0})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ws.ResourceLimits(**{field: "10"})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["network_timeout", "connect_timeout"])
def test_network_durations_are_validated(field: str) -> None:
    """The network durations take a timedelta or seconds, > 0."""
    assert getattr(ws.ResourceLimits(**{field: 1.5}), field) == timedelta(seconds=1.5)  # type: ignore[arg-type]
    with pytest.raises(ws.ConfigurationError):
        ws.ResourceLimits(**{field: -1})  # type: ignore[arg-type]


def test_replace_and_merge() -> None:
    """replace validates; merged_over fills unset fields from a base."""
    base = ws.ResourceLimits(memory_bytes=1 << 20, max_fuel=10)
    assert base.replace(max_fuel=20).max_fuel == 20
    with pytest.raises(ws.ConfigurationError):
        base.replace(max_fuel=0)
    merged = ws.ResourceLimits(max_fuel=5).merged_over(base)
    assert (merged.memory_bytes, merged.max_fuel) == (1 << 20, 5)


# --- profiles --------------------------------------------------------------------------------


def test_predefined_profiles_have_documented_limits() -> None:
    """LIGHTWEIGHT, STANDARD and HIGH_PERFORMANCE carry the limits the README documents."""
    light, std, high = (
        ws.ResourceProfile.LIGHTWEIGHT,
        ws.ResourceProfile.STANDARD,
        ws.ResourceProfile.HIGH_PERFORMANCE,
    )
    assert (light.limits.memory_bytes, light.limits.execution_timeout, light.limits.max_fuel) == (
        16 << 20, timedelta(seconds=5), 100_000_000,
    )  # fmt: skip
    assert (std.limits.memory_bytes, std.limits.execution_timeout, std.limits.max_fuel) == (
        64 << 20, timedelta(seconds=30), 10_000_000_000,
    )  # fmt: skip
    assert (high.limits.memory_bytes, high.limits.execution_timeout, high.limits.max_fuel) == (
        512 << 20, timedelta(seconds=300), None,
    )  # fmt: skip


def test_custom_profile_builder() -> None:
    """custom().memory_mb().timeout_seconds().fuel_limit().build() sets those limits."""
    profile = (
        ws.ResourceProfile.custom()
        .memory_mb(256)
        .timeout_seconds(120)
        .fuel_limit(50_000_000)
        .build()
    )
    assert profile.limits == ws.ResourceLimits(
        memory_bytes=256 << 20, execution_timeout=timedelta(seconds=120), max_fuel=50_000_000
    )
    assert profile.name == "custom"


def test_profile_by_name() -> None:
    """Profiles are found by their CLI names; unknown names are refused."""
    assert ws.ResourceProfile.by_name("high-performance") is ws.ResourceProfile.HIGH_PERFORMANCE
    assert ws.ResourceProfile.by_name("Standard") is ws.ResourceProfile.STANDARD
    with pytest.raises(ws.ConfigurationError, match="unknown resource profile 'huge'"):
        ws.ResourceProfile.by_name("huge")


def test_builder_uses_profile_and_overrides() -> None:
    """The builder starts from STANDARD; later calls override earlier ones."""
    config = ws.WasmSandbox.builder().source(b"(module)").config()
    assert config.limits == ws.ResourceProfile.STANDARD.limits
    config = (
        ws.WasmSandbox.builder()
        .source(b"(module)")
        .resource_profile(ws.ResourceProfile.LIGHTWEIGHT)
        .memory_limit(1 << 20)
        .config()
    )
    assert config.limits.memory_bytes == 1 << 20
    assert config.limits.max_fuel == 100_000_000
    assert config.profile_name is None


def test_builder_without_source_is_refused() -> None:
    """build() without a source names the missing call."""
    with pytest.raises(ws.ConfigurationError, match=r"no source given"):
        ws.WasmSandbox.builder().build()


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("args", ["a\0b"], ws.ConfigurationError),
        ("env", {"A=B": "x"}, ws.ConfigurationError),
        ("env", {"A": 1}, TypeError),
        ("max_output_bytes", -1, ws.ConfigurationError),
        ("stdin", 42, TypeError),
        ("optimization_level", "speed", TypeError),
    ],
    ids=lambda v: str(v)[:20],
)
def test_bad_builder_options_are_refused(option: str, value: object, error: type) -> None:
    """Every builder option validates its value with a clear error."""
    builder = ws.WasmSandbox.builder().source(b"(module)")
    with pytest.raises(error):
        getattr(builder, option)(value).config()


def test_fuel_metering_off_with_fuel_limit_is_refused() -> None:
    """A fuel limit cannot be honoured without metering: that is an error, not a no-op."""
    with pytest.raises(ws.ConfigurationError, match="needs fuel metering"):
        ws.WasmSandbox.builder().source(b"(module)").max_fuel(10).fuel_metering(False).config()


# --- units -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("64MiB", 64 << 20), ("64MB", 64_000_000), ("1.5GiB", 3 << 29), ("4096", 4096), ("1_000", 1000),
     ("16 kib", 16384), ("2g", 2_000_000_000)],
)  # fmt: skip
def test_parse_size(text: str, expected: int) -> None:
    """Sizes take decimal and binary units, case-insensitive."""
    assert ws.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MiB", "-1", "1.5", "12 parsecs", "1e9"])
def test_parse_size_rejects_garbage(text: str) -> None:
    """Malformed sizes are ValueErrors that quote the input."""
    with pytest.raises(ValueError, match="size"):
        ws.parse_size(text)


def test_parse_count_and_duration() -> None:
    """Counts take k/M/G; durations ms/s/m/h or plain seconds."""
    assert ws.parse_count("10M") == 10_000_000
    assert ws.parse_count("1.5k") == 1500
    assert ws.parse_duration("30s") == timedelta(seconds=30)
    assert ws.parse_duration("500ms") == timedelta(milliseconds=500)
    assert ws.parse_duration("2m") == timedelta(minutes=2)
    assert ws.parse_duration(1.5) == timedelta(seconds=1.5)
    with pytest.raises(ValueError, match="unknown unit 'fortnights'"):
        ws.parse_duration("3fortnights")


@given(
    st.integers(min_value=0, max_value=2**40),
    st.sampled_from(["", "B", "KiB", "MiB", "GiB", "k", "M", "G"]),
)
def test_parse_size_roundtrips_integers(number: int, unit: str) -> None:
    """Any whole number with any unit parses to number * unit."""
    factor = {
        "": 1,
        "B": 1,
        "KiB": 1024,
        "MiB": 1 << 20,
        "GiB": 1 << 30,
        "k": 1000,
        "M": 10**6,
        "G": 10**9,
    }
    assert ws.parse_size(f"{number}{unit}") == number * factor[unit]


@given(st.text(max_size=12))
def test_parse_duration_never_crashes(text: str) -> None:
    """Arbitrary text either parses to a timedelta or raises ValueError."""
    with contextlib.suppress(ValueError):
        assert isinstance(ws.parse_duration(text), timedelta)


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1 KiB"), (65536, "64 KiB"),
     (2 * 2**20, "2 MiB"), (2_200_000, "2.1 MiB"), (3 << 29, "1.5 GiB"), (5 * 2**40, "5 TiB")],
)  # fmt: skip
def test_format_size(size: int, text: str) -> None:
    """Sizes in messages read as people write them, in binary units."""
    assert format_size(size) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 ms"), (4.2e-5, "0.042 ms"), (6e-8, "0 ms"), (0.0125, "12.5 ms"), (0.5, "500 ms"), (1, "1 s"),
     (1.5, "1.5 s"), (90, "90 s"), (300, "5 min"), (7200, "2 h"), (timedelta(seconds=30), "30 s")],
)  # fmt: skip
def test_format_duration(seconds: float | timedelta, text: str) -> None:
    """Durations in messages read as people write them."""
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=2**50))
def test_formatted_sizes_parse_back_to_three_significant_digits(size: int) -> None:
    """What format_size writes is a size spelling parse_size knows (when whole), within the
    three significant digits it keeps."""
    number, unit = format_size(size).split(" ")
    value = float(number) * {"B": 1, "KiB": 1024, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]
    assert abs(value - size) <= max(0.5, size * 0.005)
    if float(number).is_integer():
        assert ws.parse_size(format_size(size)) == value


@given(st.floats(min_value=0, max_value=10**7, allow_nan=False))
def test_formatted_durations_parse_back_to_three_significant_digits(seconds: float) -> None:
    """What format_duration writes parses back with parse_duration to about the same value."""
    back = ws.parse_duration(format_duration(seconds)).total_seconds()
    assert abs(back - seconds) <= max(1e-6, seconds * 0.005)


# --- errors ----------------------------------------------------------------------------------


def test_error_messages_match_the_seed() -> None:
    """The three troubleshooting messages read exactly as documented."""
    assert str(ws.MemoryLimitExceeded(134217728, 67108864)) == (
        "Memory limit exceeded: used 134217728, limit 67108864"
    )
    assert str(ws.ExecutionTimeout(timedelta(seconds=30))) == "Execution timeout after 30 seconds"
    assert str(ws.FuelExhausted(1000000, 1000000)) == "Fuel exhausted: used 1000000, limit 1000000"


@pytest.mark.parametrize(
    "error",
    [
        ws.MemoryLimitExceeded(1, 2, "growth"),
        ws.FuelExhausted(5, 5),
        ws.ExecutionTimeout(timedelta(seconds=1), timedelta(seconds=1.01)),
        ws.StackOverflow("boom", None, "trace"),
        ws.FunctionNotFound("f", ("a", "b")),
        ws.GuestExit(3),
        ws.CompilationError("bad", "diagnostics"),
        ws.InvalidModule("x"),
        ws.MountChanged("/data", "/srv/data", "is now a symbolic link"),
        ws.BuildLimitExceeded("build_timeout", 1.25, 1.0),
    ],
    ids=lambda err: type(err).__name__,
)
def test_errors_pickle_with_their_fields(error: ws.SandboxError) -> None:
    """Errors survive pickling (a process pool ships them) with message and fields."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


def test_error_tree() -> None:
    """Every error is a SandboxError; limits are ResourceLimitExceeded; traps GuestTrap."""
    for name in _errors.__all__:
        assert issubclass(getattr(ws, name), ws.SandboxError)
    for cls in (ws.MemoryLimitExceeded, ws.FuelExhausted, ws.ExecutionTimeout):
        assert issubclass(cls, ws.ResourceLimitExceeded)
    assert issubclass(ws.ConfigurationError, ValueError)
    assert issubclass(ws.UnsupportedSource, NotImplementedError)
    assert issubclass(ws.InvalidArguments, TypeError)


# --- public surface --------------------------------------------------------------------------

PUBLIC = {
    "Alert", "AlertLevel", "MemoryUsage", "ResourceMonitor", "ResourceUsage", "BalancerStats",
    "BuildLimitExceeded",
    "LoadBalancer", "Overflow", "OverflowStrategy", "Timeout", "AutoScaler", "ScalingEvent",
    "ScalingPolicy", "PrometheusMetrics", "enable_prometheus_metrics", "RayBackend", "ProcessBackend",
    "AsyncSession", "AsyncWasmSandbox", "CompilationError", "ConfigurationError", "ExecutionCancelled",
    "ExecutionError", "ExecutionResult", "ExecutionTimeout", "FuelExhausted", "FunctionNotFound",
    "GuestError", "GuestExit", "GuestTrap", "HostError", "IndirectCallError", "IntegerDivisionByZero",
    "IntegerOverflow", "InvalidArguments", "InvalidConversionToInteger", "InvalidModule", "IoLimitExceeded",
    "MemoryAccessOutOfBounds", "MemoryLimitExceeded", "MonitoredResult", "Mount", "MountChanged", "OptimizationLevel",
    "SecurityEvent", "ToolchainNotFound", "DirectoryCreate", "DirectoryDelete", "DirectoryList", "FileClose",
    "FileDelete", "FileOpen", "FileRead", "FileRename", "FileWrite", "IoOperation",
    "ProfileBuilder", "ProfiledResult", "ResourceLimitExceeded", "ResourceLimits",
    "ResourceProfile", "ResourceReport", "SandboxBuilder", "SandboxConfig", "SandboxError",
    "Session", "SessionLost", "NetworkLimitExceeded", "NetworkPolicy", "NetworkStats",
    "SecurityViolation",
    "StackOverflow", "TableAccessOutOfBounds", "UnreachableExecuted", "UnsupportedSource",
    "WasmSandbox", "default_cache_dir", "parse_count", "parse_duration", "parse_size",
    "run", "run_async", "run_with_timeout", "run_with_timeout_async",
}  # fmt: skip


def test_all_is_exactly_the_public_surface() -> None:
    """__all__ is sorted and is the whole public API; each name has a docstring."""
    assert ws.__all__ == sorted(ws.__all__)
    assert set(ws.__all__) == PUBLIC
    for name in ws.__all__:
        obj = getattr(ws, name)
        assert obj.__doc__, name
        if isinstance(obj, type):
            assert obj.__module__ == "wasm_sandbox", name


def test_package_is_typed() -> None:
    """py.typed ships with the package."""
    assert (Path(ws.__file__).parent / "py.typed").exists()


@given(st.integers(min_value=0, max_value=2**62), st.sampled_from(["", "k", "M", "G", "T"]))
def test_parse_count_is_exact_for_large_values(number: int, unit: str) -> None:
    """Counts are computed exactly, never through a lossy float."""
    factor = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    assert ws.parse_count(f"{number}{unit}") == number * factor[unit]


def test_custom_profile_file_and_network_limits() -> None:
    """The seed's custom profile options, file and network limits included."""
    profile = (
        ws.ResourceProfile.custom().memory_mb(256).max_file_size_mb(200).max_open_files(20).build()
    )
    assert profile.limits.max_file_size == 200 * 1024 * 1024
    assert profile.limits.max_open_files == 20
    assert ws.ResourceProfile.custom().max_connections(20).build().limits.max_connections == 20
