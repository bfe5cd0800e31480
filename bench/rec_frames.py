"""Encoded test streams for the recording benchmarks (shared by the three scripts).

``sim_stream`` encodes a short clip of the sim camera's scene once and repeats it
with fresh timestamps; ``pi_stream`` cuts the real Raspberry Pi sample into access
units and repeats those. Either way the benchmarks then measure only what comes
after the encoder.
"""

from __future__ import annotations

import os
import sys
import time
from typing import List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from raspberry_pancake.camera.base import CameraSettings, H264Frame  # noqa: E402

PI_SAMPLE = os.path.join(ROOT, "tests", "data", "raspivid-1080p-116frames.h264")


def sim_stream(
    seconds: float, size=(1920, 1080), fps: int = 30, unique: float = 5.0
) -> List[H264Frame]:
    """``seconds`` of the sim scene at ``size``; ``unique`` seconds are encoded, then repeated.

    ``unique`` is a whole number of keyframe intervals, so the repeats keep the
    keyframe every ``fps`` frames.
    """
    import numpy as np

    from raspberry_pancake.camera.h264 import H264Encoder
    from raspberry_pancake.camera.scene import Scene

    scene = Scene(CameraSettings(resolution=size, fps=fps))
    encoder = H264Encoder(*size, fps)
    encoded = []
    start = time.time()
    for n in range(int(unique * fps)):
        picture = np.asarray(scene.render(n, 6.0 + n / fps, start + n / fps))  # the ball moves
        encoded.extend(encoder.encode(picture))
    encoder.close()
    return _timestamped([data for data, _ in encoded], [key for _, key in encoded], seconds, fps)


def access_units(data: bytes) -> List[bytes]:
    """Split an Annex B stream into access units, one coded picture each (one slice each)."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i - 1 if i > 0 and data[i - 1] == 0 else i)
        i = data.find(b"\x00\x00\x01", i + 3)
    units, current = [], b""
    for a, b in zip(starts, starts[1:] + [len(data)]):
        nal = data[a:b]
        current += nal
        kind = nal[nal.index(b"\x00\x00\x01") + 3] & 0x1F
        if kind in (1, 5):  # a slice closes the picture
            units.append(current)
            current = b""
    return units


def pi_stream(seconds: float, fps: int = 30) -> List[H264Frame]:
    """The real Pi sample's picture sizes, repeated, with a keyframe every ``fps`` frames."""
    with open(PI_SAMPLE, "rb") as f:
        units = access_units(f.read())
    keys = [n % fps == 0 for n in range(len(units))]
    return _timestamped(units, keys, seconds, fps)


def _timestamped(datas, keys, seconds, fps) -> List[H264Frame]:
    """Frames captured from now on, ``fps`` a second, on both clocks."""
    mono0, wall0 = time.monotonic(), time.time()
    count = int(seconds * fps)
    return [
        H264Frame(datas[n % len(datas)], keys[n % len(keys)], mono0 + n / fps, wall0 + n / fps, n)
        for n in range(count)
    ]
