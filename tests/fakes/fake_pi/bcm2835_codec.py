"""/dev/video11 on a Pi 4 and earlier: the bcm2835-codec driver's video encoder, in software.

A V4L2 memory-to-memory device, modelled on the Raspberry Pi kernel's
drivers/staging/vc04_services/bcm2835-codec/bcm2835-v4l2-codec.c as Picamera2's
V4L2Encoder drives it:

- formats: YUV420 pictures in (the OUTPUT queue, dma-buf), H.264 or MJPEG out
  (the CAPTURE queue, mmap). VIDIOC_S_FMT clamps both sides to 1920x1920
  (MAX_W_CODEC, MAX_H_CODEC), raises picture sizes to 32x32 (MIN_W, MIN_H),
  aligns a YUV420 encoder input's bytesperline to 64 and sizes compressed
  buffers at 512 KiB up to 720p, 768 KiB above (vidioc_try_fmt), and refuses a
  change while buffers are allocated (EBUSY);
- controls, with the driver's ranges: bitrate 25 kbit/s to 25 Mbit/s in
  25 kbit/s steps (default 10 Mbit/s), bitrate mode, repeated sequence headers
  (default off), I-period / GOP size (default 60), H.264 level (menu up to 5.1,
  default 4.0) and profile (baseline, constrained baseline, main, high; default
  high), min/max QP, forced keyframes; integers are clamped to their range, menu
  values outside it refused, unknown controls refused (v4l2-ctrls);
- timestamps are copied from each picture to its encoded buffer
  (V4L2_BUF_FLAG_TIMESTAMP_COPY), keyframes flagged V4L2_BUF_FLAG_KEYFRAME, and
  the SPS/PPS arrive in the same buffer as the picture after them;
- poll: POLLOUT when a picture buffer can be dequeued, POLLIN when an encoded one can.

The VideoCore's encoder is libx264 (through PyAV) here, fed the controls above:
keyframes exactly every I-period, headers before every keyframe only when asked,
the bitrate, profile and level (the level goes into the SPS). A JPEG encoder
for the MJPEG format encodes the picture's planes as they are (simplejpeg), as
the hardware does.

Test hooks: FAKE_PI_FAULTS (see kernel.fault) makes an ioctl fail, by its
videodev2 name ("ioctl:VIDIOC_S_FMT=EINVAL"); while the file ``freeze-h264``
exists in FAKE_PI_CONTROL_DIR, the H.264 encoder goes on taking pictures and
returning their buffers but encodes nothing (Picamera2 issue 1228: the encoder
stops without an error).
"""

from __future__ import annotations

import collections
import ctypes
import errno
import logging
import os
import select
import threading
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Deque, Dict, List, Optional

import av
import numpy as np
import simplejpeg
import videodev2 as v4l2

from .freeze import h264_frozen
from .kernel import Kernel, VirtualFile, fault, os_error

logger = logging.getLogger(__name__)

CARD = "bcm2835-codec-encode"
MIN_W = MIN_H = 32
MAX_W_CODEC = MAX_H_CODEC = 1920
YUV420_BYTESPERLINE_ALIGN = 64  # the encode role's column of bytesperline_align
COMPRESSED_BUFFER_720P, COMPRESSED_BUFFER_ABOVE = 512 << 10, 768 << 10
PAGE = os.sysconf("SC_PAGE_SIZE")

OUTPUT, CAPTURE = v4l2.V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE, v4l2.V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE

_LEVELS = ["1", "1b", "1.1", "1.2", "1.3", "2", "2.1", "2.2", "3", "3.1", "3.2"]
_LEVELS += ["4", "4.1", "4.2", "5", "5.1"]  # index = V4L2_MPEG_VIDEO_H264_LEVEL_*
_PROFILES = {
    v4l2.V4L2_MPEG_VIDEO_H264_PROFILE_BASELINE: "baseline",
    v4l2.V4L2_MPEG_VIDEO_H264_PROFILE_CONSTRAINED_BASELINE: "baseline",
    v4l2.V4L2_MPEG_VIDEO_H264_PROFILE_MAIN: "main",
    v4l2.V4L2_MPEG_VIDEO_H264_PROFILE_HIGH: "high",
}


