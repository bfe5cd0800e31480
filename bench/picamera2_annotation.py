#!/usr/bin/env python3
"""Cost of the Picamera2 backend's timestamp annotation, against a bare frame copy.

The backend's pre-callback burns the time into every frame of every stream on
Picamera2's camera thread (``TimestampOverlay.draw``), so its cost comes out of
the frame budget (33 ms at 30 fps). It is measured here on stride-padded YUV420
buffers of the two sizes that matter, 1920x1080 (a recording) and 640x480 (a
live view), next to the cheapest thing a callback could do with a frame: copy
it once (``numpy.copy``), measured in the same run on the same buffers.

Two costs per size: the steady per-frame cost (the text has not changed: copy
the rendered patch into the luma plane, grey the chroma under it) and the
once-a-second cost when the text changes and the patch is rendered again with
Pillow. The amortised figure is steady + render / fps.

Usage: python3 bench/picamera2_annotation.py [--rounds 7] [--frames 300] [--fps 30]
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

from raspberry_pancake.camera.picamera2_backend import TimestampOverlay  # noqa: E402

SIZES = [(1920, 1080), (640, 480)]
TEXT_SIZE = {(1920, 1080): 72, (640, 480): 24}


def yuv420_buffer(size):
    """A (height*3/2, stride) buffer with a 64-byte aligned stride, as libcamera gives."""
    w, h = size
    stride = (w + 63) // 64 * 64
    rng = np.random.default_rng(0)
    return rng.integers(16, 235, (h * 3 // 2, stride), dtype=np.uint8)


def per_call_ns(func, calls):
    began = time.perf_counter_ns()
    for n in range(calls):
        func(n)
    return (time.perf_counter_ns() - began) / calls


def measure(size, rounds, frames):
    buf = yuv420_buffer(size)
    overlay = TimestampOverlay(size, TEXT_SIZE[size])
    base = 1592932490.0  # 2020-06-23, a fixed second
    overlay.draw(buf, base)  # first render outside the timing
    sink = np.empty_like(buf)
    copy, steady, render = [], [], []
    for _ in range(rounds):
        copy.append(per_call_ns(lambda n: np.copyto(sink, buf), frames))
        steady.append(per_call_ns(lambda n: overlay.draw(buf, base), frames))
        # a new second on every call: the patch is rendered each time
        render.append(per_call_ns(lambda n: overlay.draw(buf, base + 1 + n), frames // 10 or 1))
    return statistics.median(copy), statistics.median(steady), statistics.median(render)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--fps", type=int, default=30)
    args = p.parse_args(argv)
    print(f"median of {args.rounds} rounds of {args.frames} frames; times per frame")
    print(
        f"{'size':>10} {'bare copy':>10} {'steady':>10} {'ratio':>6} "
        f"{'new second':>11} {'amortised':>10} {'ratio':>6} {'of budget':>10}"
    )
    budget_us = 1e6 / args.fps
    for size in SIZES:
        copy, steady, render = measure(size, args.rounds, args.frames)
        amortised = steady + (render - steady) / args.fps
        print(
            f"{size[0]:>5}x{size[1]:<4} {copy / 1e3:>8.1f}us {steady / 1e3:>8.1f}us "
            f"{steady / copy:>6.2f} {render / 1e3:>9.1f}us {amortised / 1e3:>8.1f}us "
            f"{amortised / copy:>6.2f} {amortised / 1e3 / budget_us:>9.2%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
