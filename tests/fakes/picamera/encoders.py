"""The fake GPU's encoders and output ports, following picamera 1.13's encoders.py.

Each encoder has the two halves it has in picamera over MMAL:

- the GPU half, ``gpu_frame``, called on the camera's sensor thread with every
  captured picture: the resizer, the H.264/MJPEG encoder or the raw format
  conversion, and the MMAL buffers that come out, sent to the output port;
- the ARM half, ``_callback`` and ``_callback_write``, called on the output
  port's own callback thread with one buffer at a time: frame bookkeeping
  (``encoder.frame``), splits, and the ``write`` to the user's output.

The rules copied from picamera 1.13 are cited where they are applied, by file and
function. Where the rule comes from the firmware instead (not visible in picamera's
source), the comment says so; those are assumptions to check on a Pi.
"""

from __future__ import annotations

import io
import threading
import time
import warnings
from collections import deque
from typing import Deque, Dict, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image

from raspberry_pancake.camera.h264 import H264Encoder

from .exc import (
    PiCameraAlphaStripping,
    PiCameraIOError,
    PiCameraMMALError,
    PiCameraResolutionRounded,
    PiCameraRuntimeError,
    PiCameraValueError,
)
from .frames import PiVideoFrame, PiVideoFrameType
from .mmal import (
    MMAL_BUFFER_HEADER_FLAG_CODECSIDEINFO,
    MMAL_BUFFER_HEADER_FLAG_CONFIG,
    MMAL_BUFFER_HEADER_FLAG_EOS,
    MMAL_BUFFER_HEADER_FLAG_FRAME_END,
    MMAL_BUFFER_HEADER_FLAG_KEYFRAME,
    MMAL_TIME_UNKNOWN,
    MMALBuffer,
    align_up,
)

#: picamera leaves the H.264 intra period to the firmware when none is given
#: (encoders.py: PiVideoEncoder._create_encoder reads MMAL_PARAMETER_INTRAPERIOD);
#: the raspivid sample in tests/data has a keyframe every 60 frames.
DEFAULT_INTRA_PERIOD = 60

#: encoders.py: PiVideoEncoder._create_encoder accepts these names and numbers
H264_PROFILES = ("baseline", "main", "high", "constrained")
H264_LEVELS = {
    "1": "1",
    "1.0": "1",
    "1b": "1b",
    "1.1": "1.1",
    "1.2": "1.2",
    "1.3": "1.3",
    "2": "2",
    "2.0": "2",
    "2.1": "2.1",
    "2.2": "2.2",
    "3": "3",
    "3.0": "3",
    "3.1": "3.1",
    "3.2": "3.2",
    "4": "4",
    "4.0": "4",
    "4.1": "4.1",
    "4.2": "4.2",
}
#: the H.264 standard's level limits, which PiVideoEncoder._create_encoder checks:
#: level -> (max bitrate other profiles, max bitrate High profile, macroblocks/s, macroblocks)
H264_LEVEL_LIMITS = {
    "1": (64_000, 80_000, 1485, 99),
    "1b": (128_000, 160_000, 1485, 99),
    "1.1": (192_000, 240_000, 3000, 396),
    "1.2": (384_000, 480_000, 6000, 396),
    "1.3": (768_000, 960_000, 11880, 396),
    "2": (2_000_000, 2_500_000, 11880, 396),
    "2.1": (4_000_000, 5_000_000, 19800, 792),
    "2.2": (4_000_000, 5_000_000, 20250, 1620),
    "3": (10_000_000, 12_500_000, 40500, 1620),
    "3.1": (14_000_000, 17_500_000, 108000, 3600),
    "3.2": (20_000_000, 25_000_000, 216000, 5120),
    "4": (20_000_000, 25_000_000, 245760, 8192),
    "4.1": (50_000_000, 62_500_000, 245760, 8192),
    "4.2": (50_000_000, 62_500_000, 522240, 8704),
}
INTRA_REFRESH_MODES = ("cyclic", "adaptive", "both", "cyclicrows")

#: Firmware, not picamera: the VideoCore IV H.264 encoder takes at most 1920 pixels
#: a side (MAX_W_CODEC/MAX_H_CODEC of the bcm2835-codec driver, which drives the same
#: firmware component). picamera does not check it; enabling the port fails.
H264_MAX_SIDE = 1920

