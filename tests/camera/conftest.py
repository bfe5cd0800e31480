"""Fixtures for the Pi camera backends: the fake libraries on sys.path, frame collectors.

The fakes go on sys.path only for these tests, and their modules leave
sys.modules afterwards, so no other test sees a "camera" by accident. For
Picamera2 the library is the real one, on a fake Pi (tests/fakes/fake_pi); tests
marked ``pi_platforms`` run once per Pi platform, each in its own process
(tests/pi_platforms.py, whose hooks are imported here).
"""

from __future__ import annotations

import sys

import pytest

from tests.helpers import FAKES
from tests.pi_platforms import (  # noqa: F401 (pytest hooks and a fixture)
    CHILD,
    NEEDS_PYTHON_310,
    PICAMERA2_RUNS_HERE,
    pi_platform,
    pytest_configure,
    pytest_generate_tests,
    pytest_pyfunc_call,
    pytest_runtest_logreport,
    pytest_sessionfinish,
)

FAKE_PACKAGES = ("picamera", "picamera2", "libcamera")


def _drop_fake_modules() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in FAKE_PACKAGES:
            del sys.modules[name]


@pytest.fixture
def fake_libs(monkeypatch, request):
    """Make ``import picamera`` find its fake, and ``picamera2`` the real library on a fake Pi.

    The Pi is this process's platform in a ``pi_platforms`` child, a Pi 4 (VC4) elsewhere.
    """
    if not PICAMERA2_RUNS_HERE and "picamera2" in request.node.name:
        pytest.skip(NEEDS_PYTHON_310)
    for var in ("FAKE_PICAMERA_NO_CAMERA", "FAKE_PICAMERA2_CAMERAS", "FAKE_PI_FAULTS"):
        monkeypatch.delenv(var, raising=False)
    _drop_fake_modules()
    monkeypatch.syspath_prepend(FAKES)
    import fake_pi

    installed_here = fake_pi.kernel is None
    fake_pi.install(CHILD or "vc4")
    yield
    _drop_fake_modules()
    if installed_here:
        fake_pi.uninstall()
