"""The libcamera stack (Raspberry Pi OS Bullseye, Bookworm and later): Picamera2.

Tested against the real Picamera2 0.3.38 running on fakes of what lies below it
(libcamera, the DMA heap, the Pi 4's V4L2 encoder), on both of its platforms;
nobody has run it on a Pi yet (see docs/HARDWARE.md).

libcamera gives at most two processed streams, ``main`` and a smaller
``lores``, both YUV420 here. The recording size and the live-view size decide
them: the larger of the two is ``main``, the other ``lores`` (``plan_streams``).

- H.264: Picamera2's ``H264Encoder(repeat=True, iperiod=real fps)`` (the V4L2
  hardware encoder on a Pi 4 and earlier, libav in software on a Pi 5) into a
  ``FrameOutput``; its frames reach the recorders through an ``InOrder``
  hand-off, so a slow consumer never holds up the camera.
- JPEG for the live view, only while someone watches: the pre-callback copies
  the live-view stream, and a worker converts the colours for JPEG decoders
  (``yuv420``) and encodes it. Picamera2's MJPEGEncoder is not used: it would
  encode every frame (on a Pi 5 on the camera thread itself) and label video
  levels as full range, which washes the picture out.
- RGB for ``detect(bytes)``: the same, converted to RGB and resized.
- Flips and 180 degrees through the configuration's ``libcamera.Transform``; the
  Pi's ISP cannot transpose, so 90 and 270 are refused.
- The timestamp is drawn into every stream by the pre-callback, which runs on
  the camera thread before the encoders see the frame (``TimestampOverlay``;
  bench/picamera2_camera_thread.py measures all our work on that thread).

Every frame carries its capture time on CLOCK_MONOTONIC: libcamera's
``SensorTimestamp``, which Picamera2's encoders pass on as microseconds since
the first frame they encoded (``firsttimestamp``). Its wall-clock time is read
per frame as the wall clock now minus how long ago the frame was captured, so a
step of the clock (NTP on a Pi without a real-time clock) reaches the very next
frame's name.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, Optional

import numpy as np
from PIL import Image

from ..exc import CameraUnavailableError, ConfigError, UserError
from . import yuv420
from .annotation import TimestampOverlay
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
from .handoff import InOrder, LatestOnly

logger = logging.getLogger(__name__)

#: Seconds the sensor needs to settle exposure and white balance before recording.
WARMUP_SECONDS = 2.0
#: A started camera that shows no frame in this time is reported as broken.
FIRST_FRAME_TIMEOUT = 10.0
STREAM_FORMAT = "YUV420"
JPEG_QUALITY = 80
#: The largest picture the VC4 (Pi 4 and earlier) H.264 encoder takes: MAX_W_CODEC and
#: MAX_H_CODEC of the kernel's bcm2835-codec driver, which clamps larger sizes.
VC4_H264_MAX = (1920, 1920)
#: How far (in seconds of frames) the recorders may fall behind before frames are dropped.
H264_BACKLOG_SECONDS = 4


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

    The encoder needs its exact size, and so does the live view, so recording
    and live view each get a stream; lores may not be larger than main.
    Detection is resized in software, so it takes a lores stream of its own
    size only when one is free.
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


def pyav_takes_numpy_buffers() -> bool:
    """Whether Picamera2's libav encoders (the Pi 5's H.264) can run on this PyAV.

    They call ``av.VideoFrame.from_numpy_buffer``, which Debian 12's python3-av
    (10.0) does not have: every frame would raise on the camera thread.
    """
    import av

    return hasattr(av.VideoFrame, "from_numpy_buffer")


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > 300:
        text = text[:300] + "..."
    if isinstance(error, PermissionError):
        text += " (is this user in the 'video' group?)"
    return text


class CaptureIndex:
    """Numbers captures, so every output's frame of one capture carries the same index.

    ``note`` runs on the camera thread (pre-callback), ``lookup`` on an encoder's
    thread, keyed by the capture's SensorTimestamp in microseconds.
    """

    def __init__(self, remember: int = 256):
        self._remember = remember
        # guards _by_time and _next
        self._lock = threading.Lock()
        self._by_time: collections.OrderedDict = collections.OrderedDict()
        self._next = 0

    def note(self, sensor_us: int) -> int:
        with self._lock:
            index = self._next
            self._next += 1
            self._by_time[sensor_us] = index
            while len(self._by_time) > self._remember:
                self._by_time.popitem(last=False)
            return index

    def lookup(self, sensor_us: int) -> int:
        with self._lock:
            return self._by_time.get(sensor_us, max(self._next - 1, 0))


def make_frame_output_class(output_base):
    """A subclass of picamera2's ``Output`` (encoders accept nothing else)."""

    class FrameOutput(output_base):
        """Receives encoded frames on the encoder's thread and passes them on with their time.

        That thread is the V4L2 encoder's poll thread on a Pi 4 and earlier, and
        Picamera2's camera thread itself on a Pi 5. The timestamp is in
        microseconds since the encoder's ``firsttimestamp`` (the SensorTimestamp
        of the first frame it took, in microseconds): their sum is the capture
        time on CLOCK_MONOTONIC.
        """

        def __init__(self, encoder, on_frame):
            super().__init__()
            self._encoder = encoder
            self._on_frame = on_frame

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
            if audio or frame is None:
                return
            first = self._encoder.firsttimestamp
            if first is None or timestamp is None:
                sensor_us = int(time.monotonic() * 1e6)
            else:
                sensor_us = first + timestamp
            self._on_frame(bytes(frame), bool(keyframe), sensor_us)

    return FrameOutput


