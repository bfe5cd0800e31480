"""The fake camera's capture thread: the sim scene, paced by the sensor mode, into the buffers.

Each frame period it takes the oldest queued request (none queued: the frame is
dropped, as the hardware drops it), draws the scene, converts it into every
processed stream's format and colour space, writes the pixels into the
request's DMA buffers with their row stride (the padding right of each row holds
junk, so a reader that ignores the stride sees it), stamps the metadata and
completes the request.

``SensorTimestamp`` is the frame's start on CLOCK_MONOTONIC in nanoseconds, as
on a Pi: libcamera's Raspberry Pi pipeline copies it from the CSI-2 receiver's
buffer timestamp (Unicam on VC4, CFE on PiSP), which the kernel driver takes with
ktime_get_ns() at frame start.

The thread waits on an Event, never ``time.sleep``, so it keeps time under
libfaketime. Test hooks, from the environment: ``FAKE_LIBCAMERA_SCENE=black-and-white``
films a picture that is black on the left half and white on the right;
``FAKE_LIBCAMERA_DISTINCT_FRAMES=n`` draws n frames once and then repeats them
(the benchmarks' way to keep the fake's own drawing off the measurements).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import Deque, Dict, List, Tuple

import numpy as np
from PIL import Image

from raspberry_pancake.camera.base import CameraSettings
from raspberry_pancake.camera.scene import Scene

from . import _libcamera as lc
from . import controls as ctl
from .imx219 import SensorMode

logger = logging.getLogger(__name__)

PADDING_BYTE = 0x3C

#: Kr, Kb of each Y'CbCr encoding (ITU-R BT.601, BT.709, BT.2020)
_LUMA_WEIGHTS = {
    lc.ColorSpace.YcbcrEncoding.Rec601: (0.299, 0.114),
    lc.ColorSpace.YcbcrEncoding.Rec709: (0.2126, 0.0722),
    lc.ColorSpace.YcbcrEncoding.Rec2020: (0.2627, 0.0593),
}

_FLIPS = {
    lc.Orientation.Rotate0: (False, False),
    lc.Orientation.Rotate0Mirror: (True, False),
    lc.Orientation.Rotate180: (True, True),
    lc.Orientation.Rotate180Mirror: (False, True),
}


def rgb_to_yuv420(rgb: np.ndarray, space: lc.ColorSpace) -> Tuple[np.ndarray, ...]:
    """Y, U and V planes (chroma averaged over 2x2) of an HxWx3 picture in ``space``."""
    kr, kb = _LUMA_WEIGHTS.get(
        space.ycbcrEncoding, _LUMA_WEIGHTS[lc.ColorSpace.YcbcrEncoding.Rec601]
    )
    f = rgb.astype(np.float32)
    y = kr * f[..., 0] + (1 - kr - kb) * f[..., 1] + kb * f[..., 2]
    cb = (f[..., 2] - y) / (2 * (1 - kb))
    cr = (f[..., 0] - y) / (2 * (1 - kr))
    h, w = y.shape
    cb = cb.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    cr = cr.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    if space.range == lc.ColorSpace.Range.Limited:
        y = 16 + y * (219 / 255)
        cb, cr = cb * (224 / 255), cr * (224 / 255)
    planes = (y, cb + 128, cr + 128)
    return tuple(np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in planes)


def fill_buffer(cfg: lc.StreamConfiguration, rgb: np.ndarray) -> bytes:
    """The bytes of one stream's buffer holding ``rgb``, laid out as the ISP writes it."""
    fmt, stride = str(cfg.pixel_format), cfg.stride
    w, h = cfg.size.width, cfg.size.height
    buf = np.full(cfg.frame_size, PADDING_BYTE, dtype=np.uint8)
    if fmt in ("YUV420", "YVU420"):
        y, u, v = rgb_to_yuv420(rgb, cfg.color_space)
        if fmt == "YVU420":
            u, v = v, u
        buf[: h * stride].reshape(h, stride)[:, :w] = y
        chroma = (h // 2) * (stride // 2)
        for n, plane in enumerate((u, v)):
            start = h * stride + n * chroma
            buf[start : start + chroma].reshape(h // 2, stride // 2)[:, : w // 2] = plane
        return buf.tobytes()
    order = {"BGR888": (0, 1, 2), "RGB888": (2, 1, 0), "XBGR8888": (0, 1, 2), "XRGB8888": (2, 1, 0)}
    depth = 3 if fmt in ("RGB888", "BGR888") else 4
    rows = buf[: h * stride].reshape(h, stride)[:, : w * depth].reshape(h, w, depth)
    rows[..., :3] = rgb[..., list(order[fmt])]
    if depth == 4:
        rows[..., 3] = 255
    return buf.tobytes()


def black_and_white(size: Tuple[int, int]) -> np.ndarray:
    w, h = size
    picture = np.zeros((h, w, 3), dtype=np.uint8)
    picture[:, w // 2 :] = 255
    return picture


class Sensor:
    """The capture thread of one started camera; Picamera2's threads call queue() and stop()."""

    def __init__(self, camera, config, mode: SensorMode, controls: Dict):
        self._manager = camera._manager
        self._mode = mode
        self._outputs = [c for c in config if c.role != lc.StreamRole.Raw]
        self._raw = [c for c in config if c.role == lc.StreamRole.Raw]
        self._limits = controls.get(ctl.FrameDurationLimits)
        hflip, vflip = _FLIPS.get(config.orientation, (False, False))
        main = self._outputs[0].size if self._outputs else lc.Size(*mode.size)
        self._main_size = (main.width, main.height)
        self._scene_name = os.environ.get("FAKE_LIBCAMERA_SCENE", "sim")
        self._scene = Scene(
            CameraSettings(resolution=self._main_size, fps=30, hflip=hflip, vflip=vflip)
        )
        self._distinct = int(os.environ.get("FAKE_LIBCAMERA_DISTINCT_FRAMES", "0"))
        self._drawn: Dict[int, List[bytes]] = {}
        # guards _pending, filled by queue() and emptied by the capture thread
        self._lock = threading.Lock()
        self._pending: Deque[lc.Request] = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-imx219", daemon=True)
        self.sequence = 0

    def start(self) -> None:
        self._thread.start()

    def queue(self, request: lc.Request) -> None:
        with self._lock:
            self._pending.append(request)

    def stop(self) -> List[lc.Request]:
        """Stop capturing; returns the requests still queued, for libcamera to cancel."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        with self._lock:
            pending, self._pending = list(self._pending), collections.deque()
        return pending

    def _run(self) -> None:
        started = time.monotonic_ns()
        due = started
        while not self._stop.is_set():
            wait = (due - time.monotonic_ns()) / 1e9
            if wait > 0 and self._stop.wait(wait):
                break
            with self._lock:
                request = self._pending.popleft() if self._pending else None
            if request is not None and ctl.FrameDurationLimits in request.controls:
                self._limits = request.controls[ctl.FrameDurationLimits]
            duration_us = self._mode.frame_duration_us(self._limits)
            if request is not None:
                try:
                    self._capture(request, due, duration_us, (due - started) / 1e9)
                except Exception:
                    logger.exception("the fake sensor failed to fill a request")
                    request.status = lc.Request.Status.Cancelled
                self._manager._complete(request)
            self.sequence += 1
            due += duration_us * 1000
            behind = time.monotonic_ns() - due
            if behind > duration_us * 1000:
                # the frames that went by meanwhile found no buffer: dropped
                skipped = behind // (duration_us * 1000)
                due += skipped * duration_us * 1000
                self.sequence += skipped

    def _pictures(self, elapsed: float) -> List[bytes]:
        key = self.sequence % self._distinct if self._distinct else None
        if key is not None and key in self._drawn:
            return self._drawn[key]
        if self._scene_name == "black-and-white":
            main = black_and_white(self._main_size)
        else:
            main = np.asarray(
                self._scene.render(self.sequence, elapsed, time.time(), annotate=False)
            )
        pictures = []
        for cfg in self._outputs:
            size = (cfg.size.width, cfg.size.height)
            rgb = (
                main if size == self._main_size else np.asarray(Image.fromarray(main).resize(size))
            )
            pictures.append(fill_buffer(cfg, rgb))
        if key is not None:
            self._drawn[key] = pictures
        return pictures

    def _capture(self, request: lc.Request, start_ns: int, duration_us: int, elapsed: float):
        for cfg, data in zip(self._outputs, self._pictures(elapsed)):
            buffer = request.buffers.get(cfg.stream)
            if buffer is not None:
                plane = buffer.planes[0]
                os.pwrite(plane.fd, data, plane.offset)
        for buffer in request.buffers.values():
            meta = buffer.metadata
            meta.status = lc.FrameMetadata.Status.Success
            meta.sequence, meta.timestamp = self.sequence, start_ns
            meta.planes = [lc.FrameMetadata.Plane(p.length) for p in buffer.planes]
        request.sequence = self.sequence
        request.metadata = {
            ctl.SensorTimestamp: start_ns,
            ctl.FrameDuration: duration_us,
            ctl.ExposureTime: max(13, duration_us - 200),
            ctl.AnalogueGain: 1.0,
            ctl.DigitalGain: 1.0,
            ctl.ColourGains: (1.8, 1.6),
            ctl.ColourTemperature: 4500,
            ctl.Lux: 400.0,
            ctl.ScalerCrop: lc.Rectangle(*self._mode.crop),
            ctl.SensorBlackLevels: (4096, 4096, 4096, 4096),
        }
        request.status = lc.Request.Status.Complete
