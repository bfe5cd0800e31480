"""Continuous recording: one file at a time, split on quarter-hour marks."""

from __future__ import annotations

from typing import List, Optional

from ..camera.base import H264Frame
from .actions import Action, Close, Open, RecordingFile, Write
from .naming import continuous_name
from .timeline import next_quarter_mark, past_quarter


class ContinuousRecorder:
    """Decides, frame by frame, which continuous file each frame goes to.

    A file starts at a keyframe; at the first keyframe whose wall time is past the
    file's quarter hour the file is closed and that keyframe starts the next one,
    so every frame is written exactly once. Only wall times matter here: they
    name the files and place the marks. So the wall clock set forward starts a
    file named with the new time at once, like an ordinary split, and set back
    by more than a minute it does the same (the next mark is then aimed from the
    new time, not hours away). Called on the camera's capture thread (and
    ``finish`` on the main thread once the camera has stopped).
    """

    name = "continuous recording"

    def __init__(self, directory: str):
        self.directory = directory
        self.current: Optional[RecordingFile] = None
        self.split_at = 0.0
        self.frames_written = 0

    def on_frame(self, frame: H264Frame) -> List[Action]:
        actions: List[Action] = []
        if frame.keyframe and (self.current is None or past_quarter(self.split_at, frame.wall)):
            if self.current is not None:
                actions.append(Close(self.current))
            self.current = RecordingFile(self.directory, continuous_name(frame.wall))
            self.split_at = next_quarter_mark(frame.wall)
            actions.append(Open(self.current))
        if self.current is not None:
            actions.append(Write(self.current, frame))
            self.frames_written += 1
        return actions

    def finish(self) -> List[Action]:
        """Close the file being written (at shutdown)."""
        if self.current is None:
            return []
        done, self.current = self.current, None
        return [Close(done)]
