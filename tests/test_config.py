"""ResourceLimits, profiles, size/duration parsing, the error tree and the public surface."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import pickle
import re
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

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


@pytest.mark.parametrize("value", [1.5, True, [1], b"64MiB"], ids=repr)
def test_wrong_types_are_type_errors(value: object) -> None:
    """A memory limit that is neither an int nor a size string is a TypeError naming the
    field and what it takes."""
    message = r"memory_bytes must be an int \(bytes\), a size string such as '64MiB', or None"
    with pytest.raises(TypeError, match=message):
        ws.ResourceLimits(memory_bytes=value)  # type: ignore[arg-type]


SIZE_FIELDS = ["max_file_size", "max_total_file_size", "max_upload_bytes", "max_download_bytes"]
UNITS = {"": 1, "B": 1, "KiB": 1024, "MiB": 2**20, "GiB": 2**30, "k": 1000, "M": 10**6, "G": 10**9}


@given(st.sampled_from(SIZE_FIELDS), st.integers(0, 2**20), st.sampled_from(sorted(UNITS)))
def test_size_fields_take_size_strings(field: str, number: int, unit: str) -> None:
    """Every size field of ResourceLimits takes a size string and holds its bytes."""
    limits = ws.ResourceLimits(**{field: f"{number}{unit}"})  # type: ignore[arg-type]
    assert getattr(limits, field) == number * UNITS[unit]


@given(st.integers(1, 10**6), st.sampled_from(["ms", "s", "m", "h", ""]))
def test_duration_fields_take_duration_strings(number: int, unit: str) -> None:
    """The duration fields take duration strings (up to their 30-day cap)."""
    seconds = number * {"ms": 1e-3, "s": 1, "m": 60, "h": 3600, "": 1}[unit]
    for field in ("execution_timeout", "network_timeout", "connect_timeout"):
        if seconds > 30 * 86400:
            with pytest.raises(ws.ConfigurationError, match=f"{field} must be <= 30 days"):
                ws.ResourceLimits(**{field: f"{number}{unit}"})  # type: ignore[arg-type]
        else:
            limits = ws.ResourceLimits(**{field: f"{number}{unit}"})  # type: ignore[arg-type]
            assert getattr(limits, field) == timedelta(seconds=seconds)


def test_count_fields_take_count_strings() -> None:
    """Counts (fuel, files, connections...) take count strings as the CLI does."""
    limits = ws.ResourceLimits(max_fuel="10M", max_open_files="1k", max_connections="20")  # type: ignore[arg-type]
    assert (limits.max_fuel, limits.max_open_files, limits.max_connections) == (10**7, 1000, 20)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("memory_bytes", "64 parsecs", "memory_bytes: invalid size '64 parsecs': unknown unit"),
        ("memory_bytes", "1.5", "memory_bytes: invalid size '1.5': not a whole number"),
        ("memory_bytes", "1KiB", "memory_bytes must be >= 65536, got 1024"),
        ("max_fuel", "lots", "max_fuel: invalid count 'lots'"),
        ("execution_timeout", "soon", "execution_timeout: invalid duration 'soon'"),
        ("connect_timeout", "0s", "connect_timeout must be > 0"),
    ],
)
def test_bad_strings_are_configuration_errors_naming_the_field(
    field: str, value: str, message: str
) -> None:
    """A string that does not parse (or is out of range) is a ConfigurationError naming the
    field."""
    with pytest.raises(ws.ConfigurationError, match=re.escape(message)):
        ws.ResourceLimits(**{field: value})  # type: ignore[arg-type]


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
    assert getattr(ws.ResourceLimits(**{field: "10"}), field) == 10  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ws.ResourceLimits(**{field: 10.0})  # type: ignore[arg-type]


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
    """LIGHTWEIGHT, STANDARD and HIGH_PERFORMANCE carry the limits docs/limits.md documents."""
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


def test_custom_profile_builder_takes_strings_with_units() -> None:
    """A string given to a ProfileBuilder size or duration carries its own unit; a plain
    number keeps the method's unit (MiB, seconds)."""
    profile = (
        ws.ResourceProfile.custom()
        .memory_mb("1GiB")
        .memory_growth_limit_mb(16)
        .max_file_size_mb("200MB")
        .timeout_seconds("2m")
        .fuel_limit("50M")
        .max_open_files("1k")
        .build()
    )
    limits = profile.limits
    assert (limits.memory_bytes, limits.memory_growth_limit, limits.max_file_size) == (
        2**30, 16 * 2**20, 200_000_000,
    )  # fmt: skip
    assert (limits.execution_timeout, limits.max_fuel, limits.max_open_files) == (
        timedelta(minutes=2), 50_000_000, 1000,
    )  # fmt: skip
    assert (
        ws.ResourceProfile.custom().timeout_seconds(None).build().limits.execution_timeout is None
    )
    with pytest.raises(ws.ConfigurationError, match="memory_mb: invalid size '1 GB please'"):
        ws.ResourceProfile.custom().memory_mb("1 GB please")
    with pytest.raises(TypeError, match="memory_mb must be an int"):
        ws.ResourceProfile.custom().memory_mb(1.5)  # type: ignore[arg-type]


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


