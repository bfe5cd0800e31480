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

The writer pushes written video to the disk with fdatasync every second and at
every close, so a power cut loses at most about two seconds. Its cost is
measured in the same rounds: the recording path with and without those syncs,
and a baseline that writes the same bytes and calls fdatasync on each file once a
second of video and at its close. In an unpaced run the writer's clock follows
the frames' capture times, so it syncs as often per second of video as it would
live. The directory (``--dir``) must be on a real disk: on a tmpfs fdatasync costs
nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from statistics import median

from rec_frames import pi_stream, sim_stream

from raspberry_pancake.camera.base import Camera, CameraSettings
from raspberry_pancake.detection.edges import Edge, EdgeInbox
from raspberry_pancake.detection.slot import RgbSlot
from raspberry_pancake.recording.actions import Write
from raspberry_pancake.recording.continuous import ContinuousRecorder
from raspberry_pancake.recording.fanout import RecordingFanout
from raspberry_pancake.recording.triggered import AllRecorder, EdgeRecorder
from raspberry_pancake.recording.writer import SYNC_SECONDS, DiskWriter
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


class Cost:
    """CPU time (all threads) and wall time of one run, in seconds."""

    def __init__(self):
        self.cpu = time.process_time()
        self.wall = time.perf_counter()

    def stop(self) -> Cost:
        self.cpu = time.process_time() - self.cpu
        self.wall = time.perf_counter() - self.wall
        return self


def baseline(writes, directory, paced, sync=False) -> Cost:
    """os.write of the same bytes to the same number of files, nothing else.

    With ``sync``, fdatasync of every file written to once a second of video (30
    frames) and at its close: the least a recorder that syncs must do.
    """
    pacer = Pacer(30, paced)
    cost = Cost()
    fds = {}
    dirty = set()
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
            if sync and n % 30 == 0:
                for d in dirty:
                    os.fdatasync(d)
                dirty.clear()
        os.write(fd, data)
        dirty.add(fd)
    for fd in fds.values():
        if sync:
            os.fdatasync(fd)
        os.close(fd)
    return cost.stop()


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


def ignore(message, done=None) -> None:
    if done is not None:
        done()  # as the emitter does once the message is sent: the marker goes


def ours(frames, directory, mode, paced, via_camera=False, sync=True) -> Cost:
    inbox = EdgeInbox()
    recorders = make_recorders(directory, mode, inbox)
    video_time = [frames[0].monotonic]
    # unpaced, the writer's clock is the capture time of the newest frame, so it
    # syncs once a second of video as it would live
    clock = time.monotonic if paced else lambda: video_time[0]
    # a queue big enough that an unpaced feed never drops a frame
    writer = DiskWriter(
        ignore,
        max_bytes=2**40,
        max_frames=10**9,
        sync_seconds=SYNC_SECONDS if sync else None,
        clock=clock,
    )
    fanout = RecordingFanout(recorders, writer)
    camera = HandCamera(CameraSettings())
    camera.set_h264_output(fanout)
    camera.set_jpeg_output(FrameBroadcaster())
    camera.set_rgb_output(RgbSlot())
    pacer = Pacer(30, paced)
    cost = Cost()
    writer.start()
    for n, frame in enumerate(with_edges(frames, inbox)):
        pacer.wait(n)
        video_time[0] = frame.monotonic
        if via_camera:
            camera._mark_alive()
            camera._deliver(fanout, frame)
        else:
            fanout.outputframe(frame)
    fanout.finish()
    writer.close()
    cost.stop()
    assert writer.frames_dropped == 0 and writer.frames_lost == 0
    return cost


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
    parser.add_argument(
        "--dir", help="where to write (default: the temporary directory; use a real disk)"
    )
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    frames = pi_stream(args.seconds) if args.stream == "pi" else sim_stream(args.seconds)
    mib = sum(len(f.data) for f in frames) / 2**20
    print(
        f"stream ({args.stream}): {len(frames)} frames, 1920x1080 at 30 fps, {mib:.1f} MiB "
        f"({mib * 8 * 2**20 / args.seconds / 1e6:.1f} Mbit/s)"
    )
    cases = [("continuous", None), ("continuous + edge", "edge"), ("continuous + all", "all")]
    stream_only = [(0, f.data) for f in frames]
    plans = {name: planned_writes(frames, mode) for name, mode in cases}
    columns = ("stream", "same", "synced_same", "sync_cpu", "sync_wall", "us", "us_sync")
    rows = {name: {c: [] for c in columns} for name, _ in cases}
    for _ in range(args.rounds):
        for name, mode in cases:
            directory = tempfile.mkdtemp(prefix="rp-bench-", dir=args.dir)
            try:
                stream = baseline(stream_only, directory, args.paced)
                same = baseline(plans[name], directory, args.paced)
                same_synced = baseline(plans[name], directory, args.paced, sync=True)
                unsynced = ours(frames, directory, mode, args.paced, args.via_camera, sync=False)
                synced = ours(frames, directory, mode, args.paced, args.via_camera, sync=True)
            finally:
                shutil.rmtree(directory)
            r = rows[name]
            r["stream"].append(unsynced.cpu / stream.cpu)
            r["same"].append(unsynced.cpu / same.cpu)
            r["synced_same"].append(synced.cpu / same_synced.cpu)
            r["sync_cpu"].append(synced.cpu / unsynced.cpu)
            r["sync_wall"].append(synced.wall / unsynced.wall)
            r["us"].append(unsynced.cpu / len(frames) * 1e6)
            r["us_sync"].append(synced.cpu / len(frames) * 1e6)
    print(f"directory: {args.dir or tempfile.gettempdir()}; medians over {args.rounds} rounds")
    print(
        f"{'recording path':<20} {'us/frame':>9} {'x stream once':>14} {'x same bytes':>13}"
        f" {'files/bytes vs stream':>22}"
    )
    for name, _ in cases:
        r = rows[name]
        extra = sum(len(d) for _, d in plans[name]) / sum(len(f.data) for f in frames)
        print(
            f"{name:<20} {median(r['us']):>9.1f} {median(r['stream']):>14.2f}"
            f" {median(r['same']):>13.2f} {extra:>21.2f}x"
        )
    print("without syncing; the goal is <= 1.5 against the same bytes written")
    print()
    print(
        f"{'with fdatasync':<20} {'us/frame':>9} {'x same bytes, synced':>21}"
        f" {'CPU x unsynced':>15} {'wall x unsynced':>16}"
    )
    for name, _ in cases:
        r = rows[name]
        print(
            f"{name:<20} {median(r['us_sync']):>9.1f} {median(r['synced_same']):>21.2f}"
            f" {median(r['sync_cpu']):>15.2f} {median(r['sync_wall']):>16.2f}"
        )
    print(
        "synced: fdatasync once a second of video and at every close (the baseline too);"
        " wall time includes waiting for the disk"
    )


if __name__ == "__main__":
    main()
