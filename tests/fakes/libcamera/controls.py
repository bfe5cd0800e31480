"""``libcamera.controls``: the control ids the fake imx219 reports, as the bindings name them."""

from __future__ import annotations

import enum

from ._libcamera import ControlId, ControlType

_I32, _I64, _F, _B, _R = (
    ControlType.Integer32,
    ControlType.Integer64,
    ControlType.Float,
    ControlType.Bool,
    ControlType.Rectangle,
)

AeEnable = ControlId(1, "AeEnable", _B)
ExposureTime = ControlId(6, "ExposureTime", _I32)
AnalogueGain = ControlId(7, "AnalogueGain", _F)
Brightness = ControlId(9, "Brightness", _F)
Contrast = ControlId(10, "Contrast", _F)
Lux = ControlId(11, "Lux", _F)
AwbEnable = ControlId(12, "AwbEnable", _B)
ColourGains = ControlId(15, "ColourGains", _F)
ColourTemperature = ControlId(16, "ColourTemperature", _I32)
Saturation = ControlId(17, "Saturation", _F)
SensorBlackLevels = ControlId(18, "SensorBlackLevels", _I32)
Sharpness = ControlId(19, "Sharpness", _F)
ScalerCrop = ControlId(22, "ScalerCrop", _R)
DigitalGain = ControlId(23, "DigitalGain", _F)
FrameDuration = ControlId(24, "FrameDuration", _I64)
FrameDurationLimits = ControlId(25, "FrameDurationLimits", _I64)
SensorTemperature = ControlId(26, "SensorTemperature", _F)
SensorTimestamp = ControlId(27, "SensorTimestamp", _I64)
ExposureTimeMode = ControlId(41, "ExposureTimeMode", _I32)
AnalogueGainMode = ControlId(42, "AnalogueGainMode", _I32)


class draft:
    """Draft controls, as ``libcamera.controls.draft``."""

    NoiseReductionMode = ControlId(10002, "NoiseReductionMode", _I32)

    class NoiseReductionModeEnum(enum.IntEnum):
        Off = 0
        Fast = 1
        HighQuality = 2
        Minimal = 3
        ZSL = 4
