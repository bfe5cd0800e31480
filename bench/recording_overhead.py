#!/usr/bin/env python3
"""CPU per frame of the recording path, against just writing the same bytes to a file.

Measured: everything after the encoder, that is the fan-out, the continuous and
detection recorders, the disk writer's queue and thread, and the writes, for a
1920x1080, 30 fps stream (by default the access units of the real Pi camera
sample, repeated; ``--stream sim`` encodes the sim scene once instead). The
baseline writes the same stream, frame by frame, to one file with ``os.write``:
what a recorder that did nothing else would cost. Both run in this process, in
alternating rounds; CPU time is the whole process's (all threads). Detection
edges come from a script: on for 10 s, off for 10 s (so edge mode writes clips
too, and all mode records half the time). ``--via-camera`` also runs what a
camera backend does for each frame before the recorders: ``Camera._mark_alive``
(the watchdog's bookkeeping, with a live view and a detection slot registered
and waiting for nothing) and ``Camera._deliver``.
Run: ``python3 bench/recording_overhead.py``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

from rec_frames import PI_SAMPLE, pi_stream, sim_stream

from raspberry_pancake.camera.base import Camera, CameraSettings
from raspberry_pancake.detection import RgbSlot
from raspberry_pancake.recording.actions import Write
from raspberry_pancake.recording.continuous import ContinuousRecorder
from raspberry_pancake.recording.detection import AllRecorder, EdgeRecorder
from raspberry_pancake.recording.edges import Edge, EdgeInbox
from raspberry_pancake.recording.fanout import RecordingFanout
from raspberry_pancake.recording.writer import DiskWriter
from raspberry_pancake.web.live import FrameBroadcaster


class Pacer:
    """Sleeps until each frame's due time when pacing (as a camera delivers), else nothing."""

    def __init__(self, fps: float, paced: bool):
        self.period = 1.0 / fps
        self.paced = paced
        self.start = time.monotonic()

    def wait(self, n: int) -> None:
        if self.paced:
            delay = self.start + n * self.period - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def planned_writes(frames, mode):
    """Which frame goes to which file, as the recorders decide (computed before timing)."""
    inbox = EdgeInbox()
    recorders = make_recorders("/nowhere", mode, inbox)
    writes = []
    for frame in with_edges(frames, inbox):
        for recorder in recorders:
            writes.extend(
                (a.file.serial, a.frame.data)
                for a in recorder.on_frame(frame)
                if isinstance(a, Write)
            )
    return writes


def baseline(writes, directory, paced) -> float:
    """os.write of the same bytes to the same number of files, nothing else."""
    pacer = Pacer(30, paced)
    cpu = time.process_time()
    fds = {}
    last = None
    n = -1
    for serial, data in writes:
        fd = fds.get(serial)
        if fd is None:
            path = os.path.join(directory, f"plain-{serial}.h264")
            fd = fds[serial] = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        if data is not last:  # the first write of a frame: a new frame from the camera
            n += 1
            pacer.wait(n)
            last = data
        os.write(fd, data)
    for fd in fds.values():
        os.close(fd)
    return time.process_time() - cpu


def make_recorders(directory, mode, inbox):
    recorders = [ContinuousRecorder(directory)]
    if mode:
        recorders.append((EdgeRecorder if mode == "edge" else AllRecorder)(directory, inbox))
    return recorders


def with_edges(frames, inbox):
    """Yield the frames, putting the scripted edges (off 10 s, on 10 s...) into ``inbox``."""
    t0 = frames[0].monotonic
    state = False
    for frame in frames:
        on = int((frame.monotonic - t0) // 10) % 2 == 1
        if on != state:
            state = on
            inbox.put(Edge(frame.monotonic, on))
        yield frame


class HandCamera(Camera):
    """A camera backend reduced to its per-frame bookkeeping; the benchmark is its thread."""

    def _start(self) -> None:
        pass

    def _stop(self) -> None:
        pass


def ours(frames, directory, mode, paced, via_camera=False) -> float:
    inbox = EdgeInbox()
    recorders = make_recorders(directory, mode, inbox)
    # a queue big enough that an unpaced feed never drops a frame
    writer = DiskWriter(lambda m: None, max_bytes=2**40, max_frames=10**9)
    fanout = RecordingFanout(recorders, writer)
    camera = HandCamera(CameraSettings())
    camera.set_h264_output(fanout)
    camera.set_jpeg_output(FrameBroadcaster())
    camera.set_rgb_output(RgbSlot())
    pacer = Pacer(30, paced)
    cpu = time.process_time()
    writer.start()
    for n, frame in enumerate(with_edges(frames, inbox)):
        pacer.wait(n)
        if via_camera:
            camera._mark_alive()
            camera._deliver(fanout, frame)
        else:
            fanout.outputframe(frame)
    fanout.finish()
    writer.close()
    used = time.process_time() - cpu
    assert writer.frames_dropped == 0 and writer.frames_lost == 0
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="stream length per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--paced",
        action="store_true",
        help="deliver frames at 30 fps in real time (slow) instead of as fast as possible",
    )
    parser.add_argument(
        "--via-camera",
        action="store_true",
        help="hand each frame over as a camera backend does (liveness bookkeeping included)",
    )
    parser.add_argument(
        "--stream",
        choices=["pi", "sim"],
        default="pi",
        help="pi: the picture sizes of the real Pi 1080p sample (default); sim: the sim scene",
    )
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.stream == "pi" and not os.path.exists(PI_SAMPLE):
        parser.error(f"{PI_SAMPLE} is absent; use --stream sim")
    frames = pi_stream(args.seconds) if args.stream == "pi" else sim_stream(args.seconds)
    mib = sum(len(f.data) for f in frames) / 2**20
    print(
        f"stream ({args.stream}): {len(frames)} frames, 1920x1080 at 30 fps, {mib:.1f} MiB "
        f"({mib * 8 * 2**20 / args.seconds / 1e6:.1f} Mbit/s)"
    )
    cases = [("continuous", None), ("continuous + edge", "edge"), ("continuous + all", "all")]
    stream_only = [(0, f.data) for f in frames]
    plans = {name: planned_writes(frames, mode) for name, mode in cases}
    rows = {name: {"stream": [], "same": [], "us": []} for name, _ in cases}
    for _ in range(args.rounds):
        for name, mode in cases:
            directory = tempfile.mkdtemp(prefix="rp-bench-")
            try:
                stream = baseline(stream_only, directory, args.paced)
                same = baseline(plans[name], directory, args.paced)
                mine = ours(frames, directory, mode, args.paced, args.via_camera)
            finally:
                shutil.rmtree(directory)
            rows[name]["stream"].append(mine / stream)
            rows[name]["same"].append(mine / same)
            rows[name]["us"].append(mine / len(frames) * 1e6)
    print(
        f"{'recording path':<20} {'us/frame':>9} {'x stream once':>14} {'x same bytes':>13}"
        f" {'files/bytes vs stream':>22}"
    )
    for name, _ in cases:
        r = rows[name]
        extra = sum(len(d) for _, d in plans[name]) / sum(len(f.data) for f in frames)
        print(
            f"{name:<20} {statistics.median(r['us']):>9.1f} {statistics.median(r['stream']):>14.2f}"
            f" {statistics.median(r['same']):>13.2f} {extra:>21.2f}x"
        )
    print("ratios are medians over rounds; the goal is <= 1.5 against the same bytes written")


if __name__ == "__main__":
    main()
