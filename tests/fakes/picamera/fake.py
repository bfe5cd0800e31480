"""Test hooks of the fake picamera; none of this is part of picamera.

- ``cameras``: every PiCamera made, in order.
- ``Knobs``: how the fake GPU behaves, read from the environment when a camera
  is made (so a test can set them for a pancake.py subprocess):

  ========================================  ==========================================
  ``FAKE_PICAMERA_NO_CAMERA=1``             opening fails as on a Pi without a camera
  ``FAKE_PICAMERA_LOG=path``                the usage log, as JSON, written at close
  ``FAKE_PICAMERA_STC_OFFSET=seconds``      the VideoCore clock minus CLOCK_MONOTONIC
  ``FAKE_PICAMERA_LATENCY=seconds``         capture-to-delivery delay of every buffer
  ``FAKE_PICAMERA_UNKNOWN_PTS_EVERY=n``     every n-th encoded picture has no timestamp
  ``FAKE_PICAMERA_BUFFER_SIZE=bytes``       largest encoded buffer; bigger frames split
  ``FAKE_PICAMERA_FAULTS=path``             a file of faults, read while running (below)
  ========================================  ==========================================

  The faults file holds lines ``freeze PORT``, ``thaw PORT`` or ``fail PORT``
  (a splitter port number); whenever the file changes, the camera applies all its
  lines in order, so a test rewrites it with the faults it wants now. ``freeze``
  stops a port's callbacks without an error, as a stalled firmware component
  would; ``fail`` makes the next callback of that port raise, which picamera
  turns into a port that is stopped for good (see encoders.FakeEncoder._callback).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List

cameras: List[object] = []


def reset() -> None:
    cameras.clear()


@dataclass
class Knobs:
    """The fake GPU's behaviour; defaults are plausible for a Pi, not measured on one."""

    #: the VideoCore's system time counter runs from the GPU's boot, before Linux's
    stc_offset: float = 4.25
    #: seconds from capture to a buffer's callback (ISP, encoder, VCHIQ)
    latency: float = 0.06
    #: 0: every encoded picture has a timestamp; n: every n-th has "time unknown"
    unknown_pts_every: int = 0
    #: MMAL splits encoded frames larger than an output buffer over several buffers
    buffer_size: int = 65536
    #: buffers in each output port's pool; a port holding all of them makes the GPU drop frames
    pool_buffers: int = 6
    faults_path: str = ""

    @classmethod
    def from_environment(cls) -> Knobs:
        env = os.environ
        knobs = cls()
        if env.get("FAKE_PICAMERA_STC_OFFSET"):
            knobs.stc_offset = float(env["FAKE_PICAMERA_STC_OFFSET"])
        if env.get("FAKE_PICAMERA_LATENCY"):
            knobs.latency = float(env["FAKE_PICAMERA_LATENCY"])
        if env.get("FAKE_PICAMERA_UNKNOWN_PTS_EVERY"):
            knobs.unknown_pts_every = int(env["FAKE_PICAMERA_UNKNOWN_PTS_EVERY"])
        if env.get("FAKE_PICAMERA_BUFFER_SIZE"):
            knobs.buffer_size = int(env["FAKE_PICAMERA_BUFFER_SIZE"])
        knobs.faults_path = env.get("FAKE_PICAMERA_FAULTS", "")
        return knobs
