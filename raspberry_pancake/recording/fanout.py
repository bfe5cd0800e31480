"""The camera's one H.264 consumer: hands each frame to every recorder."""

from __future__ import annotations

import logging
import threading
from typing import List

from ..camera.base import H264Frame
from .actions import Recorder
from .timeline import WallClockSteps

logger = logging.getLogger(__name__)


class RecordingFanout:
    """Feeds each encoded frame to the recorders and their actions to the disk writer.

    ``outputframe`` is called on the camera's capture thread; it only decides and
    queues, so it returns in microseconds whatever the disk does. ``finish`` is
    called on the main thread after the camera has stopped. It also logs the
    wall clock being set, which renames what follows and changes no duration.
    """

    def __init__(self, recorders: List[Recorder], writer):
        self.recorders = recorders
        self.writer = writer
        # guards the recorders against finish() racing a late frame
        self._lock = threading.Lock()
        self._finished = False
        self.frames_received = 0
        self.failures = 0
        self._clock = WallClockSteps()

    def outputframe(self, frame: H264Frame) -> None:
        with self._lock:
            if self._finished:
                return
            self.frames_received += 1
            step = self._clock.step(frame)
            if step:
                logger.warning(
                    "the wall clock was set %+.1f s at frame %d: file names follow it",
                    step,
                    frame.index,
                )
            for recorder in self.recorders:
                try:
                    actions = recorder.on_frame(frame)
                except Exception:
                    self._log_failure(recorder, frame)
                    continue
                for action in actions:
                    self.writer.put(action)

    def _log_failure(self, recorder, frame: H264Frame) -> None:
        """The first failure with its traceback, then one line per hundred."""
        self.failures += 1
        if self.failures == 1:
            logger.exception("%s failed on frame %d", recorder.name, frame.index)
        elif self.failures % 100 == 0:
            logger.error("recorders have failed %d times", self.failures)

    def finish(self) -> None:
        """Close every recording in progress; the writer then announces them."""
        with self._lock:
            self._finished = True
            for recorder in self.recorders:
                for action in recorder.finish():
                    self.writer.put(action)
        logger.info("recording received %d H.264 frames", self.frames_received)
