"""Completed requests, MappedArray and the YUV420 buffers the fake camera fills.

A YUV420 buffer is laid out as libcamera's: ``height`` rows of Y, then the
half-size U and V planes, every row ``stride`` bytes (halved for U and V), the
padding right of each row filled with junk so a reader that ignores the stride
sees it. Conversions go through PyAV (swscale), independent of the backend's own
numpy conversion.
"""

from __future__ import annotations

import av
import numpy as np
from PIL import Image

PADDING_BYTE = 0x3C


def stride_for(width: int) -> int:
    """Row stride of a YUV420 stream: a multiple of 64 bytes (the format's optimal alignment)."""
    return (width + 63) // 64 * 64


def image_to_yuv420(image: Image.Image, stride: int) -> np.ndarray:
    """A (height*3/2, stride) YUV420 buffer holding ``image``."""
    w, h = image.size
    frame = av.VideoFrame.from_ndarray(np.asarray(image.convert("RGB")), format="rgb24")
    i420 = frame.reformat(format="yuv420p").to_ndarray()  # (h*3/2, w), planes packed tight
    flat = i420.reshape(-1)
    buf = np.full(h * 3 // 2 * stride, PADDING_BYTE, dtype=np.uint8)
    y = buf[: h * stride].reshape(h, stride)
    y[:, :w] = flat[: w * h].reshape(h, w)
    chroma = (h // 2) * (stride // 2)
    for n in range(2):
        src = flat[w * h + n * (w * h // 4) : w * h + (n + 1) * (w * h // 4)]
        dst = buf[h * stride + n * chroma : h * stride + (n + 1) * chroma]
        dst.reshape(h // 2, stride // 2)[:, : w // 2] = src.reshape(h // 2, w // 2)
    return buf.reshape(h * 3 // 2, stride)


def yuv420_to_image(buf: np.ndarray, size, stride: int) -> Image.Image:
    """The RGB picture in a (height*3/2, stride) YUV420 buffer."""
    w, h = size
    flat = buf.reshape(-1)
    tight = np.empty(w * h * 3 // 2, dtype=np.uint8)
    tight[: w * h] = flat[: h * stride].reshape(h, stride)[:, :w].reshape(-1)
    chroma = (h // 2) * (stride // 2)
    for n in range(2):
        src = flat[h * stride + n * chroma : h * stride + (n + 1) * chroma]
        plane = src.reshape(h // 2, stride // 2)[:, : w // 2]
        tight[w * h + n * (w * h // 4) : w * h + (n + 1) * (w * h // 4)] = plane.reshape(-1)
    frame = av.VideoFrame.from_ndarray(tight.reshape(h * 3 // 2, w), format="yuv420p")
    return Image.fromarray(frame.to_ndarray(format="rgb24"))


class CompletedRequest:
    """One captured frame: a buffer per configured stream, plus metadata."""

    def __init__(self, picam2, buffers, metadata):
        self.picam2 = picam2
        self.config = picam2.camera_config
        self.buffers = buffers
        self._metadata = metadata

    def get_metadata(self):
        return dict(self._metadata)

    def make_array(self, name):
        return self.buffers[name].copy()


class MappedArray:
    """Writable view of one stream's buffer in a request, shaped as Picamera2 does."""

    def __init__(self, request, stream, reshape=True, write=True):
        if stream not in request.buffers:
            raise KeyError(f"stream {stream!r} is not configured")
        self._request, self._stream, self._reshape = request, stream, reshape
        self._write = write
        self.array = None

    def __enter__(self):
        array = self._request.buffers[self._stream]
        if not self._write:
            array = array.copy()
            array.flags.writeable = False
        self.array = array if self._reshape else array.reshape(-1)
        self._request.picam2.fake_mapped[self._stream] += 1
        return self

    def __exit__(self, *exc):
        self.array = None
        return False
