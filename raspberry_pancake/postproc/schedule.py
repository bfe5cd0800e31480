"""When uploads start: after every N conversions and/or at given minutes of each hour.

Pure logic fed with times and events, so it is tested without waiting for a clock.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Iterable, Optional

logger = logging.getLogger(__name__)


class MinuteSchedule:
    """Fires once at each listed minute of every hour. Used by the main thread only.

    If the loop wakes up late (a long stall, a clock jump), the minutes it slept
    through fire once, not once per missed minute.
    """

    def __init__(self, minutes: Iterable[int], now: dt.datetime):
        self.minutes = sorted(set(minutes))
        self._next = self.next_after(now) if self.minutes else None

    def next_after(self, now: dt.datetime) -> dt.datetime:
        """The first listed minute strictly after ``now`` (seconds dropped)."""
        base = now.replace(second=0, microsecond=0)
        for minute in self.minutes:
            if minute > now.minute:
                return base.replace(minute=minute)
        return base.replace(minute=self.minutes[0]) + dt.timedelta(hours=1)

    def seconds_until_due(self, now: dt.datetime) -> Optional[float]:
        if self._next is None:
            return None
        return max(0.0, (self._next - now).total_seconds())

    def due(self, now: dt.datetime) -> bool:
        """True once when a listed minute has come; then aims at the next one."""
        if self._next is None:
            return False
        if now < self._next and self._next - now <= dt.timedelta(hours=1):
            return False
        # Due, or the clock went back by more than an hour: re-aim either way.
        fired = now >= self._next
        self._next = self.next_after(now)
        return fired


class ConversionCounter:
    """Counts finished conversions; says when N have been reached. Convert thread only."""

    def __init__(self, every: Optional[int]):
        self.every = every
        self._count = 0

    def add(self) -> bool:
        if not self.every:
            return False
        self._count += 1
        if self._count >= self.every:
            self._count = 0
            return True
        return False
