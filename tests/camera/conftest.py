"""Fixtures for the Pi camera backends: the fake libraries on sys.path, frame collectors.

The fakes go on sys.path only for these tests, and their modules leave
sys.modules afterwards, so no other test sees a "camera" by accident.
"""

from __future__ import annotations

import sys

import pytest

from tests.helpers import FAKES

FAKE_PACKAGES = ("picamera", "picamera2", "libcamera")


def _drop_fake_modules() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in FAKE_PACKAGES:
            del sys.modules[name]


@pytest.fixture
def fake_libs(monkeypatch):
    """Make ``import picamera`` / ``picamera2`` / ``libcamera`` find the fakes."""
    for var in ("FAKE_PICAMERA_NO_CAMERA", "FAKE_PICAMERA2_CAMERAS", "FAKE_PICAMERA2_NO_HW_MJPEG"):
        monkeypatch.delenv(var, raising=False)
    _drop_fake_modules()
    monkeypatch.syspath_prepend(FAKES)
    yield
    _drop_fake_modules()
