"""Host rules for remote sources (F2, F3): bare host names only, no private addresses.

A host written with a scheme, a path, a user or a port is refused with the corrected value.
Private, loopback, link-local and unspecified addresses are refused — also in the IPv6 forms
that reach an IPv4 host (IPv4-mapped and -compatible, 6to4, Teredo, NAT64) — both when
written as an address and when the name resolves to one at connect time (so DNS cannot
point a source at the internal network), unless the source says ``allow_private = true``.
Connections go to the address that was checked, never to a second resolution of the name.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

_HOSTNAME = re.compile(
    r"(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.?"
)


class HostError(ValueError):
    """A host value or a resolved address that a source may not use."""


def check_host_value(value: str) -> str | None:
    """F2: None when ``value`` is a bare host name or address, else what is wrong and the fix."""
    raw = value.strip()
    if not raw:
        return "expected a host name such as ftp.example.com.br"
    candidate = raw
    problems = []
    if "://" in candidate:
        parts = urlsplit(candidate)
        problems.append(f"no scheme (`{parts.scheme}://`)")
        candidate = parts.netloc + parts.path
    if "/" in candidate:
        problems.append("no path")
        candidate = candidate.split("/", 1)[0]
    if "@" in candidate:
        problems.append("no user (use `user = …`)")
        candidate = candidate.rsplit("@", 1)[1]
    if candidate.startswith("[") and "]" in candidate:
        inner, _, rest = candidate[1:].partition("]")
        if rest.startswith(":"):
            problems.append("no port (use `port = …`)")
        candidate = inner
    elif candidate.count(":") == 1:
        problems.append("no port (use `port = …`)")
        candidate = candidate.split(":", 1)[0]
    if problems:
        return (
            f"the host must be a bare name or address: {', '.join(problems)}; "
            f'write host = "{candidate}" (F2)'
        )
    try:
        ipaddress.ip_address(candidate)
        return None
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(candidate):
        return f'"{raw}" is not a valid host name; write e.g. host = "ftp.example.com.br" (F2)'
    return None


_SIXTOFOUR = ipaddress.ip_network("2002::/16")  # RFC 3056: 2002:AABB:CCDD::/48
_TEREDO = ipaddress.ip_network("2001::/32")  # RFC 4380: client = ~(last 32 bits)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: local-use translation
_COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291 2.5.5.1 (deprecated)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, when it is one of the forms that reach an
    IPv4 host: IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), 6to4
    (``2002:AABB:CCDD::``), Teredo (``2001:0::``, the client's address inverted in the last
    32 bits) and NAT64 (``64:ff9b::a.b.c.d``)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _SIXTOFOUR:
        return ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
    if ip in _TEREDO:
        return ipaddress.IPv4Address(~int(ip) & 0xFFFFFFFF)
    if ip in _NAT64 or ip in _COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _non_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_reserved
        or ip.is_multicast
        or ip in _SHARED
    )


def is_private(address: str) -> bool:
    """F3: private, loopback, link-local, unspecified (and other non-public) addresses,
    including the IPv6 forms that carry one of them to an IPv4 host (IPv4-mapped and
    -compatible, 6to4, Teredo, NAT64) and NAT64's local-use prefix ``64:ff9b:1::/48``."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL:
            return True  # translated by a local NAT64 into any, maybe internal, network
        inner = embedded_ipv4(ip)
        if inner is not None and _non_public(inner):
            return True
    return _non_public(ip)


def _carried(address: str) -> str:
    """`` (it carries 127.0.0.1)`` for an IPv6 form of an IPv4 address, else nothing."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return ""
    inner = embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    return f" (it carries {inner})" if inner is not None else ""


def check_literal(host: str, allow_private: bool) -> str | None:
    """F3 at configuration time: a private address written as the host."""
    try:
        private = is_private(host)
    except ValueError:
        return None  # a name: checked after resolution, at connect time
    if private and not allow_private:
        return (
            f"{host}{_carried(host)} is a private, loopback or link-local address; sources "
            "may only reach "
            "public hosts. For an on-premises server set `allow_private = true` on this "
            "source (F3)"
        )
    return None


@dataclass(frozen=True)
class Target:
    """Where to connect: the host as configured (for TLS and host keys) and the vetted address."""

    host: str
    address: str
    port: int
    family: int


def resolve(host: str, port: int, *, allow_private: bool) -> Target:
    """Resolve ``host`` and vet the address (F3); raise ``HostError`` or ``socket.gaierror``."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [(info[0], str(info[4][0])) for info in infos]
    if not allow_private:
        private = [addr for _, addr in addresses if is_private(addr)]
        if private:
            raise HostError(
                f"{host} resolves to {private[0]}{_carried(private[0])}, a private, loopback or "
                "link-local address; "
                "sources may only reach public hosts (set `allow_private = true` on the "
                "source for an on-premises server) (F3)"
            )
    family, address = addresses[0]
    return Target(host, address, port, family)


def connect(target: Target, timeout: float) -> socket.socket:
    """A TCP connection to the vetted address."""
    return socket.create_connection((target.address, target.port), timeout=timeout)