def test_builder_monitoring_switches_record_their_settings() -> None:
    """enable_resource_monitoring turns sampling on and off; alert_on_high_usage installs the
    80% memory / 90% CPU monitor (alerts to the log), keeps a monitor already given, and
    removes its own when turned off."""
    builder = ws.WasmSandbox.builder().source(b"(module)")
    assert builder.config().resource_monitoring is False
    assert builder.enable_resource_monitoring().config().resource_monitoring is True
    assert builder.enable_resource_monitoring(False).config().resource_monitoring is False
    monitor = builder.alert_on_high_usage().config().resource_monitor
    assert monitor is not None and monitor.callback is None
    assert monitor.thresholds == {"memory": 80.0, "cpu": 90.0}
    assert builder.alert_on_high_usage(False).config().resource_monitor is None
    mine = ws.ResourceMonitor().memory_threshold(50)
    kept = builder.resource_monitor(mine).alert_on_high_usage().config().resource_monitor
    assert kept is mine and mine.thresholds == {"memory": 50.0}


def test_builder_calls_do_not_depend_on_their_order() -> None:
    """Later calls override earlier ones without traps: cache_dir(path) after cache_dir(None)
    turns the disk cache on again, and alert_on_high_usage(False) never removes a monitor
    given with resource_monitor (only the one it installed)."""
    builder = ws.WasmSandbox.builder().source(b"(module)")
    assert builder.cache_dir(None).config().use_cache is False
    config = builder.cache_dir("/tmp/cache").config()
    assert config.use_cache is True and config.cache_dir == Path("/tmp/cache")
    mine = ws.ResourceMonitor().memory_threshold(50)
    builder.resource_monitor(mine)
    assert builder.alert_on_high_usage(False).config().resource_monitor is mine
    assert builder.alert_on_high_usage().config().resource_monitor is mine


def test_readme_python_example_memory_limit_string() -> None:
    """docs/limits.md's ``.memory_limit("256MiB")`` sets 256 MiB."""
    config = ws.WasmSandbox.builder().source(b"(module)").memory_limit("256MiB").config()
    assert config.limits.memory_bytes == 256 * 2**20


