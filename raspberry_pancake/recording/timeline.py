"""Wall-clock arithmetic of recording: quarter-hour marks, and noticing the clock being set.

Everything here works on the wall-clock times frames carry, never on the clock
itself, so the recorders stay deterministic. Durations never come here: they
are measured on the frames' monotonic capture times.
"""

from __future__ import annotations

import time
from typing import Optional

from ..camera.base import H264Frame

QUARTER_HOUR = 15 * 60
#: The wall clock set back by less than this keeps a continuous file going: its
#: name, to the minute, stays about right.
BACKWARD_SLACK = 60.0
#: A change of more than this between consecutive frames in (wall - monotonic)
#: is the wall clock being set, not jitter in reading the two.
STEP_SECONDS = 1.0


def next_quarter_mark(when: float) -> float:
    """The first :00/:15/:30/:45 mark of local time strictly after ``when``.

    Computed from the local broken-down time, so time zones with half- or
    quarter-hour offsets still split on their own local marks.
    """
    local = time.localtime(when)
    into_quarter = (local.tm_min % 15) * 60 + local.tm_sec + (when - int(when))
    return when - into_quarter + QUARTER_HOUR


def past_quarter(mark: float, wall: float) -> bool:
    """Whether wall time ``wall`` lies outside the quarter hour that ends at ``mark``.

    At or after the mark is the ordinary case (or the clock set forward); well
    before the quarter began means the clock was set back, and the file named
    for that quarter should not hold what follows.
    """
    return wall >= mark or wall < mark - QUARTER_HOUR - BACKWARD_SLACK


class WallClockSteps:
    """Notices the wall clock being set between two frames; used on the capture thread.

    The two times of a frame are read together, so their difference only moves
    when someone sets the wall clock. ``step`` returns by how much (0.0 if not).
    """

    def __init__(self, threshold: float = STEP_SECONDS):
        self.threshold = threshold
        self._offset: Optional[float] = None

    def step(self, frame: H264Frame) -> float:
        offset, previous = frame.wall - frame.monotonic, self._offset
        self._offset = offset
        if previous is None or abs(offset - previous) <= self.threshold:
            return 0.0
        return offset - previous
