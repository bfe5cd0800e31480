"""Which Host headers name this camera: the defence against DNS rebinding.

A web page from anywhere can make a visitor's browser resolve its own domain
to the camera's LAN address; the browser then sends that domain as the Host,
and treats the camera as part of the page's site. Refusing every Host that is
not one of the camera's own names breaks that. Allowed: ``localhost``, the
machine's host name and ``<hostname>.local`` (mDNS), any of the machine's own
IP addresses, and the names given with ``--allow-host``.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, Optional, Set


def normalise_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def split_host(host: str) -> str:
    """The name or address of a Host header, without the port and IPv6 brackets."""
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and ":" not in name:
        host = name
    return normalise_name(host)


def is_own_address(address: str, connected_to: Optional[str] = None) -> bool:
    """True for a loopback address, the one the client connected to, or any we could bind."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.is_unspecified or ip.is_multicast:
        return False  # 0.0.0.0 would bind, but it is nobody's address
    if ip.is_loopback:
        return True
    if connected_to is not None and address == connected_to.split("%", 1)[0]:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))  # succeeds only for an address of this machine
    except OSError:
        return False
    return True


class HostPolicy:
    """The set of names; built on the main thread, read on the IOLoop (never changed)."""

    def __init__(self, extra_names: Iterable[str] = (), hostname: Optional[str] = None):
        hostname = normalise_name(hostname if hostname is not None else socket.gethostname())
        names: Set[str] = {"localhost"}
        for name in {hostname, hostname.split(".", 1)[0]} - {""}:
            names.update({name, f"{name}.local"})
        names.update(split_host(n) for n in extra_names)  # a port given with a name is dropped
        self.names = frozenset(names)

    def allows(self, host_header: str, connected_to: Optional[str] = None) -> bool:
        host = split_host(host_header)
        if host in self.names:
            return True
        return is_own_address(host, connected_to)
