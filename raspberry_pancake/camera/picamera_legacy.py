"""The legacy camera stack (Raspbian Buster): the ``picamera`` library over MMAL.

Written to picamera 1.13 and tested against the fake in tests/fakes/picamera,
which follows picamera's own source; nobody has run it on a Pi yet (see
docs/HARDWARE.md).

One ``PiCamera`` at ``--resolution`` and ``--fps`` feeds up to three splitter
ports of its video port, one per kind of output, each through picamera's own
resizer and encoder:

- port 1: H.264 at ``--record-resize``, inline SPS/PPS headers, intra period =
  fps, shared by every recorder;
- port 2: MJPEG from the camera's JPEG encoder, for the live view;
- port 3: raw RGB at ``--detect-resize``, for ``detect(bytes)``.

picamera hands each port's data to a file-like object's ``write()``, on that
port's MMAL callback thread, possibly in several pieces per frame. ``PortWriter``
collects the pieces of one frame, reads what the frame is from that port's
``PiVideoFrame`` (type, completeness, timestamp) and hands whole frames on. An
exception escaping ``write()`` would make picamera stop that port for good, so
the writer contains every error to the frame that caused it.

Frame times: the camera runs with ``clock_mode='raw'``, so a frame's timestamp
is the VideoCore's clock at capture (microseconds since the GPU booted), the same
clock ``camera.timestamp`` reads. ``CaptureClock`` maps it onto CLOCK_MONOTONIC;
the wall-clock time of a frame is the wall clock read at delivery minus the
frame's age. The timestamp annotation is the camera's own ``annotate_text``,
rewritten once a second by a housekeeping thread that also re-reads the clocks.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, List, Optional, Tuple

import numpy as np
from PIL import Image

from ..exc import CameraUnavailableError, ConfigError
from .annotation import timestamp_text
from .base import (
    Camera,
    CameraSettings,
    H264Frame,
    JpegFrame,
    RgbFrame,
    Size,
    frame_times,
    output_wants_frame,
)

logger = logging.getLogger(__name__)

#: Splitter ports (picamera numbers them 0-3; 0 is what ``capture(use_video_port=True)``
#: takes by default, so we leave it free).
H264_PORT, JPEG_PORT, RGB_PORT = 1, 2, 3

#: The VideoCore IV H.264 encoder's largest side (MAX_W_CODEC/MAX_H_CODEC in the
#: bcm2835-codec driver, which drives the same firmware encoder).
H264_MAX_SIDE = 1920

#: H.264 levels picamera 1.13 checks a recording against (encoders.py:
#: PiVideoEncoder._create_encoder): (name, macroblocks per frame, macroblocks per second).
#: Level 4 is picamera's default; 4.2 is the highest it offers.
H264_LEVELS = (("4", 8192, 245760), ("4.2", 8704, 522240))

#: Seconds the sensor needs to settle gain and white balance after opening.
WARMUP_SECONDS = 2.0

#: PiVideoFrameType values (picamera.frames); copied as numbers so this module
#: imports without picamera.
FRAME, KEY_FRAME, SPS_HEADER = 0, 1, 2

#: A frame whose timestamp says it is older than this (or from the future) is not
#: trusted: its time is estimated from its delivery instead.
MAX_PLAUSIBLE_AGE = 5.0


def align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def h264_level(size: Size, fps: int) -> str:
    """The H.264 level a recording of ``size`` at ``fps`` needs, or ConfigError.

    picamera checks the frame's macroblocks (16x16, rounded up) and macroblocks per
    second against the level's limits at start_recording. 1080p above 30 fps is
    beyond level 4 (8160 macroblocks x 31 > 245760), so we ask for level 4.2 then.
    """
    w, h = size
    if max(w, h) > H264_MAX_SIDE:
        raise ConfigError(
            f"--camera picamera: the Pi's H.264 encoder records at most {H264_MAX_SIDE} "
            f"pixels a side, not {w}x{h}; use --record-resize"
        )
    macroblocks = (align_up(w, 16) // 16) * (align_up(h, 16) // 16)
    for level, per_frame, per_second in H264_LEVELS:
        if macroblocks <= per_frame and macroblocks * fps <= per_second:
            return level
    _, per_frame, per_second = H264_LEVELS[-1]
    if macroblocks > per_frame:
        raise ConfigError(
            f"--camera picamera: H.264 at {w}x{h} is {macroblocks} macroblocks a frame, more "
            f"than the {per_frame} of H.264 level 4.2; use a smaller --record-resize"
        )
    raise ConfigError(
        f"--camera picamera: H.264 at {w}x{h} and {fps} fps is {macroblocks * fps} "
        f"macroblocks a second, more than the {per_second} of H.264 level 4.2; "
        "lower --fps or use a smaller --record-resize"
    )


class RgbLayout:
    """How picamera 1.13 lays out a raw RGB frame of the requested size, and how we
    get exactly that picture, all of it, as w*h*3 bytes (encoders.py: PiRawMixin).

    - At the camera's resolution (no resizer), the splitter pads the picture to a
      width multiple of 16 and a height multiple of 16: we crop the padding.
    - At any other size picamera rounds the resize itself (width to 32, height to
      16) and the resizer scales the whole picture into that, with no padding: we
      ask for the rounded size in RGBA (what picamera would ask the resizer for
      anyway, without its per-frame alpha stripping) and scale it to the size.
    """

    def __init__(self, size: Size, resolution: Size):
        w, h = self.size = tuple(size)
        if self.size == tuple(resolution):
            self.resize: Optional[Size] = None
            self.format, self.bytes_per_pixel = "rgb", 3
            self.frame_size: Size = (align_up(w, 16), align_up(h, 16))
        else:
            self.resize = (align_up(w, 32), align_up(h, 16))
            self.format, self.bytes_per_pixel = "rgba", 4
            self.frame_size = self.resize

    def exact(self, data: bytes) -> bytes:
        """The requested picture from one raw frame: exactly w*h*3 bytes."""
        fw, fh = self.frame_size
        if len(data) != fw * fh * self.bytes_per_pixel:
            raise ValueError(
                f"raw frame of {len(data)} bytes, expected {fw}x{fh}x{self.bytes_per_pixel}"
            )
        if self.bytes_per_pixel == 4:
            # the fourth byte is padding to us: "RGBX" keeps Pillow from weighing by it
            image = Image.frombuffer("RGBX", self.frame_size, data, "raw", "RGBX", 0, 1)
            if self.frame_size != self.size:
                image = image.resize(self.size, Image.BILINEAR)
            return image.tobytes("raw", "RGB")
        pixels = np.frombuffer(data, dtype=np.uint8).reshape(fh, fw, 3)
        w, h = self.size
        return pixels[:h, :w].tobytes()


class CaptureClock:
    """Maps frame timestamps (the VideoCore's clock, µs) onto CLOCK_MONOTONIC seconds.

    ``sync`` runs on the housekeeping thread (and once before recording starts):
    it reads ``camera.timestamp`` between two reads of CLOCK_MONOTONIC and keeps
    the offset of the tightest of a few tries. The two clocks tick at nearly the
    same rate (NTP slews CLOCK_MONOTONIC by a few ppm at most), so a fresh offset
    every second keeps the mapping within a millisecond or so. ``offset`` is one
    float, replaced whole, read by the MMAL callback threads without a lock.
    """

    TRIES = 3

    def __init__(self, read_camera_clock: Callable[[], int]):
        self._read = read_camera_clock
        self.offset: Optional[float] = None

    def sync(self) -> None:
        best: Optional[Tuple[float, float]] = None
        for _ in range(self.TRIES):
            before = time.monotonic()
            camera_us = self._read()
            after = time.monotonic()
            spread = after - before
            if best is None or spread < best[0]:
                best = (spread, (before + after) / 2 - camera_us / 1e6)
        self.offset = best[1]

    def to_monotonic(self, timestamp_us: Optional[int]) -> Optional[float]:
        offset = self.offset
        if timestamp_us is None or offset is None:
            return None
        return timestamp_us / 1e6 + offset


class PortWriter:
    """The file-like object picamera writes one splitter port's data to.

    Called on picamera's MMAL callback thread for that port, one ``write`` at a
    time; ``frame_info`` returns the port's ``PiVideoFrame``, which picamera updates
    before each write. Whole frames go to ``on_frame(data, info, monotonic, wall)``.

    ``write`` never raises: picamera would store the exception and never call this
    port again. A failure costs the frame it happened on, and is logged.
    """

    def __init__(
        self,
        port: int,
        frame_info: Callable[[], object],
        clock: CaptureClock,
        on_frame: Callable,
    ):
        self.port = port
        self._frame_info = frame_info
        self._clock = clock
        self._on_frame = on_frame
        self._pieces: List[bytes] = []
        self._latency = 0.0  # the age of this port's last frame with a timestamp
        self._last_monotonic = float("-inf")
        self._failures = 0
        self._distrusted = False

    def write(self, buf) -> int:
        try:
            self._take(buf)
        except Exception:
            self._pieces = []
            self._failures += 1
            # the first failure with its traceback, then one line per hundred
            if self._failures == 1:
                logger.exception("splitter port %d: a frame was lost", self.port)
            elif self._failures % 100 == 0:
                logger.error("splitter port %d: %d frames lost", self.port, self._failures)
        return len(buf)

    def flush(self) -> None:
        """picamera calls this when the recording stops; a partial frame is dropped."""
        self._pieces = []

    def _take(self, buf) -> None:
        self._pieces.append(bytes(buf))
        info = self._frame_info()
        if info is not None and not info.complete:
            return
        data = b"".join(self._pieces)
        self._pieces = []
        if info is not None and info.frame_type == SPS_HEADER:
            self._on_frame(data, info, None, None)  # headers are no picture: no time
            return
        timestamp = None if info is None else info.timestamp
        self._on_frame(data, info, *self._frame_times(timestamp))

    def _frame_times(self, timestamp_us: Optional[int]) -> Tuple[float, float]:
        """(monotonic, wall) capture times of a frame delivered now.

        With a timestamp, its age is how long ago the sensor captured it. Without one
        (picamera reports "time unknown" as None), or with one that cannot be right,
        the frame is taken to be as old as this port's last timed frame, and never
        older than the frame before it.
        """
        now = time.monotonic()
        captured = self._clock.to_monotonic(timestamp_us)
        if captured is not None and -0.5 < now - captured < MAX_PLAUSIBLE_AGE:
            monotonic = min(captured, now)
            self._latency = now - monotonic
        else:
            if captured is not None and not self._distrusted:
                self._distrusted = True
                logger.warning(
                    "splitter port %d: a frame timestamp is %.3f s from now; timing frames "
                    "by their delivery while timestamps are implausible",
                    self.port,
                    now - captured,
                )
            monotonic = max(now - self._latency, self._last_monotonic)
        self._last_monotonic = monotonic
        return frame_times(monotonic)


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
            self._camera = picamera.PiCamera(
                resolution=settings.resolution, framerate=settings.fps, clock_mode="raw"
            )
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
        self._clock = CaptureClock(lambda: self._camera.timestamp)
        self._stop_event = threading.Event()
        self._housekeeper: Optional[threading.Thread] = None
        self._ports: List[int] = []  # set on the main thread before the others start
        self._reported_ports: set = set()  # the housekeeping thread's alone
        self._pending_header = b""  # the H.264 port's thread's alone
        self._rgb_layout: Optional[RgbLayout] = None
        # frame counters, one per port, each written by its own port's thread only
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
        level = "4"
        if self.h264_output is not None:
            try:
                level = h264_level(self.h264_size, self.settings.fps)
            except ConfigError:
                self.close()
                raise
        self._stop_event.clear()
        self._update_annotation()
        if self._stop_event.wait(self.warmup):
            return
        try:
            self._clock.sync()
            self._start_recordings(level)
        except self._picamera.PiCameraError as e:
            self._stop()
            raise CameraUnavailableError(
                f"--camera picamera: the camera refused to start recording ({e})"
            ) from None
        self._housekeeper = threading.Thread(
            target=self._housekeep, name="picamera-housekeeping", daemon=True
        )
        self._housekeeper.start()

    def _writer(self, port: int, on_frame: Callable) -> PortWriter:
        return PortWriter(port, self._info_getter(port), self._clock, on_frame)

    def _start_recordings(self, level: str) -> None:
        cam = self._camera
        if self.h264_output is not None:
            options = {"inline_headers": True, "intra_period": self.settings.fps}
            if level != "4":
                logger.info("recording H.264 at level %s for %d fps", level, self.settings.fps)
                options["level"] = level
            cam.start_recording(
                self._writer(H264_PORT, self._on_h264),
                format="h264",
                splitter_port=H264_PORT,
                resize=self._resize(self.h264_size),
                **options,
            )
            self._ports.append(H264_PORT)
        if self.jpeg_output is not None:
            cam.start_recording(
                self._writer(JPEG_PORT, self._on_jpeg),
                format="mjpeg",
                splitter_port=JPEG_PORT,
            )
            self._ports.append(JPEG_PORT)
        if self.rgb_output is not None:
            self._rgb_layout = RgbLayout(self.rgb_size, self.settings.resolution)
            cam.start_recording(
                self._writer(RGB_PORT, self._on_rgb),
                format=self._rgb_layout.format,
                splitter_port=RGB_PORT,
                resize=self._rgb_layout.resize,
            )
            self._ports.append(RGB_PORT)

    def _stop(self) -> None:
        self._stop_event.set()
        if self._housekeeper is not None:
            self._housekeeper.join(timeout=5)
            self._housekeeper = None
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

    # housekeeping (its own thread): the annotation, the clocks, dead ports

    def _update_annotation(self) -> None:
        self._camera.annotate_text = timestamp_text(time.time())

    def _housekeep(self) -> None:
        while not self._stop_event.wait(1.0 - time.time() % 1.0):
            for task in (self._update_annotation, self._clock.sync, self._check_ports):
                try:
                    task()
                except Exception:
                    logger.exception("picamera housekeeping failed (%s)", task.__name__)

    def _check_ports(self) -> None:
        """Log, once, a port picamera has stopped after an error (its frames stop;
        the watchdog sees that output go quiet)."""
        for port in self._ports:
            if port in self._reported_ports:
                continue
            try:
                self._camera.wait_recording(0, splitter_port=port)
            except Exception as e:
                self._reported_ports.add(port)
                logger.error("splitter port %d has stopped delivering frames: %s", port, e)

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

    def _on_h264(self, data: bytes, info, monotonic: float, wall: float) -> None:
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
        frame = H264Frame(data, keyframe, monotonic, wall, self._next_index(H264_PORT))
        self._deliver(self.h264_output, frame)

    def _on_jpeg(self, data: bytes, info, monotonic: float, wall: float) -> None:
        self._mark_alive()
        self._deliver(
            self.jpeg_output, JpegFrame(data, monotonic, wall, self._next_index(JPEG_PORT))
        )

    def _on_rgb(self, data: bytes, info, monotonic: float, wall: float) -> None:
        self._mark_alive()
        index = self._next_index(RGB_PORT)
        if not output_wants_frame(self.rgb_output):
            return
        w, h = self.rgb_size
        rgb = self._rgb_layout.exact(data)
        self._deliver(self.rgb_output, RgbFrame(rgb, w, h, monotonic, wall, index))
