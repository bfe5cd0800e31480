"""Warnings that an attacker can trigger thousands of times a second, logged as counts.

The audit found 173 MB of "Too many open files" in a log. Such an event is
logged the first time, then at most once a period, with how often it happened.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

PERIOD = 60.0


class LogSummary:
    """One kind of repeated warning. Used on the IOLoop only, so it needs no lock."""

    def __init__(
        self,
        logger: logging.Logger,
        message: str,
        period: float = PERIOD,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.logger = logger
        self.message = message
        self.period = period
        self.clock = clock
        self.count = 0  # events since the last line
        self._last_line = None

    def note(self, detail: str = "") -> None:
        """One event; ``detail`` (say, an address) is shown for the latest one."""
        self.count += 1
        now = self.clock()
        if self._last_line is not None and now - self._last_line < self.period:
            return
        suffix = f" ({detail})" if detail else ""
        if self._last_line is None:
            self.logger.warning("%s%s", self.message, suffix)
        else:
            self.logger.warning(
                "%s: %d times in the last %.0f s%s",
                self.message,
                self.count,
                now - self._last_line,
                f", the last one {detail}" if detail else "",
            )
        self._last_line = now
        self.count = 0
