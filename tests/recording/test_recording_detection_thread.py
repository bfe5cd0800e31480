"""The detection thread's steps and the emitter, without pancake.py around them."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid

import pytest

from raspberry_pancake.camera.base import RgbFrame
from raspberry_pancake.detection.loader import load_detect
from raspberry_pancake.detection.slot import RgbSlot
from raspberry_pancake.detection.thread import DetectionThread
from raspberry_pancake.emitter import Emitter
from raspberry_pancake.exc import CustomizeError
from raspberry_pancake.messages import Message


class ScriptedSlot:
    """Stands in for the camera: hands out the RGB frames of a script, one per take."""

    def __init__(self, frames):
        self.frames = list(frames)

    def take(self, timeout):
        return self.frames.pop(0) if self.frames else None

    def wake(self):
        pass


def rgb(t, value=0):
    """An RGB frame captured at monotonic time ``t``, with a wall clock far from it."""
    return RgbFrame(bytes([value]) * 12, 2, 2, t, 1.6e9 + t, int(t * 10))


def test_detect_bytes_edges_carry_the_capture_time_and_are_sampled():
    answers = iter([False, True, False, True, True, False, False])
    frames = [rgb(100 + i * 0.4) for i in range(7)]
    edges = []
    thread = DetectionThread(lambda data: next(answers), 0.4, edges.append, ScriptedSlot(frames))
    for _ in frames:
        thread.run_once()
    # true at 100.4; false at 100.8 is too soon (under a second), so is 101.2;
    # 101.6 is true anyway; false at 102.0 becomes the second edge
    assert [(e.time, e.state) for e in edges] == [(100.4, True), (pytest.approx(102.0), False)]


def test_detect_raising_counts_as_false_and_is_logged_rarely(caplog):
    calls = {"n": 0}

    def detect():
        calls["n"] += 1
        if calls["n"] < 3:
            return True
        raise ValueError("sensor unplugged")

    edges = []
    thread = DetectionThread(detect, 0.01, edges.append)
    thread.sampler.spacing = 0  # every change counts here
    with caplog.at_level(logging.ERROR):
        for _ in range(500):
            thread.run_once()
    assert [e.state for e in edges] == [True, False]
    assert thread.failures == 498 and thread.calls == 500
    assert caplog.text.count("Traceback") == 1
    assert len(caplog.records) == 1  # the next line only after a minute


def test_rgb_slot_asks_for_a_frame_only_while_detection_waits():
    slot = RgbSlot()
    assert not slot.wants_frame()
    slot.outputframe(rgb(1.0))  # nobody asked: ignored
    assert slot.take(0.01) is None
    # the request of a take that gave up stands (the watchdog waits on it)...
    assert slot.wants_frame()
    slot.outputframe(rgb(1.5))
    assert not slot.wants_frame()  # ...until a frame comes, which the next take drops as stale
    # a frame that arrives while take() waits is handed over
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take(30)))
    t.start()
    deadline = time.monotonic() + 30
    while not slot.wants_frame() and time.monotonic() < deadline:
        time.sleep(0.001)
    slot.outputframe(rgb(2.0))
    t.join(30)
    assert got[0].monotonic == 2.0 and not slot.wants_frame()
    # at shutdown a waiting take() returns at once, with nothing
    t = threading.Thread(target=lambda: got.append(slot.take(3600)))
    t.start()
    while not slot.wants_frame() and time.monotonic() < deadline:
        time.sleep(0.001)
    slot.wake()
    t.join(30)
    assert not t.is_alive() and got[1] is None


@pytest.mark.parametrize(
    "source, mode, error",
    [
        ("def detect(rgb):\n    return False\n", "no-image", "calls detect()"),
        ("def detect(a, b):\n    return False\n", "image", "calls detect(bytes)"),
        ("import nonexistent_module_xyz\n", "image", "failed to import"),
        ("import sys\nsys.exit(3)\n", "image", "failed to import"),
        ("x = 1\n", "image", "does not define a function detect()"),
    ],
)
def test_load_detect_refuses_what_cannot_work(tmp_path, source, mode, error):
    path = tmp_path / "c.py"
    path.write_text(source)
    with pytest.raises(CustomizeError, match=error.replace("(", r"\(").replace(")", r"\)")):
        load_detect(str(path), mode)


def test_load_detect_accepts_both_call_forms(tmp_path):
    path = tmp_path / "c.py"
    path.write_text("def detect(rgb=None, *rest):\n    return rgb is not None\n")
    assert load_detect(str(path), "image")(b"x") is True
    assert load_detect(str(path), "no-image")() is False


# emitter


def bound_receiver(name):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(30)
    return sock


def test_emitter_keeps_messages_until_the_receiver_comes_back(caplog):
    name = f"rp-test-{uuid.uuid4().hex}"
    emitter = Emitter(name, retry_interval=0.05)
    emitter.start()
    try:
        with caplog.at_level(logging.WARNING):
            for i in range(5):
                emitter.send(Message(h264=f"/x/{i}.h264"))
            deadline = time.monotonic() + 30
            while "no receiver" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.01)
        with bound_receiver(name) as sock:
            got = [json.loads(sock.recv(4096)) for _ in range(5)]
    finally:
        emitter.close()
    assert got == [{"h264": f"/x/{i}.h264"} for i in range(5)]
    assert "no receiver" in caplog.text


def test_emitter_drops_the_oldest_when_its_queue_is_full(caplog):
    name = f"rp-test-{uuid.uuid4().hex}"
    emitter = Emitter(name, queue_size=3)  # not started: nothing leaves the queue
    with caplog.at_level(logging.WARNING):
        for i in range(5):
            emitter.send(Message(detection=i % 2 == 0))
    assert emitter.dropped == 2
    assert caplog.text.count("dropped the oldest") == 2
    with bound_receiver(name) as sock:
        emitter.start()
        got = [json.loads(sock.recv(4096)) for _ in range(3)]
        emitter.close()
    assert got == [{"detection": True}, {"detection": False}, {"detection": True}]


def test_emitter_close_gives_up_on_an_absent_receiver(caplog):
    emitter = Emitter(f"rp-test-{uuid.uuid4().hex}", retry_interval=0.05)
    emitter.start()
    emitter.send(Message(detection=True))
    with caplog.at_level(logging.ERROR):
        emitter.close(timeout=0.2)
    assert "1 messages" in caplog.text and "never received" in caplog.text
