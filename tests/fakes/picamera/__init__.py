"""A fake of picamera 1.13 for tests: its names and rules, the sim scene's pictures.

Put tests/fakes on sys.path (or PYTHONPATH) to make ``import picamera`` find it.
The rules it follows are picamera 1.13's, cited by file and function where they
are applied (camera.py, encoders.py, streams.py); fake.py holds the test hooks.
"""

from .camera import Color, PiCamera, PiFramerateRange, PiResolution
from .encoders import FakeEncoder as PiEncoder
from .exc import (
    PiCameraAlphaStripping,
    PiCameraAlreadyRecording,
    PiCameraClosed,
    PiCameraDeprecated,
    PiCameraError,
    PiCameraIOError,
    PiCameraMMALError,
    PiCameraNotRecording,
    PiCameraPortDisabled,
    PiCameraResizerEncoding,
    PiCameraResolutionRounded,
    PiCameraRuntimeError,
    PiCameraValueError,
    PiCameraWarning,
)
from .frames import PiVideoFrame, PiVideoFrameType
from .streams import CircularIO, PiCameraCircularIO

__all__ = [
    "CircularIO",
    "Color",
    "PiCamera",
    "PiCameraAlphaStripping",
    "PiCameraAlreadyRecording",
    "PiCameraCircularIO",
    "PiCameraClosed",
    "PiCameraDeprecated",
    "PiCameraError",
    "PiCameraIOError",
    "PiCameraMMALError",
    "PiCameraNotRecording",
    "PiCameraPortDisabled",
    "PiCameraResizerEncoding",
    "PiCameraResolutionRounded",
    "PiCameraRuntimeError",
    "PiCameraValueError",
    "PiCameraWarning",
    "PiEncoder",
    "PiFramerateRange",
    "PiResolution",
    "PiVideoFrame",
    "PiVideoFrameType",
]