@pytest.mark.parametrize(
    ("option", "value", "read", "expected"),
    [
        ("memory_limit", "256MiB", lambda c: c.limits.memory_bytes, 256 * 2**20),
        ("memory_growth_limit", "1MiB", lambda c: c.limits.memory_growth_limit, 2**20),
        ("max_fuel", "10M", lambda c: c.limits.max_fuel, 10**7),
        ("timeout_duration", "1.5s", lambda c: c.limits.execution_timeout, timedelta(seconds=1.5)),
        ("timeout_duration", "500ms", lambda c: c.limits.execution_timeout, timedelta(seconds=0.5)),
        ("max_output_bytes", "1MiB", lambda c: c.max_output_bytes, 2**20),
        ("monitoring_interval", "50ms", lambda c: c.monitoring_interval, timedelta(seconds=0.05)),
        ("max_module_size", "4MiB", lambda c: c.max_module_size, 4 * 2**20),
        ("max_functions", "20k", lambda c: c.max_functions, 20_000),
        ("build_timeout", "10s", lambda c: c.build_timeout, timedelta(seconds=10)),
        ("build_memory_limit", "1GiB", lambda c: c.build_memory_limit, 2**30),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_builder_sizes_and_durations_take_strings(
    option: str, value: str, read: Callable[[ws.SandboxConfig], object], expected: object
) -> None:
    """Every builder option that takes a size, a count or a duration takes its string form,
    parsed as the command line parses it."""
    builder = getattr(ws.WasmSandbox.builder().source(b"(module)"), option)(value)
    assert read(builder.config()) == expected


@pytest.mark.parametrize(
    "option",
    ["memory_limit", "memory_growth_limit", "max_output_bytes", "max_module_size",
     "build_memory_limit", "max_fuel", "max_functions", "timeout_duration",
     "monitoring_interval", "build_timeout"],
)  # fmt: skip
def test_builder_bad_strings_name_the_option(option: str) -> None:
    """A string that does not parse is a ConfigurationError naming the builder option."""
    builder = ws.WasmSandbox.builder().source(b"(module)")
    with pytest.raises(ws.ConfigurationError, match=f"^{option}: invalid "):
        getattr(builder, option)("12 parsecs").config()


@pytest.mark.parametrize(
    ("option", "kinds"),
    [
        ("memory_limit", "an int \\(bytes\\), a size string"),
        ("max_fuel", "an int, a count string"),
        ("timeout_duration", "a timedelta, a number of seconds, a duration string"),
        ("max_output_bytes", "an int \\(bytes\\), a size string"),
        ("monitoring_interval", "a timedelta, a number of seconds, a duration string"),
    ],
)
def test_builder_wrong_types_are_type_errors(option: str, kinds: str) -> None:
    """A value of the wrong type (bytes, a list) is a TypeError saying what the option takes."""
    builder = ws.WasmSandbox.builder().source(b"(module)")
    with pytest.raises(TypeError, match=f"^{option} must be {kinds}"):
        getattr(builder, option)([1]).config()


def test_sandbox_config_and_mounts_take_strings() -> None:
    """SandboxConfig fields and in-memory mounts take size and duration strings too: the
    fields keep what was given, the properties the sandbox reads hold the parsed values."""
    config = ws.SandboxConfig(
        source=b"(module)",
        max_output_bytes="64KiB",
        monitoring_interval="20ms",
        build_timeout="1m",
    )
    assert (config.max_output_bytes, config.output_limit) == ("64KiB", 65536)
    assert config.monitoring_interval == "20ms"
    assert config.sampling_interval == timedelta(milliseconds=20)
    assert (config.build_timeout, config.build_budget.timeout) == ("1m", 60.0)
    mount = ws.Mount.memory("/scratch", "16MiB", "10k")
    assert (mount.max_bytes, mount.max_entries) == (16 * 2**20, 10_000)
    builder = ws.WasmSandbox.builder().source(b"(module)").memory_fs("/tmp", max_bytes="1MiB")
    assert builder.config().mounts[0].max_bytes == 2**20
    with pytest.raises(ws.ConfigurationError, match="max_bytes: invalid size"):
        ws.Mount.memory("/scratch", "lots")


def test_balancer_timeout_takes_a_duration_string() -> None:
    """LoadBalancer.timeout_duration takes "300ms" like a timedelta or seconds: a spinning job
    ends with Timeout after about 0.3 s."""
    spin = b'(module (func (export "spin") (loop (br 0))))'
    sandbox = ws.WasmSandbox.builder().source(spin).max_fuel(None).timeout_duration(10).build()
    with ws.LoadBalancer(sandbox).timeout_duration("300ms") as balancer:
        started = time.monotonic()
        with pytest.raises(ws.Timeout):
            balancer.execute("spin")
        assert 0.3 <= time.monotonic() - started < 2
    with pytest.raises(ws.ConfigurationError, match="timeout_duration: invalid duration"):
        ws.LoadBalancer(sandbox).timeout_duration("half a second")


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


def test_sandbox_config_never_rewrites_its_fields() -> None:
    """Construction checks the fields and changes none: a callback leaves its monitoring
    switch as given (the ``*_monitoring_enabled`` properties say it is on), strings and a
    list of mounts stay as given, and a stream given as stdin is neither read nor replaced."""
    stream = io.BytesIO(b"not read at configuration")
    mounts = [ws.Mount.memory("/tmp")]
    given: dict[str, Any] = {
        "io_callback": print,
        "network_callback": print,
        "resource_callback": print,
        "monitoring_interval": "20ms",
        "max_output_bytes": "1MiB",
        "build_timeout": 5,
        "max_module_size": "4MiB",
        "stdin": stream,
        "mounts": mounts,
    }
    config = ws.SandboxConfig(source=b"(module)", **given)
    for name, value in given.items():
        assert getattr(config, name) is value, name
    assert stream.tell() == 0
    assert (config.io_monitoring, config.network_monitoring, config.resource_monitoring) == (
        False,
        False,
        False,
    )
    assert config.io_monitoring_enabled and config.network_monitoring_enabled
    assert config.resource_monitoring_enabled
    assert config.sampling_interval == timedelta(milliseconds=20)
    assert config.output_limit == 2**20
    assert config.mount_table == tuple(mounts)
    assert (config.build_budget.timeout, config.build_budget.max_module_size) == (5.0, 4 << 20)
    plain = ws.SandboxConfig(source=b"(module)")
    assert not plain.io_monitoring_enabled and not plain.network_monitoring_enabled
    assert not plain.resource_monitoring_enabled


@pytest.mark.parametrize(
    ("field", "value", "error", "message"),
    [
        ("limits", None, TypeError, "^limits must be a ResourceLimits, got NoneType"),
        ("optimization_level", "speed", TypeError, "^optimization_level must be an Optim"),
        ("network_policy", "*", TypeError, "^network_policy must be a NetworkPolicy, got str"),
        ("resource_monitor", 1, TypeError, "^resource_monitor must be a ResourceMonitor"),
        ("auto_scaler", 1, TypeError, "^auto_scaler must be an AutoScaler, got int"),
        ("io_callback", 1, TypeError, "^io_callback must be callable, got int"),
        ("network_callback", 1, TypeError, "^network_callback must be callable, got int"),
        ("resource_callback", 1, TypeError, "^resource_callback must be callable, got int"),
        ("on_stdout", 1, TypeError, "^on_stdout must be callable, got int"),
        ("on_stderr", "x", TypeError, "^on_stderr must be callable, got str"),
        ("stdin", 42, TypeError, "^stdin must be bytes, str or a binary stream, got int"),
        ("mounts", ["/tmp"], TypeError, "^mounts must be Mount values, got str"),
        ("args", ("a\0b",), ws.ConfigurationError, "^args must not contain NUL"),
        ("monitoring_interval", "1ms", ws.ConfigurationError, "^monitoring_interval must be >="),
        ("monitoring_interval", 7200, ws.ConfigurationError, "^monitoring_interval must be <="),
        ("monitoring_interval", -1, ws.ConfigurationError, "^monitoring_interval must be > 0"),
        ("monitoring_interval", "soon", ws.ConfigurationError, "^monitoring_interval: invalid"),
        ("max_output_bytes", -1, ws.ConfigurationError, "^max_output_bytes must be >= 0, got -1"),
        ("max_output_bytes", "2GiB", ws.ConfigurationError, "^max_output_bytes must be <="),
        ("build_timeout", 0, ws.ConfigurationError, "^build_timeout must be > 0"),
        ("build_timeout", [1], TypeError, "^build_timeout must be a timedelta"),
        ("max_functions", -1, ws.ConfigurationError, "^max_functions must be >= 0, got -1"),
    ],
    ids=lambda v: str(v)[:24],
)
def test_each_bad_config_field_is_one_clear_error(
    field: str, value: Any, error: type[Exception], message: str
) -> None:
    """Each field is checked at construction, and a bad value is one error naming the
    field, the rule and the value."""
    with pytest.raises(error, match=message):
        ws.SandboxConfig(source=b"(module)", **{field: value})


@pytest.mark.parametrize(
    "duration",
    [timedelta(milliseconds=1500), 1.5, "1.5s", "1500ms"],
    ids=["timedelta", "seconds", "string", "string-ms"],
)
def test_durations_take_all_three_forms_everywhere(duration: timedelta | float | str) -> None:
    """A duration is a timedelta, seconds or a string wherever one is accepted, parsed by
    the one parser: the builder's timeouts and interval, the balancer's timeout, a
    session-free profile timeout and an auto-scaler's timeout bounds."""
    expected = timedelta(seconds=1.5)
    config = (
        ws.WasmSandbox.builder()
        .source(b"(module)")
        .timeout_duration(duration)
        .build_timeout(duration)
        .monitoring_interval(duration)
        .config()
    )
    assert config.limits.execution_timeout == expected
    assert config.build_budget.timeout == 1.5 and config.sampling_interval == expected
    assert ws.SandboxConfig(source=b"(module)", build_timeout=duration).build_budget.timeout == 1.5
    profile = ws.ResourceProfile.custom().timeout_seconds(duration).build()
    assert profile.limits.execution_timeout == expected
    balancer = ws.LoadBalancer().timeout_duration(duration)
    assert balancer._timeout == 1.5  # the parsed timeout, in seconds
    policy = ws.ScalingPolicy(min_limit=duration, max_limit="3s")
    assert policy.bounds("timeout") == (1.5, 3.0)
    scaler = ws.AutoScaler().timeout_policy(policy)
    assert scaler.limits_for(ws.ResourceLimits()).execution_timeout == expected


def test_scaling_policy_string_bounds_take_the_unit_of_their_resource() -> None:
    """A memory policy's string bounds are sizes, a timeout policy's durations; a string
    bound out of order, or of the other resource's unit, is refused when the policy is given
    to the scaler; one that is neither a size nor a duration at once."""
    policy = ws.ScalingPolicy(min_limit="1MiB", max_limit="4MiB")
    assert policy.bounds("memory") == (2**20, 4 * 2**20)
    scaler = ws.AutoScaler().memory_policy(policy)
    assert scaler.limits_for(ws.ResourceLimits()).memory_bytes == 2**20
    with pytest.raises(ws.ConfigurationError, match="0 < min_limit <= max_limit"):
        ws.AutoScaler().timeout_policy(ws.ScalingPolicy(min_limit="2s", max_limit="1s"))
    with pytest.raises(ws.ConfigurationError, match="min_limit: invalid size"):
        ws.AutoScaler().memory_policy(ws.ScalingPolicy(min_limit="30s", max_limit="1MiB"))
    with pytest.raises(ws.ConfigurationError, match="min_limit: 'soon' is neither a size"):
        ws.ScalingPolicy(min_limit="soon", max_limit="1MiB")
    with pytest.raises(TypeError, match="min_limit must be bytes"):
        ws.AutoScaler().memory_policy(ws.ScalingPolicy(min_limit=timedelta(seconds=1), max_limit=5))


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
    """The three troubleshooting messages read exactly as documented (the memory one with
    the sizes for people after the seed's wording)."""
    assert str(ws.MemoryLimitExceeded(134217728, 67108864)) == (
        "Memory limit exceeded: used 134217728, limit 67108864 "
        "(tried to allocate 128 MiB; the limit is 64 MiB)"
    )
    assert str(ws.MemoryLimitExceeded(1107296256, 268435456)).endswith(
        "(tried to allocate 1.03 GiB; the limit is 256 MiB)"
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
        ws.SourceNotFound("/srv/guest.wasm"),
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


CLI_EXIT_STATUSES = {
    "ConfigurationError": 65, "MountChanged": 65, "UnsupportedSource": 65, "InvalidModule": 65,
    "BuildLimitExceeded": 65, "CompilationError": 65, "ToolchainNotFound": 69,
    "FunctionNotFound": 65, "InvalidArguments": 65, "Overflow": 75, "Timeout": 124,
    "ExecutionError": 71, "ResourceLimitExceeded": 71, "MemoryLimitExceeded": 120,
    "FuelExhausted": 121, "IoLimitExceeded": 122, "NetworkLimitExceeded": 123,
    "ExecutionTimeout": 124, "GuestTrap": 70, "StackOverflow": 70, "MemoryAccessOutOfBounds": 70,
    "UnreachableExecuted": 70, "IntegerDivisionByZero": 70, "IntegerOverflow": 70,
    "InvalidConversionToInteger": 70, "TableAccessOutOfBounds": 70, "IndirectCallError": 70,
    "GuestError": 1, "ExecutionCancelled": 130, "SecurityViolation": 126, "SessionLost": 75,
    "SnapshotError": 65, "SourceNotFound": 66, "HostCallLimitExceeded": 125,
    "HostError": 71, "SandboxError": 71,
}  # fmt: skip


def test_every_public_error_lives_in_errors_with_its_cli_exit_status() -> None:
    """Every public error class is defined in _errors (the one tree) and carries the exit
    status the command gives it; the module docstring's tree names each class."""
    public = {
        name
        for name in ws.__all__
        if isinstance(getattr(ws, name), type) and issubclass(getattr(ws, name), Exception)
    }
    assert public - {"GuestExit"} == set(CLI_EXIT_STATUSES)
    for name in public:
        cls = getattr(ws, name)
        assert cls is getattr(_errors, name) and name in _errors.__all__, name
        assert name in (_errors.__doc__ or ""), name
        if name != "GuestExit":
            assert cls.cli_exit_status == CLI_EXIT_STATUSES[name], name


@pytest.mark.parametrize(("code", "status"), [(0, 0), (3, 3), (255, 255), (256, 0), (300, 44)])
def test_guest_exit_status_is_the_guests_code(code: int, status: int) -> None:
    """A GuestExit's exit status is the guest's code, as a process exit status (mod 256),
    also after pickling (a worker process sends it back)."""
    error = pickle.loads(pickle.dumps(ws.GuestExit(code)))
    assert (error.exit_code, error.cli_exit_status) == (code, status)


# --- public surface --------------------------------------------------------------------------

PUBLIC = {
    "Alert", "AlertLevel", "MemoryUsage", "ResourceMonitor", "ResourceUsage", "BalancerStats",
    "BuildLimitExceeded",
    "LoadBalancer", "Overflow", "OverflowStrategy", "Timeout", "AutoScaler", "ScalingEvent",
    "ScalingPolicy", "PrometheusMetrics", "enable_prometheus_metrics", "RayBackend", "ProcessBackend",
    "AsyncSession", "AsyncWasmSandbox", "Checkpoint", "CompilationError", "ConfigurationError", "ExecutionCancelled",
    "ExecutionError", "ExecutionResult", "ExecutionTimeout", "FuelExhausted", "FunctionNotFound",
    "GuestError", "GuestExit", "GuestTrap", "HostError", "IndirectCallError", "IntegerDivisionByZero",
    "IntegerOverflow", "InvalidArguments", "InvalidConversionToInteger", "InvalidModule", "IoLimitExceeded",
    "MemoryAccessOutOfBounds", "MemoryLimitExceeded", "MonitoredResult", "Mount", "MountChanged", "OptimizationLevel",
    "SecurityEvent", "ToolchainNotFound", "DirectoryCreate", "DirectoryDelete", "DirectoryList", "FileClose",
    "FileDelete", "FileOpen", "FileRead", "FileRename", "FileWrite", "IoOperation",
    "HostCall", "HostCallLimitExceeded", "HostFunction",
    "PreparedRuntime", "ProfileBuilder", "ProfiledResult", "ResourceLimitExceeded", "ResourceLimits",
    "ResourceProfile", "ResourceReport", "SandboxBuilder", "SandboxConfig", "SandboxError",
    "Session", "SessionLost", "SnapshotError", "SourceNotFound", "NetworkLimitExceeded", "NetworkPolicy", "NetworkStats",
    "SecurityViolation",
    "StackOverflow", "TableAccessOutOfBounds", "UnreachableExecuted", "UnsupportedSource",
    "WasmSandbox", "default_cache_dir", "parse_count", "parse_duration", "parse_size",
    "export_prepared", "import_prepared", "prepare", "run", "run_async", "run_with_timeout", "run_with_timeout_async",
    "CodeError", "CodeResult", "run_python", "run_python_async", "run_javascript", "run_javascript_async",
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
