"""Camera backends behind one interface (see ``base``) and the choice between them.

The Pi libraries are imported only inside functions: picamera2 probes the
platform when imported, and neither exists off a Pi.
"""

from __future__ import annotations

import logging

from .base import Camera, CameraSettings

__all__ = ["BACKENDS", "Camera", "CameraSettings", "open_camera"]

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "picamera", "picamera2", "sim")

SIM_HINT = "to try Raspberry Pancake without a camera, use --camera sim"


def _picamera2_finds_a_camera() -> bool:
    """True if Picamera2 imports and libcamera lists at least one camera."""
    try:
        from picamera2 import Picamera2
    except ImportError:
        return False
    except Exception:
        # picamera2 probes the platform at import; a broken install is not a camera
        logger.exception("picamera2 is installed but fails to import")
        return False
    try:
        return bool(Picamera2.global_camera_info())
    except Exception:
        logger.exception("Picamera2.global_camera_info() failed")
        return False


def _picamera_imports() -> bool:
    try:
        import picamera  # noqa: F401
    except ImportError:
        return False
    except Exception:
        logger.exception("picamera is installed but fails to import")
        return False
    return True


def _open_auto(settings: CameraSettings) -> Camera:
    from ..exc import CameraUnavailableError

    if _picamera2_finds_a_camera():
        from .picamera2_backend import Picamera2Camera

        return Picamera2Camera(settings)
    if _picamera_imports():
        from .picamera_legacy import PicameraCamera

        try:
            return PicameraCamera(settings)
        except CameraUnavailableError:
            logger.debug("picamera imports but the camera does not open", exc_info=True)
    raise CameraUnavailableError(f"no Raspberry Pi camera was found on this machine; {SIM_HINT}")


def open_camera(name: str, settings: CameraSettings) -> Camera:
    """Build the backend called ``name``; raise CameraUnavailableError if it cannot run here."""
    from ..exc import CameraUnavailableError

    if name == "sim":
        from .sim import SimCamera

        return SimCamera(settings)
    if name == "auto":
        return _open_auto(settings)
    if name == "picamera2":
        from .picamera2_backend import Picamera2Camera

        return Picamera2Camera(settings)
    if name == "picamera":
        from .picamera_legacy import PicameraCamera

        return PicameraCamera(settings)
    raise CameraUnavailableError(f"unknown camera backend {name!r}")
