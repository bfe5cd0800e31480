"""A fake ``picamera.PiCamera`` (1.13) that films the sim scene.

The public names, signatures and rules of picamera 1.13's camera.py for what Raspberry
Pancake (this project and the original) calls: the settings it sets, the four
splitter ports, ``start_recording``/``wait_recording``/``split_recording``/
``stop_recording``/``record_sequence``, ``capture``/``capture_sequence``,
``frame``, ``timestamp``, ``clock_mode`` and ``close``. The encoders behind the
ports are in encoders.py.

The sensor is a thread of its own: while any port captures, it draws the scene at
the resolution and frame rate, burns in ``annotate_text``, stamps the picture
with the VideoCore's clock at its slot (frames are 1/framerate apart, as a
sensor's are, however loaded the machine; a late fake catches up) and hands the
same picture and timestamp to every capturing port, as the splitter does.
Timestamps follow ``clock_mode``: 'raw' is the VideoCore's system time counter
(microseconds since the GPU booted, which is also what ``timestamp`` reads);
'reset' (the default) counts from the moment capture started on the video port.

Every use is recorded in ``log`` and ``recordings`` (see fake.py for the test hooks).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import namedtuple
from fractions import Fraction
from typing import Dict, Optional

from PIL import Image, ImageDraw

from raspberry_pancake.camera.base import CameraSettings
from raspberry_pancake.camera.scene import Scene, load_font

from . import fake
from .encoders import FakeEncoder, MultiImageEncoder, RawVideoEncoder, VideoEncoder
from .exc import (
    PiCameraAlreadyRecording,
    PiCameraClosed,
    PiCameraError,
    PiCameraNotRecording,
    PiCameraRuntimeError,
    PiCameraValueError,
)

PiResolution = namedtuple("PiResolution", ("width", "height"))
PiFramerateRange = namedtuple("PiFramerateRange", ("low", "high"))

#: the file extensions picamera registers with mimetypes (camera.py: PiCamera.__init__)
VIDEO_EXTENSIONS = {".h264": "h264", ".mjpg": "mjpeg", ".mjpeg": "mjpeg"}
RAW_FORMATS = ("yuv", "rgb", "rgba", "bgr", "bgra")
#: Seconds the fake's drawing may fall behind the sensor's slots before it skips some
#: (a real sensor never falls behind; a loaded test machine can)
MAX_SENSOR_LAG = 10.0


class Color:
    """A few named colours and (r, g, b) tuples (picamera.Color accepts many more forms)."""

    NAMES = {
        "black": (0, 0, 0),
        "white": (255, 255, 255),
        "red": (255, 0, 0),
        "green": (0, 128, 0),
        "blue": (0, 0, 255),
        "yellow": (255, 255, 0),
    }

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], str):
            if args[0] not in self.NAMES:
                raise ValueError(f"the fake Color knows only {sorted(self.NAMES)}")
            self.rgb_bytes = self.NAMES[args[0]]
        elif len(args) == 3:
            self.rgb_bytes = tuple(int(v) for v in args)
        else:
            raise ValueError("Color(name) or Color(r, g, b)")

    def __repr__(self):
        return f"<Color {self.rgb_bytes}>"


class _Setting:
    """A PiCamera setting: read and set only while the camera is open, every set
    logged; ``convert(camera, value)`` checks the value and returns what is kept."""

    def __init__(self, convert, idle_only: bool = False):
        self.convert = convert
        self.idle_only = idle_only  # camera.py refuses it while recording

    def __set_name__(self, owner, name):
        self.name, self.attribute = name, "_" + name

    def __get__(self, camera, owner=None):
        if camera is None:
            return self
        camera._check_camera_open()
        return getattr(camera, self.attribute)

    def __set__(self, camera, value):
        camera._set(self.name, value)
        if self.idle_only:
            camera._check_recording_stopped()
        setattr(camera, self.attribute, self.convert(camera, value))


def _resolution(camera, value) -> PiResolution:
    value = camera._to_resolution(value)
    limit = camera.MAX_RESOLUTION
    if not (0 < value.width <= limit.width and 0 < value.height <= limit.height):
        raise PiCameraValueError(f"Invalid resolution requested: {value!r}")
    return value


def _framerate(camera, value) -> Fraction:
    value = Fraction(value).limit_denominator(256)
    camera._check_framerate(value)
    return value


def _clock_mode(camera, value) -> str:
    if value not in camera.CLOCK_MODES:
        raise PiCameraValueError(f"Invalid clock mode {value}")
    return value


def _annotate_text(camera, value) -> str:
    if len(value) > 255:
        raise PiCameraValueError("Annotation text must be 255 characters or less")
    try:
        value.encode("ascii")
    except UnicodeEncodeError:
        raise PiCameraValueError("Annotation text must be ASCII") from None
    return value


def _annotate_text_size(camera, value) -> int:
    if not 6 <= value <= 160:
        raise PiCameraValueError(f"Invalid annotation text size: {value} (valid range 6-160)")
    return int(value)


def _annotate_background(camera, value):
    if value is not None and not isinstance(value, Color):
        raise PiCameraValueError("annotate_background must be a Color or None")
    return value


class PiCamera:
    """The camera. Settings and recordings are used from the caller's threads; pictures
    come from the sensor thread; each port's writes from that port's thread."""

    CAMERA_PREVIEW_PORT, CAMERA_VIDEO_PORT, CAMERA_CAPTURE_PORT = 0, 1, 2
    #: the fake sensor is a v2 module (imx219): camera.py sets 120 fps for anything
    #: but the ov5647
    MAX_RESOLUTION = PiResolution(3280, 2464)
    MAX_FRAMERATE = 120
    DEFAULT_ANNOTATE_SIZE = 32
    CAPTURE_TIMEOUT = 60
    CLOCK_MODES = ("reset", "raw")

    def __init__(
        self,
        camera_num=0,
        stereo_mode="none",
        stereo_decimate=False,
        resolution=None,
        framerate=None,
        sensor_mode=0,
        led_pin=None,
        clock_mode="reset",
        framerate_range=None,
    ):
        if os.environ.get("FAKE_PICAMERA_NO_CAMERA"):
            # camera.py: PiCamera._init_camera, when MMAL cannot make the camera
            raise PiCameraError(
                "Camera is not enabled. Try running 'sudo raspi-config' and ensure "
                "that the camera has been enabled."
            )
        if clock_mode not in self.CLOCK_MODES:
            raise PiCameraValueError(f"Invalid clock mode: {clock_mode}")
        if framerate is not None and framerate_range is not None:
            raise PiCameraValueError("Can't specify framerate and framerate_range")
        self._knobs = fake.Knobs.from_environment()
        self.log = []
        self.recordings = []
        self._encoders: Dict[int, FakeEncoder] = {}
        self._encoders_lock = threading.Lock()  # guards _encoders (camera.py: PiCamera)
        self._still: Optional[FakeEncoder] = None  # a capture on the still port
        self._closed = False
        self._resolution = self._to_resolution(resolution or (1280, 720))
        self._framerate = Fraction(framerate or 30).limit_denominator(256)
        self._check_framerate(self._framerate)
        self._clock_mode = clock_mode
        self._hflip = self._vflip = False
        self._rotation = 0
        self._annotate_text = ""
        self._annotate_text_size = self.DEFAULT_ANNOTATE_SIZE
        self._annotate_background = None
        self._stc_reset_us = 0  # the clock value at the start of capture (clock_mode 'reset')
        self._faults_seen = None
        self.frames_captured = 0
        self.frames_skipped = 0  # sensor frames the busy fake GPU let pass
        self.frames_dropped: Dict[int, int] = {}  # by port: frames no buffer was free for
        self._capturing = threading.Event()  # set while any port captures
        self._closing = threading.Event()
        self._sensor = threading.Thread(target=self._run_sensor, name="fake-sensor", daemon=True)
        self.log.append(
            ("open", {"resolution": tuple(self._resolution), "framerate": float(self._framerate)})
        )
        self._sensor.start()
        fake.cameras.append(self)

    # helpers

    @staticmethod
    def _to_resolution(value) -> PiResolution:
        try:
            w, h = (int(v) for v in value)
        except (TypeError, ValueError):
            raise PiCameraValueError(f"Invalid resolution requested: {value!r}") from None
        return PiResolution(w, h)

    def _check_framerate(self, value) -> None:
        if not 0 < value <= self.MAX_FRAMERATE:
            raise PiCameraValueError(f"Invalid framerate: {float(value):.2f}fps")

    def _check_camera_open(self) -> None:
        if self._closed:
            raise PiCameraClosed("Camera is closed")

    def _check_recording_stopped(self) -> None:
        if self.recording:
            raise PiCameraRuntimeError("Recording is currently running")

    def _set(self, name, value) -> None:
        self._check_camera_open()
        self.log.append(("set", name, value))

    # settings

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def revision(self) -> str:
        return "imx219"

    resolution = _Setting(_resolution, idle_only=True)
    framerate = _Setting(_framerate, idle_only=True)
    clock_mode = _Setting(_clock_mode, idle_only=True)
    hflip = _Setting(lambda camera, value: bool(value))
    vflip = _Setting(lambda camera, value: bool(value))
    # picamera rounds any angle down to a quarter turn
    rotation = _Setting(lambda camera, value: int(value) % 360 // 90 * 90)
    annotate_text = _Setting(_annotate_text)
    annotate_text_size = _Setting(_annotate_text_size)
    annotate_background = _Setting(_annotate_background)

    @property
    def framerate_delta(self) -> Fraction:
        return Fraction(0)

    @property
    def framerate_range(self) -> PiFramerateRange:
        return PiFramerateRange(self._framerate, self._framerate)

    @property
    def timestamp(self) -> int:
        """The VideoCore's system time in microseconds since it booted (camera.py:
        PiCamera.timestamp); the same clock as frame timestamps with clock_mode 'raw'."""
        self._check_camera_open()
        return self._stc_us(time.monotonic())

    @property
    def recording(self) -> bool:
        """Whether any video encoder is active (camera.py: PiCamera.recording)."""
        with self._encoders_lock:
            encoders = list(self._encoders.values())
        return any(isinstance(e, VideoEncoder) and e.active for e in encoders)

    @property
    def frame(self):
        """camera.py: PiCamera.frame: the frame of whichever encoder comes first; with
        several recordings which one that is is arbitrary (read ``_encoders[port].frame``
        for a given port). None until the encoder has started."""
        self._check_camera_open()
        with self._encoders_lock:
            encoders = list(self._encoders.values())
        for encoder in encoders:
            if hasattr(encoder, "frame"):
                return encoder.frame
        raise PiCameraRuntimeError("Cannot query frame information when camera is not recording")

    # ports (camera.py: PiCamera._get_ports, _get_video_format, _get_video_encoder)

    def _check_port(self, splitter_port) -> None:
        self._check_camera_open()
        if splitter_port not in (0, 1, 2, 3):
            # the splitter has four outputs: picamera indexes its list and fails
            raise IndexError(f"the video splitter has no port {splitter_port}")
        if splitter_port in self._encoders:
            raise PiCameraAlreadyRecording(f"The camera is already using port {splitter_port} ")

    @staticmethod
    def _video_format(output, format) -> str:
        if isinstance(format, bytes):
            format = format.decode("utf-8")
        if not format:
            name = output if isinstance(output, str) else getattr(output, "name", None)
            if not isinstance(name, str):
                raise PiCameraValueError("Format must be specified when output has no filename")
            format = VIDEO_EXTENSIONS.get(os.path.splitext(name)[1].lower())
            if format is None:
                raise PiCameraValueError(f"Unable to determine type from filename {name}")
        for prefix in ("video/", "application/"):
            if format.startswith(prefix):
                format = format[len(prefix) :]
        return format

    def _video_encoder(self, splitter_port, format, resize, **options) -> FakeEncoder:
        encoder_class = RawVideoEncoder if format in RAW_FORMATS else VideoEncoder
        return encoder_class(self, splitter_port, format, resize, **options)

    def _register(self, splitter_port, encoder) -> None:
        self._encoders[splitter_port] = encoder

    def _unregister(self, splitter_port) -> None:
        with self._encoders_lock:
            del self._encoders[splitter_port]

    def _start_capture(self, encoder) -> None:
        """Called under _encoders_lock as an encoder starts: the first one starts
        capture, which is where clock_mode 'reset' counts from."""
        if not self._capturing.is_set():
            self._stc_reset_us = self._stc_us(time.monotonic())
            self._capturing.set()

    def _stop_capture(self, encoder) -> None:
        """Called under _encoders_lock as an encoder stops: the last one stops capture."""
        others = [e for e in self._encoders.values() if e is not encoder and e.active]
        still = self._still is not None and self._still is not encoder and self._still.active
        if not others and not still:
            self._capturing.clear()

    # recording

    def start_recording(self, output, format=None, resize=None, splitter_port=1, **options):
        self.log.append(("start_recording", splitter_port, format, resize, dict(options)))
        with self._encoders_lock:
            self._check_port(splitter_port)
            format = self._video_format(output, format)
            encoder = self._video_encoder(splitter_port, format, resize, **options)
            self._register(splitter_port, encoder)
        try:
            encoder.start(output, options.get("motion_output"))
        except Exception:
            encoder.close()
            self._unregister(splitter_port)
            raise
        self.recordings.append(
            {"port": splitter_port, "format": format, "resize": resize, "options": dict(options)}
        )

    def _encoder_on(self, splitter_port) -> FakeEncoder:
        with self._encoders_lock:
            encoder = self._encoders.get(splitter_port)
        if encoder is None:
            raise PiCameraNotRecording(f"There is no recording in progress on port {splitter_port}")
        return encoder

    def split_recording(self, output, splitter_port=1, **options):
        self.log.append(("split_recording", splitter_port))
        self._encoder_on(splitter_port).split(output, options.get("motion_output"))

    def request_key_frame(self, splitter_port=1):
        self._encoder_on(splitter_port).request_key_frame()

    def wait_recording(self, timeout=0, splitter_port=1):
        """Wait; raise what went wrong on that port (camera.py: PiCamera.wait_recording)."""
        assert timeout is not None
        self._encoder_on(splitter_port).wait(timeout)

    def stop_recording(self, splitter_port=1):
        """camera.py: PiCamera.stop_recording: raises a port's stored error, after
        closing the port all the same."""
        self.log.append(("stop_recording", splitter_port))
        encoder = self._encoder_on(splitter_port)
        try:
            self.wait_recording(0, splitter_port)
        finally:
            encoder.close()
            self._unregister(splitter_port)
            self.frames_dropped[splitter_port] = encoder.frames_dropped

    def record_sequence(self, outputs, format="h264", resize=None, splitter_port=1, **options):
        """camera.py: PiCamera.record_sequence: a generator; the first output starts the
        recording, each further one is a split, and leaving the loop stops it."""
        self.log.append(("record_sequence", splitter_port, format, resize, dict(options)))
        with self._encoders_lock:
            self._check_port(splitter_port)
            format = self._video_format("", format)
            encoder = self._video_encoder(splitter_port, format, resize, **options)
            self._register(splitter_port, encoder)
        self.recordings.append(
            {"port": splitter_port, "format": format, "resize": resize, "options": dict(options)}
        )
        try:
            first = True
            for output in outputs:
                if first:
                    first = False
                    encoder.start(output, options.get("motion_output"))
                else:
                    encoder.split(output)
                yield output
        finally:
            try:
                encoder.wait(0)
            finally:
                encoder.close()
                self._unregister(splitter_port)

    # captures

    def capture(
        self,
        output,
        format=None,
        use_video_port=False,
        resize=None,
        splitter_port=0,
        bayer=False,
        **options,
    ):
        """One picture (camera.py: PiCamera.capture); only 'jpeg' and raw formats."""
        self.capture_sequence(
            [output],
            format or self._image_format(output),
            use_video_port,
            resize,
            splitter_port,
            **options,
        )

    @staticmethod
    def _image_format(output) -> str:
        name = output if isinstance(output, str) else getattr(output, "name", "")
        ext = os.path.splitext(name or "")[1].lower()
        if ext in (".jpg", ".jpeg"):
            return "jpeg"
        raise PiCameraValueError("Format must be specified when output has no filename")

    def capture_sequence(
        self,
        outputs,
        format="jpeg",
        use_video_port=False,
        resize=None,
        splitter_port=0,
        burst=False,
        bayer=False,
        **options,
    ):
        """camera.py: PiCamera.capture_sequence. Through the video port, one encoder
        takes a picture per output until the outputs run out, which may be never: then
        it ends when the port's recording is stopped (close() does that)."""
        self.log.append(("capture_sequence", splitter_port, format, resize, use_video_port))
        if use_video_port and (burst or bayer):
            raise PiCameraValueError("burst and bayer are only valid with still port captures")
        if not use_video_port:
            for output in outputs:
                self._capture_still(output, format, resize, **options)
            return
        with self._encoders_lock:
            self._check_port(splitter_port)
            encoder = MultiImageEncoder(self, splitter_port, format, resize, **options)
            self._register(splitter_port, encoder)
        try:
            encoder.start(outputs)
            encoder.wait()
        finally:
            encoder.close()
            # as camera.py's capture_sequence: when close() stopped this port first,
            # the entry is gone already and this raises KeyError in this thread
            self._unregister(splitter_port)

    def _capture_still(self, output, format, resize, **options) -> None:
        self._check_camera_open()
        encoder = MultiImageEncoder(self, None, format, resize, **options)
        with self._encoders_lock:
            self._still = encoder
        try:
            encoder.start([output])
            if not encoder.wait(self.CAPTURE_TIMEOUT):
                raise PiCameraRuntimeError("Timed out waiting for capture to end")
        finally:
            encoder.close()
            with self._encoders_lock:
                self._still = None

    # closing

    def close(self) -> None:
        """camera.py: PiCamera.close: stop every port (raising a port's stored error,
        as stop_recording does), then release the camera."""
        if self._closed:
            return
        for port in list(self._encoders):
            self.stop_recording(splitter_port=port)
        self.log.append(("close",))
        self._closing.set()
        self._capturing.set()  # wake the sensor so it sees the close
        if self._sensor is not threading.current_thread():
            self._sensor.join(timeout=10)
        self._closed = True
        path = os.environ.get("FAKE_PICAMERA_LOG")
        if path:
            with open(path, "w") as f:
                usage = {"log": self.log, "recordings": self.recordings}
                usage["frames"] = {
                    "captured": self.frames_captured,
                    "skipped": self.frames_skipped,
                    "dropped": self.frames_dropped,
                }
                json.dump(usage, f, default=repr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # the sensor (its own thread)

    def _stc_us(self, monotonic: float) -> int:
        """The VideoCore's system time counter: microseconds since the GPU booted."""
        return int((monotonic + self._knobs.stc_offset) * 1_000_000)

    def _frame_pts(self, captured: float) -> int:
        stc = self._stc_us(captured)
        return stc if self._clock_mode == "raw" else stc - self._stc_reset_us

    def _capturing_encoders(self):
        with self._encoders_lock:
            encoders = [e for e in self._encoders.values() if e.active]
            if self._still is not None and self._still.active:
                encoders.append(self._still)
        return encoders

    def _run_sensor(self) -> None:
        scene, scene_key, started, index = None, None, None, 0
        while not self._closing.is_set():
            if not self._capturing.is_set():
                started = None
                self._capturing.wait()
                continue
            period = float(1 / self._framerate)
            now = time.monotonic()
            if started is None:
                started, index = now, 0
            due = started + index * period
            if due > now and self._closing.wait(due - now):
                break
            key = (self._resolution, self._hflip, self._vflip, self._rotation)
            if key != scene_key:
                scene_key = key
                scene = Scene(
                    CameraSettings(
                        resolution=tuple(self._resolution),
                        fps=min(max(int(self._framerate), 1), 120),
                        hflip=self._hflip,
                        vflip=self._vflip,
                        rotation=self._rotation,
                    )
                )
            self._apply_faults()
            # the sensor and the GPU keep their own time whatever the ARM side does:
            # a frame is stamped with its slot, and a fake that runs late catches up
            captured = due
            image = scene.render(index, captured - started, time.time(), annotate=False)
            self._annotate(image)
            pts = self._frame_pts(captured)
            for encoder in self._capturing_encoders():
                encoder.gpu_frame(image, pts, captured)
            index += 1
            self.frames_captured += 1
            behind = time.monotonic() - (started + index * period)
            if behind > MAX_SENSOR_LAG:  # too late to catch up: let the slots pass
                skipped = int(behind / period)
                index += skipped
                self.frames_skipped += skipped

    def _annotate(self, image: Image.Image) -> None:
        """The firmware burns annotate_text into every port's picture, top centre."""
        text = self._annotate_text
        if not text:
            return
        font = load_font(self._annotate_text_size)
        draw = ImageDraw.Draw(image)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x = (image.width - (right - left)) // 2
        if self._annotate_background is not None:
            fill = self._annotate_background.rgb_bytes
            draw.rectangle((x - 4, 0, x + right - left + 4, 8 + bottom - top), fill=fill)
        draw.text((x - left, 4 - top), text, font=font, fill=(255, 255, 255))

    # test faults (fake.py)

    def fake_fault(self, kind: str, splitter_port: int) -> None:
        """Freeze, thaw or fail one port: see fake.py."""
        encoder = self._encoders.get(splitter_port)
        if encoder is None:
            return
        self.log.append(("fault", kind, splitter_port))
        if kind in ("freeze", "thaw"):
            encoder.port.freeze(kind == "freeze")
        elif kind == "fail":
            encoder.fail_next = True
        else:
            raise ValueError(f"unknown fault {kind!r}")

    def _apply_faults(self) -> None:
        path = self._knobs.faults_path
        if not path:
            return
        try:
            stat = os.stat(path)
        except OSError:
            return
        if (stat.st_mtime_ns, stat.st_size) == self._faults_seen:
            return
        self._faults_seen = (stat.st_mtime_ns, stat.st_size)
        with open(path) as f:
            for line in f:
                words = line.split()
                if len(words) == 2:
                    self.fake_fault(words[0], int(words[1]))
