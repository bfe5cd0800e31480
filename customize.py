"""Your detection: pancake.py calls ``detect`` from this file (see ``--customize``).

``--detect image`` calls ``detect(rgb)`` with the RGB bytes of one camera picture
(``--detect-resize w h``, or ``--resolution``: exactly ``w * h * 3`` bytes, row
after row, three bytes per pixel). ``--detect no-image`` calls ``detect()``.
Either way, return True while there is something to record, False otherwise.

``detect`` runs on a thread of its own every ``--detect-interval`` seconds, so a
slow one never delays recording or the live view; it only samples less often.
If it raises, pancake.py logs it and counts that call as False.

As shipped, ``detect(rgb)`` is a motion detector (frame difference) and
``detect()`` is true inside a daily time window. Replace either with your own.
"""

import datetime
import time

import numpy as np

# --- motion detection: detect(rgb) ---------------------------------------------

#: A colour value of a pixel counts as changed when it moved by more than this
#: (0-255). Raise it if sensor noise or flicker is taken for motion.
PIXEL_CHANGE = 40
#: Motion is reported when more than this fraction of the picture changed.
#: Raise it to ignore small things (leaves, a clock on the wall), lower it to
#: catch smaller or more distant movement. 0.01 is 1 % of the picture.
AREA_THRESHOLD = 0.01
#: The two pictures compared are at least this many seconds apart, so slow
#: movement adds up to something visible whatever --detect-interval is.
COMPARE_AFTER = 0.5


class MotionDetector:
    """Compares the picture with one taken about ``COMPARE_AFTER`` seconds earlier."""

    def __init__(self, pixel_change=PIXEL_CHANGE, area=AREA_THRESHOLD, after=COMPARE_AFTER):
        self.pixel_change = pixel_change
        self.area = area
        self.after = after
        self.reference = None
        self.reference_time = 0.0
        self.moving = False
        self.changed = 0.0  # the last fraction measured, handy when tuning

    def __call__(self, rgb):
        picture = np.frombuffer(rgb, dtype=np.uint8)
        now = time.monotonic()
        if self.reference is None or self.reference.shape != picture.shape:
            self.reference, self.reference_time = picture, now
            return False
        if now - self.reference_time < self.after:
            return self.moving  # too soon to compare: keep the last answer
        difference = np.abs(picture.astype(np.int16) - self.reference)
        self.changed = np.count_nonzero(difference > self.pixel_change) / picture.size
        self.moving = self.changed > self.area
        self.reference, self.reference_time = picture, now
        return self.moving


motion = MotionDetector()

# --- a detection that needs no picture: detect() -------------------------------

#: detect() is true from WINDOW_START to WINDOW_END, local time (the window may
#: run past midnight): for example, record every night.
WINDOW_START = datetime.time(22, 0)
WINDOW_END = datetime.time(6, 0)


def in_time_window(now=None):
    """Whether ``now`` (default: the current local time) is inside the window."""
    clock = (now or datetime.datetime.now()).time()
    if WINDOW_START <= WINDOW_END:
        return WINDOW_START <= clock < WINDOW_END
    return clock >= WINDOW_START or clock < WINDOW_END


def detect(rgb=None):
    """Called as detect(rgb) with --detect image, as detect() with --detect no-image."""
    if rgb is None:
        return in_time_window()
    return motion(rgb)
