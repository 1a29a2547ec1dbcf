"""Network accounting of one execution: the ``NetworkGuard`` that applies a
``NetworkPolicy`` and the network limits (``NetLimits``, token bucket, counters,
monitoring), and the ``NetworkStats`` a monitoring callback receives.

WASI preview1 cannot open connections, so the host opens them for the guest
(``_wasi/_net.py``), asking this guard first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from .._config._limits import ResourceLimits
from .._config._policy import NetworkPolicy
from .._observe._callbacks import SafeCallback

if TYPE_CHECKING:
    import ssl

__all__ = ["NetLimits", "NetworkGuard", "NetworkStats"]


@dataclass(frozen=True, slots=True)
class NetworkStats:
    """What a guest's network use amounts to, so far in the execution."""

    bytes_sent: int = 0
    bytes_received: int = 0
    active_connections: int = 0
    requests: int = 0
    """Connection attempts (refused ones included)."""
    refusals: int = 0
    """Attempts refused by the policy or a limit."""


@dataclass(frozen=True, slots=True)
class NetLimits:
    """The network limits of one execution (None: unlimited), built once from
    ``ResourceLimits`` by ``NetLimits.of``."""

    max_connections: int | None = None
    rate: int | None = None  # max_requests_per_second
    max_upload: int | None = None  # bytes
    max_download: int | None = None  # bytes
    io_timeout: float | None = None  # network_timeout, seconds
    connect_timeout: float | None = None  # seconds
    strict: bool = False  # the first limit hit (or refusal) stops the guest

    @staticmethod
    def of(limits: ResourceLimits, strict: bool) -> NetLimits:
        """The network limits ``limits`` set (``strict``: strict network mode)."""
        return NetLimits(
            max_connections=limits.max_connections,
            rate=limits.max_requests_per_second,
            max_upload=limits.max_upload_bytes,
            max_download=limits.max_download_bytes,
            io_timeout=_seconds(limits.network_timeout),
            connect_timeout=_seconds(limits.connect_timeout),
            strict=strict,
        )


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


class NetworkGuard:
    """One execution's network policy, limits (``limits``), counters and monitoring."""

    def __init__(
        self,
        policy: NetworkPolicy,
        limits: NetLimits = NetLimits(),
        callback: Callable[[NetworkStats], object] | None = None,
    ) -> None:
        self.policy = policy
        self.limits = limits
        self._tls: ssl.SSLContext | None = None
        self.callback = (
            None
            if callback is None
            else SafeCallback(callback, "network_callback", "this execution")
        )
        self.callback_errors: list[str] = [] if self.callback is None else self.callback.errors
        self.sent = 0
        self.received = 0
        self.requests = 0
        self.refusals = 0
        self.active = 0
        self.endpoint: str | None = None  # of the connection being opened
        self.refused: str | None = None  # why the policy refused it (what the guest is told)
        self._tokens = float(limits.rate or 0)
        self._refilled = time.monotonic()
        self._lock = threading.Lock()

    def tls_context(self) -> ssl.SSLContext:
        """The policy's TLS client context, made once per execution."""
        if self._tls is None:
            self._tls = self.policy.tls_context()
        return self._tls

    def take_token(self) -> bool:
        """One request from the token bucket (burst = the rate); False when it is empty."""
        rate = self.limits.rate
        if rate is None:
            return True
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(rate), self._tokens + (now - self._refilled) * rate)
            self._refilled = now
            if self._tokens < 1.0:
                return False
            self._tokens -= 1.0
            return True

    def stats(self) -> NetworkStats:
        """The counters now."""
        return NetworkStats(self.sent, self.received, self.active, self.requests, self.refusals)

    def changed(self) -> None:
        """Tell the monitoring callback (one that raises is dropped: ``_callbacks``)."""
        if self.callback is not None:
            self.callback(self.stats())
