#!/usr/bin/env python3
"""Our work on Picamera2's camera thread on a Pi 5, per frame at 1080p30, against the frame time.

On a Pi 5 (PiSP) Picamera2 runs everything on one camera thread: its request
handling, our pre-callback (timestamp annotation, copies for the live view and
detection), its libav H.264 encoder, and our ``FrameOutput.outputframe`` (which
hands the frame to our recording thread) inline inside the encoder. Whatever
that thread spends on a frame comes out of the 33.3 ms a frame lasts at 30 fps.

This runs the real Picamera2 0.3.38 on the fake Pi 5 of the tests
(tests/fakes/fake_pi; the sensor repeats 30 pre-drawn 1080p frames, so drawing
them costs nothing during the measurement) with ``pancake.py --resolution 1920
1080 --fps 30 --record-continuous``'s streams, and times on the camera thread,
in CPU time of that thread (time.thread_time_ns: waiting for the GIL, which
libcamera's own threads would not take on a Pi, is not counted):

- *ours*: the backend's pre-callback plus its outputframe;
- *H.264*: Picamera2's libav encoder per frame, without our outputframe inside
  it: the baseline of the same run, and what a Pi 5 pays to record at all;
- *thread*: everything Picamera2's camera thread did per frame;
- *process*: the CPU of the whole process per frame, every thread (libav's
  encoder threads, our workers, the fake sensor's copying), for information.

Three scenes: nobody watching; one live-view viewer (a copy of the 1080p frame
for the JPEG worker whenever it is free); a viewer and detect(rgb) at 320x240.
The JPEG and RGB conversions themselves run on our worker threads, not here.

Usage: python3 bench/picamera2_camera_thread.py [--frames 300] [--fps 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKES = os.path.join(ROOT, "tests", "fakes")
for path in (ROOT, FAKES):
    if path not in sys.path:
        sys.path.insert(0, path)

SCENES = [
    ("recording, nobody watching", False, False),
    ("recording + one viewer", True, False),
    ("recording + viewer + detect(rgb)", True, True),
]


class Output:
    """A live-view or detection output: wants frames or not, counts what it gets."""

    def __init__(self, wanted: bool):
        self.wanted = wanted
        self.count = 0
        self.got = threading.Event()

    def wants_frame(self) -> bool:
        return self.wanted

    def outputframe(self, frame) -> None:
        self.count += 1
        self.got.set()


class Recorder(Output):
    def __init__(self, frames: int):
        super().__init__(True)
        self.frames = frames

    def outputframe(self, frame) -> None:
        self.count += 1
        if self.count >= self.frames:
            self.got.set()


class Timed:
    """CPU time of a callable, per call, on the thread that calls it."""

    def __init__(self, func):
        self.func = func
        self.samples = []

    def __call__(self, *args, **kwargs):
        began = time.thread_time_ns()
        try:
            return self.func(*args, **kwargs)
        finally:
            self.samples.append(time.thread_time_ns() - began)


def measure(frames: int, fps: int, viewer: bool, detect: bool):
    import picamera2.encoders.libav_h264_encoder as libav
    from picamera2 import Picamera2

    from raspberry_pancake.camera import picamera2_backend as backend
    from raspberry_pancake.camera.base import CameraSettings

    ours_out = []
    make_output = backend.make_frame_output_class

    def timed_output_class(base):
        cls = make_output(base)

        class TimedFrameOutput(cls):
            def outputframe(self, *args, **kwargs):
                began = time.thread_time_ns()
                try:
                    return super().outputframe(*args, **kwargs)
                finally:
                    ours_out.append(time.thread_time_ns() - began)

        return TimedFrameOutput

    encode = Timed(libav.LibavH264Encoder.encode)
    process = Timed(Picamera2.process_requests)
    backend.make_frame_output_class = timed_output_class
    libav.LibavH264Encoder.encode = lambda self, *a: encode(self, *a)
    Picamera2.process_requests = lambda self, *a: process(self, *a)
    try:
        camera = backend.Picamera2Camera(CameraSettings(resolution=(1920, 1080), fps=fps), warmup=0)
        pre = Timed(camera._pre_callback)
        camera._pre_callback = pre
        recorder, view, rgb = Recorder(frames + fps), Output(viewer), Output(detect)
        camera.set_h264_output(recorder)
        camera.set_jpeg_output(view)
        if detect:
            camera.set_rgb_output(rgb, (320, 240))
        camera.start()
        try:
            recorder.got.wait(frames / fps * 20 + 60)
            process_cpu = time.process_time()  # of everything, fake sensor included
            frames_then = recorder.count
            time.sleep(frames / fps / 2)  # a second window, for the whole process's CPU
            process_cpu = (time.process_time() - process_cpu) / max(1, recorder.count - frames_then)
        finally:
            camera.stop()
    finally:
        backend.make_frame_output_class = make_output
        libav.LibavH264Encoder.encode = encode.func
        Picamera2.process_requests = process.func
    skip = fps  # the first second: caches, first keyframe
    pre_s, out_s, enc_s = pre.samples[skip:], ours_out[skip:], encode.samples[skip:]
    n = min(len(pre_s), len(out_s), len(enc_s))
    ours = [pre_s[i] + out_s[i] for i in range(n)]
    h264 = [enc_s[i] - out_s[i] for i in range(n)]
    per_frame_thread = sum(process.samples) / max(1, len(pre.samples))
    return {
        "frames": n,
        "ours": ours,
        "h264": h264,
        "thread": per_frame_thread,
        "process": process_cpu,
        "delivered": (recorder.count, view.count, rgb.count),
    }


def pct(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=300, help="frames measured per scene")
    p.add_argument("--fps", type=int, default=30)
    args = p.parse_args(argv)
    os.environ["FAKE_LIBCAMERA_DISTINCT_FRAMES"] = "30"
    import fake_pi

    fake_pi.install("pisp")
    interval_us = 1e6 / args.fps
    print(f"Pi 5 model (PiSP), 1920x1080 at {args.fps} fps: {interval_us / 1000:.1f} ms a frame")
    print("CPU time on Picamera2's camera thread per frame, in microseconds")
    print(
        f"{'scene':<34} {'frames':>6} {'ours med':>9} {'p95':>7} {'max':>7} {'of frame':>9} "
        f"{'H.264 med':>10} {'ours/H.264':>11} {'thread':>8} {'process':>8}"
    )
    for name, viewer, detect in SCENES:
        r = measure(args.frames, args.fps, viewer, detect)
        ours_med = statistics.median(r["ours"]) / 1e3
        h264_med = statistics.median(r["h264"]) / 1e3
        print(
            f"{name:<34} {r['frames']:>6} {ours_med:>9.0f} {pct(r['ours'], 0.95) / 1e3:>7.0f} "
            f"{max(r['ours']) / 1e3:>7.0f} {ours_med / interval_us:>9.2%} {h264_med:>10.0f} "
            f"{ours_med / h264_med:>11.3f} {r['thread'] / 1e3:>8.0f} {r['process'] * 1e6:>8.0f}"
        )
    print("ours = pre-callback + outputframe; H.264 = Picamera2's libav encode minus our")
    print("outputframe inside it; thread = all of process_requests, per frame;")
    print(
        "process = CPU of every thread per frame (the fake sensor's included), in a second window"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
