"""The modelled hardware: a Sony imx219 (Camera Module 2) behind a Pi's ISP.

Sensor modes and their frame rates come from the Linux imx219 driver
(drivers/media/i2c/imx219.c): a fixed pixel rate of 182.4 MHz
(IMX219_PIXEL_RATE), a line length of 3448 pixels (IMX219_PPL_DEFAULT), at least
32 lines of vertical blanking (IMX219_VBLANK_MIN) and at most 0xffff lines per
frame (IMX219_FLL_MAX). A mode's shortest frame is therefore
(height + 32) * 3448 / 182.4e6 s: 47.57 fps for 1920x1080, 21.19 fps for
3280x2464, the figures ``rpicam-hello --list-cameras`` prints for this sensor.
libcamera's Raspberry Pi IPA clamps the application's FrameDurationLimits to the
mode's range, which is what ``frame_duration_us`` does.

The platform (``FAKE_PI_PLATFORM``: ``vc4`` for Pi Zero to Pi 4, ``pisp`` for Pi
5) changes the camera's id and the ISP's stride alignment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple

PIXEL_RATE = 182_400_000
LINE_LENGTH = 3448
VBLANK_MIN = 32
FRAME_LENGTH_MAX = 0xFFFF

NATIVE = (3280, 2464)
#: what the ISP accepts for a processed stream; libcamera's exact limits are not modelled
ISP_MIN, ISP_MAX = (16, 16), (16384, 16384)

YUV_FORMATS = ("YUV420", "YVU420")
RGB_FORMATS = ("RGB888", "BGR888", "XBGR8888", "XRGB8888")
#: the processed formats the fake's sensor thread can fill
OUTPUT_FORMATS = YUV_FORMATS + RGB_FORMATS


def platform() -> str:
    name = os.environ.get("FAKE_PI_PLATFORM", "vc4")
    if name not in ("vc4", "pisp"):
        raise RuntimeError(f"FAKE_PI_PLATFORM must be vc4 or pisp, not {name!r}")
    return name


def camera_id(number: int) -> str:
    """The device-tree path libcamera uses as the camera's id on each platform."""
    if platform() == "pisp":
        return f"/base/axi/pcie@120000/rp1/i2c@{88000 + number * 4000}/imx219@10"
    return f"/base/soc/i2c0mux/i2c@{number + 1}/imx219@10"


