"""``libcamera.properties``: the property ids the fake imx219 reports."""

from __future__ import annotations

import enum

from ._libcamera import ControlId, ControlType

Location = ControlId(1, "Location", ControlType.Integer32)
Rotation = ControlId(2, "Rotation", ControlType.Integer32)
Model = ControlId(3, "Model", ControlType.String)
UnitCellSize = ControlId(4, "UnitCellSize", ControlType.Size)
PixelArraySize = ControlId(5, "PixelArraySize", ControlType.Size)
PixelArrayActiveAreas = ControlId(7, "PixelArrayActiveAreas", ControlType.Rectangle)
ScalerCropMaximum = ControlId(8, "ScalerCropMaximum", ControlType.Rectangle)
SystemDevices = ControlId(10, "SystemDevices", ControlType.Integer64)


class draft:
    """Draft properties, as ``libcamera.properties.draft``."""

    ColorFilterArrangement = ControlId(10001, "ColorFilterArrangement", ControlType.Integer32)

    class ColorFilterArrangementEnum(enum.IntEnum):
        RGGB = 0
        GRBG = 1
        GBRG = 2
        BGGR = 3
        RGB = 4
        MONO = 5
