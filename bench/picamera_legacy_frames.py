#!/usr/bin/env python3
"""Per-frame cost of the picamera backend's own work on the MMAL callback threads.

What ``raspberry_pancake/camera/picamera_legacy.py`` does with each buffer picamera
hands it, against the cheapest thing a callback could do with the same bytes
(copy them once, measured in the same run on the same buffers):

- RGB for detection (``RgbLayout.exact``): crop the splitter's padding at the
  camera's resolution, or scale a rounded RGBA frame to the asked size; and, for
  comparison, what picamera itself does per frame when asked for ``rgb`` through
  a resizer (strip every fourth byte of a bytearray in Python), which is why the
  backend asks for ``rgba``.
- H.264 (``PortWriter.write`` + ``_on_h264``): join a frame's buffers, time it
  from its timestamp and build the frame, for a 1080p keyframe-sized buffer.

Usage: python3 bench/picamera_legacy_frames.py [--rounds 7] [--frames 200] [--fps 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from raspberry_pancake.camera.picamera_legacy import (  # noqa: E402
    KEY_FRAME,
    CaptureClock,
    PortWriter,
    RgbLayout,
)

#: (camera resolution, --detect-resize): the layouts that matter
RGB_CASES = [
    ((1640, 1232), (1640, 1232)),  # crop 1648 -> 1640
    ((1296, 972), (1296, 972)),  # crop 976 rows -> 972
    ((1920, 1080), (320, 240)),  # RGBA 320x240, alpha dropped, no scaling
    ((1920, 1080), (100, 60)),  # RGBA 128x64 scaled to 100x60
    ((1920, 1080), (500, 375)),  # RGBA 512x384 scaled to 500x375
]


class Info:
    """A PiVideoFrame's fields the writer reads."""

    __slots__ = ("frame_type", "timestamp", "complete")

    def __init__(self, frame_type, timestamp, complete):
        self.frame_type, self.timestamp, self.complete = frame_type, timestamp, complete


def per_call_us(func, calls):
    began = time.perf_counter_ns()
    for n in range(calls):
        func(n)
    return (time.perf_counter_ns() - began) / calls / 1000


def rgb_case(resolution, size, rounds, frames):
    layout = RgbLayout(size, resolution)
    w, h = layout.frame_size
    data = np.random.default_rng(0).integers(0, 255, w * h * layout.bytes_per_pixel, np.uint8)
    data = data.tobytes()
    copy, ours, strip = [], [], []
    for _ in range(rounds):
        copy.append(per_call_us(lambda n: bytearray(data), frames))
        ours.append(per_call_us(lambda n: layout.exact(data), frames))
        if layout.format == "rgba":

            def picamera_strip(n):
                stripped = bytearray(data)
                del stripped[3::4]

            strip.append(per_call_us(picamera_strip, frames))
    return statistics.median(copy), statistics.median(ours), strip and statistics.median(strip)


def h264_case(rounds, frames):
    """A 1080p keyframe (about 150 kB) in three MMAL buffers."""
    pieces = [bytes(50_000), bytes(50_000), bytes(50_000)]
    clock = CaptureClock(lambda: int(time.monotonic() * 1e6))
    clock.sync()
    infos = [Info(KEY_FRAME, None, False), Info(KEY_FRAME, None, False), None]
    current = [None]
    delivered = []

    def on_frame(data, info, monotonic, wall):
        delivered.append((len(data), monotonic, wall))

    writer = PortWriter(1, lambda: current[0], clock, on_frame)

    def one_frame(n):
        stamp = int(time.monotonic() * 1e6) - 40_000
        infos[2] = Info(KEY_FRAME, stamp, True)
        for info, piece in zip(infos, pieces):
            current[0] = info
            writer.write(piece)
        delivered.clear()

    copy, ours = [], []
    for _ in range(rounds):
        copy.append(per_call_us(lambda n: b"".join(pieces), frames))
        ours.append(per_call_us(one_frame, frames))
    return statistics.median(copy), statistics.median(ours)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args(argv)
    budget = 1e6 / args.fps
    print(f"median of {args.rounds} rounds of {args.frames} frames; frame interval {budget:.0f} µs")
    print(
        f"{'case':38} {'copy µs':>9} {'ours µs':>9} {'ratio':>7} {'of frame':>9}  picamera strip µs"
    )
    for resolution, size in RGB_CASES:
        copy, ours, strip = rgb_case(resolution, size, args.rounds, args.frames)
        name = f"rgb {size[0]}x{size[1]} from {resolution[0]}x{resolution[1]}"
        extra = f"{strip:.0f}" if strip else "-"
        print(
            f"{name:38} {copy:9.0f} {ours:9.0f} {ours / copy:6.2f}x {ours / budget:8.1%}  {extra}"
        )
    copy, ours = h264_case(args.rounds, args.frames)
    name = "h264 150 kB keyframe in 3 buffers"
    print(f"{name:38} {copy:9.1f} {ours:9.1f} {ours / copy:6.2f}x {ours / budget:8.1%}  -")
    return 0


if __name__ == "__main__":
    sys.exit(main())
