#!/usr/bin/env python3
"""From detect() returning a new state to the recorder knowing the edge.

A real ``DetectionThread`` calls a scripted detector whose answer flips every
1.3 s; a stand-in camera thread delivers H.264 frames (and RGB frames for
``detect(bytes)``) at 30 fps in real time to the real fan-out, edge recorder and
disk writer. Measured per edge: from the moment the detector returned (just
before its ``return``, in the call that found the edge) to the moment the recorder
applied the edge (its ``_on_edge`` ran, on the camera thread). The goal is under
one detect interval plus 50 ms. Run: ``python3 bench/detection_latency.py``.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import threading
import time

from rec_frames import pi_stream

from raspberry_pancake.camera.base import RgbFrame
from raspberry_pancake.detection.edges import EdgeInbox
from raspberry_pancake.detection.slot import RgbSlot
from raspberry_pancake.detection.thread import DetectionThread
from raspberry_pancake.recording.fanout import RecordingFanout
from raspberry_pancake.recording.triggered import EdgeRecorder
from raspberry_pancake.recording.writer import DiskWriter

FPS = 30
FLIP_EVERY = 1.3


class TimedEdgeRecorder(EdgeRecorder):
    """The edge recorder, noting when each edge reaches it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.applied = []

    def _on_edge(self, edge, frame, actions):
        self.applied.append(time.monotonic())
        super()._on_edge(edge, frame, actions)


def run(mode: str, interval: float, seconds: float):
    start = time.monotonic()
    last_return = [0.0]
    returned = []  # for each edge: when the detect() call that found it returned

    def answer():
        state = int((time.monotonic() - start) / FLIP_EVERY) % 2 == 1
        last_return[0] = time.monotonic()
        return state

    def detect_image(rgb):
        return answer()

    inbox = EdgeInbox()
    directory = tempfile.mkdtemp(prefix="rp-bench-")
    recorder = TimedEdgeRecorder(directory, inbox)
    writer = DiskWriter(lambda m: None)
    fanout = RecordingFanout([recorder], writer)
    slot = RgbSlot() if mode == "image" else None

    def on_edge(edge):
        # called on the detection thread right after the detect() call that found it
        returned.append(last_return[0])
        inbox.put(edge)

    detection = DetectionThread(detect_image if slot else answer, interval, on_edge, slot)
    frames = pi_stream(seconds + 1, FPS)
    stop = threading.Event()

    def camera():
        t0 = time.monotonic()
        for n, frame in enumerate(frames):
            if stop.wait(max(0.0, t0 + n / FPS - time.monotonic())):
                return
            captured, wall = time.monotonic(), time.time()
            fanout.outputframe(frame.__class__(frame.data, frame.keyframe, captured, wall, n))
            if slot is not None and slot.wants_frame():
                slot.outputframe(RgbFrame(bytes(64 * 48 * 3), 64, 48, captured, wall, n))

    writer.start()
    detection.start()
    cam = threading.Thread(target=camera)
    cam.start()
    time.sleep(seconds)
    stop.set()
    cam.join()
    detection.close()
    fanout.finish()
    writer.close()
    pairs = list(zip(returned, recorder.applied))
    return [(applied - ret) * 1000 for ret, applied in pairs]


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    print(
        f"{'detect':<10} {'interval':>9} {'edges':>6} {'median ms':>10} {'max ms':>8}"
        f" {'goal ms':>8}"
    )
    for mode, interval in (("no-image", 1 / FPS), ("image", 1 / FPS), ("no-image", 0.5)):
        latencies = run(mode, interval, 15.0)
        goal = interval * 1000 + 50
        print(
            f"{mode:<10} {interval:>9.3f} {len(latencies):>6} {statistics.median(latencies):>10.1f}"
            f" {max(latencies):>8.1f} {goal:>8.0f}"
        )


if __name__ == "__main__":
    main()
