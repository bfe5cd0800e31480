"""A fake of the few libcamera Python names Picamera2 users touch: Transform, ColorSpace.

Part of the Picamera2 fake (tests/fakes/picamera2); the real module is the
libcamera Python binding that ships with Raspberry Pi OS.
"""


class Transform:
    """An image transform: flips and transpose, as libcamera.Transform."""

    def __init__(self, rotation=0, hflip=False, vflip=False, transpose=False):
        if rotation not in (0, 90, 180, 270):
            raise ValueError(f"rotation {rotation} is not a multiple of 90")
        # libcamera: Rot90 = Transpose|HFlip, Rot180 = HFlip|VFlip, Rot270 = Transpose|VFlip;
        # the fake composes them with the flips by XOR (exact for 0 and 180)
        rh, rv, rt = {0: (0, 0, 0), 90: (1, 0, 1), 180: (1, 1, 0), 270: (0, 1, 1)}[rotation]
        h, v, t = bool(hflip) ^ rh, bool(vflip) ^ rv, bool(transpose) ^ rt
        self.hflip, self.vflip, self.transpose = int(h), int(v), int(t)

    def __eq__(self, other):
        return isinstance(other, Transform) and (self.hflip, self.vflip, self.transpose) == (
            other.hflip,
            other.vflip,
            other.transpose,
        )

    def __repr__(self):
        flags = f"hflip={self.hflip} vflip={self.vflip} transpose={self.transpose}"
        return f"<libcamera.Transform {flags}>"


class ColorSpace:
    """A named colour space; only identity matters to the fake."""

    def __init__(self, name):
        self.name = name

    @staticmethod
    def Sycc():
        return ColorSpace("sYCC")

    @staticmethod
    def Smpte170m():
        return ColorSpace("SMPTE170M")

    @staticmethod
    def Rec709():
        return ColorSpace("Rec709")

    def __eq__(self, other):
        return isinstance(other, ColorSpace) and other.name == self.name

    def __repr__(self):
        return f"<libcamera.ColorSpace {self.name}>"
