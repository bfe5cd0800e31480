"""The composition root: which outputs each config registers, and its start/stop order."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys

import pytest

from raspberry_pancake import service as service_module
from raspberry_pancake.config import parse_config
from raspberry_pancake.detection.slot import RgbSlot
from raspberry_pancake.exc import CustomizeError
from raspberry_pancake.recording.fanout import RecordingFanout
from raspberry_pancake.service import PancakeService
from raspberry_pancake.web.live import FrameBroadcaster
from tests.helpers import free_port


def build(argv):
    return PancakeService(parse_config(["--camera", "sim", "--port", str(free_port()), *argv]))


def customize(tmp_path, signature="rgb"):
    path = tmp_path / "c.py"
    path.write_text(f"def detect({signature}):\n    return False\n")
    return str(path)


def test_both_recordings_share_one_h264_output_and_detection_gets_its_rgb(tmp_path):
    service = build(
        [
            "--record-continuous", str(tmp_path),
            "--record-detection", "all", str(tmp_path),
            "--record-resize", "640", "480",
            "--detect", "image",
            "--detect-resize", "64", "48",
            "--customize", customize(tmp_path),
        ]
    )  # fmt: skip
    camera = service.camera
    assert isinstance(camera.jpeg_output, FrameBroadcaster)
    assert isinstance(camera.h264_output, RecordingFanout) and camera.h264_size == (640, 480)
    names = [r.name for r in camera.h264_output.recorders]
    assert names == ["continuous recording", "all-mode recording"]
    assert isinstance(camera.rgb_output, RgbSlot) and camera.rgb_size == (64, 48)
    asyncio.run(start_and_stop(service))


def test_live_view_only_registers_only_the_jpeg_output():
    service = build([])
    assert service.camera.h264_output is None and service.camera.rgb_output is None
    assert service.writer is None and service.detection is None
    asyncio.run(start_and_stop(service))


def test_no_image_detection_asks_for_no_rgb_frames(tmp_path):
    service = build(["--detect", "no-image", "--customize", customize(tmp_path, "")])
    assert service.camera.rgb_output is None and service.camera.h264_output is None
    assert service.detection is not None
    asyncio.run(start_and_stop(service))


def test_a_bad_customize_is_refused_before_the_camera_is_opened(monkeypatch, tmp_path):
    opened = []
    monkeypatch.setattr(service_module, "open_camera", lambda *a: opened.append(a))
    with pytest.raises(CustomizeError, match="does not exist"):
        build(["--detect", "image", "--customize", str(tmp_path / "missing.py")])
    assert opened == []


def test_stop_runs_in_order_and_releases_everything(tmp_path, caplog):
    """Frames stop before recordings close; the files are announced before the emitter
    goes; the camera is released."""
    service = build(["--record-continuous", str(tmp_path)])
    order = []
    for name, part in [
        ("camera.stop", service.camera),
        ("fanout.finish", service.fanout),
        ("writer.finish", service.writer),
        ("writer.close", service.writer),
    ]:
        method = name.split(".")[1]
        original = getattr(part, method)

        def spy(*args, _original=original, _name=name, **kwargs):
            order.append(_name)
            return _original(*args, **kwargs)

        setattr(part, method, spy)
    caplog.set_level(logging.INFO)
    asyncio.run(start_and_stop(service, frames=3))
    assert order == ["camera.stop", "fanout.finish", "writer.finish", "writer.close"]
    assert list(tmp_path.glob("*.h264")), "the frames reached a file before the stop"
    assert "stopped" in caplog.text


async def start_and_stop(service: PancakeService, frames: int = 0) -> None:
    service.start()
    try:
        if frames:
            fanout = service.fanout
            while fanout.frames_received < frames:
                await asyncio.sleep(0.05)
    finally:
        service.stop()


SIGTERM_DURING_START = """
import asyncio, logging, os, signal, sys
sys.path.insert(0, {root!r})
from raspberry_pancake.config import parse_config
from raspberry_pancake.service import PancakeService
logging.basicConfig(level=logging.INFO, stream=sys.stdout)
service = PancakeService(parse_config(sys.argv[1:]))
start_camera = service.camera.start
def start_camera_and_get_stopped():
    start_camera()
    os.kill(os.getpid(), signal.SIGTERM)  # as systemd may, while pancake still starts
service.camera.start = start_camera_and_get_stopped
sys.exit(asyncio.run(service.run()))
"""


def test_a_sigterm_while_starting_stops_cleanly(tmp_path):
    """The recordings are already open by then: a SIGTERM must close them, not kill."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    argv = ["--camera", "sim", "--port", str(free_port()), "--record-continuous", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-c", SIGTERM_DURING_START.format(root=root), *argv],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SIGTERM received" in done.stdout and "stopped" in done.stdout, done.stdout
