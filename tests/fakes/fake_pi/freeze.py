"""The H.264 encoder that stops without a word (Picamera2 issue 1228), on demand.

While the file ``freeze-h264`` exists in the directory FAKE_PI_CONTROL_DIR
names, H.264 encoding stops and everything else goes on: on VC4 the stand-in
encoder (bcm2835_codec) returns pictures unencoded; on PiSP, where Picamera2
encodes with libav on its own camera thread, this module wraps
``LibavH264Encoder._encode`` (a private name of Picamera2: the canary test
checks it is still there and still called) to skip the encoding while frozen.
It does so as Picamera2's module is imported, so nothing else of it changes.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

TARGET = "picamera2.encoders.libav_h264_encoder"


def h264_frozen() -> bool:
    folder = os.environ.get("FAKE_PI_CONTROL_DIR")
    return bool(folder) and os.path.exists(os.path.join(folder, "freeze-h264"))


def make_freezable(module) -> None:
    cls = module.LibavH264Encoder
    encode = cls._encode
    if getattr(encode, "freezable", False):
        return

    def _encode(self, stream, request):
        if h264_frozen():
            return None
        return encode(self, stream, request)

    _encode.freezable = True
    _encode.__wrapped__ = encode
    cls._encode = _encode


class _Finder(importlib.abc.MetaPathFinder):
    """Runs make_freezable on TARGET right after Picamera2's own code has defined it."""

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            make_freezable(module)

        spec.loader.exec_module = exec_module
        return spec


_finder = _Finder()


def install() -> None:
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    if TARGET in sys.modules:
        make_freezable(sys.modules[TARGET])


def uninstall() -> None:
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
