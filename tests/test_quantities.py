"""Sizes, durations and counts across the public API: every parameter that takes one accepts
what people type (``"64MiB"``, ``"1500ms"``, ``"10k"``) as well as the number (and a
``timedelta`` for durations), reads back the same value either way, and refuses garbage with
a ``ConfigurationError`` naming the parameter.

The parameters are found by walking ``wasm_sandbox.__all__``: one that looks like a quantity
and has no case here (nor a stated reason to be left out) fails the test, so a new option
cannot skip the shared parser."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import wasm_sandbox as ws

WAT = b'(module (func (export "f")))'
PYTHON = "python"  # (this file runs Python guests: conftest prepares their runtime first)

QUANTITY_NAME = re.compile(
    r"timeout|interval|duration|seconds|memory|megabytes|bytes|size|fuel|count|entries"
    r"|workers|concurrency|(^|_)limit$|^max_|batch|per_s"
)
"""A parameter whose name says it is a size, a duration or a count."""

OUTPUTS = {
    "Alert", "BalancerStats", "Checkpoint", "CodeError", "CodeResult", "ExecutionResult",
    "MemoryUsage", "MonitoredResult", "NetworkStats", "PreparedRuntime", "ProfiledResult",
    "ResourceReport", "ResourceUsage", "ScalingEvent", "SecurityEvent", "IoOperation",
    "DirectoryCreate", "DirectoryDelete", "DirectoryList", "FileClose", "FileDelete",
    "FileOpen", "FileRead", "FileRename", "FileWrite", "HostCall",
}  # fmt: skip
"""Reports and snapshots the library makes: their fields are measurements, not options."""

LEFT_OUT = {
    "AutoScaler.observe(peak_memory)": "a measurement the sandbox feeds in, not an option",
    "ProcessBackend.run(seconds)": "the worker-backend interface, called by LoadBalancer",
    "RayBackend.run(seconds)": "the worker-backend interface, called by LoadBalancer",
    "SandboxBuilder.python_path(entries)": "paths, not a count",
    "SandboxConfig.__init__(fuel_metering)": "a switch, not a quantity",
}


def _public_parameters() -> Iterator[str]:
    """``Owner.method(param)`` (``function(param)``) for every parameter of the public API
    whose name looks like a quantity."""
    for name in ws.__all__:
        obj = getattr(ws, name)
        if isinstance(obj, type) and (issubclass(obj, BaseException) or name in OUTPUTS):
            continue
        if isinstance(obj, type):
            methods = [
                (f"{name}.{attr}", getattr(obj, attr))
                for attr, value in vars(obj).items()
                if (attr == "__init__" or not attr.startswith("_"))
                and callable(getattr(obj, attr))
                and not isinstance(value, type | property)
            ]
        elif callable(obj):
            methods = [(name, obj)]
        else:
            continue
        for where, method in methods:
            try:
                parameters = inspect.signature(method).parameters
            except (TypeError, ValueError):
                continue
            for parameter in parameters:
                if QUANTITY_NAME.search(parameter):
                    yield f"{where}({parameter})"


# --- the cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """How to give one parameter a value, and read back what it became (None: nothing
    public shows it; then only acceptance and refusal are checked)."""

    parameter: str
    kind: str  # "size", "duration", "count"
    apply: Callable[[Any], object]
    text: str
    number: int | float
    expected: object
    name: str  # what a refusal's message names

    @property
    def id(self) -> str:
        return f"{self.parameter}[{self.kind}]"


def _config(**fields: Any) -> ws.SandboxConfig:
    return ws.SandboxConfig(source=WAT, **fields)


def _builder() -> ws.SandboxBuilder:
    return ws.WasmSandbox.builder().source(WAT)


def _profile() -> ws.ProfileBuilder:
    return ws.ResourceProfile.custom()


MiB = 1024 * 1024
SIZE = ("64MiB", 64 * MiB)
BIG = ("256MiB", 256 * MiB)
DURATION = ("1500ms", 1.5)
COUNT = ("10k", 10_000)
SMALL_COUNT = ("2k", 2000)


def _size(parameter: str, apply: Callable[[Any], object], name: str, value: Any = SIZE) -> Case:
    return Case(parameter, "size", apply, value[0], value[1], value[1], name)


def _duration(parameter: str, apply: Callable[[Any], object], name: str) -> Case:
    return Case(parameter, "duration", apply, *DURATION, timedelta(seconds=1.5), name)


def _count(parameter: str, apply: Callable[[Any], object], name: str, value: Any = COUNT) -> Case:
    return Case(parameter, "count", apply, value[0], value[1], value[1], name)


def _unobserved(result: object) -> None:
    """For a parameter nothing public reads back."""
    if isinstance(result, ws.LoadBalancer):
        result.close()


def _limits_cases() -> Iterator[Case]:
    for f in dataclasses.fields(ws.ResourceLimits):
        where = f"ResourceLimits.__init__({f.name})"

        def apply(value: Any, field: str = f.name) -> object:
            return getattr(ws.ResourceLimits(**{field: value}), field)

        if "timedelta" in str(f.type):
            yield _duration(where, apply, f.name)
        elif f.name == "buffer_size":
            yield _size(where, apply, f.name, ("1MiB", MiB))
        elif f.name in (
            "memory_bytes", "memory_growth_limit", "max_file_size", "max_total_file_size",
            "max_upload_bytes", "max_download_bytes",
        ):  # fmt: skip
            yield _size(where, apply, f.name)
        else:
            yield _count(where, apply, f.name)


def _builder_cases() -> Iterator[Case]:
    def limits(method: str, field: str) -> Callable[[Any], object]:
        return lambda v: getattr(getattr(_builder(), method)(v).config().limits, field)

    def config(method: str, read: Callable[[ws.SandboxConfig], object]) -> Callable[[Any], object]:
        return lambda v: read(getattr(_builder(), method)(v).config())

    b = "SandboxBuilder."
    yield _size(b + "memory_limit(memory_bytes)", limits("memory_limit", "memory_bytes"),
                "memory_limit")  # fmt: skip
    yield _size(
        b + "memory_growth_limit(growth_bytes)",
        limits("memory_growth_limit", "memory_growth_limit"),
        "memory_growth_limit",
    )
    yield _count(b + "max_fuel(fuel)", limits("max_fuel", "max_fuel"), "max_fuel")
    yield _count(
        b + "max_host_calls(count)", limits("max_host_calls", "max_host_calls"), "max_host_calls"
    )
    yield _duration(
        b + "host_call_timeout(timeout)",
        limits("host_call_timeout", "host_call_timeout"),
        "host_call_timeout",
    )
    yield _duration(
        b + "timeout_duration(timeout)",
        limits("timeout_duration", "execution_timeout"),
        "timeout_duration",
    )
    yield _size(
        b + "memory_fs(max_bytes)",
        lambda v: _builder().memory_fs("/tmp", max_bytes=v).config().mount_table[0].max_bytes,
        "max_bytes",
    )
    yield _count(
        b + "memory_fs(max_entries)",
        lambda v: _builder().memory_fs("/tmp", max_entries=v).config().mount_table[0].max_entries,
        "max_entries",
    )
    yield _duration(
        b + "monitoring_interval(interval)",
        config("monitoring_interval", lambda c: c.sampling_interval),
        "monitoring_interval",
    )
    yield _size(b + "max_output_bytes(limit)", config("max_output_bytes", lambda c: c.output_limit),
                "max_output_bytes")  # fmt: skip
    yield _size(
        b + "max_module_size(size)",
        config("max_module_size", lambda c: c.build_budget.max_module_size),
        "max_module_size",
    )
    yield _count(
        b + "max_functions(count)",
        config("max_functions", lambda c: c.build_budget.max_functions),
        "max_functions",
    )
    yield _duration(
        b + "build_timeout(timeout)",
        config("build_timeout", lambda c: timedelta(seconds=c.build_budget.timeout or 0)),
        "build_timeout",
    )
    yield _size(
        b + "build_memory_limit(size)",
        config("build_memory_limit", lambda c: c.build_budget.memory_bytes),
        "build_memory_limit",
        BIG,
    )
    yield _count(
        b + "build_async(max_concurrency)",
        lambda v: asyncio.run(_built(v)),
        "max_concurrency",
        SMALL_COUNT,
    )


async def _built(max_concurrency: Any) -> None:
    """``build_async(max_concurrency)``, the sandbox closed at once."""
    made = await _builder().build_async(max_concurrency)
    await made.close()


def _config_cases() -> Iterator[Case]:
    def read(field: str, get: Callable[[ws.SandboxConfig], object]) -> Callable[[Any], object]:
        return lambda v: get(_config(**{field: v}))

    c = "SandboxConfig.__init__"
    yield _duration(f"{c}(monitoring_interval)",
                    read("monitoring_interval", lambda c: c.sampling_interval),
                    "monitoring_interval")  # fmt: skip
    yield _size(f"{c}(max_output_bytes)", read("max_output_bytes", lambda c: c.output_limit),
                "max_output_bytes")  # fmt: skip
    yield _size(
        f"{c}(max_module_size)",
        read("max_module_size", lambda c: c.build_budget.max_module_size),
        "max_module_size",
    )
    yield _count(
        f"{c}(max_functions)",
        read("max_functions", lambda c: c.build_budget.max_functions),
        "max_functions",
    )
    yield _duration(
        f"{c}(build_timeout)",
        read("build_timeout", lambda c: timedelta(seconds=c.build_budget.timeout or 0)),
        "build_timeout",
    )
    yield _size(
        f"{c}(build_memory_limit)",
        read("build_memory_limit", lambda c: c.build_budget.memory_bytes),
        "build_memory_limit",
        BIG,
    )


def _profile_cases() -> Iterator[Case]:
    def limit(method: str, field: str) -> Callable[[Any], object]:
        return lambda v: getattr(getattr(_profile(), method)(v).build().limits, field)

    p = "ProfileBuilder."
    for method, field in (
        ("memory_mb", "memory_bytes"),
        ("memory_growth_limit_mb", "memory_growth_limit"),
        ("max_file_size_mb", "max_file_size"),
    ):  # a number is MiB; a string carries its unit
        yield Case(f"{p}{method}(megabytes)", "size", limit(method, field), "64MiB", 64,
                   64 * MiB, method)  # fmt: skip
    yield _duration(
        p + "timeout_seconds(seconds)",
        limit("timeout_seconds", "execution_timeout"),
        "timeout_seconds",
    )
    yield _count(p + "fuel_limit(fuel)", limit("fuel_limit", "max_fuel"), "fuel_limit")
    yield _count(
        p + "max_open_files(count)", limit("max_open_files", "max_open_files"), "max_open_files"
    )
    yield _count(
        p + "max_connections(count)", limit("max_connections", "max_connections"), "max_connections"
    )


def _mount_cases() -> Iterator[Case]:
    yield _size("Mount.memory(max_bytes)", lambda v: ws.Mount.memory("/tmp", max_bytes=v).max_bytes,
                "max_bytes")  # fmt: skip
    yield _count(
        "Mount.memory(max_entries)",
        lambda v: ws.Mount.memory("/tmp", max_entries=v).max_entries,
        "max_entries",
    )
    yield _size(
        "Mount.__init__(max_bytes)",
        lambda v: ws.Mount(guest_path="/tmp", read_only=False, max_bytes=v).max_bytes,
        "max_bytes",
    )
    yield _count(
        "Mount.__init__(max_entries)",
        lambda v: ws.Mount(guest_path="/tmp", read_only=False, max_entries=v).max_entries,
        "max_entries",
    )


def _scaling_cases() -> Iterator[Case]:
    def bound(which: int, resource: str) -> Callable[[Any], object]:
        def apply(value: Any) -> object:
            pair = [value, "1GiB" if resource == "memory" else "1h"]
            if which == 1:
                pair = ["1KiB" if resource == "memory" else "1ms", value]
            number = ws.ScalingPolicy(*pair).bounds(resource)[which]
            return int(number) if resource == "memory" else timedelta(seconds=number)

        return apply

    for which, name in enumerate(("min_limit", "max_limit")):
        where = f"ScalingPolicy.__init__({name})"
        yield _size(where, bound(which, "memory"), name)
        yield _duration(where, bound(which, "timeout"), name)
    yield _count(
        "LoadBalancer.max_concurrent_executions(count)",
        lambda v: _unobserved(ws.LoadBalancer().max_concurrent_executions(v)),
        "max_concurrent_executions",
        SMALL_COUNT,
    )
    yield _count(
        "LoadBalancer.queue_size(size)",
        lambda v: _unobserved(ws.LoadBalancer().queue_size(v)),
        "queue_size",
    )
    yield _duration(
        "LoadBalancer.timeout_duration(timeout)",
        lambda v: _unobserved(ws.LoadBalancer().timeout_duration(v)),
        "timeout_duration",
    )
    yield _count(
        "ProcessBackend.__init__(max_workers)",
        lambda v: ws.ProcessBackend(max_workers=v).close(),
        "max_workers",
    )
    yield _size(
        "ResourceMonitor.network_threshold(bytes_per_s)",
        lambda v: int(ws.ResourceMonitor().network_threshold(v).thresholds["network"]),
        "bytes_per_s",
    )


CASES = [
    *_limits_cases(),
    *_builder_cases(),
    *_config_cases(),
    *_profile_cases(),
    *_mount_cases(),
    *_scaling_cases(),
]


# Cases that need a built sandbox (a Python one for sessions), made once for the module.


@pytest.fixture(scope="module")
def python_sandbox() -> ws.WasmSandbox:
    return ws.WasmSandbox.builder().source("").language(PYTHON).build()


@pytest.fixture(scope="module")
def saved_session(python_sandbox: ws.WasmSandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("session") / "state.session"
    with python_sandbox.session() as session:
        session.exec("x = 1")
        session.save(path)
    return path


def _session_case(
    parameter: str, open_session: Callable[[Any], ws.Session | ws.AsyncSession], name: str
) -> Case:
    def apply(value: Any) -> object:
        session = open_session(value)
        if isinstance(session, ws.AsyncSession):
            asyncio.run(session.close())
        else:
            session.close()
        return None

    return _duration(parameter, apply, name)


def _sandbox_cases(sandbox: ws.WasmSandbox, saved: Path) -> Iterator[Case]:
    def in_loop(make: Callable[[ws.AsyncWasmSandbox], Any]) -> Any:
        async def go() -> Any:
            return await make(ws.AsyncWasmSandbox(sandbox))

        return asyncio.run(go())

    def opener(how: str, name: str) -> Callable[[Any], ws.Session | ws.AsyncSession]:
        def open_session(value: Any) -> ws.Session | ws.AsyncSession:
            given = {name: value}
            if how == "Session.__init__":
                return ws.Session(sandbox, **given)
            if how == "WasmSandbox.session":
                return sandbox.session(**given)
            if how == "WasmSandbox.load_session":
                return sandbox.load_session(saved, **given)
            if how == "AsyncWasmSandbox.session":
                return in_loop(lambda a: a.session(**given))  # type: ignore[no-any-return]
            return in_loop(lambda a: a.load_session(saved, **given))  # type: ignore[no-any-return]

        return open_session

    for name in ("timeout", "replay_timeout"):
        for how in (
            "Session.__init__",
            "WasmSandbox.session",
            "WasmSandbox.load_session",
            "AsyncWasmSandbox.session",
            "AsyncWasmSandbox.load_session",
        ):
            yield _session_case(f"{how}({name})", opener(how, name), name)
    yield _count(
        "AsyncWasmSandbox.__init__(max_concurrency)",
        lambda v: _unobserved(ws.AsyncWasmSandbox(sandbox, max_concurrency=v)),
        "max_concurrency",
        SMALL_COUNT,
    )
    yield _count(
        "AsyncWasmSandbox.create(max_concurrency)",
        lambda v: in_loop(lambda _: _created(sandbox.config, v)),
        "max_concurrency",
        SMALL_COUNT,
    )


async def _created(config: ws.SandboxConfig, max_concurrency: Any) -> None:
    """``AsyncWasmSandbox.create`` with ``max_concurrency``, closed at once."""
    made = await ws.AsyncWasmSandbox.create(config, max_concurrency)
    await made.close()


def _reporter(runner: Callable[..., Any], read: str, option: str) -> Callable[[Any], object]:
    """Run ``1`` with ``option=value``; the report's ``read`` field (the limit in force)."""

    def apply(value: Any) -> object:
        result = runner("1", **{option: value})
        assert result.error is None and result.report is not None, result
        return getattr(result.report, read)

    return apply


