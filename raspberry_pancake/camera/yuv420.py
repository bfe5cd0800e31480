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

import functools
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


@functools.lru_cache(maxsize=8)
def _jfif_tables(source: YCbCr):
    """Lookup tables taking ``source`` numbers to BT.601 full range.

    The conversion is affine. Both matrices weigh R, G and B to a sum of one, so
    the new chroma depends on the old chroma only and the new luma is the old
    luma plus a chroma term; every term is a table of its input byte. From
    BT.601 the chroma terms across planes are zero and each table gives bytes;
    otherwise they hold 1/64ths, summed before rounding.
    """
    levels = np.arange(256, dtype=np.float64)
    if source.full_range:
        y, c = levels / 255, (levels - 128) / 255
    else:
        y, c = (levels - 16) / 219, (levels - 128) / 224
    a = _rgb_to_ycbcr_matrix("601") @ _ycbcr_to_rgb_matrix(source.matrix)
    if source.matrix == "601":
        return {
            "y": np.clip(np.rint(y * 255), 0, 255).astype(np.uint8),
            "u": np.clip(np.rint(128 + a[1, 1] * c * 255), 0, 255).astype(np.uint8),
            "v": np.clip(np.rint(128 + a[2, 2] * c * 255), 0, 255).astype(np.uint8),
        }

    def fixed(values):
        return np.rint(values * 255 * 64).astype(np.int16)

    return {
        "y": fixed(y),  # a[0, 0] is 1: same weights, same luma
        "y_u": fixed(a[0, 1] * c),
        "y_v": fixed(a[0, 2] * c),
        "u_u": fixed(a[1, 1] * c),
        "u_v": fixed(a[1, 2] * c),
        "v_u": fixed(a[2, 1] * c),
        "v_v": fixed(a[2, 2] * c),
    }


def _to_byte(fixed: np.ndarray, offset: int = 0) -> np.ndarray:
    fixed += offset * 64 + 32  # and round
    fixed >>= 6
    return np.clip(fixed, 0, 255, out=fixed).astype(np.uint8)


def to_jfif_planes(array: np.ndarray, size: Size, source: YCbCr):
    """Y, U, V planes in BT.601 full range (what a JPEG decoder assumes), contiguous.

    From BT.601 limited range (below 1280x720) it is one table lookup per
    sample; from BT.709 the luma also gets a term of its 2x2 block's chroma.
    """
    y, u, v = planes(array, size)
    if source == JFIF:
        return tuple(np.ascontiguousarray(p) for p in (y, u, v))
    t = _jfif_tables(source)
    if source.matrix == "601":
        return t["y"][y], t["u"][u], t["v"][v]
    w, h = size
    luma = t["y"][y]
    luma.reshape(h // 2, 2, w // 2, 2)[...] += (t["y_u"][u] + t["y_v"][v])[:, None, :, None]
    new_u = t["u_u"][u] + t["u_v"][v]
    new_v = t["v_u"][u] + t["v_v"][v]
    return _to_byte(luma), _to_byte(new_u, 128), _to_byte(new_v, 128)


def encode_jpeg(array: np.ndarray, size: Size, source: YCbCr, quality: int) -> bytes:
    """A JFIF JPEG of a YUV420 buffer, with the colours converted for JPEG decoders."""
    import simplejpeg  # Picamera2's own dependency: present wherever Picamera2 is

    y, u, v = to_jfif_planes(array, size, source)
    return simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality)
