"""PiVideoFrame and PiVideoFrameType as picamera 1.13 documents them."""

from collections import namedtuple


class PiVideoFrameType:
    """Constants for PiVideoFrame.frame_type."""

    frame = 0
    key_frame = 1
    sps_header = 2
    motion_data = 3


PiVideoFrame = namedtuple(
    "PiVideoFrame",
    ("index", "frame_type", "frame_size", "video_size", "split_size", "timestamp", "complete"),
)