@dataclass
class Control:
    minimum: int
    maximum: int
    step: int
    default: int
    menu: Optional[set] = None  # the allowed values of a menu control

    def validate(self, value: int) -> int:
        if self.menu is not None:
            if not self.minimum <= value <= self.maximum:
                raise os_error(errno.ERANGE)
            if value not in self.menu:
                raise os_error(errno.EINVAL)
            return value
        value = min(max(value, self.minimum), self.maximum)
        return self.minimum + (value - self.minimum + self.step // 2) // self.step * self.step


def _controls() -> Dict[int, Control]:
    c = v4l2
    big = 0x7FFFFFFF
    return {
        c.V4L2_CID_MPEG_VIDEO_BITRATE_MODE: Control(0, 1, 1, 0, {0, 1}),
        c.V4L2_CID_MPEG_VIDEO_BITRATE: Control(25_000, 25_000_000, 25_000, 10_000_000),
        c.V4L2_CID_MPEG_VIDEO_HEADER_MODE: Control(0, 1, 1, 1, {0, 1}),
        c.V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER: Control(0, 1, 1, 0),
        c.V4L2_CID_MPEG_VIDEO_H264_I_PERIOD: Control(0, big, 1, 60),
        c.V4L2_CID_MPEG_VIDEO_GOP_SIZE: Control(0, big, 1, 60),
        c.V4L2_CID_MPEG_VIDEO_H264_LEVEL: Control(0, 15, 1, 11, set(range(16))),
        c.V4L2_CID_MPEG_VIDEO_H264_PROFILE: Control(0, 4, 1, 4, {0, 1, 2, 4}),
        c.V4L2_CID_MPEG_VIDEO_H264_MIN_QP: Control(0, 51, 1, 20),
        c.V4L2_CID_MPEG_VIDEO_H264_MAX_QP: Control(0, 51, 1, 51),
        c.V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME: Control(0, 0, 1, 0),
        c.V4L2_CID_MPEG_VIDEO_B_FRAMES: Control(0, 0, 1, 0),
    }


@dataclass
class Format:
    width: int = 32
    height: int = 32
    pixelformat: int = 0
    bytesperline: int = 0
    sizeimage: int = 0


@dataclass
class Buffer:
    index: int
    offset: int = 0  # CAPTURE: where its memory starts in the device's memfd
    length: int = 0
    fd: int = -1  # OUTPUT: our reference to the queued dma-buf
    bytesused: int = 0
    flags: int = 0
    timestamp: tuple = (0, 0)
    extra: dict = field(default_factory=dict)


class EncoderFile(VirtualFile):
    """One open of /dev/video11 (a driver "context"); its own thread plays the VideoCore."""

    def __init__(self, kernel: Kernel):
        super().__init__(kernel, CARD)
        self.formats = {
            OUTPUT: Format(pixelformat=v4l2.V4L2_PIX_FMT_YUV420),
            CAPTURE: Format(pixelformat=v4l2.V4L2_PIX_FMT_H264),
        }
        self.controls = _controls()
        self.values = {cid: ctl.default for cid, ctl in self.controls.items()}
        self.framerate = Fraction(30)
        self.buffers: Dict[int, List[Buffer]] = {OUTPUT: [], CAPTURE: []}
        self.queued: Dict[int, Deque[Buffer]] = {
            OUTPUT: collections.deque(),
            CAPTURE: collections.deque(),
        }
        self.done: Dict[int, Deque[Buffer]] = {
            OUTPUT: collections.deque(),
            CAPTURE: collections.deque(),
        }
        self.streaming = {OUTPUT: False, CAPTURE: False}
        self.encoded = 0  # pictures that produced output (read by tests)
        self._thread: Optional[threading.Thread] = None

    # ioctls (the application's threads); state is guarded by kernel.changed

    def ioctl(self, request, arg):
        name = _IOCTL_NAMES.get(request)
        if name is None:
            return super().ioctl(request, arg)
        code = fault("ioctl:" + name)
        if code is not None:
            raise os_error(code)
        with self.kernel.changed:
            result = getattr(self, "_" + name.lower())(arg)
            self.kernel.changed.notify_all()
            return result

    def _vidioc_querycap(self, arg):
        from .nodes import fill_capability

        caps = v4l2.V4L2_CAP_VIDEO_M2M_MPLANE | v4l2.V4L2_CAP_STREAMING
        return fill_capability(arg, "bcm2835-codec", CARD, caps)

    def _vidioc_s_fmt(self, arg):
        f = v4l2.v4l2_format.from_buffer(arg)
        if f.type not in self.formats:
            raise os_error(errno.EINVAL)
        if self.buffers[f.type]:
            raise os_error(errno.EBUSY)
        pix = f.fmt.pix_mp
        compressed = f.type == CAPTURE
        if compressed and pix.pixelformat not in (v4l2.V4L2_PIX_FMT_H264, v4l2.V4L2_PIX_FMT_MJPEG):
            pix.pixelformat = v4l2.V4L2_PIX_FMT_H264
        if not compressed and pix.pixelformat != v4l2.V4L2_PIX_FMT_YUV420:
            raise os_error(errno.EINVAL)  # the only input format modelled
        pix.width, pix.height = min(pix.width, MAX_W_CODEC), min(pix.height, MAX_H_CODEC)
        plane = pix.plane_fmt[0]
        if compressed:
            size = (
                COMPRESSED_BUFFER_ABOVE
                if pix.width * pix.height > 1280 * 720
                else COMPRESSED_BUFFER_720P
            )
            plane.sizeimage = max(plane.sizeimage, size)
            plane.bytesperline = 0
        else:
            pix.width, pix.height = max(pix.width, MIN_W), max(pix.height, MIN_H)
            line = max(plane.bytesperline, pix.width)
            plane.bytesperline = -(-line // YUV420_BYTESPERLINE_ALIGN) * YUV420_BYTESPERLINE_ALIGN
            plane.sizeimage = plane.bytesperline * pix.height * 3 // 2
        pix.num_planes = 1
        self.formats[f.type] = Format(
            pix.width, pix.height, pix.pixelformat, plane.bytesperline, plane.sizeimage
        )
        return 0

    def _vidioc_s_ctrl(self, arg):
        ctrl = v4l2.v4l2_control.from_buffer(arg)
        ctrl.value = self._set_control(ctrl.id, ctrl.value)
        return 0

    def _vidioc_s_ext_ctrls(self, arg):
        ext = v4l2.v4l2_ext_controls.from_buffer(arg)
        for n in range(ext.count):
            if ext.controls[n].id not in self.controls:
                ext.error_idx = ext.count  # failed while validating, before any was set
                raise os_error(errno.EINVAL)
        for n in range(ext.count):
            item = ext.controls[n]
            item.value = self._set_control(item.id, item.value)
        return 0

    def _set_control(self, cid: int, value: int) -> int:
        control = self.controls.get(cid)
        if control is None:
            raise os_error(errno.EINVAL)
        value = control.validate(value)
        self.values[cid] = value
        if cid == v4l2.V4L2_CID_MPEG_VIDEO_H264_I_PERIOD:
            self.values[v4l2.V4L2_CID_MPEG_VIDEO_GOP_SIZE] = value  # the driver mirrors them
        return value

    def _vidioc_s_parm(self, arg):
        parm = v4l2.v4l2_streamparm.from_buffer(arg)
        per_frame = parm.parm.output.timeperframe
        if parm.type != OUTPUT or not per_frame.numerator or not per_frame.denominator:
            raise os_error(errno.EINVAL)
        self.framerate = Fraction(per_frame.denominator, per_frame.numerator)
        return 0

    def _vidioc_reqbufs(self, arg):
        req = v4l2.v4l2_requestbuffers.from_buffer(arg)
        if req.type not in self.buffers or self.streaming[req.type]:
            raise os_error(errno.EINVAL if req.type not in self.buffers else errno.EBUSY)
        expected = v4l2.V4L2_MEMORY_DMABUF if req.type == OUTPUT else v4l2.V4L2_MEMORY_MMAP
        if req.memory != expected:
            raise os_error(errno.EINVAL)  # only the memory types Picamera2 uses are modelled
        for buf in self.queued[req.type]:
            self._release(buf)
        self.queued[req.type].clear()
        self.done[req.type].clear()
        count = min(req.count, 32)
        if req.type == CAPTURE:
            size = -(-self.formats[CAPTURE].sizeimage // PAGE) * PAGE
            os.ftruncate(self.fd, size * count)
            self.buffers[CAPTURE] = [Buffer(n, offset=n * size, length=size) for n in range(count)]
        else:
            self.buffers[OUTPUT] = [Buffer(n) for n in range(count)]
        req.count = count
        return 0

    def _buffer(self, buf_type: int, index: int) -> Buffer:
        if buf_type not in self.buffers or not 0 <= index < len(self.buffers[buf_type]):
            raise os_error(errno.EINVAL)
        return self.buffers[buf_type][index]

    def _vidioc_querybuf(self, arg):
        b = v4l2.v4l2_buffer.from_buffer(arg)
        buf = self._buffer(b.type, b.index)
        if b.type == CAPTURE:
            b.m.planes[0].m.mem_offset = buf.offset
            b.m.planes[0].length = buf.length
        b.length = 1
        return 0

    def _vidioc_qbuf(self, arg):
        b = v4l2.v4l2_buffer.from_buffer(arg)
        buf = self._buffer(b.type, b.index)
        if buf in self.queued[b.type] or buf in self.done[b.type]:
            raise os_error(errno.EINVAL)
        if b.type == OUTPUT:
            plane = b.m.planes[0]
            if os.fstat(plane.m.fd).st_size < plane.bytesused:
                raise os_error(errno.EINVAL)
            buf.fd = os.dup(plane.m.fd)  # the driver holds a reference to the dma-buf
            buf.bytesused = plane.bytesused
            buf.timestamp = (b.timestamp.tv_sec, b.timestamp.tv_usec)
        buf.flags = 0
        self.queued[b.type].append(buf)
        return 0

    def _vidioc_dqbuf(self, arg):
        b = v4l2.v4l2_buffer.from_buffer(arg)
        if b.type not in self.done:
            raise os_error(errno.EINVAL)
        while not self.done[b.type]:
            if not self.streaming[b.type]:
                raise os_error(errno.EINVAL)
            self.kernel.changed.wait()  # a blocking descriptor waits for a buffer
        buf = self.done[b.type].popleft()
        b.index, b.flags = buf.index, buf.flags | v4l2.V4L2_BUF_FLAG_TIMESTAMP_COPY
        b.timestamp.tv_sec, b.timestamp.tv_usec = buf.timestamp
        b.length = 1
        if b.type == CAPTURE:
            b.m.planes[0].bytesused = buf.bytesused
            b.m.planes[0].length = buf.length
        return 0

    def _vidioc_streamon(self, arg):
        buf_type = ctypes.c_uint.from_buffer(arg).value
        if buf_type not in self.streaming:
            raise os_error(errno.EINVAL)
        self.streaming[buf_type] = True
        if all(self.streaming.values()) and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fake-vpu", daemon=True)
            self._thread.start()
        return 0

    def _vidioc_streamoff(self, arg):
        buf_type = ctypes.c_uint.from_buffer(arg).value
        if buf_type not in self.streaming:
            raise os_error(errno.EINVAL)
        self.streaming[buf_type] = False
        for buf in list(self.queued[buf_type]) + list(self.done[buf_type]):
            self._release(buf)
        self.queued[buf_type].clear()
        self.done[buf_type].clear()
        return 0

    @staticmethod
    def _release(buf: Buffer) -> None:
        if buf.fd >= 0:
            os.close(buf.fd)
            buf.fd = -1

    def poll_mask(self) -> int:
        mask = 0
        if self.done[OUTPUT]:
            mask |= select.POLLOUT
        if self.done[CAPTURE]:
            mask |= select.POLLIN
        return mask

    # the VideoCore (its own thread)

    def _running(self) -> bool:
        return all(self.streaming.values()) and self.kernel.lookup(self.fd) is self

    def _run(self) -> None:
        engine = None
        changed = self.kernel.changed
        try:
            while True:
                with changed:
                    while self._running() and not (self.queued[OUTPUT] and self.queued[CAPTURE]):
                        changed.wait(0.5)
                    if not self._running():
                        return
                    picture = self.queued[OUTPUT].popleft()
                    fmt = self.formats[OUTPUT]
                    data = os.pread(picture.fd, picture.bytesused, 0)
                    if engine is None:
                        engine = self._engine()
                frozen = engine.is_h264 and h264_frozen()
                units = [] if frozen else engine.encode(data, fmt, picture.timestamp)
                with changed:
                    self._release(picture)
                    self.done[OUTPUT].append(picture)
                    for unit, keyframe in units:
                        if not self.queued[CAPTURE]:
                            break  # cannot happen: a capture buffer was queued above
                        out = self.queued[CAPTURE].popleft()
                        if len(unit) > out.length:
                            unit, out.flags = unit[: out.length], v4l2.V4L2_BUF_FLAG_ERROR
                        os.pwrite(self.fd, unit, out.offset)
                        out.bytesused = len(unit)
                        out.flags |= v4l2.V4L2_BUF_FLAG_KEYFRAME if keyframe else 0
                        out.timestamp = picture.timestamp
                        self.done[CAPTURE].append(out)
                        self.encoded += 1
                    changed.notify_all()
        except Exception:
            logger.exception("the fake bcm2835-codec encoder failed")
        finally:
            self._thread = None

    def _engine(self):
        fmt = self.formats[CAPTURE]
        if fmt.pixelformat == v4l2.V4L2_PIX_FMT_MJPEG:
            return JpegEngine()
        return H264Engine(
            self.formats[OUTPUT],
            bitrate=self.values[v4l2.V4L2_CID_MPEG_VIDEO_BITRATE],
            gop=self.values[v4l2.V4L2_CID_MPEG_VIDEO_GOP_SIZE],
            repeat_headers=bool(self.values[v4l2.V4L2_CID_MPEG_VIDEO_REPEAT_SEQ_HEADER]),
            profile=_PROFILES[self.values[v4l2.V4L2_CID_MPEG_VIDEO_H264_PROFILE]],
            level=_LEVELS[self.values[v4l2.V4L2_CID_MPEG_VIDEO_H264_LEVEL]],
            qp=(
                self.values[v4l2.V4L2_CID_MPEG_VIDEO_H264_MIN_QP],
                self.values[v4l2.V4L2_CID_MPEG_VIDEO_H264_MAX_QP],
            ),
            framerate=self.framerate,
        )


def yuv420_planes(data: bytes, fmt: Format):
    """Y, U, V arrays of a picture whose rows are ``bytesperline`` apart."""
    w, h, stride = fmt.width, fmt.height, fmt.bytesperline
    flat = np.frombuffer(data, dtype=np.uint8)
    y = flat[: h * stride].reshape(h, stride)[:, :w]
    chroma = (h // 2) * (stride // 2)
    u = flat[h * stride : h * stride + chroma].reshape(h // 2, stride // 2)[:, : w // 2]
    v = flat[h * stride + chroma : h * stride + 2 * chroma].reshape(h // 2, stride // 2)[
        :, : w // 2
    ]
    return y, u, v


class H264Engine:
    """libx264 set up from the driver's controls: one access unit per picture, at once."""

    is_h264 = True

    def __init__(self, fmt: Format, bitrate, gop, repeat_headers, profile, level, qp, framerate):
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = fmt.width, fmt.height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 1_000_000)
        ctx.framerate = framerate
        ctx.bit_rate = bitrate
        keyint = gop if gop > 0 else 1 << 30
        ctx.gop_size = keyint
        if not repeat_headers:
            flags = av.codec.context.Flags
            ctx.flags |= getattr(flags, "global_header", None) or flags.GLOBAL_HEADER
        # no B-frames: the VideoCore encoder makes none (an x264 option, not
        # max_b_frames, which PyAV 10 on Debian 12 lacks)
        params = (
            f"keyint={keyint}:min-keyint={keyint}:scenecut=0:bframes=0:qpmin={qp[0]}:qpmax={qp[1]}"
        )
        ctx.options = {
            "preset": "ultrafast" if profile == "baseline" else "superfast",
            "tune": "zerolatency",
            "profile": profile,
            "level": level,
            "x264-params": params,
        }
        self._ctx = ctx
        self._repeat = repeat_headers
        self._first = True

    def encode(self, data: bytes, fmt: Format, timestamp) -> list:
        y, u, v = yuv420_planes(data, fmt)
        picture = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)])
        frame = av.VideoFrame.from_ndarray(
            picture.reshape(fmt.height * 3 // 2, fmt.width), format="yuv420p"
        )
        frame.pts = timestamp[0] * 1_000_000 + timestamp[1]
        units = []
        for packet in self._ctx.encode(frame):
            unit = bytes(packet)
            if self._first and not self._repeat:
                unit = bytes(self._ctx.extradata or b"") + unit  # headers once, with frame 1
            self._first = False
            units.append((unit, bool(packet.is_keyframe)))
        return units


class JpegEngine:
    """The hardware's JPEG encoder: the planes as they are, labelled as JFIF says (full range)."""

    is_h264 = False

    def encode(self, data: bytes, fmt: Format, timestamp) -> list:
        y, u, v = yuv420_planes(data, fmt)
        y, u, v = (np.ascontiguousarray(p) for p in (y, u, v))
        return [(simplejpeg.encode_jpeg_yuv_planes(y, u, v, 85), True)]


_IOCTL_NAMES = {
    getattr(v4l2, name): name
    for name in (
        "VIDIOC_QUERYCAP",
        "VIDIOC_S_FMT",
        "VIDIOC_S_CTRL",
        "VIDIOC_S_EXT_CTRLS",
        "VIDIOC_S_PARM",
        "VIDIOC_REQBUFS",
        "VIDIOC_QUERYBUF",
        "VIDIOC_QBUF",
        "VIDIOC_DQBUF",
        "VIDIOC_STREAMON",
        "VIDIOC_STREAMOFF",
    )
}
