"""A fake ``picamera.PiCamera`` (1.13) that films the sim scene.

Same names and signatures as the documented API for what the backend calls. It
enforces the documented constraints (splitter ports 0-3, one recording per
port, H.264 at most 1920x1080, annotation limits, no resolution change while
recording, nothing after close) and records every use in ``log`` and
``recordings``. Frames are real: libx264 H.264 with the requested intra period,
the SPS/PPS headers in a buffer of their own before each keyframe (only the
first one without ``inline_headers``), Pillow JPEG, and raw RGB padded to a
width multiple of 32 and a height multiple of 16 as the GPU does. Like MMAL, it
may write one frame in several pieces, updating the port's ``PiVideoFrame``
before each write.

Test hooks (not in picamera): ``picamera.fake.cameras`` lists every camera
made; environment ``FAKE_PICAMERA_NO_CAMERA=1`` makes opening fail as on a Pi
without a camera; ``FAKE_PICAMERA_LOG=path`` writes the usage log as JSON on
close (for subprocess tests).
"""

from __future__ import annotations

import io
import json
import os
import threading
import time

import numpy as np
from PIL import Image, ImageDraw

from raspberry_pancake.camera.base import CameraSettings
from raspberry_pancake.camera.h264 import H264Encoder
from raspberry_pancake.camera.scene import Scene, load_font

from . import fake
from .exc import (
    PiCameraAlreadyRecording,
    PiCameraClosed,
    PiCameraError,
    PiCameraNotRecording,
    PiCameraRuntimeError,
    PiCameraValueError,
)
from .frames import PiVideoFrame, PiVideoFrameType

H264_MAX = (1920, 1080)
FORMATS = ("h264", "mjpeg", "yuv", "rgb", "rgba", "bgr", "bgra")
FAKED_FORMATS = ("h264", "mjpeg", "rgb")
H264_OPTIONS = {
    "bitrate",
    "intra_period",
    "profile",
    "level",
    "quantization",
    "quality",
    "inline_headers",
    "sei",
    "sps_timing",
    "motion_output",
    "intra_refresh",
}
MJPEG_OPTIONS = {"bitrate", "quality"}
#: picamera leaves the intra period to the firmware when not given; the raspivid
#: sample in ../shared/testdata has a keyframe every 60 frames.
DEFAULT_INTRA_PERIOD = 60
#: pieces bigger than this are written in two parts, as MMAL may do
SPLIT_ABOVE = 2048


class Color:
    """The few named colours the fake knows (picamera.Color accepts many more)."""

    NAMES = {"black": (0, 0, 0), "white": (255, 255, 255)}

    def __init__(self, name: str):
        if name not in self.NAMES:
            raise ValueError(f"the fake Color knows only {sorted(self.NAMES)}")
        self.rgb_bytes = self.NAMES[name]

    def __repr__(self):
        return f"<Color {self.rgb_bytes}>"


def nal_units(data: bytes):
    """Split an Annex B access unit into NAL units, each with its start code."""
    starts = []
    i = 0
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0:
            break
        start = i - 1 if i > 0 and data[i - 1] == 0 else i
        starts.append((start, i + 3))
        i += 3
    units = []
    for n, (start, payload) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(data)
        units.append((data[payload] & 0x1F, data[start:end]))
    return units


def split_headers(data: bytes):
    """(SPS+PPS bytes, the rest) of one access unit."""
    header, body = [], []
    for nal_type, unit in nal_units(data):
        (header if nal_type in (7, 8) else body).append(unit)
    return b"".join(header), b"".join(body)


