"""Software H.264 encoding with PyAV's libx264, shaped like the Pi's encoder.

Used by the sim camera and by the tests' fakes of the Pi libraries: a keyframe
every ``fps`` frames (one second), SPS/PPS repeated before every keyframe so a
file cut at any keyframe plays alone, no B-frames and no look-ahead so each
picture in gives one access unit out at once.
"""

from __future__ import annotations

from fractions import Fraction
from typing import List, Tuple

import av
import numpy as np


class H264Encoder:
    """Encodes RGB pictures to Annex B access units; one instance per stream, one thread."""

    def __init__(self, width: int, height: int, fps: int, crf: int = 28):
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width = width
        ctx.height = height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, fps)
        ctx.framerate = Fraction(fps, 1)
        ctx.gop_size = fps
        ctx.options = {
            "bf": "0",  # no B-frames (PyAV 10, Debian 12's, has no max_b_frames attribute)
            "preset": "ultrafast",
            "tune": "zerolatency",
            "crf": str(crf),
            "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0:repeat-headers=1",
        }
        self._ctx = ctx
        self._pts = 0
        self.size = (width, height)

    def encode(self, rgb: np.ndarray) -> List[Tuple[bytes, bool]]:
        """Encode one HxWx3 uint8 picture; returns ``[(access_unit, keyframe), ...]``."""
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = self._pts
        self._pts += 1
        return [(bytes(p), bool(p.is_keyframe)) for p in self._ctx.encode(frame)]

    def close(self) -> List[Tuple[bytes, bool]]:
        """Flush what the encoder still holds (nothing, with zerolatency)."""
        try:
            return [(bytes(p), bool(p.is_keyframe)) for p in self._ctx.encode(None)]
        except av.error.EOFError:
            return []
