"""Synthetic H.264 frames and detection timelines for the recorder unit tests.

Frame payloads are tiny and name their index (``b"K12"`` for keyframe 12,
``b"P13"`` otherwise), so a test can read back exactly which frames a file got.
"""

from __future__ import annotations

import time
from typing import Dict, Iterable, List, Tuple

from raspberry_pancake.camera.base import H264Frame
from raspberry_pancake.recording.actions import Close, Emit, Open, RecordingFile, Write
from raspberry_pancake.recording.edges import Edge


def local(text: str) -> float:
    """Seconds since the epoch for a local ``YYYY-mm-dd HH:MM:SS`` time."""
    return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


def make_frames(
    start: float, seconds: float, fps: int = 10, gop: int = 10, first_index: int = 0
) -> List[H264Frame]:
    """A stream starting at ``start`` with a keyframe every ``gop`` frames."""
    out = []
    for n in range(int(round(seconds * fps))):
        index = first_index + n
        key = index % gop == 0
        out.append(
            H264Frame(
                b"%s%d" % (b"K" if key else b"P", index),
                key,
                start + n / fps,
                start + n / fps,
                index,
            )
        )
    return out


def drive(recorder, frames: Iterable[H264Frame], edges=(), inbox=None, latency: float = 0.1):
    """Feed frames; each edge reaches ``inbox`` once frame time passes it plus ``latency``.

    That is how a real detection thread behaves: its answer about time t arrives
    a little after the frame of time t was recorded. Returns every action,
    including those of ``finish()``.
    """
    pending = sorted(edges, key=lambda e: e.time)
    actions = []
    for frame in frames:
        while pending and pending[0].time + latency <= frame.wall:
            inbox.put(pending.pop(0))
        actions.extend(recorder.on_frame(frame))
    actions.extend(recorder.finish())
    return actions


def edges(*pairs: Tuple[float, bool]) -> List[Edge]:
    return [Edge(t, s) for t, s in pairs]


class Replay:
    """Plays actions back in memory: which frames each file got, which messages went out."""

    def __init__(self, actions):
        self.files: Dict[RecordingFile, List[H264Frame]] = {}
        self.order: List[RecordingFile] = []
        self.closed: List[RecordingFile] = []
        self.messages: List[dict] = []
        for action in actions:
            if isinstance(action, Open):
                assert action.file not in self.files, "opened twice"
                self.files[action.file] = []
                self.order.append(action.file)
            elif isinstance(action, Write):
                assert action.file in self.files and action.file not in self.closed
                self.files[action.file].append(action.frame)
            elif isinstance(action, Close):
                assert action.file in self.files and action.file not in self.closed
                self.closed.append(action.file)
                msg = {"h264": action.file.name}
                if action.detection is not None:
                    msg["detection"] = action.detection
                self.messages.append(msg)
            elif isinstance(action, Emit):
                self.messages.append(action.message.to_dict())
            else:
                raise AssertionError(f"unexpected action {action!r}")

    def frames(self, file: RecordingFile) -> List[H264Frame]:
        return self.files[file]

    def indexes(self, file: RecordingFile) -> List[int]:
        return [f.index for f in self.files[file]]

    def duration(self, file: RecordingFile, fps: int) -> float:
        return len(self.files[file]) / fps

    def names(self) -> List[str]:
        return [f.name for f in self.order]