def _code_cases() -> Iterator[Case]:
    """run_python / run_javascript and their twins: the report shows the limits used."""
    runners: dict[str, Callable[..., Any]] = {
        "run_python": ws.run_python,
        "run_javascript": ws.run_javascript,
        "run_python_async": lambda code, **kw: asyncio.run(ws.run_python_async(code, **kw)),
        "run_javascript_async": lambda code, **kw: asyncio.run(ws.run_javascript_async(code, **kw)),
    }
    for function, runner in runners.items():
        yield _duration(f"{function}(timeout)", _reporter(runner, "timeout", "timeout"), "timeout")
        yield _size(
            f"{function}(memory)", _reporter(runner, "memory_limit_bytes", "memory"), "memory"
        )
        yield _count(
            f"{function}(fuel)", _reporter(runner, "fuel_limit", "fuel"), "fuel", ("2G", 2 * 10**9)
        )
    for function, call in (
        ("run_with_timeout", lambda v: ws.run_with_timeout(WAT, "f", v)),
        ("run_with_timeout_async", lambda v: asyncio.run(ws.run_with_timeout_async(WAT, "f", v))),
    ):
        yield _duration(f"{function}(args)", call, "timeout")


# --- the tests --------------------------------------------------------------------------------


def _check(case: Case) -> None:
    """The number and the text give the same value (a duration: a timedelta too); garbage is
    a ConfigurationError naming the parameter."""
    from_number = case.apply(case.number)
    from_text = case.apply(case.text)
    assert from_number == from_text == (None if from_number is None else case.expected), case
    if case.kind == "duration":
        assert case.apply(timedelta(seconds=case.number)) == from_number
    with pytest.raises(ws.ConfigurationError, match=re.escape(case.name)):
        case.apply("lots of")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_quantity_parameters_accept_numbers_and_text(case: Case) -> None:
    """Each option takes the number or what people type, and names itself when refusing."""
    _check(case)


