"""The legacy camera stack (Raspbian Buster): the ``picamera`` library over MMAL.

Written to picamera 1.13's documented API and tested against the fake in
tests/fakes/picamera only; nobody has run it on a Pi yet (see docs/HARDWARE.md).

One ``PiCamera`` at ``--resolution`` and ``--fps`` feeds up to three splitter
ports of its video port, one per kind of output, each through picamera's own
resizer and encoder:

- port 1: H.264 at ``--record-resize``, inline SPS/PPS headers, intra period =
  fps, shared by every recorder;
- port 2: MJPEG from the camera's JPEG encoder, for the live view;
- port 3: raw RGB at ``--detect-resize``, for ``detect(bytes)``.

picamera hands each port's encoded data to a file-like object's ``write()``, on
an MMAL callback thread, possibly in several pieces per frame. ``PortWriter``
collects the pieces of one frame, reads what the frame is from that port's
``PiVideoFrame`` (type, completeness, presentation time) and hands whole frames
to our outputs. The timestamp annotation is the camera's own ``annotate_text``,
rewritten once a second by a small thread.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, List, Optional

import numpy as np

from ..exc import CameraUnavailableError, ConfigError
from .base import (
    TIMESTAMP_FORMAT,
    Camera,
    CameraSettings,
    H264Frame,
    JpegFrame,
    RgbFrame,
    Size,
    output_wants_frame,
)

logger = logging.getLogger(__name__)

#: Splitter ports (picamera numbers them 0-3; 0 is what ``capture(use_video_port=True)``
#: takes by default, so we leave it free).
H264_PORT, JPEG_PORT, RGB_PORT = 1, 2, 3

#: The largest picture the VideoCore IV H.264 encoder takes.
H264_MAX = (1920, 1080)

#: Seconds the sensor needs to settle gain and white balance after opening.
WARMUP_SECONDS = 2.0

#: PiVideoFrameType values (picamera.frames); copied as numbers so this module
#: imports without picamera.
FRAME, KEY_FRAME, SPS_HEADER = 0, 1, 2


def padded_size(size: Size) -> Size:
    """The buffer size picamera uses for raw RGB: width to 32, height to 16."""
    w, h = size
    return (w + 31) // 32 * 32, (h + 15) // 16 * 16


def crop_padded_rgb(data: bytes, size: Size) -> bytes:
    """Drop the padding columns and rows of a raw RGB buffer: exactly w*h*3 bytes."""
    w, h = size
    pw, ph = padded_size(size)
    if len(data) != pw * ph * 3:
        raise ValueError(f"raw RGB frame of {len(data)} bytes, expected {pw}x{ph}x3")
    if (pw, ph) == (w, h):
        return bytes(data)
    rows = np.frombuffer(data, dtype=np.uint8).reshape(ph, pw, 3)
    return rows[:h, :w].tobytes()


class PortWriter:
    """The file-like object picamera writes one splitter port's data to.

    Called on picamera's MMAL callback thread for that port, one ``write`` at a
    time. ``frame_info`` returns the port's current ``PiVideoFrame``, which
    picamera updates before each write.
    """

    def __init__(self, frame_info: Callable[[], object], on_frame: Callable):
        self._frame_info = frame_info
        self._on_frame = on_frame
        self._pieces: List[bytes] = []

    def write(self, buf) -> int:
        self._pieces.append(bytes(buf))
        info = self._frame_info()
        if info is None or info.complete:
            data = b"".join(self._pieces)
            self._pieces = []
            self._on_frame(data, info)
        return len(buf)

    def flush(self) -> None:
        """picamera calls this when the recording stops; a partial frame is dropped."""
        self._pieces = []


class PicameraCamera(Camera):
    """The ``picamera`` backend; start/stop on the main thread, frames on MMAL threads."""

    name = "picamera"

    def __init__(self, settings: CameraSettings, warmup: float = WARMUP_SECONDS):
        """Open the camera now, so a missing camera is reported before anything starts.

        ``warmup`` is how long ``start()`` lets the sensor settle before recording;
        tests shorten it, users have no flag for it.
        """
        super().__init__(settings)
        try:
            import picamera
        except ImportError:
            raise CameraUnavailableError(
                "--camera picamera: the picamera library is not installed "
                "(it exists only for the legacy camera stack of Raspbian Buster); "
                "to try without a camera, use --camera sim"
            ) from None
        self._picamera = picamera
        self.warmup = warmup
        try:
            self._camera = picamera.PiCamera(resolution=settings.resolution, framerate=settings.fps)
        except Exception as e:
            raise CameraUnavailableError(
                f"--camera picamera: the camera could not be opened ({e}); is it connected "
                "and enabled (raspi-config)? To try without a camera, use --camera sim"
            ) from None
        try:
            self._apply_settings()
        except Exception:
            self._camera.close()
            raise
        self._stop_event = threading.Event()
        self._annotator: Optional[threading.Thread] = None
        self._ports: List[int] = []
        self._pending_header = b""
        self._h264_epoch = 0.0
        self._counts = {H264_PORT: 0, JPEG_PORT: 0, RGB_PORT: 0}
        self._closed = False

    def _apply_settings(self) -> None:
        s, cam = self.settings, self._camera
        cam.hflip = s.hflip
        cam.vflip = s.vflip
        cam.rotation = s.rotation
        cam.annotate_text_size = s.annotate_text_size
        cam.annotate_background = self._picamera.Color("black")

    # lifecycle (main thread)

    def _start(self) -> None:
        w, h = self.h264_size
        if self.h264_output is not None and (w > H264_MAX[0] or h > H264_MAX[1]):
            self.close()
            raise ConfigError(
                f"--camera picamera: the Pi's H.264 encoder records at most "
                f"{H264_MAX[0]}x{H264_MAX[1]}, not {w}x{h}; use --record-resize"
            )
        self._stop_event.clear()
        self._update_annotation()
        if self._stop_event.wait(self.warmup):
            return
        try:
            self._start_recordings()
        except self._picamera.PiCameraError as e:
            self._stop()
            raise CameraUnavailableError(
                f"--camera picamera: the camera refused to start recording ({e})"
            ) from None
        self._annotator = threading.Thread(
            target=self._annotate_every_second, name="picamera-annotate", daemon=True
        )
        self._annotator.start()

    def _start_recordings(self) -> None:
        cam = self._camera
        if self.h264_output is not None:
            self._h264_epoch = time.time()
            cam.start_recording(
                PortWriter(self._info_getter(H264_PORT), self._on_h264),
                format="h264",
                splitter_port=H264_PORT,
                resize=self._resize(self.h264_size),
                inline_headers=True,
                intra_period=self.settings.fps,
            )
            self._ports.append(H264_PORT)
        if self.jpeg_output is not None:
            cam.start_recording(
                PortWriter(self._info_getter(JPEG_PORT), self._on_jpeg),
                format="mjpeg",
                splitter_port=JPEG_PORT,
            )
            self._ports.append(JPEG_PORT)
        if self.rgb_output is not None:
            cam.start_recording(
                PortWriter(self._info_getter(RGB_PORT), self._on_rgb),
                format="rgb",
                splitter_port=RGB_PORT,
                resize=self._resize(self.rgb_size),
            )
            self._ports.append(RGB_PORT)

    def _stop(self) -> None:
        self._stop_event.set()
        if self._annotator is not None:
            self._annotator.join(timeout=5)
            self._annotator = None
        for port in reversed(self._ports):
            try:
                self._camera.stop_recording(splitter_port=port)
            except Exception:
                logger.exception("stopping the recording on splitter port %d failed", port)
        self._ports = []
        self.close()

    def close(self) -> None:
        """Release the camera (MMAL holds it until closed)."""
        if not self._closed:
            self._closed = True
            self._camera.close()

    def _resize(self, size: Size) -> Optional[Size]:
        return None if tuple(size) == tuple(self.settings.resolution) else tuple(size)

    # annotation (its own thread)

    def _update_annotation(self) -> None:
        self._camera.annotate_text = time.strftime(TIMESTAMP_FORMAT)

    def _annotate_every_second(self) -> None:
        while not self._stop_event.wait(1.0 - time.time() % 1.0):
            try:
                self._update_annotation()
            except Exception:
                logger.exception("could not update the timestamp annotation")

    # frames (MMAL callback threads, one per port)

    def _info_getter(self, port: int) -> Callable[[], object]:
        """The PiVideoFrame of one port's encoder.

        With several recordings, picamera 1.13's ``camera.frame`` returns an
        arbitrary encoder's frame; its documentation says to read the wanted
        encoder from ``camera._encoders`` instead, which is what we do.
        """

        def frame_info():
            encoder = self._camera._encoders.get(port)
            return encoder.frame if encoder is not None else None

        return frame_info

    def _next_index(self, port: int) -> int:
        index = self._counts[port]
        self._counts[port] = index + 1
        return index

    def _on_h264(self, data: bytes, info) -> None:
        self._mark_alive()
        if info is None:
            return
        if info.frame_type == SPS_HEADER:
            # headers come as their own buffer just before a keyframe: keep them with it
            self._pending_header = data
            return
        if info.frame_type not in (FRAME, KEY_FRAME):
            return
        keyframe = info.frame_type == KEY_FRAME
        if keyframe:
            data, self._pending_header = self._pending_header + data, b""
        when = time.time() if info.timestamp is None else self._h264_epoch + info.timestamp / 1e6
        self._deliver(
            self.h264_output,
            H264Frame(data, keyframe, time.monotonic(), when, self._next_index(H264_PORT)),
        )

    def _on_jpeg(self, data: bytes, info) -> None:
        self._mark_alive()
        frame = JpegFrame(data, time.monotonic(), time.time(), self._next_index(JPEG_PORT))
        self._deliver(self.jpeg_output, frame)

    def _on_rgb(self, data: bytes, info) -> None:
        self._mark_alive()
        index = self._next_index(RGB_PORT)
        if not output_wants_frame(self.rgb_output):
            return
        w, h = self.rgb_size
        try:
            rgb = crop_padded_rgb(data, (w, h))
        except ValueError:
            logger.exception("dropping a raw RGB frame of the wrong size")
            return
        self._deliver(self.rgb_output, RgbFrame(rgb, w, h, time.monotonic(), time.time(), index))
