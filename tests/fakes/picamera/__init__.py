"""A fake of picamera 1.13 for tests: the documented names, the sim scene's frames.

Put tests/fakes on sys.path (or PYTHONPATH) to make ``import picamera`` find it.
"""

from .camera import Color, PiCamera
from .exc import (
    PiCameraAlreadyRecording,
    PiCameraClosed,
    PiCameraError,
    PiCameraNotRecording,
    PiCameraRuntimeError,
    PiCameraValueError,
)
from .frames import PiVideoFrame, PiVideoFrameType

__all__ = [
    "Color",
    "PiCamera",
    "PiCameraAlreadyRecording",
    "PiCameraClosed",
    "PiCameraError",
    "PiCameraNotRecording",
    "PiCameraRuntimeError",
    "PiCameraValueError",
    "PiVideoFrame",
    "PiVideoFrameType",
]
