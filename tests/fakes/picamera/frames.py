"""PiVideoFrame and PiVideoFrameType, with the fields and meaning picamera 1.13's
frames.py gives them."""

from collections import namedtuple


class PiVideoFrameType:
    """The kinds of data a PiVideoFrame describes."""

    frame = 0  # a predicted frame (P-frame)
    key_frame = 1  # an intra frame (I-frame)
    sps_header = 2  # inline SPS/PPS headers, no picture
    motion_data = 3  # motion vectors, no picture


_Fields = namedtuple(
    "PiVideoFrame",
    ("index", "frame_type", "frame_size", "video_size", "split_size", "timestamp", "complete"),
)


class PiVideoFrame(_Fields):
    """What the encoder last wrote: ``timestamp`` is the buffer's presentation time in
    microseconds (relative to the start of capture with clock_mode 'reset', to the
    VideoCore's boot with 'raw'), or None when the firmware did not know it."""

    __slots__ = ()

    @property
    def position(self):
        """Where the frame starts in its output (frames.py: split_size - frame_size)."""
        return self.split_size - self.frame_size
