"""``NetworkPolicy``: which endpoints a guest may reach (deny by default, an allow-list of
``host:port`` patterns, special addresses refused unless named), a plain configuration value.
The per-execution guard that enforces it with the limits is ``_wasi._guard.NetworkGuard``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._errors import ConfigurationError

if TYPE_CHECKING:
    import ssl

__all__ = ["NetworkPolicy", "is_special_address"]


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)
_METADATA = ipaddress.ip_address("169.254.169.254")


def is_special_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Private, loopback, link-local (the cloud metadata address included), unique-local,
    unspecified, multicast or reserved: refused unless a pattern names it."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or address == _METADATA
    )


@dataclass(frozen=True, slots=True)
class _Pattern:
    text: str
    host: str  # lower-case name, "*.suffix", or an IP literal's canonical text
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    low: int
    high: int

    def matches_host(self, host: str) -> bool:
        if self.ip is not None:
            try:
                return ipaddress.ip_address(host.strip("[]")) == self.ip
            except ValueError:
                return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host

    def admits(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether this pattern names ``address`` explicitly (an IP literal, or localhost)."""
        if self.ip is not None:
            return address == self.ip
        return self.host == "localhost" and address.is_loopback


def _parse(text: str) -> _Pattern:
    if not isinstance(text, str):
        raise TypeError(f"network patterns must be str, got {type(text).__name__}")
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port:
        raise ConfigurationError(f"network pattern {text!r}: expected HOST:PORT")
    low, high = _ports(text, port)
    if host.startswith("["):
        if not host.endswith("]"):
            raise ConfigurationError(f"network pattern {text!r}: unclosed IPv6 bracket")
        try:
            ip6 = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ConfigurationError(f"network pattern {text!r}: bad IPv6 address") from None
        return _Pattern(text, str(ip6), ip6, low, high)
    try:
        ip4 = ipaddress.IPv4Address(host)
    except ValueError:
        pass
    else:
        return _Pattern(text, str(ip4), ip4, low, high)
    name = host.lower().rstrip(".")
    bare = name[2:] if name.startswith("*.") else name
    if not _HOSTNAME.match(bare):
        raise ConfigurationError(
            f"network pattern {text!r}: {host!r} is not a host name, *.domain or IP address"
        )
    return _Pattern(text, name, None, low, high)


def _ports(text: str, port: str) -> tuple[int, int]:
    if port == "*":
        return 1, 65535
    low_text, dash, high_text = port.partition("-")
    try:
        low = int(low_text)
        high = int(high_text) if dash else low
    except ValueError:
        raise ConfigurationError(f"network pattern {text!r}: bad port {port!r}") from None
    if not 1 <= low <= high <= 65535:
        raise ConfigurationError(f"network pattern {text!r}: ports must be within 1-65535")
    return low, high


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """Which endpoints a guest may connect to. Deny by default: an empty policy refuses all.

    ``allow``: ``host:port`` patterns. The host is a name (case-insensitive), ``*.domain``
    (its subdomains), an IPv4 address or a bracketed IPv6 address (``[::1]:80``); the port a
    number, a range ``8000-8100`` or ``*``. Private, loopback, link-local (the cloud metadata
    address included) and unique-local addresses are refused even when a name pattern
    matches, unless the matching pattern is that IP address itself or ``localhost`` (for
    loopback), or ``allow_private`` is set. The host resolves names, and checks the address
    it actually connects to.
    """

    allow: tuple[str, ...] = ()
    """The allowed ``host:port`` patterns."""
    allow_private: bool = False
    """Let name patterns reach private and loopback addresses too."""
    require_tls: bool = False
    """Refuse plain connections: only TLS ones (the host does the TLS) are allowed."""
    ca_file: str | None = None
    """PEM file of the certificate authorities the host trusts for the guest's TLS
    connections (default: the host's system store)."""
    _patterns: tuple[_Pattern, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.allow, str):
            raise TypeError("allow must be a sequence of patterns, not one str")
        patterns = tuple(_parse(p) for p in self.allow)
        object.__setattr__(self, "allow", tuple(p.text for p in patterns))
        object.__setattr__(self, "_patterns", patterns)
        for flag in ("allow_private", "require_tls"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be a bool")
        if self.ca_file is not None:
            if not isinstance(self.ca_file, str | os.PathLike):
                raise TypeError("ca_file must be a path")
            path = os.fspath(self.ca_file)
            if not os.path.isfile(path):
                raise ConfigurationError(f"ca_file {path!r} is not a file")
            object.__setattr__(self, "ca_file", path)

    def tls_context(self) -> ssl.SSLContext:
        """The client context the host's TLS for guests uses (verifying, with SNI)."""
        import ssl  # noqa: PLC0415 - ~17 ms of import time; only TLS needs it

        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cannot load ca_file {self.ca_file!r}: {exc}") from None

    def extended(self, patterns: Iterable[str]) -> NetworkPolicy:
        """This policy with more allowed patterns."""
        return dataclasses.replace(self, allow=(*self.allow, *patterns))

    def matching(self, host: str, port: int) -> list[_Pattern]:
        """The patterns that allow ``host:port`` by name (before any address check)."""
        name = host.lower().rstrip(".")
        return [p for p in self._patterns if p.low <= port <= p.high and p.matches_host(name)]

    def address_allowed(
        self, patterns: list[_Pattern], address: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> bool:
        """Whether a connection allowed by ``patterns`` may go to ``address``."""
        if not is_special_address(address) or self.allow_private:
            return True
        return any(p.admits(address) for p in patterns)
