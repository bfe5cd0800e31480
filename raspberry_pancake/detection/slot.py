"""The camera's RGB output for ``detect(bytes)``: one frame, made only when asked for."""

from __future__ import annotations

import threading
from typing import Optional

from ..camera.base import RgbFrame


class RgbSlot:
    """The camera's RGB output: holds one frame for the detection thread.

    ``outputframe`` and ``wants_frame`` are called on the camera's capture thread,
    ``take`` on the detection thread. The camera only makes an RGB frame once
    ``take`` has asked for one, so a slow detector costs the camera nothing. A
    ``take`` that gave up leaves its request standing until a frame comes: a
    camera that never answers is then seen by the watchdog, however short
    detection's waits are.
    """

    def __init__(self):
        # guards _frame, _wanted and _closed
        self._cond = threading.Condition()
        self._frame: Optional[RgbFrame] = None
        self._wanted = False
        self._closed = False

    def wants_frame(self) -> bool:
        return self._wanted

    def outputframe(self, frame: RgbFrame) -> None:
        with self._cond:
            if self._wanted:
                self._frame = frame
                self._wanted = False
                self._cond.notify()

    def take(self, timeout: float) -> Optional[RgbFrame]:
        with self._cond:
            self._frame = None
            self._wanted = True
            self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout)
            frame, self._frame = self._frame, None
            return frame

    def wake(self) -> None:
        """Make ``take`` return at once from now on (at shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
