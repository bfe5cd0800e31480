"""Fake Picamera2 encoders with the documented constructors, producing real data.

``H264Encoder(bitrate=None, repeat=True, iperiod=None, ...)`` is libx264 with a
keyframe every ``iperiod`` frames and SPS/PPS before every keyframe when
``repeat`` (only the first otherwise), limited to 1920x1080 like the Pi 4's
hardware encoder. ``MJPEGEncoder`` and ``JpegEncoder`` give Pillow JPEGs;
``MJPEGEncoder()`` raises as on a board without the hardware codec when the
environment has ``FAKE_PICAMERA2_NO_HW_MJPEG=1``. Encoders run on the fake
camera's thread and call ``outputframe(frame, keyframe, timestamp, packet,
audio)`` on every output, the timestamp in microseconds from the first frame.
"""

from __future__ import annotations

import io
import os
import threading
from enum import Enum

import numpy as np

from raspberry_pancake.camera.h264 import H264Encoder as _X264

from ..outputs import Output
from ..request import yuv420_to_image

H264_MAX = (1920, 1080)
#: the V4L2 driver's own intra period when none is given (the fake's choice)
DEFAULT_IPERIOD = 60


class Quality(Enum):
    VERY_LOW = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    VERY_HIGH = 4


def _strip_headers(data: bytes) -> bytes:
    """Drop SPS (7) and PPS (8) NAL units from an Annex B access unit."""
    out, i, starts = [], 0, []
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0:
            break
        starts.append((i - 1 if i > 0 and data[i - 1] == 0 else i, i + 3))
        i += 3
    for n, (start, payload) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(data)
        if data[payload] & 0x1F not in (7, 8):
            out.append(data[start:end])
    return b"".join(out)


class Encoder:
    """Base: output list, stream geometry, start/stop, timestamps."""

    def __init__(self):
        self._width = self._height = self._stride = 0
        self._format = None
        self._output = []
        self._running = False
        self._name = None
        self._lock = threading.Lock()
        self.firsttimestamp = None
        self.frames_encoded = 0

    @property
    def running(self):
        return self._running

    @property
    def output(self):
        return self._output[0] if len(self._output) == 1 else self._output

    @output.setter
    def output(self, value):
        values = value if isinstance(value, list) else [value]
        for out in values:
            if not isinstance(out, Output):
                raise RuntimeError("Must pass Output")
        self._output = values

    @property
    def size(self):
        return (self._width, self._height)

    @property
    def name(self):
        return self._name

    @name.setter
    def name(self, value):
        if not isinstance(value, str):
            raise RuntimeError("Name must be string")
        self._name = value

    def _configure(self, size, fmt, stride):
        self._width, self._height = size
        self._format, self._stride = fmt, stride

    def start(self, quality=None):
        with self._lock:
            if self._running:
                raise RuntimeError("Encoder already running")
            self._running = True
            self.firsttimestamp = None
            for out in self._output:
                out.start()
            self._start()

    def _start(self):
        pass

    def stop(self):
        with self._lock:
            if not self._running:
                raise RuntimeError("Encoder already stopped")
            self._running = False
            for out in self._output:
                out.stop()

    def encode(self, stream, request):
        """Called by the fake camera for each frame of the stream this encoder was started on."""
        with self._lock:
            if not self._running:
                return
            sensor_us = request.get_metadata()["SensorTimestamp"] // 1000
            if self.firsttimestamp is None:
                self.firsttimestamp = sensor_us
            timestamp = sensor_us - self.firsttimestamp
            image = yuv420_to_image(request.buffers[stream], self.size, self._stride)
            for data, keyframe in self._encode(image):
                self.frames_encoded += 1
                for out in self._output:
                    out.outputframe(data, keyframe, timestamp, None, False)

    def _encode(self, image):
        raise NotImplementedError


class H264Encoder(Encoder):
    def __init__(
        self,
        bitrate=None,
        repeat=True,
        iperiod=None,
        framerate=None,
        enable_sps_framerate=False,
        qp=None,
        profile=None,
    ):
        super().__init__()
        self.bitrate, self.repeat, self.iperiod = bitrate, repeat, iperiod
        self.framerate, self.qp, self.profile = framerate, qp, profile
        self._x264 = None
        self._headers_sent = False

    def _start(self):
        if self._width > H264_MAX[0] or self._height > H264_MAX[1]:
            self._running = False
            raise RuntimeError(
                f"H.264 encoding of {self._width}x{self._height}: the hardware stops at 1920x1080"
            )
        if self.iperiod is not None and (not isinstance(self.iperiod, int) or self.iperiod < 1):
            self._running = False
            raise RuntimeError(f"bad iperiod {self.iperiod!r}")
        self._x264 = _X264(self._width, self._height, self.iperiod or DEFAULT_IPERIOD)
        self._headers_sent = False
        for out in self._output:
            out._add_stream("video", "h264")

    def _encode(self, image):
        out = []
        for data, keyframe in self._x264.encode(np.asarray(image)):
            if keyframe and self._headers_sent and not self.repeat:
                data = _strip_headers(data)
            self._headers_sent = self._headers_sent or keyframe
            out.append((data, keyframe))
        return out


class _JpegBase(Encoder):
    quality = 80

    def _encode(self, image):
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=self.quality)
        return [(buf.getvalue(), True)]


class MJPEGEncoder(_JpegBase):
    def __init__(self, bitrate=None):
        if os.environ.get("FAKE_PICAMERA2_NO_HW_MJPEG"):
            raise RuntimeError("Hardware MJPEG not available on this platform")
        super().__init__()
        self.bitrate = bitrate


class JpegEncoder(_JpegBase):
    def __init__(self, num_threads=4, q=None, colour_space=None, colour_subsampling="420"):
        super().__init__()
        self.q, self.colour_space, self.colour_subsampling = q, colour_space, colour_subsampling


__all__ = ["Encoder", "H264Encoder", "JpegEncoder", "MJPEGEncoder", "Quality"]
