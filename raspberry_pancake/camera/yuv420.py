"""YUV420 frames as libcamera gives them: plane views, RGB for detection, JPEG for the live view.

libcamera fills a YUV420 buffer with ``height`` rows of Y, then the half-size U
and V planes, each row ``stride`` bytes (halved for U and V). Which Y'CbCr
matrix and range the numbers use is the stream's colour space: Picamera2 asks
for SMPTE 170M (BT.601, limited range) below 1280x720 and Rec.709 (BT.709,
limited range) from there up. A JPEG decoder assumes BT.601 full range (JFIF),
so the live view converts before encoding; without that, black decodes at 16
and white at 235, and the picture looks washed out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

Size = Tuple[int, int]

#: (Kr, Kb) of the BT.601 and BT.709 Y'CbCr matrices
LUMA_WEIGHTS = {"601": (0.299, 0.114), "709": (0.2126, 0.0722)}


@dataclass(frozen=True)
class YCbCr:
    """How a frame's numbers encode colour: the matrix ("601"/"709") and the range."""

    matrix: str = "601"
    full_range: bool = False


JFIF = YCbCr("601", full_range=True)


def ycbcr_of(colour_space) -> YCbCr:
    """The encoding of a libcamera ColorSpace (its ``ycbcrEncoding`` and ``range`` fields)."""
    encoding = getattr(colour_space.ycbcrEncoding, "name", str(colour_space.ycbcrEncoding))
    rng = getattr(colour_space.range, "name", str(colour_space.range))
    return YCbCr("709" if encoding == "Rec709" else "601", full_range=rng == "Full")


def planes(array: np.ndarray, size: Size) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Views of the Y, U and V planes of a YUV420 buffer with any row stride.

    Picamera2 shapes such a buffer (height*3/2, stride): height rows of Y, then
    the U and V planes packed two of their rows per array row.
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


def _normalised(y, u, v, source: YCbCr):
    """Y in 0..1 and chroma in -0.5..0.5, as float32."""
    if source.full_range:
        return (
            y.astype(np.float32) / 255,
            (u.astype(np.float32) - 128) / 255,
            (v.astype(np.float32) - 128) / 255,
        )
    return (
        (y.astype(np.float32) - 16) / 219,
        (u.astype(np.float32) - 128) / 224,
        (v.astype(np.float32) - 128) / 224,
    )


def _ycbcr_to_rgb_matrix(matrix: str) -> np.ndarray:
    kr, kb = LUMA_WEIGHTS[matrix]
    kg = 1 - kr - kb
    return np.array(
        [
            [1.0, 0.0, 2 * (1 - kr)],
            [1.0, -2 * kb * (1 - kb) / kg, -2 * kr * (1 - kr) / kg],
            [1.0, 2 * (1 - kb), 0.0],
        ],
        dtype=np.float64,
    )


def _rgb_to_ycbcr_matrix(matrix: str) -> np.ndarray:
    return np.linalg.inv(_ycbcr_to_rgb_matrix(matrix))


def _upsample(plane: np.ndarray, size: Size) -> np.ndarray:
    w, h = size
    return np.repeat(np.repeat(plane, 2, axis=0), 2, axis=1)[:h, :w]


def to_rgb(array: np.ndarray, size: Size, source: YCbCr) -> np.ndarray:
    """Packed HxWx3 RGB from a YUV420 buffer (chroma upsampled by repetition)."""
    y, u, v = _normalised(*planes(array, size), source)
    m = _ycbcr_to_rgb_matrix(source.matrix).astype(np.float32)
    u, v = _upsample(u, size), _upsample(v, size)
    rgb = np.empty(y.shape + (3,), dtype=np.float32)
    for channel in range(3):
        rgb[..., channel] = (m[channel, 0] * y + m[channel, 1] * u + m[channel, 2] * v) * 255
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def to_jfif_planes(array: np.ndarray, size: Size, source: YCbCr):
    """Y, U, V planes in BT.601 full range (what a JPEG decoder assumes), contiguous.

    The conversion is affine. Since both matrices weigh R, G and B to a sum of
    one, the new chroma depends on the old chroma only, and the new luma is the
    old luma plus a chroma term: all the per-pixel work at full size is one
    addition.
    """
    y, u, v = planes(array, size)
    if source == JFIF:
        return tuple(np.ascontiguousarray(p) for p in (y, u, v))
    yn, un, vn = _normalised(y, u, v, source)
    convert = _rgb_to_ycbcr_matrix("601") @ _ycbcr_to_rgb_matrix(source.matrix)
    dy = (convert[0, 1] * un + convert[0, 2] * vn) * 255  # the luma's chroma term, per 2x2 block
    w, h = size
    luma = yn * 255
    luma.reshape(h // 2, 2, w // 2, 2)[...] += dy[:, None, :, None]
    new_u = 128 + 255 * (convert[1, 1] * un + convert[1, 2] * vn)
    new_v = 128 + 255 * (convert[2, 1] * un + convert[2, 2] * vn)
    return tuple(np.clip(p + 0.5, 0, 255).astype(np.uint8) for p in (luma, new_u, new_v))


def encode_jpeg(array: np.ndarray, size: Size, source: YCbCr, quality: int) -> bytes:
    """A JFIF JPEG of a YUV420 buffer, with the colours converted for JPEG decoders."""
    import simplejpeg  # Picamera2's own dependency: present wherever Picamera2 is

    y, u, v = to_jfif_planes(array, size, source)
    return simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality)