@dataclass(frozen=True)
class SensorMode:
    size: Tuple[int, int]
    bit_depth: int
    crop: Tuple[int, int, int, int]  # in the pixel array: x, y, width, height

    @property
    def raw_format(self) -> str:
        return "SRGGB10_CSI2P" if self.bit_depth == 10 else "SRGGB8"

    @property
    def min_frame_us(self) -> int:
        return int((self.size[1] + VBLANK_MIN) * LINE_LENGTH * 1_000_000 / PIXEL_RATE)

    @property
    def max_frame_us(self) -> int:
        return int(FRAME_LENGTH_MAX * LINE_LENGTH * 1_000_000 / PIXEL_RATE)

    def raw_stride(self) -> int:
        return align(self.size[0] * self.bit_depth // 8, 32)

    def raw_frame_size(self) -> int:
        return self.raw_stride() * self.size[1]

    def frame_duration_us(self, limits: Optional[Tuple[int, int]]) -> int:
        """The frame duration the IPA picks for requested (min, max) limits, in µs."""
        if not limits:
            return self.min_frame_us
        # the IPA clamps both limits to the mode and, with the light it has, takes
        # the shortest frame they allow
        return min(max(int(limits[0]), self.min_frame_us), self.max_frame_us)


MODES = [
    SensorMode(size, depth, crop)
    for depth in (10, 8)
    for size, crop in (
        ((640, 480), (1000, 752, 1280, 960)),
        ((1640, 1232), (0, 0, 3280, 2464)),
        ((1920, 1080), (680, 692, 1920, 1080)),
        ((3280, 2464), (0, 0, 3280, 2464)),
    )
]


def align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def stride_and_frame_size(fmt: str, size, platform_name: str) -> Tuple[int, int]:
    """Row stride and buffer size of a processed stream, as the ISP lays it out.

    Plane rows are aligned to 32 bytes on VC4 and 64 on PiSP (Picamera2's
    align_stream: "this matches the hardware behaviour"); a YUV420 luma row is
    twice its chroma rows, hence twice the alignment.
    """
    plane_align = 32 if platform_name == "vc4" else 64
    w, h = size.width, size.height
    if fmt in YUV_FORMATS:
        stride = align(w, 2 * plane_align)
        return stride, stride * h * 3 // 2
    bytes_per_pixel = 3 if fmt in ("RGB888", "BGR888") else 4
    stride = align(w * bytes_per_pixel, plane_align)
    return stride, stride * h


def choose_mode(sensor_config, stream_configs) -> Optional[SensorMode]:
    """The mode a configuration asks for: the one named by its sensor configuration.

    libcamera's Raspberry Pi pipeline refuses a sensor configuration that is not
    one of the sensor's modes. Without one it scores modes against the largest
    output; Picamera2 always names one, so the fake simply takes the smallest
    mode that holds every output.
    """
    if sensor_config is not None and sensor_config.output_size.width:
        wanted = (sensor_config.output_size.width, sensor_config.output_size.height)
        for mode in MODES:
            if mode.size == wanted and mode.bit_depth == sensor_config.bit_depth:
                return mode
        return None
    need_w = max((c.size.width for c in stream_configs), default=0)
    need_h = max((c.size.height for c in stream_configs), default=0)
    fitting = [
        m for m in MODES if m.bit_depth == 10 and m.size[0] >= need_w and m.size[1] >= need_h
    ]
    return min(fitting, key=lambda m: m.size[0] * m.size[1]) if fitting else MODES[3]


def mode_for(sensor_config) -> SensorMode:
    mode = choose_mode(sensor_config, [])
    assert mode is not None, "configure() runs only after a successful validate()"
    return mode


# --- what the bindings report -------------------------------------------------------


def properties():
    from . import _libcamera as lc
    from . import properties as p

    return {
        p.Model: "imx219",
        p.Location: 2,
        p.Rotation: 0,
        p.draft.ColorFilterArrangement: p.draft.ColorFilterArrangementEnum.RGGB,
        p.PixelArraySize: lc.Size(*NATIVE),
        p.PixelArrayActiveAreas: [lc.Rectangle(0, 0, *NATIVE)],
        p.ScalerCropMaximum: lc.Rectangle(0, 0, *NATIVE),
        p.UnitCellSize: lc.Size(1120, 1120),
        p.SystemDevices: [0],
    }


def controls(mode: Optional[SensorMode]):
    """The camera's controls; FrameDurationLimits and the crop follow the configured mode."""
    from . import _libcamera as lc
    from . import controls as c

    mode = mode or MODES[3]
    info = lc.ControlInfo
    crop = lc.Rectangle(*mode.crop)
    return {
        c.FrameDurationLimits: info(mode.min_frame_us, mode.max_frame_us, 33333),
        c.ExposureTime: info(13, mode.max_frame_us, 20000),
        c.AnalogueGain: info(1.0, 10.666, 1.0),
        c.AeEnable: info(False, True, True),
        c.AwbEnable: info(False, True, True),
        c.ColourGains: info(0.0, 32.0, 0.0),
        c.Brightness: info(-1.0, 1.0, 0.0),
        c.Contrast: info(0.0, 32.0, 1.0),
        c.Saturation: info(0.0, 32.0, 1.0),
        c.Sharpness: info(0.0, 16.0, 1.0),
        c.ScalerCrop: info(lc.Rectangle(0, 0, 64, 64), crop, crop),
        c.ExposureTimeMode: info(0, 1, 0),
        c.AnalogueGainMode: info(0, 1, 0),
        c.draft.NoiseReductionMode: info(0, 4, 0),
    }


def stream_formats(role):
    from . import _libcamera as lc

    if role == lc.StreamRole.Raw:
        by_format = {}
        for mode in MODES:
            by_format.setdefault(mode.raw_format, []).append(lc.Size(*mode.size))
        return lc.StreamFormats(by_format)
    sizes = [lc.Size(*ISP_MIN), lc.Size(*NATIVE)]
    return lc.StreamFormats({name: list(sizes) for name in OUTPUT_FORMATS})


def default_stream(cfg) -> None:
    """What generate_configuration() proposes for a role, before the application edits it."""
    from . import _libcamera as lc

    defaults = {
        lc.StreamRole.Raw: (NATIVE, "SRGGB10_CSI2P", 2, lc.ColorSpace.Raw()),
        lc.StreamRole.StillCapture: (NATIVE, "YUV420", 1, lc.ColorSpace.Sycc()),
        lc.StreamRole.VideoRecording: ((1920, 1080), "YUV420", 4, lc.ColorSpace.Rec709()),
        lc.StreamRole.Viewfinder: ((800, 600), "YUV420", 4, lc.ColorSpace.Sycc()),
    }
    size, fmt, count, space = defaults[cfg.role]
    cfg.size, cfg.pixel_format = lc.Size(*size), lc.PixelFormat(fmt)
    cfg.buffer_count, cfg.color_space = count, space
