"""A fake of libcamera's Python bindings, over a simulated imx219 on a Raspberry Pi.

The real module is built from libcamera's C++ sources and exists only where
libcamera is installed (Raspberry Pi OS). This one lets the real Picamera2 run
on any machine: see ``_libcamera`` for the classes, ``imx219`` for the sensor
model and ``sensor`` for the thread that films the sim scene into the buffers.
"""

from ._libcamera import *  # noqa: F403 (the bindings' flat namespace)
from ._libcamera import __all__  # noqa: F401
