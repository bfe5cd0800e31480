"""The timestamp every backend burns into the picture: its format, font and overlay.

picamera draws it itself (``annotate_text``, given the text from here); the sim
camera draws it on RGB pictures (``Annotator``) and the Picamera2 backend on
YUV420 buffers (``TimestampOverlay``), with the same font and box, so the three
look alike and a change of format is made once.
"""

from __future__ import annotations

import time
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import yuv420
from .base import Size

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def timestamp_text(when: float) -> str:
    """The annotation for wall time ``when``, in local time as the Pi shows it."""
    return time.strftime(TIMESTAMP_FORMAT, time.localtime(when))


def load_font(size: int):
    """A scalable font where Pillow has one, its small bitmap font otherwise."""
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow older than 10.1
        return ImageFont.load_default()


class Annotator:
    """Burns the capture time into a picture, white on a black box, centred at the top.

    One per camera; called on the thread that renders the picture.
    """

    def __init__(self, text_size: int):
        self.font = load_font(text_size)

    def draw(self, image: Image.Image, when: float) -> None:
        text = timestamp_text(when)
        draw = ImageDraw.Draw(image)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=self.font)
        x = (image.width - (right - left)) // 2
        draw.rectangle((x - 4, 2, x + right - left + 4, 6 + bottom - top), fill=(0, 0, 0))
        draw.text((x - left, 4 - top), text, font=self.font, fill=(255, 255, 255))


class TimestampOverlay:
    """Burns the time into YUV420 frames of one stream; used on the camera thread.

    The text changes once a second, so the patch (white text on a black box, as
    the legacy camera draws it) is rendered only then; each frame just copies it
    into the luma plane and greys the chroma under it. Black and white are the
    stream's own: 16 and 235 in limited range, 0 and 255 in full range.
    """

    def __init__(self, size: Size, text_size: int, full_range: bool = False):
        self.size = size
        self.font = load_font(text_size)
        self.black, self.white = (0, 255) if full_range else (16, 235)
        self._text: Optional[str] = None
        self._patch: Optional[np.ndarray] = None
        self._origin = (0, 0)

    def _render(self, text: str) -> None:
        w, h = self.size
        probe = ImageDraw.Draw(Image.new("L", (1, 1)))
        left, top, right, bottom = probe.textbbox((0, 0), text, font=self.font)
        pw = min(w, right - left + 8) // 2 * 2
        ph = min(h, bottom - top + 8) // 2 * 2
        patch = Image.new("L", (pw, ph), self.black)
        ImageDraw.Draw(patch).text((4 - left, 4 - top), text, font=self.font, fill=self.white)
        self._patch = np.asarray(patch)
        self._origin = ((w - pw) // 2 // 2 * 2, 2)
        self._text = text

    def draw(self, array: np.ndarray, when: float) -> None:
        text = timestamp_text(when)
        if text != self._text:
            self._render(text)
        y, u, v = yuv420.planes(array, self.size)
        x0, y0 = self._origin
        ph, pw = self._patch.shape
        y[y0 : y0 + ph, x0 : x0 + pw] = self._patch
        u[y0 // 2 : (y0 + ph) // 2, x0 // 2 : (x0 + pw) // 2] = 128
        v[y0 // 2 : (y0 + ph) // 2, x0 // 2 : (x0 + pw) // 2] = 128
