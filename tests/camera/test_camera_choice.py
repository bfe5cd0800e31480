"""``--camera {auto,picamera,picamera2,sim}``: which backend opens, and the one-line errors."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys

import pytest

from raspberry_pancake.camera import BACKENDS, CameraSettings, open_camera
from raspberry_pancake.exc import CameraUnavailableError
from tests.helpers import FAKES, ROOT

REAL_PI_LIBS = any(importlib.util.find_spec(n) for n in ("picamera", "picamera2"))


def test_backends():
    assert BACKENDS == ("auto", "picamera", "picamera2", "sim")


def test_importing_the_package_touches_no_pi_library():
    code = (
        "import sys, raspberry_pancake.camera, raspberry_pancake.camera.picamera_legacy, "
        "raspberry_pancake.camera.picamera2_backend; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('picamera', 'picamera2', 'libcamera')))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([ROOT, FAKES]),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.usefixtures("fake_libs")
def test_auto_prefers_picamera2_when_it_finds_a_camera():
    camera = open_camera("auto", CameraSettings())
    camera.close()
    assert camera.name == "picamera2"


@pytest.mark.usefixtures("fake_libs")
def test_auto_falls_back_to_picamera(monkeypatch):
    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", "0")
    camera = open_camera("auto", CameraSettings())
    camera.close()
    assert camera.name == "picamera"


@pytest.mark.usefixtures("fake_libs")
def test_auto_without_any_working_camera_suggests_sim(monkeypatch):
    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", "0")
    monkeypatch.setenv("FAKE_PICAMERA_NO_CAMERA", "1")
    with pytest.raises(CameraUnavailableError, match="--camera sim") as info:
        open_camera("auto", CameraSettings())
    assert "\n" not in str(info.value)


@pytest.mark.usefixtures("fake_libs")
@pytest.mark.parametrize("name", ["picamera", "picamera2"])
def test_explicit_choice_opens_that_backend(name):
    camera = open_camera(name, CameraSettings())
    camera.close()
    assert camera.name == name


@pytest.mark.skipif(REAL_PI_LIBS, reason="a Pi camera library is installed here")
@pytest.mark.parametrize(
    "choice, expected",
    [
        ("picamera2", "--camera picamera2: the picamera2 library is not installed"),
        ("picamera", "--camera picamera: the picamera library is not installed"),
        ("auto", "no Raspberry Pi camera was found on this machine"),
    ],
)
def test_missing_library_is_one_line_and_exit_3(choice, expected):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "pancake.py"), "--camera", choice, "--port", port],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 3, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "--camera sim" in lines[0], lines
    assert "Traceback" not in out.stderr
