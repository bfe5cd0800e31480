#!/usr/bin/env python3
"""Memory held by the pre-roll buffer at 1920x1080, 30 fps, and its bound.

The buffer keeps whole groups of pictures covering ``seconds`` of video, capped
at ``max_bytes``. This feeds it a minute of 1080p30 video and reports what it
holds in steady state: bytes of video (measured) and the Python objects around
them (estimated with ``sys.getsizeof``), next to the byte bound. Streams: the real
Pi sample's picture sizes (default), the sim scene, and a synthetic 25 Mbit/s
stream (a Pi camera's highest bitrate) to show the byte cap taking over.
Run: ``python3 bench/preroll_memory.py``.
"""

from __future__ import annotations

import sys

from rec_frames import _timestamped, pi_stream, sim_stream

from raspberry_pancake.recording.preroll import DEFAULT_MAX_BYTES, DEFAULT_SECONDS, PrerollBuffer

FPS = 30


def synthetic(mbit: float, seconds: float):
    per_frame = int(mbit * 1e6 / 8 / FPS)
    datas = [bytes(per_frame * 4 if n == 0 else per_frame) for n in range(FPS)]
    keys = [n == 0 for n in range(FPS)]
    return _timestamped(datas, keys, seconds, FPS)


def measure(name, frames):
    buf = PrerollBuffer()
    peak_bytes = peak_frames = 0
    for frame in frames:
        buf.append(frame)
        peak_bytes = max(peak_bytes, buf.nbytes)
        peak_frames = max(peak_frames, len(buf))
    held = buf.frames_from(buf.keyframe_start(0))
    overhead = sum(sys.getsizeof(f) + sys.getsizeof(f.data) - len(f.data) for f in held)
    covered = held[-1].monotonic - held[0].monotonic + 1 / FPS
    mbit = sum(len(f.data) for f in frames) * 8 / (len(frames) / FPS) / 1e6
    print(
        f"{name:<26} {mbit:>7.1f} {covered:>9.1f} {buf.nbytes / 2**20:>10.2f}"
        f" {peak_bytes / 2**20:>10.2f} {overhead / 2**10:>10.0f} {peak_frames:>7}"
    )


def main() -> None:
    print(
        f"bound: {DEFAULT_SECONDS:.0f} s of video (plus the group being filled), "
        f"at most {DEFAULT_MAX_BYTES / 2**20:.0f} MiB of video"
    )
    print(
        f"{'stream (1920x1080, 30 fps)':<26} {'Mbit/s':>7} {'seconds':>9} {'MiB held':>10}"
        f" {'MiB peak':>10} {'KiB objs':>10} {'frames':>7}"
    )
    measure("real Pi sample sizes", pi_stream(60, FPS))
    measure("sim scene", sim_stream(60))
    for mbit in (10, 17, 25):
        measure(f"synthetic {mbit} Mbit/s", synthetic(mbit, 60))


if __name__ == "__main__":
    main()
