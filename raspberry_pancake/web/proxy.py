"""Requests that come through an HTTPS reverse proxy the owner trusts (``--trusted-proxy``).

Only a connection from a listed proxy address may say, with ``X-Forwarded-For``
and ``X-Forwarded-Proto``, who the client is and that it used HTTPS. From anyone
else these headers are ignored, or a visitor could pick the address the guess
throttle counts against. Of ``X-Forwarded-For`` only the last entry counts: it is
the one the trusted proxy added itself; earlier ones are whatever the client sent.
"""

from __future__ import annotations

import ipaddress
from typing import FrozenSet, Iterable

import tornado.httputil


def normalise_address(address: str) -> str:
    """One spelling per address (IPv4-mapped IPv6 as IPv4); the text as is if not an IP."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return address.strip()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _last_entry(header: str) -> str:
    return header.rsplit(",", 1)[-1].strip()


class TrustedProxies:
    """The proxy addresses; built on the main thread, read on the IOLoop (never changed)."""

    def __init__(self, addresses: Iterable[str] = ()):
        self.addresses: FrozenSet[str] = frozenset(normalise_address(a) for a in addresses)

    def adapt(self, request: tornado.httputil.HTTPServerRequest) -> None:
        """Set the request's client address and scheme from a trusted proxy's headers."""
        if not self.addresses or normalise_address(request.remote_ip) not in self.addresses:
            return
        forwarded_for = _last_entry(request.headers.get("X-Forwarded-For", ""))
        if forwarded_for:
            try:
                request.remote_ip = str(ipaddress.ip_address(forwarded_for))
            except ValueError:
                pass  # not an address: keep the proxy's own
        proto = _last_entry(request.headers.get("X-Forwarded-Proto", "")).lower()
        if proto in ("http", "https"):
            request.protocol = proto
