"""Time arithmetic of recording: quarter-hour marks and clock jumps.

Everything here works on frame timestamps (wall-clock seconds), never on the
clock itself, so the recorders stay deterministic.
"""

from __future__ import annotations

import logging
import time
from typing import Optional

logger = logging.getLogger(__name__)

QUARTER_HOUR = 15 * 60
#: A step between consecutive frames larger than this is a clock jump, not a gap
#: in frames (frames come at least once a second).
JUMP_SECONDS = 5.0


def next_quarter_mark(when: float) -> float:
    """The first :00/:15/:30/:45 mark of local time strictly after ``when``.

    Computed from the local broken-down time, so time zones with half- or
    quarter-hour offsets still split on their own local marks.
    """
    local = time.localtime(when)
    into_quarter = (local.tm_min % 15) * 60 + local.tm_sec + (when - int(when))
    return when - into_quarter + QUARTER_HOUR


class JumpDetector:
    """Notices the wall clock jumping between two consecutive frames.

    Called on the camera's capture thread by one recorder. ``step(t)`` returns how
    far the clock jumped (negative: backwards), that is the step minus the ordinary
    step between frames, or 0.0 for an ordinary step.
    A forward gap can also be a camera that stalled; recorders treat both alike.
    """

    def __init__(self, name: str, threshold: float = JUMP_SECONDS):
        self.name = name
        self.threshold = threshold
        self.previous: Optional[float] = None
        self.ordinary = 0.0  # the last step that was not a jump

    def step(self, when: float) -> float:
        previous, self.previous = self.previous, when
        if previous is None:
            return 0.0
        delta = when - previous
        if delta < -self.threshold or delta > self.threshold:
            logger.warning(
                "%s: frame time stepped by %+.1f s (clock change or camera stall)", self.name, delta
            )
            return delta - self.ordinary
        self.ordinary = delta
        return 0.0
