"""Continuous recording: one file at a time, split on quarter-hour marks."""

from __future__ import annotations

import logging
from typing import List, Optional

from ..camera.base import H264Frame
from .actions import Close, Open, RecordingFile, Write
from .naming import continuous_name
from .timeline import JumpDetector, next_quarter_mark

logger = logging.getLogger(__name__)


class ContinuousRecorder:
    """Decides, frame by frame, which continuous file each frame goes to.

    A file starts at a keyframe; at the first keyframe at or after each quarter-hour
    mark the current file is closed and that keyframe starts the next one, so every
    frame is written exactly once. The mark is aimed again after the clock went
    backwards (otherwise the next split could be hours away); a forward jump simply
    passes the mark and causes one split. Called on the camera's capture thread
    (and ``finish`` on the main thread once the camera has stopped).
    """

    name = "continuous recording"

    def __init__(self, directory: str):
        self.directory = directory
        self.current: Optional[RecordingFile] = None
        self.split_at = 0.0
        self._jumps = JumpDetector("continuous recording")
        self.frames_written = 0

    def on_frame(self, frame: H264Frame) -> List[object]:
        actions: List[object] = []
        if self._jumps.step(frame.wall) < 0:
            self.split_at = next_quarter_mark(frame.wall)
        if frame.keyframe and (self.current is None or frame.wall >= self.split_at):
            if self.current is not None:
                actions.append(Close(self.current))
            self.current = RecordingFile(self.directory, continuous_name(frame.wall))
            self.split_at = next_quarter_mark(frame.wall)
            actions.append(Open(self.current))
        if self.current is not None:
            actions.append(Write(self.current, frame))
            self.frames_written += 1
        return actions

    def finish(self) -> List[object]:
        """Close the file being written (at shutdown)."""
        if self.current is None:
            return []
        done, self.current = self.current, None
        return [Close(done)]
