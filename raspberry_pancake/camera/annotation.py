"""The timestamp every backend burns into the picture: its format, font and overlay.

picamera draws it itself (``annotate_text``, given the text from here); the
Picamera2 backend and the sim camera draw it with the font and box from here, so
the three look alike and a change of format is made once.
"""

from __future__ import annotations

import time

from PIL import Image, ImageDraw, ImageFont

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
