"""A Raspberry Pi for the real Picamera2 to run on: the device stand-ins and the library's path.

``install("vc4")`` (Pi Zero to Pi 4) or ``install("pisp")`` (Pi 5) puts, in this
process, the stand-ins Picamera2 meets below libcamera: the video nodes it
probes to pick its platform (``nodes``), the DMA heap its allocator takes frame
buffers from (``dma_heap``) and, on VC4, the hardware encoder on /dev/video11
(``bcm2835_codec``). libcamera itself is the fake package next to this one; it
reads the same ``FAKE_PI_PLATFORM``. It also makes the pinned Picamera2 (which
scripts/setup.sh installs with --no-deps into .venv/pi-libs) importable, and on
PiSP makes the software H.264 encoder freezable (``freeze``).

Run it before anything imports picamera2: Picamera2 fixes its platform at import.
tests/fakes/pi_site/sitecustomize.py does so for a child process that has
FAKE_PI_PLATFORM set and that directory on its PYTHONPATH.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from . import freeze
from .dma_heap import add_heaps
from .kernel import Kernel
from .nodes import add_video_nodes

PLATFORMS = ("vc4", "pisp")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
#: where scripts/setup.sh installs the pinned Picamera2
PICAMERA2_DIR = os.environ.get("FAKE_PI_PICAMERA2_DIR") or os.path.join(ROOT, ".venv", "pi-libs")

kernel: Optional[Kernel] = None


def install(platform: str) -> Kernel:
    """Give this process the named Pi; returns its kernel (the same one if already installed)."""
    global kernel
    if platform not in PLATFORMS:
        raise ValueError(f"platform must be one of {PLATFORMS}, not {platform!r}")
    if kernel is not None:
        if kernel.platform != platform:
            raise RuntimeError(f"this process is already a {kernel.platform} Pi")
        return kernel
    if not os.path.isdir(os.path.join(PICAMERA2_DIR, "picamera2")):
        raise RuntimeError(
            f"the real Picamera2 is not in {PICAMERA2_DIR}: run scripts/setup.sh --dev"
        )
    os.environ["FAKE_PI_PLATFORM"] = platform
    if PICAMERA2_DIR not in sys.path:
        sys.path.append(PICAMERA2_DIR)
    kernel = Kernel(platform)
    add_video_nodes(kernel)
    add_heaps(kernel)
    kernel.install()
    freeze.install()
    return kernel


def uninstall() -> None:
    """Take the stand-ins away again (in-process tests do, between tests)."""
    global kernel
    if kernel is not None:
        kernel.uninstall()
        kernel = None
    freeze.uninstall()
    if PICAMERA2_DIR in sys.path:
        sys.path.remove(PICAMERA2_DIR)
    os.environ.pop("FAKE_PI_PLATFORM", None)