#: encoders.py: PiRawMixin.RAW_ENCODINGS (bytes per pixel); 'yuv' is not faked
RAW_BYTES_PER_PIXEL = {"rgb": 3, "bgr": 3, "rgba": 4, "bgra": 4}
RAW_FORMATS = ("yuv", "rgb", "rgba", "bgr", "bgra")
#: what the GPU leaves in the padding of a raw frame is unspecified; a visible value
PADDING_BYTE = 0xA5
#: JPEG quality when the user gives none ("0 is a reasonable default", start_recording's doc)
DEFAULT_MJPEG_QUALITY = 80
DEFAULT_JPEG_QUALITY = 85  # picamera.PiImageEncoder's default


def open_stream(output):
    """mmalobj.open_stream: a file name is opened (and later closed by us); an object
    with ``write`` is used as it is. (Writable buffers are not faked.)"""
    if isinstance(output, bytes):
        output = output.decode("utf-8")
    if isinstance(output, str):
        return open(output, "wb", buffering=65536), True
    if not callable(getattr(output, "write", None)):
        raise PiCameraValueError("the fake picamera takes file names and objects with write()")
    return output, False


def close_stream(stream, opened: bool) -> None:
    """mmalobj.close_stream: close what we opened, else flush if the object can."""
    if opened:
        stream.close()
    else:
        flush = getattr(stream, "flush", None)
        if flush is not None:
            flush()


class OutputPort:
    """An encoder's output port (mmalobj.MMALPort): a pool of buffers, one callback thread.

    ``send`` is called on the camera's sensor thread, ``enable``/``disable`` on the
    thread that starts or stops the encoder, the callback on the port's own thread.
    As in mmalobj.MMALPort.enable's wrapper, once the callback returns True the port
    is stopped: it stays enabled but no further buffer reaches Python, and its buffers
    are not returned, so the GPU drops every later frame for it.
    """

    def __init__(self, name: str, pool_buffers: int):
        self.name = name
        self._pool_buffers = pool_buffers
        # guards _queue, _enabled, _stopped and _frozen, shared by the three threads
        self._cond = threading.Condition()
        self._queue: Deque[MMALBuffer] = deque()
        self._enabled = False
        self._stopped = True
        self._frozen = False
        self._thread: Optional[threading.Thread] = None

    @property
    def enabled(self) -> bool:
        with self._cond:
            return self._enabled

    @property
    def stopped(self) -> bool:
        with self._cond:
            return self._stopped

    def enable(self, callback) -> None:
        with self._cond:
            self._enabled, self._stopped = True, False
            self._queue.clear()
        self._thread = threading.Thread(
            target=self._run, args=(callback,), name=f"fake-mmal-{self.name}", daemon=True
        )
        self._thread.start()

    def disable(self) -> None:
        with self._cond:
            self._enabled = False
            self._queue.clear()
            self._cond.notify_all()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def has_room(self) -> bool:
        """Whether the GPU can output another frame (a free buffer in the pool)."""
        with self._cond:
            return self._enabled and not self._stopped and len(self._queue) < self._pool_buffers

    def send(self, buffers: List[MMALBuffer]) -> None:
        with self._cond:
            if self._enabled:
                self._queue.extend(buffers)
                self._cond.notify_all()

    def freeze(self, frozen: bool) -> None:
        """A test fault: stop (or resume) callbacks without an error."""
        with self._cond:
            self._frozen = frozen
            self._cond.notify_all()

    def _next_buffer(self) -> Optional[MMALBuffer]:
        with self._cond:
            while True:
                if not self._enabled:
                    return None
                if self._queue and not self._frozen:
                    wait = self._queue[0].due - time.monotonic()
                    if wait <= 0:
                        return self._queue.popleft()
                    self._cond.wait(wait)
                else:
                    self._cond.wait()

    def _run(self, callback) -> None:
        while True:
            buf = self._next_buffer()
            if buf is None:
                return
            if self.stopped:
                continue  # the buffer is never returned: the pool runs dry
            if callback(self, buf):
                with self._cond:
                    self._stopped = True


