"""``SandboxConfig``, the frozen description of a sandbox, and ``SandboxBuilder``, the fluent
sugar that produces one. ``WasmSandbox(config)`` works without the builder.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, overload

from ._config._hostfns import HostFunction
from ._config._limits import OptimizationLevel, ResourceLimits, ResourceProfile
from ._config._mounts import DEFAULT_MEMORY_FS_BYTES, DEFAULT_MEMORY_FS_ENTRIES, Mount, check_mounts
from ._config._policy import NetworkPolicy
from ._errors import ConfigurationError
from ._guests._pypath import PATH_GUEST, check_python_path
from ._guests._sources import Source, script_language
from ._observe._iomonitor import IoOperation
from ._observe._monitor import DEFAULT_INTERVAL, ResourceMonitor, ResourceUsage, high_usage_monitor
from ._runtime._build import (
    DEFAULT_MAX_FUNCTIONS,
    DEFAULT_MAX_MODULE_SIZE,
    MIN_BUILD_MEMORY,
    BuildBudget,
)
from ._scaling._autoscale import AutoScaler
from ._units import (
    check_range,
    count_option,
    duration_option,
    duration_within,
    size_option,
    size_value,
)
from ._wasi._guard import NetworkStats

if TYPE_CHECKING:
    from ._sandbox import AsyncWasmSandbox, WasmSandbox

__all__ = ["ProgressCallback", "SandboxBuilder", "SandboxConfig", "StdinSource"]

StdinSource = bytes | str | BinaryIO | None
ProgressCallback = Callable[[str, float], None]
DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024
_MAX_OUTPUT_CAP = 1 << 30
_Fn = TypeVar("_Fn", bound=Callable[..., Any])


@dataclass(frozen=True, kw_only=True, slots=True)
class SandboxConfig:
    """Everything a ``WasmSandbox`` needs; each field is checked once, at construction.

    Fields hold what was given (a size may be ``"64KiB"``, a duration ``"20ms"`` or seconds);
    the values the sandbox uses are read-only properties: ``output_limit``,
    ``sampling_interval``, ``mount_table``, ``build_budget`` and the ``*_monitoring_enabled``
    switches (a callback turns its monitoring on without changing the field)."""

    source: Source
    """A ``.wasm``/``.wat``/``.c``/``.rs``/``.py``/``.js`` path, module bytes (a wasm binary or
    WAT text), or source text with ``language``."""
    language: str | None = None
    """``wasm``, ``wat``, ``c``, ``rust``, ``python`` or ``javascript``: the language of a
    source given as text or bytes (a ``str`` source is then the program, not a path). None:
    taken from the file suffix."""
    limits: ResourceLimits = field(default_factory=lambda: ResourceProfile.STANDARD.limits)
    """The limits each execution runs under (default: the STANDARD profile)."""
    profile_name: str | None = "standard"
    """The profile the limits came from, for reports; None once limits were edited by hand."""
    optimization_level: OptimizationLevel = OptimizationLevel.SPEED
    """How hard the compiler optimises the guest."""
    debug_mode: bool = False
    """Compile with native debug info (DWARF in the compiled code, for native debuggers such
    as gdb or lldb); log the build and every execution (its report's figures in the message)
    at DEBUG level."""
    verbose_resource_logging: bool = False
    """Log each execution at INFO through the ``wasm_sandbox`` logger, the message stating its
    report's main figures (the whole report in the record's ``report`` attribute)."""
    args: tuple[str, ...] = ()
    """Arguments after argv[0] given to ``run()`` when it is called without ``args``."""
    env: tuple[tuple[str, str], ...] = ()
    """Environment variables the guest sees (none by default: the host's are never passed)."""
    stdin: StdinSource = None
    """Standard input for ``run()``: bytes, text (UTF-8) or a binary stream. A stream is read
    by the run, never here: one with a ``fileno()`` as the guest reads, any other to its end
    when the run starts."""
    fuel_metering: bool | None = None
    """Count fuel. None (default): only when ``max_fuel`` is set, since wasmtime's fuel
    instrumentation slows call-heavy guests about 1.9x; True: always, so every report has
    ``fuel_consumed``; False with a ``max_fuel`` is refused."""
    mounts: Sequence[Mount] = ()
    """Directories the guest can see (none by default: no file system at all)."""
    io_monitoring: bool = False
    """Report every file operation: to ``io_callback`` if given, else to the
    ``wasm_sandbox.io`` logger at DEBUG level. An ``io_callback`` implies it
    (``io_monitoring_enabled``)."""
    io_callback: Callable[[IoOperation], object] | None = None
    """Called with one ``IoOperation`` per file operation, on the guest's thread."""
    strict_io_limits: bool = False
    """Stop the guest with IoLimitExceeded at the first file-system limit it reaches, instead
    of giving it the errno (EFBIG, EDQUOT, EMFILE, ENOSPC) to handle."""
    network_policy: NetworkPolicy = NetworkPolicy()  # noqa: RUF009 - frozen, immutable
    """Which endpoints the guest may connect to (default: none)."""
    network_monitoring: bool = False
    """Report network use as it changes: to ``network_callback`` if given, else to the
    ``wasm_sandbox.network`` logger at DEBUG level. A ``network_callback`` implies it
    (``network_monitoring_enabled``)."""
    network_callback: Callable[[NetworkStats], object] | None = None
    """Called with ``NetworkStats`` each time a connection opens or closes, bytes move, or
    an attempt is refused (on the guest's thread; one that raises is logged and dropped)."""
    strict_network: bool = False
    """Stop the guest at a policy refusal (``SecurityViolation``) or a network limit
    (``NetworkLimitExceeded``) instead of giving it the errno."""
    on_stdout: Callable[[bytes], object] | None = None
    """Called with each chunk the guest writes to stdout (``bytes``, those under
    ``max_output_bytes``), in order, on a thread of the execution's own; every chunk is
    delivered before ``call()`` or ``run()`` returns (docs/agents.md: *Output*)."""
    on_stderr: Callable[[bytes], object] | None = None
    """As ``on_stdout``, for stderr."""
    resource_monitoring: bool = False
    """Sample ``ResourceUsage`` during every execution (to ``resource_callback``, else the
    debug log). A ``resource_callback`` implies it (``resource_monitoring_enabled``)."""
    resource_callback: Callable[[ResourceUsage], object] | None = None
    """Receives each sample, on the monitoring thread (never the guest's)."""
    monitoring_interval: timedelta | float | str = DEFAULT_INTERVAL
    """How often a running execution is sampled: a timedelta, seconds or ``"100ms"``
    (default 100 ms; 5 ms .. 1 hour; as a timedelta: ``sampling_interval``)."""
    resource_monitor: ResourceMonitor | None = None
    """Thresholds whose crossings raise ``Alert``s."""
    auto_scaler: AutoScaler | None = None
    """Moves the memory limit and timeout with observed usage (isolated calls only)."""
    keep_instance: bool = False
    """Keep one instance across calls (globals and memory persist); default: fresh per call."""
    max_output_bytes: int | str = DEFAULT_MAX_OUTPUT
    """How much of stdout and of stderr each is captured, bytes or ``"1MiB"`` (in bytes:
    ``output_limit``); the rest is counted and dropped."""
    cache_dir: Path | None = None
    """Where compiled modules are cached (default: ``default_cache_dir()``)."""
    use_cache: bool = True
    """False: never read or write the on-disk compiled-module cache."""
    progress: ProgressCallback | bool | None = None
    """First-compile progress: a callback ``(phase, seconds)``, True for a line on stderr,
    False for none; None (default): on stderr when it is a terminal."""
    max_module_size: int | str | None = DEFAULT_MAX_MODULE_SIZE
    """Largest module, in bytes of WebAssembly, the sandbox builds (default 1 GiB; None: no
    cap); checked before the module is even parsed: ``BuildLimitExceeded``."""
    max_functions: int | str | None = DEFAULT_MAX_FUNCTIONS
    """Most functions the module may define (default 1,000,000, wasmtime's own limit; None:
    no cap); counted by our parser before compiling: ``BuildLimitExceeded``."""
    build_timeout: timedelta | float | str | None = None
    """Wall-clock limit of compiling the module, a timedelta, seconds or ``"10s"`` (default
    None; parsed: ``build_budget.timeout``). When
    set (or ``build_memory_limit`` is), the module is compiled in a child process, killed at
    the limit: ``BuildLimitExceeded``. A module already in the compiled-module cache is not
    compiled again, so it is never refused for time."""
    build_memory_limit: int | str | None = None
    """Address space, in bytes, of the child process that compiles the module (>= 256 MiB;
    default None). Past it the compile fails: ``BuildLimitExceeded``."""
    preinitialize: bool = False
    """Prepare, once at build, the state every fresh execution of a Python or JavaScript
    guest starts from (``SandboxBuilder.preinitialize``; docs/sessions.md: *Pre-initialisation*)."""
    setup: str | None = None
    """With ``preinitialize``: guest code run once at build in the guest's global scope
    (Python's ``__main__``, JavaScript's global object). None: the source is loaded instead,
    as ``call()`` loads it, and calls use it without running it again."""
    host_functions: Sequence[HostFunction] = ()
    """Host functions guests may call (``SandboxBuilder.host_function``; docs/agents.md: *Host
    functions*), names unique."""
    python_path: Sequence[str | os.PathLike[str]] = ()
    """Directories and pure-Python wheels a Python guest imports from: each is mounted
    read-only below ``/usr/local/python-path`` and put on its ``sys.path``, before the
    standard library (``SandboxBuilder.python_path``)."""

    def __post_init__(self) -> None:
        """Check every field once; nothing is rewritten (derived values are properties)."""
        check_type("limits", self.limits, ResourceLimits)
        check_type("optimization_level", self.optimization_level, OptimizationLevel)
        _check_strings("args", self.args)
        env_pairs(self.env)
        check_stdin(self.stdin)
        check_mounts(self.mounts)
        check_type("network_policy", self.network_policy, NetworkPolicy)
        check_type("resource_monitor", self.resource_monitor, ResourceMonitor, optional=True)
        check_type("auto_scaler", self.auto_scaler, AutoScaler, optional=True)
        for name in (
            "io_callback", "network_callback", "resource_callback", "on_stdout", "on_stderr",
        ):  # fmt: skip
            check_callable(name, getattr(self, name))
        _monitoring_interval(self.monitoring_interval)
        _output_limit(self.max_output_bytes)
        _build_budget(self)
        if self.auto_scaler is not None and self.keep_instance:
            raise ConfigurationError(
                "auto_scaler cannot resize a kept instance: use isolated calls"
            )
        _check_preinit(self)
        _check_host_functions(self.host_functions)
        _check_python_path(self)
        if self.fuel_metering is False and self.limits.max_fuel is not None:
            raise ConfigurationError(
                f"max_fuel={self.limits.max_fuel} needs fuel metering: "
                "do not set fuel_metering(False)"
            )

    @property
    def io_monitoring_enabled(self) -> bool:
        """Whether file operations are reported: ``io_monitoring``, or an ``io_callback``."""
        return self.io_monitoring or self.io_callback is not None

    @property
    def network_monitoring_enabled(self) -> bool:
        """Whether network use is reported: ``network_monitoring``, or a callback."""
        return self.network_monitoring or self.network_callback is not None

    @property
    def resource_monitoring_enabled(self) -> bool:
        """Whether executions are sampled: ``resource_monitoring``, or a callback."""
        return self.resource_monitoring or self.resource_callback is not None

    @property
    def sampling_interval(self) -> timedelta:
        """``monitoring_interval`` as a ``timedelta`` (it may be given as seconds or text)."""
        return _monitoring_interval(self.monitoring_interval)

    @property
    def output_limit(self) -> int:
        """``max_output_bytes`` in bytes (it may be given as a size string)."""
        return _output_limit(self.max_output_bytes)

    @property
    def mount_table(self) -> tuple[Mount, ...]:
        """``mounts`` as a checked tuple."""
        return check_mounts(self.mounts)

    @property
    def build_budget(self) -> BuildBudget:
        """The build budget these options describe (sizes in bytes, the timeout in seconds)."""
        return _build_budget(self)

    @property
    def metered(self) -> bool:
        """Whether executions count fuel."""
        if self.fuel_metering is not None:
            return self.fuel_metering
        return self.limits.max_fuel is not None

    def replace(self, **changes: Any) -> SandboxConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def check_type(name: str, value: object, kind: type, optional: bool = False) -> None:
    """``value`` is a ``kind`` (or None, when ``optional``)."""
    if (value is None and not optional) or (value is not None and not isinstance(value, kind)):
        article = "an" if kind.__name__[0] in "AEIOU" else "a"
        raise TypeError(f"{name} must be {article} {kind.__name__}, got {type(value).__name__}")


def check_callable(name: str, callback: object) -> None:
    """A callback option is callable (or None)."""
    if callback is not None and not callable(callback):
        raise TypeError(f"{name} must be callable, got {type(callback).__name__}")


def _check_strings(what: str, values: Sequence[str]) -> None:
    for value in values:
        if not isinstance(value, str):
            raise TypeError(f"{what} must be strings, got {type(value).__name__} {value!r}")
        if "\0" in value:
            raise ConfigurationError(f"{what} must not contain NUL characters, got {value!r}")


def _check_preinit(config: SandboxConfig) -> None:
    """``setup`` is guest code for a preinitialised Python or JavaScript sandbox whose
    executions are fresh."""
    if config.setup is not None and not isinstance(config.setup, str):
        raise TypeError(
            f"setup must be a str (guest code) or None, got {type(config.setup).__name__}"
        )
    if not config.preinitialize:
        if config.setup is not None:
            raise ConfigurationError("setup is run by preinitialize: set preinitialize=True")
        return
    if script_language(config.source, config.language) is None:
        raise ConfigurationError(
            "preinitialize() is for Python and JavaScript guests (a .py or .js source, or "
            "language('python') / language('javascript')); a WebAssembly module has no "
            "interpreter state to prepare"
        )
    if config.keep_instance:
        raise ConfigurationError(
            "preinitialize() prepares the state every fresh execution starts from; "
            "keep_instance keeps one instance instead: use a session for state across calls"
        )


def _check_host_functions(functions: Sequence[HostFunction]) -> None:
    """Each is a ``HostFunction``, no two with one name."""
    seen: set[str] = set()
    for function in functions:
        check_type("host_functions item", function, HostFunction)
        if function.name in seen:
            raise ConfigurationError(f"two host functions are named {function.name!r}")
        seen.add(function.name)


def _check_python_path(config: SandboxConfig) -> None:
    """``python_path`` entries exist, are directories or wheels, belong to a Python guest,
    and no mount takes their place in the guest."""
    if not check_python_path(config.python_path):
        return
    language = script_language(config.source, config.language)
    if language != "python":
        raise ConfigurationError(
            "python_path is for Python guests (a .py source, or language('python')); this "
            f"sandbox runs a {language or 'WebAssembly'} guest"
        )
    for mount in config.mounts:
        path = mount.guest_path.rstrip("/") + "/"
        if (PATH_GUEST + "/").startswith(path) or path.startswith(PATH_GUEST + "/"):
            raise ConfigurationError(
                f"mount at {mount.guest_path!r} overlaps {PATH_GUEST}, where python_path "
                "entries are mounted; mount elsewhere"
            )


def _monitoring_interval(value: timedelta | float | str) -> timedelta:
    return duration_within(
        "monitoring_interval", value, low=timedelta(milliseconds=5), high=timedelta(hours=1)
    )


def _output_limit(value: int | str) -> int:
    limit = size_value("max_output_bytes", value)
    check_range("max_output_bytes", limit, 0, _MAX_OUTPUT_CAP)
    return limit


def _build_budget(config: SandboxConfig) -> BuildBudget:
    """The build options, parsed and checked (each against its own bound)."""
    sizes = {}
    for name, low, parse in (
        ("max_module_size", 1, size_option),
        ("max_functions", 0, count_option),
        ("build_memory_limit", MIN_BUILD_MEMORY, size_option),
    ):
        value = sizes[name] = parse(name, getattr(config, name))
        if value is not None:
            check_range(name, value, low)
    timeout = config.build_timeout
    seconds = None if timeout is None else duration_within("build_timeout", timeout)
    return BuildBudget(
        max_module_size=sizes["max_module_size"],
        max_functions=sizes["max_functions"],
        timeout=None if seconds is None else seconds.total_seconds(),
        memory_bytes=sizes["build_memory_limit"],
    )


def check_stdin(stdin: StdinSource) -> None:
    """``stdin`` is something ``normalize_stdin`` takes; a stream is not read here."""
    if stdin is None or isinstance(stdin, bytes | str | bytearray | memoryview):
        return
    if getattr(stdin, "fileno", None) is None and getattr(stdin, "read", None) is None:
        raise TypeError(f"stdin must be bytes, str or a binary stream, got {type(stdin).__name__}")


def normalize_stdin(stdin: StdinSource) -> bytes | BinaryIO | None:
    """What an execution reads: bytes for text or bytes; a stream with a usable ``fileno()``
    as-is; any other stream read to its end now (at the run, never at configuration)."""
    check_stdin(stdin)
    if stdin is None or isinstance(stdin, bytes):
        return stdin
    if isinstance(stdin, str):
        return stdin.encode("utf-8")
    if isinstance(stdin, bytearray | memoryview):
        return bytes(stdin)
    fileno = getattr(stdin, "fileno", None)
    if fileno is not None:
        try:
            fileno()
            return stdin
        except (OSError, ValueError):
            pass
    read = getattr(stdin, "read", None)
    if read is not None:
        data = read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    raise TypeError(f"stdin must be bytes, str or a binary stream, got {type(stdin).__name__}")


def env_pairs(env: Mapping[str, str] | Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Environment variables as a tuple of checked pairs, from a mapping or pairs."""
    items = tuple(env.items() if isinstance(env, Mapping) else env)
    for key, value in items:
        _check_strings("env", (key, value))
        if not key or "=" in key:
            raise ConfigurationError(f"env names must be non-empty and contain no '=', got {key!r}")
    return items


def encode_args(args: Sequence[str]) -> list[bytes]:
    """Checked arguments as the guest receives them (UTF-8)."""
    if isinstance(args, str):
        raise TypeError("args must be a sequence of strings, not one string")
    _check_strings("args", args)
    return [a.encode("utf-8") for a in args]


class SandboxBuilder:
    """Fluent builder for a ``WasmSandbox``: ``WasmSandbox.builder().source(...)...build()``.

    Later calls override earlier ones: ``resource_profile`` and ``resource_limits`` replace
    all limits, ``memory_limit``/``max_fuel``/``timeout_duration`` change one.
    """

    def __init__(self) -> None:
        self._source: Source | None = None
        self._limits = ResourceProfile.STANDARD.limits
        self._profile: str | None = "standard"
        self._options: dict[str, Any] = {}
        self._high_usage: ResourceMonitor | None = None  # the monitor alert_on_high_usage made

    def source(self, source: Source) -> SandboxBuilder:
        """The guest: a ``.wasm``, ``.wat``, ``.c``, ``.rs``, ``.py`` or ``.js`` path (``str``
        or ``Path``), module bytes (a wasm binary or WAT text), or source text together with
        ``language(...)``."""
        self._source = source
        return self

    def language(self, language: str) -> SandboxBuilder:
        """Treat the source as program text in ``language`` (``c``, ``rust``, ``python``,
        ``javascript``, ``wat``, ``wasm``)."""
        return self._set("language", language)

    def _limit(self, **change: Any) -> SandboxBuilder:
        self._limits = self._limits.replace(**change)
        self._profile = None
        return self

    def memory_limit(self, memory_bytes: int | str | None) -> SandboxBuilder:
        """Cap on linear memory: bytes or a size string (``"256MiB"``); ``None``: unlimited."""
        return self._limit(memory_bytes=size_option("memory_limit", memory_bytes))

    def memory_growth_limit(self, growth_bytes: int | str | None) -> SandboxBuilder:
        """Cap on what a single ``memory.grow`` may add: bytes or a size string."""
        return self._limit(memory_growth_limit=size_option("memory_growth_limit", growth_bytes))

    def max_fuel(self, fuel: int | str | None) -> SandboxBuilder:
        """Fuel budget per call or run, an int or a count (``"10M"``); ``None``: unlimited."""
        return self._limit(max_fuel=count_option("max_fuel", fuel))

    def timeout_duration(self, timeout: timedelta | float | str | None) -> SandboxBuilder:
        """Wall-clock limit per call or run: a ``timedelta``, seconds or a duration string
        (``"30s"``); ``None``: unlimited."""
        return self._limit(execution_timeout=duration_option("timeout_duration", timeout))

    def resource_limits(self, limits: ResourceLimits) -> SandboxBuilder:
        """Replace all limits with ``limits``."""
        check_type("limits", limits, ResourceLimits)
        self._limits = limits
        self._profile = None
        return self

    def resource_profile(self, profile: ResourceProfile) -> SandboxBuilder:
        """Replace all limits with those of ``profile``."""
        check_type("profile", profile, ResourceProfile)
        self._limits = profile.limits
        self._profile = profile.name
        return self

    def optimization_level(self, level: OptimizationLevel) -> SandboxBuilder:
        """Compiler optimisation: SPEED (default), SIZE or NONE."""
        return self._set("optimization_level", level)

    def debug_mode(self, enabled: bool = True) -> SandboxBuilder:
        """Compile with native debug info (DWARF, for gdb or lldb); log the build and every
        execution (with its report's figures) at DEBUG level on the ``wasm_sandbox`` logger."""
        return self._set("debug_mode", bool(enabled))

    def verbose_resource_logging(self, enabled: bool = True) -> SandboxBuilder:
        """Log every execution at INFO on the ``wasm_sandbox`` logger: the message states its
        outcome, time, fuel, peak memory and file and network bytes; the record's ``report``
        attribute holds the whole report as a dict."""
        return self._set("verbose_resource_logging", bool(enabled))

    def args(self, *args: str) -> SandboxBuilder:
        """Arguments after argv[0] for ``run()``; accepts strings or one sequence of them."""
        if len(args) == 1 and not isinstance(args[0], str):
            args = tuple(args[0])
        return self._set("args", tuple(args))

    def env(
        self, env: Mapping[str, str] | Sequence[tuple[str, str]] | None = None, **kw: str
    ) -> SandboxBuilder:
        """Environment variables for the guest (a mapping, pairs, or keywords)."""
        pairs = env_pairs(env or {}) + tuple(kw.items())
        return self._set("env", pairs)

    def stdin(self, stdin: StdinSource) -> SandboxBuilder:
        """Standard input for ``run()``: bytes, text (UTF-8) or a binary stream."""
        return self._set("stdin", stdin)

    def mount_directory(
        self, host_path: str | os.PathLike[str], guest_path: str, read_only: bool = True
    ) -> SandboxBuilder:
        """Let the guest see the host directory ``host_path`` at ``guest_path``, read-only
        unless ``read_only=False``. Nothing outside it is reachable through it."""
        return self.mount(Mount.directory(host_path, guest_path, read_only=read_only))

    def memory_fs(
        self,
        guest_path: str = "/tmp",
        max_bytes: int | str = DEFAULT_MEMORY_FS_BYTES,
        max_entries: int | str = DEFAULT_MEMORY_FS_ENTRIES,
    ) -> SandboxBuilder:
        """An empty, writable scratch directory at ``guest_path`` held in memory (a private
        tmpfs directory, never the disk), fresh for each instance. It holds at most
        ``max_bytes`` (bytes or ``"16MiB"``) — file contents, link targets, names and 256
        bytes per entry — in at most ``max_entries`` files, directories and links (past
        either: ENOSPC)."""
        return self.mount(Mount.memory(guest_path, max_bytes, max_entries))

    def mount(self, mount: Mount) -> SandboxBuilder:
        """Add a ``Mount`` (see ``mount_directory`` and ``memory_fs``)."""
        mounts = (*self._options.get("mounts", ()), mount)
        check_mounts(mounts)  # refused at the call that makes the overlap
        return self._set("mounts", mounts)

    def enable_io_monitoring(self, enabled: bool = True) -> SandboxBuilder:
        """Report every file operation (to ``io_callback``, or the debug log without one)."""
        return self._set("io_monitoring", bool(enabled))

    def io_callback(self, callback: Callable[[IoOperation], object]) -> SandboxBuilder:
        """Call ``callback(operation)`` for each file operation; turns monitoring on. One
        that raises is logged once, dropped for the execution and listed in the report's
        ``io_callback_errors``; the guest goes on (docs/monitoring.md: *Callbacks that raise*)."""
        check_callable("io_callback", callback)
        return self._set("io_callback", callback)

    def network_policy(self, policy: NetworkPolicy) -> SandboxBuilder:
        """Which endpoints the guest may connect to (replaces the policy so far)."""
        check_type("network_policy", policy, NetworkPolicy)
        return self._set("network_policy", policy)

    def allow_network(self, *patterns: str) -> SandboxBuilder:
        """Allow more ``host:port`` patterns (see ``NetworkPolicy``)."""
        policy = self._options.get("network_policy", NetworkPolicy())
        return self._set("network_policy", policy.extended(patterns))

    def enable_network_monitoring(self, enabled: bool = True) -> SandboxBuilder:
        """Report network use as it changes (to ``network_callback``)."""
        return self._set("network_monitoring", bool(enabled))

    def network_callback(self, callback: Callable[[NetworkStats], object]) -> SandboxBuilder:
        """Receive ``NetworkStats`` each time the guest's network use changes. One that
        raises is logged once, dropped for the execution and listed in the report's
        ``network_callback_errors`` (docs/monitoring.md: *Callbacks that raise*)."""
        check_callable("network_callback", callback)
        return self._set("network_callback", callback)

    def on_stdout(self, callback: Callable[[bytes], object]) -> SandboxBuilder:
        """Receive the guest's stdout as it is written: ``callback(chunk)`` with ``bytes``,
        in order, on a thread of the execution's own, all of it before ``call()``/``run()``
        returns; past ``max_output_bytes`` nothing is delivered. A Python guest's stdout is
        then line-buffered. A slow callback makes the guest wait (on its time limit) once
        1 MiB is queued; one that raises is dropped for the execution and listed in the
        report's ``output_callback_errors`` (docs/agents.md: *Output*)."""
        check_callable("on_stdout", callback)
        return self._set("on_stdout", callback)

    def on_stderr(self, callback: Callable[[bytes], object]) -> SandboxBuilder:
        """As ``on_stdout``, for the guest's stderr (one queue for both: their chunks arrive
        in the order they were written)."""
        check_callable("on_stderr", callback)
        return self._set("on_stderr", callback)

    def strict_network(self, enabled: bool = True) -> SandboxBuilder:
        """Stop the guest at a policy refusal or a network limit instead of failing its call."""
        return self._set("strict_network", bool(enabled))

    def enable_resource_monitoring(self, enabled: bool = True) -> SandboxBuilder:
        """Sample ``ResourceUsage`` during every execution."""
        return self._set("resource_monitoring", bool(enabled))

    def resource_callback(self, callback: Callable[[ResourceUsage], object]) -> SandboxBuilder:
        """Receive each ``ResourceUsage`` sample (implies resource monitoring), on the
        monitoring thread. One that raises is logged once, dropped for the execution and
        listed in the report's ``monitoring_callback_errors`` (docs/monitoring.md: *Callbacks that
        raise*)."""
        check_callable("resource_callback", callback)
        return self._set("resource_callback", callback)

    def monitoring_interval(self, interval: timedelta | float | str) -> SandboxBuilder:
        """How often a running execution is sampled (a timedelta, seconds or ``"100ms"``)."""
        return self._set("monitoring_interval", _monitoring_interval(interval))

    def resource_monitor(self, monitor: ResourceMonitor) -> SandboxBuilder:
        """Raise ``Alert``s when a metric crosses one of ``monitor``'s thresholds."""
        check_type("resource_monitor", monitor, ResourceMonitor)
        return self._set("resource_monitor", monitor)

    def alert_on_high_usage(self, enabled: bool = True) -> SandboxBuilder:
        """Alert (to the ``wasm_sandbox.alerts`` log) at 80% memory or 90% CPU, unless a
        ``resource_monitor`` is given; False removes only the monitor this call installed,
        never one given with ``resource_monitor``."""
        current = self._options.get("resource_monitor")
        if not enabled:
            if current is not None and current is self._high_usage:
                self._set("resource_monitor", None)
            return self
        if current is None:
            self._high_usage = high_usage_monitor()
            self._set("resource_monitor", self._high_usage)
        return self

    def auto_scaler(self, scaler: AutoScaler) -> SandboxBuilder:
        """Let ``scaler`` move the memory limit and timeout with observed usage."""
        check_type("auto_scaler", scaler, AutoScaler)
        return self._set("auto_scaler", scaler)

    def strict_io_limits(self, enabled: bool = True) -> SandboxBuilder:
        """Turn the first file-system limit hit into ``IoLimitExceeded``."""
        return self._set("strict_io_limits", bool(enabled))

    def keep_instance(self, enabled: bool = True) -> SandboxBuilder:
        """Keep one instance across calls instead of a fresh one per call."""
        return self._set("keep_instance", bool(enabled))

    def fuel_metering(self, enabled: bool | None) -> SandboxBuilder:
        """Force fuel counting on (True) or off (False); None: only with a ``max_fuel``."""
        return self._set("fuel_metering", enabled)

    def max_output_bytes(self, limit: int | str) -> SandboxBuilder:
        """How many bytes of stdout and of stderr are captured, bytes or a size string
        (default 16 MiB each)."""
        return self._set("max_output_bytes", _output_limit(limit))

    def cache_dir(self, path: str | Path | None) -> SandboxBuilder:
        """Directory of the compiled-module cache; ``None`` turns the disk cache off (a
        later call with a path turns it on again)."""
        if path is None:
            return self._set("use_cache", False)
        self._set("use_cache", True)
        return self._set("cache_dir", Path(path))

    def progress(self, progress: ProgressCallback | bool) -> SandboxBuilder:
        """First-compile progress: a callback ``(phase, seconds)``, or True/False for stderr.
        A callback that raises is logged once and dropped for that build."""
        return self._set("progress", progress)

    def max_module_size(self, size: int | str | None) -> SandboxBuilder:
        """Refuse to build a module larger than ``size`` bytes (an int or ``"4MiB"``; None:
        no cap; default 1 GiB), before parsing it: ``BuildLimitExceeded``."""
        return self._set("max_module_size", size_option("max_module_size", size))

    def max_functions(self, count: int | str | None) -> SandboxBuilder:
        """Refuse to build a module defining more than ``count`` functions (None: no cap;
        default 1,000,000), before compiling it: ``BuildLimitExceeded``."""
        return self._set("max_functions", count_option("max_functions", count))

    def build_timeout(self, timeout: timedelta | float | str | None) -> SandboxBuilder:
        """Compile the module in a child process killed after ``timeout`` (a timedelta,
        seconds or ``"10s"``; None: in this process, no limit): ``BuildLimitExceeded``."""
        return self._set("build_timeout", duration_option("build_timeout", timeout))

    def build_memory_limit(self, size: int | str | None) -> SandboxBuilder:
        """Compile the module in a child process whose address space is capped at ``size``
        bytes (>= 256 MiB; None: no cap): ``BuildLimitExceeded`` when compiling needs more."""
        return self._set("build_memory_limit", size_option("build_memory_limit", size))

    def preinitialize(self, setup: str | None = None) -> SandboxBuilder:
        """Prepare, once when the sandbox is built, the state every fresh execution of a
        Python or JavaScript guest starts from (``call``, ``run``, a new session), so that
        ``import numpy, pandas`` or loading a model's tables costs nothing per call.

        ``setup``: guest code (in the guest's language) run in its global scope (Python's
        ``__main__``, JavaScript's global object): everything it defines is seen by the
        source as if its code came first. Without ``setup``, the source is loaded once as
        ``call()`` loads it, and calls use it without running it again (``run()`` and
        sessions then start as before). It runs under the sandbox's limits; a failure
        fails ``build()`` with the guest's error. The state is cached on disk with the
        compiled modules (docs/sessions.md: *Pre-initialisation*)."""
        if setup is not None and not isinstance(setup, str):
            raise TypeError(f"setup must be a str (guest code) or None, got {type(setup).__name__}")
        self._set("preinitialize", True)
        return self._set("setup", setup)

    @overload
    def host_function(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        description: str | None = None,
        schema: Mapping[str, Any] | None = None,
        inline: bool = False,
    ) -> SandboxBuilder: ...

    @overload
    def host_function(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        schema: Mapping[str, Any] | None = None,
        inline: bool = False,
    ) -> Callable[[_Fn], _Fn]: ...

    def host_function(
        self,
        name: str | None = None,
        fn: Callable[..., Any] | None = None,
        *,
        description: str | None = None,
        schema: Mapping[str, Any] | None = None,
        inline: bool = False,
    ) -> SandboxBuilder | Callable[[_Fn], _Fn]:
        """Let guests call ``fn`` as ``name``: Python's ``from wasm_sandbox_host import
        name``, JavaScript's ``host.name(...)``, C's ``wsbx_host_call("name", ...)``.
        Arguments and the value cross as JSON; what ``fn`` raises is raised in the guest
        (its type name and message). ``description`` (default: ``fn``'s docstring) and
        ``schema`` (JSON Schema of the arguments, checked at every call) are kept for
        listings (``WasmSandbox.host_functions``). ``fn`` runs on a worker thread, so the
        deadline and ``host_call_timeout`` hold while it runs; ``inline=True`` runs it on
        the guest's thread instead, for a function that returns at once (about half the
        cost of a call; see ``HostFunction.inline``). Without ``fn``, a decorator:
        ``@builder.host_function()`` (named after the function) or
        ``@builder.host_function("name")``; it returns the function unchanged."""
        if callable(name):
            raise TypeError(
                "use @builder.host_function() with parentheses, or host_function(name, fn)"
            )
        if fn is None:

            def register(function: _Fn) -> _Fn:
                self.host_function(
                    name or function.__name__,
                    function,
                    description=description,
                    schema=schema,
                    inline=inline,
                )
                return function

            return register
        if description is None and callable(fn) and fn.__doc__:
            description = inspect.cleandoc(fn.__doc__)
        added = HostFunction(
            name=name or "", fn=fn, description=description, schema=schema, inline=inline
        )
        functions = (*self._options.get("host_functions", ()), added)
        _check_host_functions(functions)  # a duplicate is refused at the call that adds it
        return self._set("host_functions", functions)

    def max_host_calls(self, count: int | str | None) -> SandboxBuilder:
        """Host-function calls per call or run (past it: ``HostCallLimitExceeded``)."""
        return self._limit(max_host_calls=count_option("max_host_calls", count))

    def host_call_timeout(self, timeout: timedelta | float | str | None) -> SandboxBuilder:
        """Longest one host-function call may run; past it the guest's call raises
        ``TimeoutError`` (the host thread cannot be killed: it finishes, unobserved)."""
        return self._limit(host_call_timeout=duration_option("host_call_timeout", timeout))

    def python_path(self, *entries: str | os.PathLike[str]) -> SandboxBuilder:
        """Let a Python guest import pure-Python packages from host directories and wheels
        (a wheel is a zip: ``zipimport`` reads it as it stands; compiled extensions cannot
        load). Each is mounted read-only below ``/usr/local/python-path`` and put on the
        guest's ``sys.path``, in order, before the standard library. Adds to earlier calls;
        a missing path, or one neither a directory nor a zip file, is refused here
        (``ConfigurationError``), a guest in another language at ``build()``."""
        paths = (*self._options.get("python_path", ()), *check_python_path(entries))
        return self._set("python_path", paths)

    def _set(self, name: str, value: Any) -> SandboxBuilder:
        self._options[name] = value
        return self

    def config(self) -> SandboxConfig:
        """The ``SandboxConfig`` this builder describes."""
        if self._source is None:
            raise ConfigurationError("no source given: call .source(path_or_bytes) before .build()")
        return SandboxConfig(
            source=self._source, limits=self._limits, profile_name=self._profile, **self._options
        )

    def build(self) -> WasmSandbox:
        """Load, validate and compile the guest; returns a ready ``WasmSandbox``."""
        from ._sandbox import WasmSandbox  # noqa: PLC0415 - _sandbox imports this module

        return WasmSandbox(self.config())

    def build_async(self, max_concurrency: int | None = None) -> Awaitable[AsyncWasmSandbox]:
        """Like ``build`` but awaitable: compiles off the event loop (``max_concurrency``:
        see ``AsyncWasmSandbox``)."""
        from ._sandbox import AsyncWasmSandbox  # noqa: PLC0415 - _sandbox imports this module

        return AsyncWasmSandbox.create(self.config(), max_concurrency)