class Picamera2Camera(Camera):
    """The Picamera2 backend; start/stop on the main thread.

    Frames arrive on Picamera2's camera thread (pre-callback), on the H.264
    encoder's thread (``FrameOutput``), and are delivered on our hand-off
    threads: ``picamera2-h264``, ``picamera2-jpeg`` and ``picamera2-rgb``.
    """

    name = "picamera2"

    def __init__(self, settings: CameraSettings, warmup: float = WARMUP_SECONDS):
        """Open the camera now, so a missing camera is reported before anything starts.

        ``warmup`` is how long ``start()`` lets exposure settle before recording
        starts; tests shorten it, users have no flag for it.
        """
        super().__init__(settings)
        if settings.rotation in (90, 270):
            raise ConfigError(
                f"--camera picamera2 cannot rotate by {settings.rotation}: libcamera on the Pi "
                "only flips (use --rotation 0 or 180, with --hflip/--vflip)"
            )
        try:
            from picamera2 import Picamera2
            from picamera2.platform import Platform
        except ImportError as e:
            missing = f" (cannot import {e.name})" if e.name and e.name != "picamera2" else ""
            raise CameraUnavailableError(
                f"--camera picamera2: the picamera2 library is not installed{missing} "
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
                f"--camera picamera2: the camera could not be opened ({one_line(e)}); "
                "to try without a camera, use --camera sim"
            ) from None
        #: True on a Pi Zero to Pi 4 (hardware encoder), False on a Pi 5
        self.vc4 = Picamera2.platform == Platform.VC4
        self.warmup = warmup
        self.plan: Optional[StreamPlan] = None
        #: the frame duration the camera really runs at, read back from its first frame
        self.frame_us: Optional[int] = None
        self._overlays: Dict[str, TimestampOverlay] = {}
        self._ycbcr = yuv420.YCbCr()
        self._stop_event = threading.Event()
        self._first_frame = threading.Event()
        self._first_frame_us: Optional[int] = None  # its FrameDuration, set before the event
        self._index = CaptureIndex()
        self._encoder = None
        self._h264: Optional[InOrder] = None
        self._pictures: Dict[str, LatestOnly] = {}  # "jpeg"/"rgb" -> its worker
        self._callback_failures = 0
        self._closed = False

    # registration (main thread)

    def set_h264_output(self, output, size: Optional[Size] = None) -> None:
        super().set_h264_output(output, size)
        if not self.vc4 and not pyav_takes_numpy_buffers():
            import av

            raise ConfigError(
                "--camera picamera2: on a Pi 5 Picamera2 encodes H.264 with PyAV, and this "
                f"PyAV ({av.__version__}) lacks VideoFrame.from_numpy_buffer, which it calls; "
                "install Raspberry Pi OS's python3-av, or a newer av with pip"
            )
        if self.vc4 and not fits(self.h264_size, VC4_H264_MAX):
            w, h = self.h264_size
            raise ConfigError(
                f"--camera picamera2: this Pi's H.264 encoder (Pi 4 and earlier) takes at most "
                f"{VC4_H264_MAX[0]}x{VC4_H264_MAX[1]} pixels, so it cannot record {w}x{h}; "
                "choose a smaller --record-resize (recording uses --resolution without it)"
            )

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
        self._ycbcr = yuv420.ycbcr_of(self._picam2.camera_config["colour_space"])
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
                wanted,
                max(6, s.annotate_text_size * wanted[1] // s.resolution[1]),
                self._ycbcr.full_range,
            )

    def _start(self) -> None:
        self._stop_event.clear()
        self._first_frame.clear()
        try:
            self._configure()
            self._start_pictures()
            self._picam2.pre_callback = self._pre_callback
            self._picam2.start()
            began = time.monotonic()
            if not self._first_frame.wait(FIRST_FRAME_TIMEOUT):
                raise CameraUnavailableError(
                    f"--camera picamera2: the camera started but gave no frame in "
                    f"{FIRST_FRAME_TIMEOUT:.0f} s"
                )
            self._check_frame_rate()
            if self._stop_event.wait(max(0.0, self.warmup - (time.monotonic() - began))):
                return
            if self.plan.h264:
                self._start_recording()
        except UserError:
            self._abandon()
            raise
        except (OSError, RuntimeError, ValueError) as e:
            self._abandon()
            raise CameraUnavailableError(
                f"--camera picamera2: the camera could not start: {one_line(e)}"
            ) from None

    def _check_frame_rate(self) -> None:
        """Take the frame rate the camera really runs at; say so if it is not --fps."""
        fps = self.settings.fps
        low, high, _ = self._picam2.camera_controls["FrameDurationLimits"]
        expected = min(max(int(round(1e6 / fps)), low), high)
        self.frame_us = int(self._first_frame_us or expected)
        real = 1e6 / self.frame_us
        if abs(real - fps) > 0.01 * fps:
            sensor = self._picam2.camera_configuration().get("sensor") or {}
            mode = "x".join(str(n) for n in sensor.get("output_size", ())) or "current"
            model = self._picam2.camera_properties.get("Model", "camera")
            logger.warning(
                "--fps %d: the %s's %s sensor mode runs at %.2f fps at most; recording at "
                "%.2f fps, with a keyframe every %d frames (one a second)",
                fps,
                model,
                mode,
                1e6 / low,
                real,
                self.intra_period,
            )

    @property
    def intra_period(self) -> int:
        """Frames between keyframes: one second at the real frame rate."""
        frame_us = self.frame_us or int(round(1e6 / self.settings.fps))
        return max(1, int(round(1e6 / frame_us)))

    def _start_pictures(self) -> None:
        plan = self.plan
        if plan.jpeg:
            self._pictures["jpeg"] = LatestOnly("picamera2-jpeg", self._to_jpeg, self._on_jpeg)
        if plan.rgb:
            self._pictures["rgb"] = LatestOnly("picamera2-rgb", self._to_rgb, self._on_rgb)
        for worker in self._pictures.values():
            worker.start()

    def _start_recording(self) -> None:
        from picamera2.encoders import H264Encoder
        from picamera2.outputs import Output

        # a Fraction: libav's encoder hands it to PyAV as a stream rate, which takes no float
        fps = Fraction(1_000_000, self.frame_us)
        self._h264 = InOrder(
            "picamera2-h264", self._deliver_h264, max(8, int(H264_BACKLOG_SECONDS * fps))
        )
        self._h264.start()
        self._encoder = H264Encoder(repeat=True, iperiod=self.intra_period, framerate=fps)
        output = make_frame_output_class(Output)(self._encoder, self._on_h264)
        self._picam2.start_encoder(self._encoder, output, name=self.plan.h264)

    def _abandon(self) -> None:
        """Undo a start that failed halfway: stop what runs, release the camera, leave no thread."""
        self._stop_event.set()
        self._shut_down()
        self.close()

    def _shut_down(self) -> None:
        try:
            self._picam2.stop_encoder()  # flushes what the encoder still holds to the hand-off
        except Exception:
            logger.exception("stopping Picamera2's encoder failed")
        if self._encoder is not None and self._encoder.running:
            # an encoder whose start failed: Picamera2 does not know it, but its
            # V4L2 poll thread may run; stop() ends it even if it then fails itself
            try:
                self._encoder.stop()
            except Exception:
                logger.debug("stopping a half-started encoder", exc_info=True)
        try:
            self._picam2.stop()
        except Exception:
            logger.exception("stopping Picamera2 failed")
        if self._h264 is not None:
            self._h264.stop()  # after the encoder: the last frames reach the recorders
            self._h264 = None
        for worker in self._pictures.values():
            worker.stop()
        self._pictures = {}

    def _stop(self) -> None:
        self._stop_event.set()
        self._shut_down()
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
        try:
            metadata = request.get_metadata()
            sensor_us = int(metadata["SensorTimestamp"] / 1000)
            index = self._index.note(sensor_us)
            if not self._first_frame.is_set():
                self._first_frame_us = metadata.get("FrameDuration")
                self._first_frame.set()
            captured = sensor_us / 1e6
            captured, wall = frame_times(captured)
            plan = self.plan
            for name, overlay in self._overlays.items():
                with MappedArray(request, name) as mapped:
                    overlay.draw(mapped.array, wall)
                    if name == plan.jpeg:
                        self._offer("jpeg", self.jpeg_output, mapped.array, captured, wall, index)
                    if name == plan.rgb:
                        self._offer("rgb", self.rgb_output, mapped.array, captured, wall, index)
        except Exception:
            self._callback_failures += 1
            if self._callback_failures == 1:
                logger.exception("the pre-callback failed (annotation or frame copy)")

    def _offer(self, kind: str, output, array: np.ndarray, captured, wall, index) -> None:
        worker = self._pictures.get(kind)
        if worker is not None and worker.idle() and output_wants_frame(output):
            worker.offer((array.copy(), captured, wall, index))

    # encoder thread (V4L2 poll thread on VC4, the camera thread on PiSP)

    def _on_h264(self, data: bytes, keyframe: bool, sensor_us: int) -> None:
        captured = sensor_us / 1e6
        item = (data, keyframe, *frame_times(captured), self._index.lookup(sensor_us))
        handoff = self._h264
        if handoff is not None:
            handoff.put(item, keyframe)

    # hand-off threads

    def _deliver_h264(self, data, keyframe, captured, wall, index) -> None:
        self._deliver(self.h264_output, H264Frame(data, keyframe, captured, wall, index))

    def _to_jpeg(self, item) -> JpegFrame:
        array, captured, wall, index = item
        data = yuv420.encode_jpeg(array, self.plan.size(self.plan.jpeg), self._ycbcr, JPEG_QUALITY)
        return JpegFrame(data, captured, wall, index)

    def _on_jpeg(self, frame: JpegFrame) -> None:
        self._deliver(self.jpeg_output, frame)

    def _to_rgb(self, item) -> RgbFrame:
        array, captured, wall, index = item
        size = self.plan.size(self.plan.rgb)
        w, h = self.rgb_size
        rgb = yuv420.to_rgb(array, size, self._ycbcr)
        if size != (w, h):
            rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
        return RgbFrame(rgb.tobytes(), w, h, captured, wall, index)

    def _on_rgb(self, frame: RgbFrame) -> None:
        self._deliver(self.rgb_output, frame)
