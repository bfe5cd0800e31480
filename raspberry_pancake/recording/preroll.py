"""A circular buffer of the most recent encoded frames, for clips that start in the past."""

from __future__ import annotations

from collections import deque
from typing import Deque, List, Optional

from ..camera.base import H264Frame

#: Defaults: enough for a clip starting 2-4 s before an edge that a slow detector
#: reported a few seconds late; the byte bound caps memory whatever the bitrate.
DEFAULT_SECONDS = 10.0
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


class _Gop:
    """A keyframe and the frames that follow it up to the next keyframe."""

    __slots__ = ("frames", "nbytes", "start")

    def __init__(self, keyframe: H264Frame):
        self.frames: List[H264Frame] = [keyframe]
        self.nbytes = len(keyframe.data)
        self.start = keyframe.monotonic


class PrerollBuffer:
    """Recent frames, whole groups of pictures at a time, so the oldest is a keyframe.

    Bounded both by time (``seconds`` of video behind the newest frame, by capture
    time on the monotonic clock) and by memory (``max_bytes``); the newest group
    is always kept. Used on the camera's capture thread only.
    """

    def __init__(self, seconds: float = DEFAULT_SECONDS, max_bytes: int = DEFAULT_MAX_BYTES):
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._gops: Deque[_Gop] = deque()
        self.nbytes = 0

    def __len__(self) -> int:
        return sum(len(g.frames) for g in self._gops)

    def append(self, frame: H264Frame) -> None:
        if frame.keyframe:
            self._gops.append(_Gop(frame))
        elif self._gops:
            self._gops[-1].frames.append(frame)
            self._gops[-1].nbytes += len(frame.data)
        else:
            return  # nothing before the first keyframe can start a clip
        self.nbytes += len(frame.data)
        self._trim(frame.monotonic)

    def _trim(self, newest: float) -> None:
        # drop the oldest group while the next one alone still covers the time span
        while len(self._gops) > 1 and (
            self.nbytes > self.max_bytes or newest - self._gops[1].start >= self.seconds
        ):
            self.nbytes -= self._gops.popleft().nbytes

    def keyframe_start(self, latest: float) -> Optional[float]:
        """Capture time of the newest buffered keyframe at or before ``latest``.

        Falls back to the oldest keyframe when all are later; None when empty.
        """
        chosen = None
        for gop in self._gops:
            if gop.start <= latest or chosen is None:
                chosen = gop
            else:
                break
        return None if chosen is None else chosen.start

    def frames_from(self, start: float) -> List[H264Frame]:
        """Every buffered frame from the keyframe captured at ``start`` on."""
        out: List[H264Frame] = []
        for gop in self._gops:
            if out or gop.start == start:
                out.extend(gop.frames)
        return out