def test_sandbox_and_session_parameters_accept_numbers_and_text(
    python_sandbox: ws.WasmSandbox, saved_session: Path
) -> None:
    """Session timeouts (sessions, loaded sessions, their asyncio twins) and an async
    sandbox's concurrency take numbers and text alike."""
    for case in _sandbox_cases(python_sandbox, saved_session):
        _check(case)


@pytest.mark.parametrize("case", list(_code_cases()), ids=lambda case: case.id)
def test_one_liner_parameters_accept_numbers_and_text(case: Case) -> None:
    """run_python(timeout="10s", memory="256MiB") and the other one-liners run real code
    with the limits given either way (the report shows them)."""
    _check(case)


def test_every_quantity_parameter_of_the_public_api_has_a_case() -> None:
    """Walking ``__all__`` finds each size, duration and count parameter; each has a case
    above or a reason to be left out."""
    found = set(_public_parameters())
    covered = {case.parameter for case in CASES}
    covered |= {case.parameter for case in _code_cases()}
    covered |= {case.parameter for case in _sandbox_cases(None, Path())}  # type: ignore[arg-type]
    assert found - covered - set(LEFT_OUT) == set()
    assert set(LEFT_OUT) <= found  # no stale reason
    positional = {"run_with_timeout(args)", "run_with_timeout_async(args)"}  # given last
    assert covered - positional <= found, covered - found  # no case for a missing parameter