def split_headers(data: bytes) -> Tuple[bytes, bytes]:
    """(SPS+PPS, the picture) of one access unit; the encoder puts headers first."""
    i = 0
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0 or i + 3 >= len(data):
            return b"", data
        if data[i + 3] & 0x1F not in (7, 8):  # the first NAL unit that is no header
            start = i - 1 if i > 0 and data[i - 1] == 0 else i
            return data[:start], data[start:]
        i += 3


class FakeEncoder:
    """picamera.encoders.PiEncoder for one splitter port (or the still port).

    Built and started on the caller's thread; ``gpu_frame`` runs on the sensor
    thread, ``_callback`` on the port's callback thread.
    """

    def __init__(self, camera, splitter_port: Optional[int], format: str, resize, **options):
        self.camera = camera
        self.splitter_port = splitter_port  # None: the camera's still port
        self.format = format
        self.outputs: Dict[int, tuple] = {}
        self.outputs_lock = threading.Lock()  # guards outputs (encoders.py: PiEncoder)
        self.exception: Optional[BaseException] = None
        self.event = threading.Event()
        self.fail_next = False  # a test fault: the next callback raises
        # guards the GPU half against close() on another thread
        self._gpu_lock = threading.Lock()
        self.frames_dropped = 0
        name = f"port{splitter_port}" if splitter_port is not None else "still"
        self.port = OutputPort(name, camera._knobs.pool_buffers)
        self.resize = self._check_resize(resize)
        self._configure(format, **options)

    @staticmethod
    def _check_resize(resize):
        if resize is None:
            return None
        try:
            w, h = (int(v) for v in resize)
        except (TypeError, ValueError):
            raise PiCameraValueError(f"Invalid resolution {resize!r}") from None
        if w <= 0 or h <= 0:
            raise PiCameraValueError(f"Invalid resolution {resize!r}")
        return w, h

    def _configure(self, format: str, **options) -> None:
        raise NotImplementedError

    # the ARM half (port callback thread)

    def _callback(self, port, buf: MMALBuffer) -> bool:
        """encoders.py: PiEncoder._callback. An exception from writing is kept in
        ``exception`` (raised later by wait/stop) and ends the callbacks for good."""
        try:
            stop = self._callback_write(buf)
        except Exception as e:
            stop = True
            self.exception = e
        if stop:
            self.event.set()
        return stop

    def _raise_injected_fault(self) -> None:
        if self.fail_next:
            self.fail_next = False
            raise PiCameraMMALError(-1, f"fake fault injected on {self.port.name}")

    def _callback_write(self, buf: MMALBuffer, key: int = PiVideoFrameType.frame) -> bool:
        """encoders.py: PiEncoder._callback_write: write to the output for ``key``; an
        output that takes fewer bytes than given is an error (None counts as all)."""
        self._raise_injected_fault()
        if buf.length:
            with self.outputs_lock:
                entry = self.outputs.get(key)
                if entry is not None:
                    written = entry[0].write(buf.data)
                    if written is not None and written != buf.length:
                        raise PiCameraIOError(
                            f"Failed to write {buf.length} bytes from buffer to output {entry[0]!r}"
                        )
        return bool(buf.flags & MMAL_BUFFER_HEADER_FLAG_EOS)

    def _open_output(self, output, key: int = PiVideoFrameType.frame) -> None:
        with self.outputs_lock:
            self.outputs[key] = open_stream(output)

    def _close_output(self, key: int = PiVideoFrameType.frame) -> None:
        with self.outputs_lock:
            entry = self.outputs.pop(key, None)
        if entry is not None:
            close_stream(*entry)

    # lifecycle (caller's thread)

    @property
    def active(self) -> bool:
        return self.port.enabled

    def start(self, output) -> None:
        self.event.clear()
        self.exception = None
        self._open_output(output)
        with self.camera._encoders_lock:
            self.port.enable(self._callback)
            self.camera._start_capture(self)

    def wait(self, timeout=None) -> bool:
        """encoders.py: PiEncoder.wait: True once finished; re-raises a callback's error."""
        result = self.event.wait(timeout)
        if result:
            self.stop()
            if self.exception is not None:
                raise self.exception
        return result

    def stop(self) -> None:
        if self.active:
            with self.camera._encoders_lock:
                self.camera._stop_capture(self)
            self.port.disable()
        self.event.set()
        self._close_output()

    def close(self) -> None:
        self.stop()
        with self._gpu_lock:
            self._release()

    def _release(self) -> None:
        """Free the GPU half's resources; called once the port is stopped."""

    # the GPU half (sensor thread)

    def gpu_frame(self, image: Image.Image, pts: int, captured: float) -> None:
        """Turn one captured picture into buffers for the port, or drop it if the
        port has no free buffer (as the GPU drops frames nobody takes)."""
        with self._gpu_lock:
            if not self.port.has_room():
                self.frames_dropped += 1
                return
            due = captured + self.camera._knobs.latency
            self.port.send(self._buffers(image, pts, due))

    def _buffers(self, image: Image.Image, pts: int, due: float) -> List[MMALBuffer]:
        raise NotImplementedError

    def _pieces(self, data: bytes, flags: int, pts: int, due: float) -> List[MMALBuffer]:
        """One encoded frame in buffers of at most the output buffer size; FRAME_END on the last."""
        size = max(self.camera._knobs.buffer_size, 1)
        chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        last = len(chunks) - 1
        return [
            MMALBuffer(
                chunk, flags | (MMAL_BUFFER_HEADER_FLAG_FRAME_END if n == last else 0), pts, due
            )
            for n, chunk in enumerate(chunks)
        ]


