"""What a user's detect() can do to the detection thread, and that detection goes on."""

from __future__ import annotations

import logging
import threading
import time

from raspberry_pancake.detection import thread as detection_module
from raspberry_pancake.detection.thread import DetectionThread


def scripted(*steps):
    """A detect() that takes one step per call: raise an exception, or return a value."""
    calls = iter(steps)

    def detect():
        step = next(calls, False)
        if isinstance(step, BaseException) or (
            isinstance(step, type) and issubclass(step, BaseException)
        ):
            raise step
        return step() if callable(step) else step

    return detect


async def async_answer():
    return True


def test_systemexit_keyboardinterrupt_and_odd_answers_count_as_false(caplog):
    class Unanswerable:
        def __bool__(self):
            raise SystemExit("no truth in me")

    detect = scripted(
        True,
        SystemExit("bye"),
        KeyboardInterrupt,
        False,
        True,
        Unanswerable(),
        async_answer,  # an ``async def detect`` returns a coroutine: not True
        GeneratorExit,
        False,
    )
    edges = []
    thread = DetectionThread(detect, 1.0, edges.append)
    with caplog.at_level(logging.ERROR):
        for _ in range(9):
            thread.run_once()
            thread.sampler._last_edge = None  # no one-second spacing here
    assert [e.state for e in edges] == [True, False, True, False]
    assert thread.calls == 9 and thread.failures == 5
    assert "SystemExit: bye" in caplog.text  # the first, with its traceback


def test_a_detect_that_does_not_return_is_reported_and_its_return_too(caplog, monkeypatch):
    monkeypatch.setattr(detection_module, "STALL_CHECK_SECONDS", 0.05)
    release = threading.Event()
    calls = []

    def detect():
        calls.append(1)
        if len(calls) == 2:
            release.wait(60)
        return False

    thread = DetectionThread(detect, 0.01, lambda edge: None)
    thread.stall_seconds = 0.3
    with caplog.at_level(logging.WARNING):
        thread.start()
        deadline = time.monotonic() + 60
        while "has not returned" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "detect() has not returned for 0 s" in caplog.text
        release.set()
        while len(calls) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        thread.close(5)
    assert "detect() returned after" in caplog.text
    assert caplog.text.count("has not returned") == 1