class FakeVideoEncoder:
    """One splitter port's encoder; fed on the camera's capture thread."""

    def __init__(self, camera, output, fmt, size, port, options):
        self.camera, self.output, self.format, self.size, self.port = (
            camera,
            output,
            fmt,
            size,
            port,
        )
        self.options = options
        self.started = time.monotonic()
        self.frame = PiVideoFrame(0, None, 0, 0, 0, 0, False)
        self._first = True
        self._headers_sent = False
        self._h264 = None
        if fmt == "h264":
            intra = options.get("intra_period") or DEFAULT_INTRA_PERIOD
            # the helper's keyframe interval is its fps argument: pass the intra period
            self._h264 = H264Encoder(size[0], size[1], intra)
        self.inline_headers = options.get("inline_headers", True)
        # guards the encoder between the capture thread (feed) and stop_recording (close)
        self._lock = threading.Lock()
        self._closed = False

    def feed(self, image: Image.Image, now: float) -> None:
        with self._lock:
            if not self._closed:
                self._feed(image, now)

    def _feed(self, image: Image.Image, now: float) -> None:
        pts = int((now - self.started) * 1e6)
        picture = image if image.size == self.size else image.resize(self.size)
        if self.format == "h264":
            for data, keyframe in self._h264.encode(np.asarray(picture)):
                header, body = split_headers(data)
                if header and (self.inline_headers or not self._headers_sent):
                    self._write(header, PiVideoFrameType.sps_header, None)
                    self._headers_sent = True
                kind = PiVideoFrameType.key_frame if keyframe else PiVideoFrameType.frame
                self._write(body, kind, pts)
        elif self.format == "mjpeg":
            buf = io.BytesIO()
            picture.save(buf, "JPEG", quality=80)
            self._write(buf.getvalue(), PiVideoFrameType.key_frame, pts)
        else:
            w, h = self.size
            pw, ph = (w + 31) // 32 * 32, (h + 15) // 16 * 16
            padded = np.full((ph, pw, 3), 0xA5, dtype=np.uint8)
            padded[:h, :w] = np.asarray(picture.convert("RGB"))
            self._write(padded.tobytes(), PiVideoFrameType.frame, pts)

    def _write(self, data: bytes, kind: int, pts) -> None:
        pieces = [data]
        if len(data) > SPLIT_ABOVE:
            pieces = [data[: len(data) // 2], data[len(data) // 2 :]]
        for n, piece in enumerate(pieces):
            f = self.frame
            new_frame = f.complete or self._first
            self._first = False
            self.frame = PiVideoFrame(
                index=f.index + 1 if f.complete else f.index,
                frame_type=kind,
                frame_size=len(piece) if new_frame else f.frame_size + len(piece),
                video_size=f.video_size + len(piece),
                split_size=f.split_size + len(piece),
                timestamp=pts,
                complete=n == len(pieces) - 1,
            )
            self.output.write(piece)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        flush = getattr(self.output, "flush", None)
        if flush is not None:
            flush()
        if self._h264 is not None:
            self._h264.close()


class PiCamera:
    """The camera; properties and recordings are set from the caller's thread,
    frames are produced on the fake's own capture thread."""

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
            raise PiCameraError(
                "Camera is not enabled. Try running 'sudo raspi-config' and ensure "
                "that the camera has been enabled."
            )
        self.log = []
        self.recordings = []
        self._encoders = {}
        # guards _encoders against the capture thread
        self._encoders_lock = threading.Lock()
        self._closed = False
        self._resolution = tuple(resolution) if resolution else (1280, 720)
        self._framerate = framerate or 30
        self._hflip = self._vflip = False
        self._rotation = 0
        self._annotate_text = ""
        self._annotate_text_size = 32
        self._annotate_background = None
        self._thread = None
        self._stop = threading.Event()
        self.frames_captured = 0
        self.log.append(("open", {"resolution": self._resolution, "framerate": self._framerate}))
        fake.cameras.append(self)

    # helpers

    def _check_open(self):
        if self._closed:
            raise PiCameraClosed("Camera is closed")

    def _set(self, name, value):
        self._check_open()
        self.log.append(("set", name, value))

    def _check_not_recording(self, what):
        if self._encoders:
            raise PiCameraRuntimeError(f"Cannot change {what} while recording")

    # properties

    @property
    def closed(self):
        return self._closed

    @property
    def resolution(self):
        self._check_open()
        return self._resolution

    @resolution.setter
    def resolution(self, value):
        self._set("resolution", value)
        self._check_not_recording("resolution")
        self._resolution = tuple(value)

    @property
    def framerate(self):
        self._check_open()
        return self._framerate

    @framerate.setter
    def framerate(self, value):
        self._set("framerate", value)
        self._check_not_recording("framerate")
        self._framerate = value

    @property
    def hflip(self):
        self._check_open()
        return self._hflip

    @hflip.setter
    def hflip(self, value):
        self._set("hflip", value)
        self._hflip = bool(value)

    @property
    def vflip(self):
        self._check_open()
        return self._vflip

    @vflip.setter
    def vflip(self, value):
        self._set("vflip", value)
        self._vflip = bool(value)

    @property
    def rotation(self):
        self._check_open()
        return self._rotation

    @rotation.setter
    def rotation(self, value):
        self._set("rotation", value)
        # picamera rounds any angle down to a multiple of 90
        self._rotation = int(value) % 360 // 90 * 90

    @property
    def annotate_text(self):
        self._check_open()
        return self._annotate_text

    @annotate_text.setter
    def annotate_text(self, value):
        self._set("annotate_text", value)
        if len(value) > 255:
            raise PiCameraValueError("Annotation text must be 255 characters or less")
        value.encode("ascii")  # the firmware takes ASCII only
        self._annotate_text = value

    @property
    def annotate_text_size(self):
        self._check_open()
        return self._annotate_text_size

    @annotate_text_size.setter
    def annotate_text_size(self, value):
        self._set("annotate_text_size", value)
        if not 6 <= value <= 160:
            raise PiCameraValueError(f"Invalid annotation text size: {value} (valid range 6-160)")
        self._annotate_text_size = int(value)

    @property
    def annotate_background(self):
        self._check_open()
        return self._annotate_background

    @annotate_background.setter
    def annotate_background(self, value):
        self._set("annotate_background", value)
        if value is not None and not isinstance(value, Color):
            raise PiCameraValueError("annotate_background must be a Color or None")
        self._annotate_background = value

    @property
    def frame(self):
        """As picamera 1.13: with several recordings, an arbitrary (here: the first) one's."""
        self._check_open()
        with self._encoders_lock:
            encoders = list(self._encoders.values())
        if not encoders:
            raise PiCameraRuntimeError(
                "Cannot query frame information when camera is not recording"
            )
        return encoders[0].frame

    # recording

    def start_recording(self, output, format=None, resize=None, splitter_port=1, **options):
        self._check_open()
        self.log.append(("start_recording", splitter_port, format, resize, dict(options)))
        if splitter_port not in (0, 1, 2, 3):
            raise PiCameraValueError("Splitter port must be 0, 1, 2 or 3")
        if splitter_port in self._encoders:
            raise PiCameraAlreadyRecording(f"The camera is already using port {splitter_port}")
        if format not in FORMATS:
            raise PiCameraValueError(f"Invalid format {format!r}")
        if format not in FAKED_FORMATS:
            raise PiCameraValueError(f"the fake does not implement format {format!r}")
        if not callable(getattr(output, "write", None)):
            raise PiCameraValueError("output must have a write() method")
        allowed = (
            H264_OPTIONS if format == "h264" else MJPEG_OPTIONS if format == "mjpeg" else set()
        )
        unknown = set(options) - allowed
        if unknown:
            raise TypeError(f"unexpected options for {format}: {sorted(unknown)}")
        if resize is not None:
            if len(resize) != 2 or not all(isinstance(v, int) and v > 0 for v in resize):
                raise PiCameraValueError(f"Invalid resize {resize!r}")
        size = tuple(resize) if resize is not None else self._resolution
        if format == "h264":
            if size[0] > H264_MAX[0] or size[1] > H264_MAX[1]:
                raise PiCameraValueError("the H.264 encoder cannot encode beyond 1920x1080")
            intra = options.get("intra_period")
            if intra is not None and (not isinstance(intra, int) or intra < 0):
                raise PiCameraValueError(f"Invalid intra_period {intra!r}")
        encoder = FakeVideoEncoder(self, output, format, size, splitter_port, options)
        with self._encoders_lock:
            self._encoders[splitter_port] = encoder
        self.recordings.append(
            {"port": splitter_port, "format": format, "resize": resize, "options": dict(options)}
        )
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._capture, name="fake-mmal", daemon=True)
            self._thread.start()

    def stop_recording(self, splitter_port=1):
        self._check_open()
        self.log.append(("stop_recording", splitter_port))
        with self._encoders_lock:
            encoder = self._encoders.pop(splitter_port, None)
        if encoder is None:
            raise PiCameraNotRecording(f"There is no recording in progress on port {splitter_port}")
        encoder.close()

    def close(self):
        if self._closed:
            return
        self.log.append(("close",))
        with self._encoders_lock:
            encoders = list(self._encoders.values())
            self._encoders.clear()
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        for encoder in encoders:
            encoder.close()
        self._closed = True
        path = os.environ.get("FAKE_PICAMERA_LOG")
        if path:
            with open(path, "w") as f:
                json.dump({"log": self.log, "recordings": self.recordings}, f, default=repr)

    # the sensor (capture thread)

    def _capture(self):
        scene, key = None, None
        start = time.monotonic()
        index = 0
        while not self._stop.is_set():
            period = 1.0 / self._framerate
            due = start + index * period
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            settings_key = (
                self._resolution,
                self._framerate,
                self._hflip,
                self._vflip,
                self._rotation,
            )
            if settings_key != key:
                key = settings_key
                scene = Scene(
                    CameraSettings(
                        resolution=self._resolution,
                        fps=min(int(self._framerate), 120),
                        hflip=self._hflip,
                        vflip=self._vflip,
                        rotation=self._rotation,
                    )
                )
            now = time.monotonic()
            image = scene.render(index, now - start, time.time(), annotate=False)
            self._annotate(image)
            with self._encoders_lock:
                encoders = list(self._encoders.values())
            for encoder in encoders:
                encoder.feed(image, now)
            index += 1
            self.frames_captured = index
            late = time.monotonic() - (start + index * period)
            if late > period:
                index += int(late / period)  # drop frames like a busy GPU

    def _annotate(self, image: Image.Image) -> None:
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
