"""The few MMAL constants and the buffer the fake's GPU hands to picamera's callbacks.

Values as in the MMAL headers that picamera/mmal.py wraps (mmal_buffer.h).
"""

from __future__ import annotations

from dataclasses import dataclass

MMAL_BUFFER_HEADER_FLAG_EOS = 1 << 0
MMAL_BUFFER_HEADER_FLAG_FRAME_START = 1 << 1
MMAL_BUFFER_HEADER_FLAG_FRAME_END = 1 << 2
MMAL_BUFFER_HEADER_FLAG_KEYFRAME = 1 << 3
MMAL_BUFFER_HEADER_FLAG_CONFIG = 1 << 5
MMAL_BUFFER_HEADER_FLAG_CODECSIDEINFO = 1 << 7

#: "time unknown" (INT64_MIN), which picamera 1.13 reports as a timestamp of None
MMAL_TIME_UNKNOWN = -(1 << 63)


def align_up(value: int, alignment: int) -> int:
    """bcm_host.VCOS_ALIGN_UP: round up to a multiple of ``alignment``."""
    return (value + alignment - 1) // alignment * alignment


@dataclass
class MMALBuffer:
    """One buffer from an output port: its bytes, flags and presentation time (µs)."""

    data: bytes
    flags: int
    pts: int
    #: CLOCK_MONOTONIC time before which the fake GPU does not deliver it (encoder latency)
    due: float = 0.0

    @property
    def length(self) -> int:
        return len(self.data)
