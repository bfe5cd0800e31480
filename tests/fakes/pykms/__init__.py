"""A stub of pykms (kms++'s Python bindings, python3-kms++ on Raspberry Pi OS).

Picamera2 imports it at import time for its DRM preview window, which Raspberry
Pancake never opens; these names let the import succeed, and using one fails.
"""


class _Unavailable:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("pykms is a stub here: there is no display to drive")


Card = ResourceManager = DumbFramebuffer = DmabufFramebuffer = AtomicReq = _Unavailable


class PixelFormat:
    """The format names Picamera2's DRM preview maps its formats to, at class definition."""

    ABGR8888 = "AB24"
    BGR888 = "BG24"
    NV12 = "NV12"
    RGB888 = "RG24"
    XBGR8888 = "XB24"
    XRGB8888 = "XR24"
    YUV420 = "YU12"
    YUYV = "YUYV"
    YVU420 = "YV12"
    YVYU = "YVYU"


class PlaneType:
    Primary = 1
    Overlay = 2
    Cursor = 4
