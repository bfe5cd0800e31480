"""The video device nodes each Pi has, and the ones that only answer VIDIOC_QUERYCAP.

Picamera2 decides its platform at import by opening /dev/video0 to /dev/video63
and reading each card name (picamera2/platform.py): "pispbe" means a Pi 5, and
"bcm2835-isp" ends the search on earlier Pis. The tables list the nodes
Raspberry Pi OS creates, with the card names their drivers report:

- VC4 (Pi Zero to Pi 4): Unicam (the CSI-2 receiver) at 0-1, the bcm2835-codec
  driver's nodes at 10, 11 (the H.264/MJPEG encoder, ``bcm2835_codec``), 12, 18
  and 31 (its card names are "bcm2835-codec-" plus the role, as
  bcm2835_codec_create() writes them), and libcamera's ISP, bcm2835-isp, at 13-16;
- PiSP (Pi 5): the RP1 CSI-2 receiver (rp1-cfe) at 0-7, the HEVC decoder at 19
  and the PiSP back end at 20-35. A Pi 5 has no video encoder.
"""

from __future__ import annotations

import ctypes

import videodev2 as v4l2

from .kernel import Kernel, VirtualFile


def fill_capability(arg, driver: str, card: str, caps: int) -> int:
    cap = v4l2.v4l2_capability.from_buffer(arg)
    for field, text in (("driver", driver), ("card", card), ("bus_info", "platform:" + driver)):
        data = text.encode()[: ctypes.sizeof(getattr(cap, field)) - 1]
        ctypes.memmove(ctypes.addressof(cap) + getattr(type(cap), field).offset, data, len(data))
    cap.version = 0x060600
    cap.device_caps = caps
    cap.capabilities = caps | v4l2.V4L2_CAP_DEVICE_CAPS
    return 0


class QueryOnlyNode(VirtualFile):
    """A node whose driver is not modelled: it tells who it is, and nothing else."""

    def __init__(self, kernel: Kernel, driver: str, card: str):
        super().__init__(kernel, card)
        self.driver, self.card = driver, card

    def ioctl(self, request, arg):
        if request == v4l2.VIDIOC_QUERYCAP:
            caps = v4l2.V4L2_CAP_VIDEO_CAPTURE | v4l2.V4L2_CAP_STREAMING
            return fill_capability(arg, self.driver, self.card, caps)
        return super().ioctl(request, arg)


def _query_only(driver: str, card: str):
    return lambda kernel: QueryOnlyNode(kernel, driver, card)


def add_video_nodes(kernel: Kernel) -> None:
    from .bcm2835_codec import EncoderFile

    if kernel.platform == "vc4":
        table = {0: ("unicam", "unicam"), 1: ("unicam", "unicam")}
        for number, role in ((10, "decode"), (12, "isp"), (18, "image_fx"), (31, "encode_image")):
            table[number] = ("bcm2835-codec", "bcm2835-codec-" + role)
        for number in range(13, 17):
            table[number] = ("bcm2835-isp", "bcm2835-isp")
        for number, (driver, card) in table.items():
            kernel.add_node(f"/dev/video{number}", _query_only(driver, card))
        kernel.add_node("/dev/video11", EncoderFile)
    else:
        for number in range(8):
            kernel.add_node(f"/dev/video{number}", _query_only("rp1-cfe", "rp1-cfe"))
        kernel.add_node("/dev/video19", _query_only("rpi-hevc-dec", "rpi-hevc-dec"))
        for number in range(20, 36):
            kernel.add_node(f"/dev/video{number}", _query_only("pispbe", "pispbe"))
