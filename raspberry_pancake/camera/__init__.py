"""Camera backends behind one interface (see ``base``) and the choice between them."""

from __future__ import annotations

from .base import Camera, CameraSettings

__all__ = ["BACKENDS", "Camera", "CameraSettings", "open_camera"]

BACKENDS = ("auto", "sim")


def open_camera(name: str, settings: CameraSettings) -> Camera:
    """Build the backend called ``name``; raise CameraUnavailableError if it cannot run here."""
    from ..exc import CameraUnavailableError

    if name == "sim":
        from .sim import SimCamera

        return SimCamera(settings)
    if name == "auto":
        raise CameraUnavailableError(
            "no Raspberry Pi camera library was found on this machine; "
            "to try Raspberry Pancake without a camera, use --camera sim"
        )
    raise CameraUnavailableError(f"unknown camera backend {name!r}")