class RawFrameShape:
    """The size of a raw frame and of the picture in it (encoders.py: PiRawMixin.__init__).

    - Through the splitter without a resizer, for any format but 'yuv', the frame is
      the camera's picture with its width rounded up to 16 and its height to 16.
    - Otherwise widths round up to 32 (heights to 16); with a resizer, picamera asks
      the resizer for the rounded size itself, so the whole picture is scaled into
      it and there is no padding.
    - rgb and bgr through a resizer come out as rgba/bgra; picamera strips the alpha
      byte in the callback (PiRawMixin._callback_write).
    Both roundings warn with PiCameraResolutionRounded.
    """

    def __init__(self, format: str, resize, camera_size, from_splitter: bool):
        self.strip_alpha = False
        if resize is not None:
            width, height = resize
            if format in ("rgb", "bgr"):
                self.strip_alpha = True
                warnings.warn(
                    PiCameraAlphaStripping(
                        "using alpha-stripping to convert to non-alpha format; you may find "
                        "the equivalent alpha format faster"
                    ),
                    stacklevel=4,
                )
        else:
            width, height = camera_size
        if resize is None and format != "yuv" and from_splitter:
            frame_width = align_up(width, 16)
        else:
            frame_width = align_up(width, 32)
        frame_height = align_up(height, 16)
        if (frame_width, frame_height) != (width, height):
            warnings.warn(
                PiCameraResolutionRounded(
                    f"frame size rounded up from {width}x{height} to {frame_width}x{frame_height}"
                ),
                stacklevel=4,
            )
        self.frame_size = (frame_width, frame_height)
        # the resizer scales the whole picture into the rounded size
        self.resizer_size = self.frame_size if resize is not None else None
        self.picture_size = self.frame_size if resize is not None else (width, height)
        self.bytes_per_pixel = RAW_BYTES_PER_PIXEL[format]
        self.gpu_bytes_per_pixel = 4 if self.strip_alpha else self.bytes_per_pixel
        self.format = format

    @property
    def length(self) -> int:
        """Bytes of one frame as the user gets it (picamera's _frame_size)."""
        w, h = self.frame_size
        return w * h * self.bytes_per_pixel

    def gpu_bytes(self, image: Image.Image) -> bytes:
        """The frame as the GPU writes it: the picture top-left, padding right and below."""
        if self.resizer_size is not None and image.size != self.resizer_size:
            image = image.resize(self.resizer_size, Image.BILINEAR)
        rgb = np.asarray(image.convert("RGB"))
        if self.format in ("bgr", "bgra"):
            rgb = rgb[..., ::-1]
        w, h = self.frame_size
        out = np.full((h, w, self.gpu_bytes_per_pixel), PADDING_BYTE, dtype=np.uint8)
        ph, pw = rgb.shape[:2]
        out[:ph, :pw, :3] = rgb
        if self.gpu_bytes_per_pixel == 4:
            out[:ph, :pw, 3] = 255
        return out.tobytes()

    def strip(self, data: bytes) -> bytes:
        """PiRawMixin._callback_write: drop every fourth byte of an rgba/bgra buffer."""
        pixels = np.frombuffer(data, dtype=np.uint8).reshape(-1, 4)
        return pixels[:, :3].tobytes()


