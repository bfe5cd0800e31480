"""A circular buffer of the most recent encoded frames, for clips that start in the past."""

from __future__ import annotations

from collections import deque
from typing import Deque, List, Optional, Tuple

from ..camera.base import H264Frame

#: Defaults: enough for a clip starting 2-4 s before an edge that a slow detector
#: reported a few seconds late; the byte bound caps memory whatever the bitrate.
DEFAULT_SECONDS = 10.0
DEFAULT_MAX_BYTES = 32 * 1024 * 1024


class _Gop:
    """A keyframe and the frames that follow it up to the next keyframe."""

    __slots__ = ("frames", "nbytes", "offset")

    def __init__(self, keyframe: H264Frame):
        self.frames: List[H264Frame] = [keyframe]
        self.nbytes = len(keyframe.data)
        self.offset = 0.0  # added to frame times after the clock jumped

    @property
    def start(self) -> float:
        return self.frames[0].wall + self.offset


class PrerollBuffer:
    """Recent frames, whole groups of pictures at a time, so the oldest is a keyframe.

    Bounded both by time (``seconds`` of video behind the newest frame) and by memory
    (``max_bytes``); the newest group is always kept. Used on the camera's capture
    thread only.
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
        self._trim(frame.wall)

    def _trim(self, newest: float) -> None:
        # drop the oldest group while the next one alone still covers the time span
        while len(self._gops) > 1 and (
            self.nbytes > self.max_bytes or newest - self._gops[1].start >= self.seconds
        ):
            self.nbytes -= self._gops.popleft().nbytes

    def shift(self, delta: float) -> None:
        """Move buffered frame times by ``delta`` after the clock jumped."""
        for gop in self._gops:
            gop.offset += delta

    def keyframe_start(self, latest: float) -> Optional[float]:
        """Start time of the newest buffered group starting at or before ``latest``.

        Falls back to the oldest group when all start later; None when empty.
        """
        chosen = None
        for gop in self._gops:
            if gop.start <= latest or chosen is None:
                chosen = gop
            else:
                break
        return None if chosen is None else chosen.start

    def frames_from(self, start: float) -> List[Tuple[float, H264Frame]]:
        """``(time, frame)`` for every buffered frame from the group starting at ``start``.

        The time is the frame's own, moved by any clock jump seen since.
        """
        out: List[Tuple[float, H264Frame]] = []
        for gop in self._gops:
            if out or gop.start == start:
                out.extend((f.wall + gop.offset, f) for f in gop.frames)
        return out
