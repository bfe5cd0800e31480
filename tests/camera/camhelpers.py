"""Helpers for the camera backend tests: a frame collector, H.264 and picture checks."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import List, Tuple

import numpy as np

from tests.helpers import ffprobe


class Collector:
    """An output that keeps every frame; called on the backend's threads."""

    def __init__(self, wanted: bool = True):
        self.frames: List = []
        self.wanted = wanted
        # guards frames: appended by camera threads, read by the test
        self.lock = threading.Lock()
        self.got = threading.Condition(self.lock)

    def outputframe(self, frame) -> None:
        with self.got:
            self.frames.append(frame)
            self.got.notify_all()

    def wants_frame(self) -> bool:
        return self.wanted

    def wait_for(self, count: int, timeout: float = 60.0) -> List:
        with self.got:
            if not self.got.wait_for(lambda: len(self.frames) >= count, timeout):
                raise AssertionError(f"only {len(self.frames)} of {count} frames in {timeout} s")
            return list(self.frames)


def nal_types(data: bytes) -> List[int]:
    """The NAL unit types in an Annex B access unit, in order."""
    types = []
    i = 0
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0 or i + 3 >= len(data):
            return types
        types.append(data[i + 3] & 0x1F)
        i += 3


def ffprobe_video(path: str) -> dict:
    """Codec, size and decoded frame count of a raw H.264 file, read by ffprobe."""
    out = ffprobe(
        path,
        "-count_frames",
        "-show_entries",
        "stream=codec_name,width,height,nb_read_frames",
        of="default=noprint_wrappers=1",
    )
    fields = dict(line.split("=", 1) for line in out.split())
    return {
        "codec": fields["codec_name"],
        "size": (int(fields["width"]), int(fields["height"])),
        "frames": int(fields["nb_read_frames"]),
    }


@contextmanager
def running(camera):
    """The camera started for the ``with`` block, stopped however the block ends."""
    camera.start()
    try:
        yield camera
    finally:
        camera.stop()


def rgb_frames_while_nobody_waits(camera) -> List:
    """RGB frames delivered to an output that wants none, while 5 JPEGs go out."""
    rgb, jpeg = Collector(wanted=False), Collector()
    camera.set_rgb_output(rgb, (100, 60))
    camera.set_jpeg_output(jpeg)
    with running(camera):
        jpeg.wait_for(5)
    return rgb.frames


def rgb_picture(frame) -> np.ndarray:
    """An RGB frame's bytes as an HxWx3 picture."""
    return np.frombuffer(frame.data, dtype=np.uint8).reshape(frame.height, frame.width, 3)


# the sim scene's furniture (raspberry_pancake.camera.scene), as fractions of the picture
BROWN, BLUE = (150, 110, 60), (60, 90, 140)
BROWN_AT, BLUE_AT = (0.15, 0.70), (0.80, 0.70)


def colour_at(rgb: np.ndarray, where: Tuple[float, float]) -> np.ndarray:
    """Mean colour of a 3x3 patch of an HxWx3 picture at fractional position ``where``."""
    h, w = rgb.shape[:2]
    x, y = int(where[0] * w), int(where[1] * h)
    return rgb[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).mean(axis=0)


def near(colour, expected, tolerance: float = 30.0) -> bool:
    return bool(np.abs(np.asarray(colour, dtype=float) - expected).max() <= tolerance)


def mirrored(where: Tuple[float, float]) -> Tuple[float, float]:
    return 1.0 - where[0], where[1]
