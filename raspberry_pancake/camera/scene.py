"""The simulated scene: what the sim camera (and the Pi library fakes) film.

A still background, a ball that moves during part of each cycle and rests for the
rest (so motion detection has something to find and something to ignore), a frame
counter, then the user's flips and rotation, then the timestamp annotation
(``annotation``), as a camera burns it into the picture.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .annotation import Annotator, load_font
from .base import CameraSettings

#: One scene cycle: the ball rests, then moves, then rests again (seconds).
CYCLE_SECONDS = 20.0
MOTION_START, MOTION_END = 6.0, 14.0


class Scene:
    """Draws frame ``n`` of the scene at the settings' resolution; one thread."""

    def __init__(self, settings: CameraSettings):
        self.settings = settings
        w, h = settings.resolution
        # the scene is drawn upright, then turned: a quarter turn swaps its sides
        self.canvas_size: Tuple[int, int] = (h, w) if settings.rotation in (90, 270) else (w, h)
        self._background = self._make_background(*self.canvas_size)
        self._annotator = Annotator(settings.annotate_text_size)
        self._small_font = load_font(max(10, min(self.canvas_size) // 20))

    @staticmethod
    def _make_background(w: int, h: int) -> np.ndarray:
        y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
        x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
        img = np.empty((h, w, 3), dtype=np.uint8)
        img[..., 0] = (40 + 60 * y + 0 * x).astype(np.uint8)
        img[..., 1] = (70 + 50 * x + 0 * y).astype(np.uint8)
        img[..., 2] = (110 + 40 * (1 - y) + 0 * x).astype(np.uint8)
        # a "floor" and two pieces of furniture, so the picture has edges
        img[int(h * 0.75) :, :] = (90, 80, 70)
        img[int(h * 0.45) : int(h * 0.75), int(w * 0.08) : int(w * 0.22)] = (150, 110, 60)
        img[int(h * 0.55) : int(h * 0.75), int(w * 0.70) : int(w * 0.92)] = (60, 90, 140)
        return img

    def ball_position(self, elapsed: float) -> Tuple[float, float]:
        """Centre of the ball as fractions of the canvas; still outside motion periods."""
        cycle = elapsed % CYCLE_SECONDS
        progress = min(max(cycle - MOTION_START, 0.0), MOTION_END - MOTION_START)
        angle = 2 * math.pi * progress / 4.0  # one lap every 4 s of motion
        return 0.5 + 0.3 * math.cos(angle), 0.45 + 0.25 * math.sin(angle)

    def render(self, index: int, elapsed: float, when: float, annotate: bool = True) -> Image.Image:
        """The picture for frame ``index`` captured at wall time ``when``."""
        w, h = self.canvas_size
        image = Image.fromarray(self._background)  # copies: the background stays clean
        draw = ImageDraw.Draw(image)
        fx, fy = self.ball_position(elapsed)
        r = max(4, min(w, h) // 10)
        cx, cy = int(fx * w), int(fy * h)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(230, 60, 40), outline=(20, 20, 20))
        draw.text(
            (6, h - 6), f"frame {index}", font=self._small_font, fill=(255, 255, 0), anchor="ls"
        )
        image = self._orient(image)
        if annotate:
            self._annotator.draw(image, when)
        return image

    def _orient(self, image: Image.Image) -> Image.Image:
        s = self.settings
        # clockwise rotation, as the Pi camera's rotation setting
        turn: Optional[int] = {
            90: Image.ROTATE_270,
            180: Image.ROTATE_180,
            270: Image.ROTATE_90,
        }.get(s.rotation)
        if turn is not None:
            image = image.transpose(turn)
        if s.hflip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        if s.vflip:
            image = image.transpose(Image.FLIP_TOP_BOTTOM)
        return image
