"""wasm_sandbox: run untrusted WebAssembly under enforced memory, fuel and wall-clock limits.

Everything public is importable from here; every other module is private.
"""

# First: on a platform the package cannot run on, the import fails here, saying why.
from . import _platform  # noqa: F401
from ._builder import SandboxBuilder as SandboxBuilder
from ._builder import SandboxConfig as SandboxConfig
from ._bundle import export_prepared as export_prepared
from ._bundle import import_prepared as import_prepared
from ._config._hostfns import HostFunction as HostFunction
from ._config._limits import OptimizationLevel as OptimizationLevel
from ._config._limits import ProfileBuilder as ProfileBuilder
from ._config._limits import ResourceLimits as ResourceLimits
from ._config._limits import ResourceProfile as ResourceProfile
from ._config._mounts import Mount as Mount
from ._config._policy import NetworkPolicy as NetworkPolicy
from ._errors import BuildLimitExceeded as BuildLimitExceeded
from ._errors import CompilationError as CompilationError
from ._errors import ConfigurationError as ConfigurationError
from ._errors import ExecutionCancelled as ExecutionCancelled
from ._errors import ExecutionError as ExecutionError
from ._errors import ExecutionTimeout as ExecutionTimeout
from ._errors import FuelExhausted as FuelExhausted
from ._errors import FunctionNotFound as FunctionNotFound
from ._errors import GuestError as GuestError
from ._errors import GuestExit as GuestExit
from ._errors import GuestTrap as GuestTrap
from ._errors import HostCallLimitExceeded as HostCallLimitExceeded
from ._errors import HostError as HostError
from ._errors import IndirectCallError as IndirectCallError
from ._errors import IntegerDivisionByZero as IntegerDivisionByZero
from ._errors import IntegerOverflow as IntegerOverflow
from ._errors import InvalidArguments as InvalidArguments
from ._errors import InvalidConversionToInteger as InvalidConversionToInteger
from ._errors import InvalidModule as InvalidModule
from ._errors import IoLimitExceeded as IoLimitExceeded
from ._errors import MemoryAccessOutOfBounds as MemoryAccessOutOfBounds
from ._errors import MemoryLimitExceeded as MemoryLimitExceeded
from ._errors import MountChanged as MountChanged
from ._errors import NetworkLimitExceeded as NetworkLimitExceeded
from ._errors import Overflow as Overflow
from ._errors import ResourceLimitExceeded as ResourceLimitExceeded
from ._errors import SandboxError as SandboxError
from ._errors import SecurityViolation as SecurityViolation
from ._errors import SessionLost as SessionLost
from ._errors import SnapshotError as SnapshotError
from ._errors import SourceNotFound as SourceNotFound
from ._errors import StackOverflow as StackOverflow
from ._errors import TableAccessOutOfBounds as TableAccessOutOfBounds
from ._errors import Timeout as Timeout
from ._errors import ToolchainNotFound as ToolchainNotFound
from ._errors import UnreachableExecuted as UnreachableExecuted
from ._errors import UnsupportedSource as UnsupportedSource
from ._observe._code import CodeError as CodeError
from ._observe._code import CodeResult as CodeResult
from ._observe._iomonitor import DirectoryCreate as DirectoryCreate
from ._observe._iomonitor import DirectoryDelete as DirectoryDelete
from ._observe._iomonitor import DirectoryList as DirectoryList
from ._observe._iomonitor import FileClose as FileClose
from ._observe._iomonitor import FileDelete as FileDelete
from ._observe._iomonitor import FileOpen as FileOpen
from ._observe._iomonitor import FileRead as FileRead
from ._observe._iomonitor import FileRename as FileRename
from ._observe._iomonitor import FileWrite as FileWrite
from ._observe._iomonitor import HostCall as HostCall
from ._observe._iomonitor import IoOperation as IoOperation
from ._observe._metrics import PrometheusMetrics as PrometheusMetrics
from ._observe._metrics import enable_prometheus_metrics as enable_prometheus_metrics
from ._observe._monitor import Alert as Alert
from ._observe._monitor import AlertLevel as AlertLevel
from ._observe._monitor import MemoryUsage as MemoryUsage
from ._observe._monitor import ResourceMonitor as ResourceMonitor
from ._observe._monitor import ResourceUsage as ResourceUsage
from ._observe._report import ExecutionResult as ExecutionResult
from ._observe._report import MonitoredResult as MonitoredResult
from ._observe._report import ProfiledResult as ProfiledResult
from ._observe._report import ResourceReport as ResourceReport
from ._observe._report import SecurityEvent as SecurityEvent
from ._oneliners import run as run
from ._oneliners import run_async as run_async
from ._oneliners import run_javascript as run_javascript
from ._oneliners import run_javascript_async as run_javascript_async
from ._oneliners import run_python as run_python
from ._oneliners import run_python_async as run_python_async
from ._oneliners import run_with_timeout as run_with_timeout
from ._oneliners import run_with_timeout_async as run_with_timeout_async
from ._prepare import PreparedRuntime as PreparedRuntime
from ._prepare import prepare as prepare
from ._runtime._engine import default_cache_dir as default_cache_dir
from ._sandbox import AsyncWasmSandbox as AsyncWasmSandbox
from ._sandbox import WasmSandbox as WasmSandbox
from ._scaling._autoscale import AutoScaler as AutoScaler
from ._scaling._autoscale import ScalingEvent as ScalingEvent
from ._scaling._autoscale import ScalingPolicy as ScalingPolicy
from ._scaling._balancer import BalancerStats as BalancerStats
from ._scaling._balancer import LoadBalancer as LoadBalancer
from ._scaling._balancer import OverflowStrategy as OverflowStrategy
from ._scaling._ray import RayBackend as RayBackend
from ._scaling._remote import ProcessBackend as ProcessBackend
from ._session import AsyncSession as AsyncSession
from ._session import Checkpoint as Checkpoint
from ._session import Session as Session
from ._units import parse_count as parse_count
from ._units import parse_duration as parse_duration
from ._units import parse_size as parse_size
from ._wasi._guard import NetworkStats as NetworkStats

