"""Synthetic H.264 frames and detection timelines for the recorder unit tests.

Frame payloads are tiny and name their index (``b"K12"`` for keyframe 12,
``b"P13"`` otherwise), so a test can read back exactly which frames a file got.
A frame's two clocks are as far apart as on a real camera: the monotonic capture
time counts from boot (``BOOT`` at index 0, whatever the wall clock says), so a
recorder that mixes the two fails these tests.
"""

from __future__ import annotations

import time
from typing import Dict, Iterable, List, Tuple

from raspberry_pancake.camera.base import H264Frame
from raspberry_pancake.detection.edges import Edge
from raspberry_pancake.recording.actions import Close, Emit, Open, RecordingFile, Write


def local(text: str) -> float:
    """Seconds since the epoch for a local ``YYYY-mm-dd HH:MM:SS`` time."""
    return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


#: Monotonic capture time of frame 0 of every synthetic stream (seconds since boot).
BOOT = 812.25


def at(seconds: float) -> float:
    """The monotonic time ``seconds`` into a synthetic stream (frame 0 at 0)."""
    return BOOT + seconds


def make_frames(
    start: float, seconds: float, fps: int = 10, gop: int = 10, first_index: int = 0
) -> List[H264Frame]:
    """A stream whose wall clock reads ``start`` at its first frame; a keyframe every ``gop``.

    The monotonic time of frame ``index`` is ``at(index / fps)``: two calls with
    consecutive indexes and another ``start`` make a stream whose wall clock was
    set in between.
    """
    out = []
    for n in range(int(round(seconds * fps))):
        index = first_index + n
        key = index % gop == 0
        out.append(
            H264Frame(
                b"%s%d" % (b"K" if key else b"P", index),
                key,
                at(index / fps),
                start + n / fps,
                index,
            )
        )
    return out


def drive(recorder, frames: Iterable[H264Frame], edges=(), inbox=None, latency: float = 0.1):
    """Feed frames; each edge reaches ``inbox`` once capture time passes it plus ``latency``.

    That is how a real detection thread behaves: its answer about time t arrives
    a little after the frame of time t was recorded. Returns every action,
    including those of ``finish()``.
    """
    pending = sorted(edges, key=lambda e: e.time)
    actions = []
    for frame in frames:
        while pending and pending[0].time + latency <= frame.monotonic:
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