class VideoEncoder(FakeEncoder):
    """picamera's PiVideoEncoder/PiCookedVideoEncoder: H.264 or MJPEG on a splitter port."""

    def __init__(self, camera, splitter_port, format, resize, **options):
        self._next_output: List[dict] = []
        self.frame: Optional[PiVideoFrame] = None
        self._h264: Optional[H264Encoder] = None
        self._headers_sent = False
        self._pictures = 0
        super().__init__(camera, splitter_port, format, resize, **options)

    @property
    def frame_size(self) -> Tuple[int, int]:
        """The encoder's picture: the resize, or the camera's resolution."""
        return self.resize or tuple(self.camera.resolution)

    def _configure(
        self,
        format,
        bitrate=17000000,
        intra_period=None,
        profile="high",
        level="4",
        quantization=0,
        quality=0,
        inline_headers=True,
        sei=False,
        sps_timing=False,
        motion_output=None,
        intra_refresh=None,
    ):
        """encoders.py: PiVideoEncoder._create_encoder: the options and their checks."""
        quality = quality or quantization
        self.quality = quality
        if format == "mjpeg":
            self._intra_period = 1  # every MJPEG frame is a whole picture
            return
        if format != "h264":
            raise PiCameraValueError(f"Unsupported format {format}")
        if profile not in H264_PROFILES:
            raise PiCameraValueError(f"Invalid H.264 profile {profile}")
        if level not in H264_LEVELS:
            raise PiCameraValueError(f"Invalid H.264 level {level}")
        self.level = H264_LEVELS[level]
        other_rate, high_rate, mb_per_s_limit, mb_limit = H264_LEVEL_LIMITS[self.level]
        bitrate_limit = high_rate if profile == "high" else other_rate
        if bitrate > bitrate_limit:
            raise PiCameraValueError(
                f"bitrate {bitrate} exceeds {bitrate_limit} which is the limit for the "
                "selected H.264 level and profile"
            )
        # macroblocks are 16x16; the size is the encoder's output port's (the resize)
        width, height = self.frame_size
        macroblocks = (align_up(width, 16) // 16) * (align_up(height, 16) // 16)
        if macroblocks > mb_limit:
            raise PiCameraValueError(
                f"output resolution {width}x{height} exceeds macroblock limit ({mb_limit}) "
                "for the selected H.264 profile and level"
            )
        # the camera's frame rate, not the output's (there is no frame rate per port)
        framerate = float(self.camera.framerate + self.camera.framerate_delta)
        if macroblocks * framerate > mb_per_s_limit:
            raise PiCameraValueError(
                f"output resolution and framerate exceeds macroblocks/s limit "
                f"({mb_per_s_limit}) for the selected H.264 profile and level"
            )
        if motion_output is not None:
            raise PiCameraValueError("the fake picamera does not produce motion_output")
        if intra_refresh is not None and intra_refresh not in INTRA_REFRESH_MODES:
            raise PiCameraValueError(f"Invalid intra_refresh {intra_refresh}")
        if max(width, height) > H264_MAX_SIDE:
            raise PiCameraMMALError(
                -1, f"Failed to enable H.264 encoder at {width}x{height} (firmware limit)"
            )
        self._intra_period = DEFAULT_INTRA_PERIOD if intra_period is None else intra_period
        self.inline_headers = inline_headers
        # 0 is one keyframe and then P-frames only; libx264 needs a number
        keyint = self._intra_period if self._intra_period > 0 else 1 << 20
        self._h264 = H264Encoder(width, height, keyint)

    def start(self, output, motion_output=None) -> None:
        """PiVideoEncoder.start: the frame bookkeeping starts over."""
        self.frame = PiVideoFrame(0, None, 0, 0, 0, 0, False)
        super().start(output)

    def request_key_frame(self) -> None:
        """picamera asks the firmware for an I-frame "as soon as possible"; the fake
        does not force one, so a split waits for the next keyframe of the intra
        period (PiCamera.request_key_frame says the next frame is not guaranteed)."""

    def split(self, output, motion_output=None) -> None:
        """encoders.py: PiVideoEncoder.split: switch outputs at the next split point
        (an SPS header for H.264, any frame for MJPEG) and wait for it."""
        with self.outputs_lock:
            outputs = {}
            if output is not None:
                outputs[PiVideoFrameType.frame] = output
            if motion_output is not None:
                outputs[PiVideoFrameType.motion_data] = motion_output
            self._next_output.append(outputs)
        framerate = float(self.camera.framerate + self.camera.framerate_delta)
        timeout = max(15.0, self._intra_period / framerate * 3.0)
        if self._intra_period > 1:
            self.request_key_frame()
        if not self.event.wait(timeout):
            raise PiCameraRuntimeError("Timed out waiting for a split point")
        self.event.clear()

    def _callback_write(self, buf: MMALBuffer, key: int = PiVideoFrameType.frame) -> bool:
        """encoders.py: PiVideoEncoder._callback_write: ``frame`` describes this buffer
        before it is written (a new index after a complete frame; the timestamp is
        None when MMAL gives 0 or "time unknown"), and a pending split happens here."""
        last, flags = self.frame, buf.flags
        side_info = bool(flags & MMAL_BUFFER_HEADER_FLAG_CODECSIDEINFO)
        if flags & MMAL_BUFFER_HEADER_FLAG_KEYFRAME:
            frame_type = PiVideoFrameType.key_frame
        elif flags & MMAL_BUFFER_HEADER_FLAG_CONFIG:
            frame_type = PiVideoFrameType.sps_header
        elif side_info:
            frame_type = PiVideoFrameType.motion_data
        else:
            frame_type = PiVideoFrameType.frame
        frame = PiVideoFrame(
            index=last.index + 1 if last.complete else last.index,
            frame_type=frame_type,
            frame_size=buf.length if last.complete else last.frame_size + buf.length,
            video_size=last.video_size if side_info else last.video_size + buf.length,
            split_size=last.split_size if side_info else last.split_size + buf.length,
            timestamp=None if buf.pts in (0, MMAL_TIME_UNKNOWN) else buf.pts,
            complete=bool(flags & MMAL_BUFFER_HEADER_FLAG_FRAME_END),
        )
        if self._intra_period == 1 or flags & MMAL_BUFFER_HEADER_FLAG_CONFIG:
            with self.outputs_lock:
                pending = self._next_output.pop(0) if self._next_output else None
            if pending:
                for pending_key, pending_output in pending.items():
                    self._close_output(pending_key)
                    self._open_output(pending_output, pending_key)
                    if pending_key == PiVideoFrameType.frame:
                        frame = frame._replace(split_size=0)
                self.event.set()
        if side_info:
            key = PiVideoFrameType.motion_data
        self.frame = frame
        return super()._callback_write(buf, key)

    def _release(self) -> None:
        if self._h264 is not None:
            self._h264.close()
            self._h264 = None

    def _picture_pts(self, pts: int) -> int:
        """The encoders occasionally lose a timestamp (frames.py: PiVideoFrame.timestamp)."""
        self._pictures += 1
        every = self.camera._knobs.unknown_pts_every
        return MMAL_TIME_UNKNOWN if every and self._pictures % every == 0 else pts

    def _buffers(self, image: Image.Image, pts: int, due: float) -> List[MMALBuffer]:
        picture = image if image.size == self.frame_size else image.resize(self.frame_size)
        pts = self._picture_pts(pts)
        if self.format == "mjpeg":
            out = io.BytesIO()
            picture.save(out, "JPEG", quality=self.quality or DEFAULT_MJPEG_QUALITY)
            return self._pieces(out.getvalue(), MMAL_BUFFER_HEADER_FLAG_KEYFRAME, pts, due)
        buffers: List[MMALBuffer] = []
        for data, keyframe in self._h264.encode(np.asarray(picture)):
            header, body = split_headers(data)
            # inline_headers repeats SPS/PPS before every keyframe, in a buffer of its own
            if header and (self.inline_headers or not self._headers_sent):
                self._headers_sent = True
                flags = MMAL_BUFFER_HEADER_FLAG_CONFIG | MMAL_BUFFER_HEADER_FLAG_FRAME_END
                buffers.append(MMALBuffer(header, flags, MMAL_TIME_UNKNOWN, due))
            flags = MMAL_BUFFER_HEADER_FLAG_KEYFRAME if keyframe else 0
            buffers += self._pieces(body, flags, pts, due)
        return buffers


class RawVideoEncoder(VideoEncoder):
    """picamera's PiRawVideoEncoder: unencoded frames on a splitter port."""

    def _configure(self, format):  # no options, as PiRawVideoEncoder._create_encoder
        if format == "yuv":
            raise PiCameraValueError("the fake picamera does not produce 'yuv'")
        self.shape = RawFrameShape(format, self.resize, self.camera.resolution, True)
        self._intra_period = 1

    def _callback_write(self, buf: MMALBuffer, key: int = PiVideoFrameType.frame) -> bool:
        if self.shape.strip_alpha:
            buf = MMALBuffer(self.shape.strip(buf.data), buf.flags, buf.pts, buf.due)
        return super()._callback_write(buf, key)

    def _buffers(self, image: Image.Image, pts: int, due: float) -> List[MMALBuffer]:
        flags = MMAL_BUFFER_HEADER_FLAG_FRAME_END
        return [MMALBuffer(self.shape.gpu_bytes(image), flags, pts, due)]


class MultiImageEncoder(FakeEncoder):
    """picamera's PiRawMultiImageEncoder and PiCookedMultiImageEncoder (capture and
    capture_sequence): one picture per output, then the next output; finished when
    the outputs run out."""

    def _configure(self, format, quality=DEFAULT_JPEG_QUALITY, thumbnail=None, restart=0):
        self.quality = quality
        self.shape: Optional[RawFrameShape] = None
        if format in RAW_FORMATS:
            if format == "yuv":
                raise PiCameraValueError("the fake picamera does not produce 'yuv'")
            from_splitter = self.splitter_port is not None
            self.shape = RawFrameShape(format, self.resize, self.camera.resolution, from_splitter)
        elif format != "jpeg":
            raise PiCameraValueError(f"the fake picamera does not produce {format!r} images")
        self._outputs_left: Iterator = iter(())
        self._image_left = 0

    def _open_output(self, outputs, key: int = PiVideoFrameType.frame) -> None:
        self._outputs_left = iter(outputs)
        self._next_output(key)

    def _next_output(self, key: int = PiVideoFrameType.frame) -> None:
        """PiMultiImageEncoder._next_output (and PiRawMultiImageEncoder's reset of the size)."""
        self._close_output(key)
        FakeEncoder._open_output(self, next(self._outputs_left), key)
        if self.shape is not None:
            self._image_left = self.shape.length

    def _callback_write(self, buf: MMALBuffer, key: int = PiVideoFrameType.frame) -> bool:
        """PiMultiImageEncoder/PiRawImageMixin._callback_write: a raw image ends when its
        bytes are written, an encoded one at FRAME_END; StopIteration ends the capture."""
        try:
            if self.shape is not None:
                if self.shape.strip_alpha:
                    buf = MMALBuffer(self.shape.strip(buf.data), buf.flags, buf.pts, buf.due)
                if self._image_left > 0:
                    super()._callback_write(buf, key)
                    self._image_left -= buf.length
                done = self._image_left <= 0
            else:
                done = super()._callback_write(buf, key)
            if done or buf.flags & MMAL_BUFFER_HEADER_FLAG_FRAME_END:
                self._next_output(key)
            return False
        except StopIteration:
            return True

    def start(self, outputs) -> None:
        super().start(outputs)

    def _buffers(self, image: Image.Image, pts: int, due: float) -> List[MMALBuffer]:
        flags = MMAL_BUFFER_HEADER_FLAG_FRAME_END
        if self.shape is not None:
            return [MMALBuffer(self.shape.gpu_bytes(image), flags, pts, due)]
        picture = image if self.resize is None else image.resize(self.resize)
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=self.quality)
        return self._pieces(out.getvalue(), 0, pts, due)