__version__ = "0.1.0"

__all__ = [
    "Alert",
    "AlertLevel",
    "AsyncSession",
    "AsyncWasmSandbox",
    "AutoScaler",
    "BalancerStats",
    "BuildLimitExceeded",
    "Checkpoint",
    "CodeError",
    "CodeResult",
    "CompilationError",
    "ConfigurationError",
    "DirectoryCreate",
    "DirectoryDelete",
    "DirectoryList",
    "ExecutionCancelled",
    "ExecutionError",
    "ExecutionResult",
    "ExecutionTimeout",
    "FileClose",
    "FileDelete",
    "FileOpen",
    "FileRead",
    "FileRename",
    "FileWrite",
    "FuelExhausted",
    "FunctionNotFound",
    "GuestError",
    "GuestExit",
    "GuestTrap",
    "HostCall",
    "HostCallLimitExceeded",
    "HostError",
    "HostFunction",
    "IndirectCallError",
    "IntegerDivisionByZero",
    "IntegerOverflow",
    "InvalidArguments",
    "InvalidConversionToInteger",
    "InvalidModule",
    "IoLimitExceeded",
    "IoOperation",
    "LoadBalancer",
    "MemoryAccessOutOfBounds",
    "MemoryLimitExceeded",
    "MemoryUsage",
    "MonitoredResult",
    "Mount",
    "MountChanged",
    "NetworkLimitExceeded",
    "NetworkPolicy",
    "NetworkStats",
    "OptimizationLevel",
    "Overflow",
    "OverflowStrategy",
    "PreparedRuntime",
    "ProcessBackend",
    "ProfileBuilder",
    "ProfiledResult",
    "PrometheusMetrics",
    "RayBackend",
    "ResourceLimitExceeded",
    "ResourceLimits",
    "ResourceMonitor",
    "ResourceProfile",
    "ResourceReport",
    "ResourceUsage",
    "SandboxBuilder",
    "SandboxConfig",
    "SandboxError",
    "ScalingEvent",
    "ScalingPolicy",
    "SecurityEvent",
    "SecurityViolation",
    "Session",
    "SessionLost",
    "SnapshotError",
    "SourceNotFound",
    "StackOverflow",
    "TableAccessOutOfBounds",
    "Timeout",
    "ToolchainNotFound",
    "UnreachableExecuted",
    "UnsupportedSource",
    "WasmSandbox",
    "default_cache_dir",
    "enable_prometheus_metrics",
    "export_prepared",
    "import_prepared",
    "parse_count",
    "parse_duration",
    "parse_size",
    "prepare",
    "run",
    "run_async",
    "run_javascript",
    "run_javascript_async",
    "run_python",
    "run_python_async",
    "run_with_timeout",
    "run_with_timeout_async",
]


def _set_public_module() -> None:
    for name in __all__:
        obj = globals()[name]
        if isinstance(obj, type):
            obj.__module__ = __name__


_set_public_module()
