"""The libcamera stack (Raspberry Pi OS Bullseye, Bookworm and later): Picamera2.

Written to the documented API of Picamera2 0.3 (the ``python3-picamera2``
package) and tested against the fake in tests/fakes/picamera2 only; nobody has
run it on a Pi yet (see docs/HARDWARE.md).

libcamera gives at most two processed streams, ``main`` and a smaller
``lores``, both YUV420 here, and an encoder encodes one stream at that stream's
size. So the recording size and the live-view size decide the streams: the
larger of the two is ``main``, the other ``lores`` (see ``plan_streams``).

- H.264: ``H264Encoder(repeat=True, iperiod=fps)`` into ``FrameOutput``, whose
  ``outputframe(frame, keyframe, timestamp, ...)`` hands each access unit to our
  recorders.
- JPEG: the hardware ``MJPEGEncoder`` where the board has one, the software
  ``JpegEncoder`` otherwise, into another ``FrameOutput``.
- RGB: the pre-callback copies the detection stream when ``detect`` waits for a
  frame; a worker thread converts it from YUV420 and resizes it.
- Flips and 180 degrees through the configuration's ``libcamera.Transform``; the
  Pi's ISP cannot transpose, so 90 and 270 are refused.
- The timestamp is drawn into every stream by the pre-callback, which runs on
  the camera thread before the encoders see the frame (``TimestampOverlay``;
  its cost is measured by bench/picamera2_annotation.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from ..exc import CameraUnavailableError, ConfigError, UserError
from .annotation import load_font, timestamp_text
from .base import (
    Camera,
    CameraSettings,
    H264Frame,
    JpegFrame,
    RgbFrame,
    Size,
    output_wants_frame,
)

logger = logging.getLogger(__name__)

#: Seconds the sensor needs to settle exposure and white balance before recording.
WARMUP_SECONDS = 2.0

STREAM_FORMAT = "YUV420"


def fits(inner: Size, outer: Size) -> bool:
    return inner[0] <= outer[0] and inner[1] <= outer[1]


@dataclass(frozen=True)
class StreamPlan:
    """Which libcamera stream (``main``/``lores``) serves which output, and their sizes."""

    main: Size
    lores: Optional[Size]
    h264: Optional[str]
    jpeg: Optional[str]
    rgb: Optional[str]

    def size(self, name: str) -> Size:
        return self.main if name == "main" else self.lores


def plan_streams(
    resolution: Size, h264: Optional[Size], jpeg: bool, rgb: Optional[Size]
) -> StreamPlan:
    """Lay the recording, live-view and detection sizes onto ``main`` and ``lores``.

    The encoders need their exact size, so recording and live view each get a
    stream; lores may not be larger than main. Detection is resized in software,
    so it takes a lores stream of its own size only when one is free.
    """
    view = tuple(resolution) if jpeg else None
    record = tuple(h264) if h264 else None
    lores = None
    if record and view and record != view:
        if fits(view, record):
            main, lores, h264_name, jpeg_name = record, view, "main", "lores"
        elif fits(record, view):
            main, lores, h264_name, jpeg_name = view, record, "lores", "main"
        else:
            raise ConfigError(
                f"--camera picamera2: --record-resize {record[0]} {record[1]} and --resolution "
                f"{view[0]} {view[1]} must fit one inside the other (libcamera's second "
                "stream cannot be larger than the first)"
            )
    else:
        main = record or view or tuple(resolution)
        h264_name = "main" if record else None
        jpeg_name = "main" if view else None
    rgb_name = None
    if rgb:
        rgb = tuple(rgb)
        if lores is None and rgb != main and fits(rgb, main):
            lores = rgb
        # the smallest stream that still holds the detection size, else main
        rgb_name = "lores" if lores is not None and fits(rgb, lores) else "main"
    return StreamPlan(main, lores, h264_name, jpeg_name, rgb_name)


def yuv420_planes(array: np.ndarray, size: Size) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a YUV420 buffer with any row stride.

    Picamera2 shapes such a buffer (height*3/2, stride): height rows of Y, then
    the half-size U and V planes packed two of their rows per array row.
    """
    w, h = size
    if not array.flags.c_contiguous:
        # reshape would copy, and what is drawn would never reach the frame
        raise ValueError("a YUV420 buffer must be one contiguous block")
    flat = array.reshape(-1)
    stride = flat.size * 2 // (h * 3)
    y = flat[: h * stride].reshape(h, stride)
    chroma = (h // 2) * (stride // 2)
    u = flat[h * stride : h * stride + chroma].reshape(h // 2, stride // 2)
    v = flat[h * stride + chroma : h * stride + 2 * chroma].reshape(h // 2, stride // 2)
    return y[:, :w], u[:, : w // 2], v[:, : w // 2]


# YCbCr (limited range) to RGB, per colour space; libcamera picks BT.601 (SMPTE 170M)
# for video below 1280x720 and BT.709 from there up.
_MATRICES = {
    "601": (1.596, -0.392, -0.813, 2.017),
    "709": (1.793, -0.213, -0.533, 2.112),
}


def colour_matrix_for(main: Size) -> str:
    return "601" if main[0] < 1280 or main[1] < 720 else "709"


def yuv420_to_rgb(array: np.ndarray, size: Size, matrix: str = "601") -> np.ndarray:
    """Packed HxWx3 RGB from a YUV420 buffer (chroma upsampled by repetition)."""
    w, h = size
    y, u, v = yuv420_planes(array, size)
    rv, gu, gv, bu = _MATRICES[matrix]
    yf = (y.astype(np.float32) - 16.0) * 1.164
    uf = np.repeat(np.repeat(u.astype(np.float32) - 128.0, 2, axis=0), 2, axis=1)[:h, :w]
    vf = np.repeat(np.repeat(v.astype(np.float32) - 128.0, 2, axis=0), 2, axis=1)[:h, :w]
    rgb = np.empty((h, w, 3), dtype=np.float32)
    rgb[..., 0] = yf + rv * vf
    rgb[..., 1] = yf + gu * uf + gv * vf
    rgb[..., 2] = yf + bu * uf
    return np.clip(rgb, 0, 255).astype(np.uint8)


class TimestampOverlay:
    """Burns the time into YUV420 frames of one stream; used on the camera thread.

    The text changes once a second, so the patch (white text on a black box, as
    the legacy camera draws it) is rendered only then; each frame just copies it
    into the luma plane and greys the chroma under it.
    """

    def __init__(self, size: Size, text_size: int):
        self.size = size
        self.font = load_font(text_size)
        self._text: Optional[str] = None
        self._patch: Optional[np.ndarray] = None
        self._origin = (0, 0)

    def _render(self, text: str) -> None:
        w, h = self.size
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        left, top, right, bottom = probe.textbbox((0, 0), text, font=self.font)
        pw = min(w, right - left + 8) // 2 * 2
        ph = min(h, bottom - top + 8) // 2 * 2
        patch = Image.new("L", (pw, ph), 16)  # video black
        ImageDraw.Draw(patch).text((4 - left, 4 - top), text, font=self.font, fill=235)
        self._patch = np.asarray(patch)
        self._origin = ((w - pw) // 2 // 2 * 2, 2)
        self._text = text

    def draw(self, array: np.ndarray, when: float) -> None:
        text = timestamp_text(when)
        if text != self._text:
            self._render(text)
        y, u, v = yuv420_planes(array, self.size)
        x0, y0 = self._origin
        ph, pw = self._patch.shape
        y[y0 : y0 + ph, x0 : x0 + pw] = self._patch
        u[y0 // 2 : (y0 + ph) // 2, x0 // 2 : (x0 + pw) // 2] = 128
        v[y0 // 2 : (y0 + ph) // 2, x0 // 2 : (x0 + pw) // 2] = 128


def make_frame_output_class(output_base):
    """A subclass of picamera2's ``Output`` (encoders accept nothing else)."""

    class FrameOutput(output_base):
        """Receives encoded frames on the encoder's thread and passes them on.

        The encoder's timestamp is in microseconds from an origin of its own;
        the wall clock at the first frame anchors it.
        """

        def __init__(self, on_frame):
            super().__init__()
            self._on_frame = on_frame
            self._origin: Optional[Tuple[float, int]] = None

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            if audio or frame is None:
                return
            now = time.time()
            if timestamp is None:
                when = now
            elif self._origin is None:
                self._origin = (now, timestamp)
                when = now
            else:
                when = self._origin[0] + (timestamp - self._origin[1]) / 1e6
            self._on_frame(bytes(frame), bool(keyframe), when)

    return FrameOutput


class Picamera2Camera(Camera):
    """The Picamera2 backend; start/stop on the main thread.

    Frames arrive on Picamera2's camera thread (pre-callback), on each encoder's
    thread (outputs) and on our RGB worker thread.
    """

    name = "picamera2"

    def __init__(self, settings: CameraSettings, warmup: float = WARMUP_SECONDS):
        """Open the camera now, so a missing camera is reported before anything starts.

        ``warmup`` is how long ``start()`` lets exposure settle before the
        encoders start; tests shorten it, users have no flag for it.
        """
        super().__init__(settings)
        if settings.rotation in (90, 270):
            raise ConfigError(
                f"--camera picamera2 cannot rotate by {settings.rotation}: libcamera on the Pi "
                "only flips (use --rotation 0 or 180, with --hflip/--vflip)"
            )
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise CameraUnavailableError(
                "--camera picamera2: the picamera2 library is not installed "
                "(Raspberry Pi OS: sudo apt install python3-picamera2); "
                "to try without a camera, use --camera sim"
            ) from None
        if not Picamera2.global_camera_info():
            raise CameraUnavailableError(
                "--camera picamera2: libcamera finds no camera (is it connected, and the "
                "ribbon cable the right way round?); to try without a camera, use --camera sim"
            )
        try:
            self._picam2 = Picamera2()
        except Exception as e:
            raise CameraUnavailableError(
                f"--camera picamera2: the camera could not be opened ({e}); "
                "to try without a camera, use --camera sim"
            ) from None
        self.warmup = warmup
        self.plan: Optional[StreamPlan] = None
        self._overlays: Dict[str, TimestampOverlay] = {}
        self._matrix = "601"
        self._stop_event = threading.Event()
        # one frame waiting for the RGB worker; the camera thread drops frames when full
        self._rgb_slot: queue.Queue = queue.Queue(maxsize=1)
        self._rgb_worker: Optional[threading.Thread] = None
        self._counts = {"h264": 0, "jpeg": 0, "rgb": 0}
        self._callback_failures = 0
        self._closed = False

    # lifecycle (main thread)

    def _configure(self) -> None:
        from libcamera import Transform

        s = self.settings
        self.plan = plan = plan_streams(
            s.resolution,
            self.h264_size if self.h264_output is not None else None,
            self.jpeg_output is not None,
            self.rgb_size if self.rgb_output is not None else None,
        )
        turn = s.rotation == 180  # a half turn is both flips
        frame_us = int(round(1e6 / s.fps))
        config = self._picam2.create_video_configuration(
            main={"size": plan.main, "format": STREAM_FORMAT},
            lores={"size": plan.lores, "format": STREAM_FORMAT} if plan.lores else None,
            transform=Transform(hflip=int(s.hflip != turn), vflip=int(s.vflip != turn)),
            controls={"FrameDurationLimits": (frame_us, frame_us)},
        )
        self._picam2.configure(config)
        for name in ("main", "lores") if plan.lores else ("main",):
            wanted = plan.size(name)
            actual = tuple(self._picam2.stream_configuration(name)["size"])
            if actual != wanted:
                raise CameraUnavailableError(
                    f"--camera picamera2: libcamera changed the {name} stream from "
                    f"{wanted[0]}x{wanted[1]} to {actual[0]}x{actual[1]}; choose sizes "
                    "the camera supports"
                )
            self._overlays[name] = TimestampOverlay(
                wanted, max(6, s.annotate_text_size * wanted[1] // s.resolution[1])
            )
        self._matrix = colour_matrix_for(plan.main)

    def _start(self) -> None:
        self._stop_event.clear()
        try:
            self._configure()
            self._picam2.pre_callback = self._pre_callback
            self._picam2.start()
            if self._stop_event.wait(self.warmup):
                return
            self._start_encoders()
        except UserError:
            self._stop()
            raise
        except (RuntimeError, ValueError) as e:
            self._stop()
            raise CameraUnavailableError(
                f"--camera picamera2: the camera refused to start ({e})"
            ) from None
        if self.plan.rgb:
            self._rgb_worker = threading.Thread(
                target=self._convert_rgb, name="picamera2-rgb", daemon=True
            )
            self._rgb_worker.start()

    def _start_encoders(self) -> None:
        from picamera2.encoders import H264Encoder, JpegEncoder, MJPEGEncoder
        from picamera2.outputs import Output

        frame_output = make_frame_output_class(Output)
        plan, fps = self.plan, self.settings.fps
        if plan.h264:
            encoder = H264Encoder(repeat=True, iperiod=fps)
            self._picam2.start_encoder(encoder, frame_output(self._on_h264), name=plan.h264)
        if plan.jpeg:
            try:
                encoder = MJPEGEncoder()
            except RuntimeError as e:
                logger.info("no hardware MJPEG encoder (%s): the live view uses JpegEncoder", e)
                encoder = JpegEncoder()
            self._picam2.start_encoder(encoder, frame_output(self._on_jpeg), name=plan.jpeg)

    def _stop(self) -> None:
        self._stop_event.set()
        try:
            self._picam2.stop_encoder()
            self._picam2.stop()
        except Exception:
            logger.exception("stopping Picamera2 failed")
        if self._rgb_worker is not None:
            self._rgb_worker.join(timeout=5)
            self._rgb_worker = None
        self.close()

    def close(self) -> None:
        """Release the camera for other processes."""
        if not self._closed:
            self._closed = True
            self._picam2.close()

    # camera thread

    def _pre_callback(self, request) -> None:
        from picamera2 import MappedArray

        self._mark_alive()
        when = time.time()
        try:
            for name, overlay in self._overlays.items():
                with MappedArray(request, name) as mapped:
                    overlay.draw(mapped.array, when)
                    if name == self.plan.rgb:
                        self._offer_rgb(mapped.array, when)
        except Exception:
            self._callback_failures += 1
            if self._callback_failures == 1:
                logger.exception("the pre-callback failed (annotation or detection copy)")

    def _offer_rgb(self, array: np.ndarray, when: float) -> None:
        if self._rgb_slot.full() or not output_wants_frame(self.rgb_output):
            return
        try:
            self._rgb_slot.put_nowait((array.copy(), time.monotonic(), when))
        except queue.Full:
            pass

    # encoder threads

    def _next_index(self, kind: str) -> int:
        index = self._counts[kind]
        self._counts[kind] = index + 1
        return index

    def _on_h264(self, data: bytes, keyframe: bool, when: float) -> None:
        frame = H264Frame(data, keyframe, time.monotonic(), when, self._next_index("h264"))
        self._deliver(self.h264_output, frame)

    def _on_jpeg(self, data: bytes, keyframe: bool, when: float) -> None:
        frame = JpegFrame(data, time.monotonic(), when, self._next_index("jpeg"))
        self._deliver(self.jpeg_output, frame)

    # RGB worker thread

    def _convert_rgb(self) -> None:
        size = self.plan.size(self.plan.rgb)
        w, h = self.rgb_size
        while not self._stop_event.is_set():
            try:
                array, captured, when = self._rgb_slot.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                rgb = yuv420_to_rgb(array, size, self._matrix)
                if size != (w, h):
                    rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
                frame = RgbFrame(rgb.tobytes(), w, h, captured, when, self._next_index("rgb"))
            except Exception:
                logger.exception("could not convert a frame for detection")
                continue
            self._deliver(self.rgb_output, frame)
