"""A fake of Picamera2 0.3 for tests: the documented names, the sim scene's frames.

Put tests/fakes on sys.path (or PYTHONPATH) to make ``import picamera2`` (and
``import libcamera``) find it.
"""

from .picamera2 import Picamera2
from .request import CompletedRequest, MappedArray

__all__ = ["CompletedRequest", "MappedArray", "Picamera2"]
