"""systemd's notify protocol: a few datagrams to ``$NOTIFY_SOCKET``.

A no-op when the variable is unset, so the daemons behave the same outside
systemd. Only the messages we use: READY, WATCHDOG, STOPPING and STATUS.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Optional

logger = logging.getLogger(__name__)


class Notifier:
    """Sends notifications; safe to call from any thread (one sendto per call)."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address or None
        self._sock: Optional[socket.socket] = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_usec = int(usec) if usec.isdigit() else 0
        if pid.isdigit() and int(pid) != os.getpid():
            self.watchdog_usec = 0

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    @property
    def watchdog_interval(self) -> Optional[float]:
        """Seconds between pings (half of systemd's timeout), or None without a watchdog."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def send(self, text: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto(text.encode("utf-8"), self._address)
        except OSError as e:
            logger.debug("sd_notify %r failed: %s", text, e)

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
