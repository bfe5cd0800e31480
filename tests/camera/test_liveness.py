"""What the watchdog sees: the camera capturing, and each output getting what it asks for.

First the bookkeeping of ``Camera`` with a camera driven by hand, then the real
sim camera on its own thread, with one output frozen at a time. ``stalled`` takes
the time to judge at, so "nothing owed" is checked an hour ahead without waiting.
"""

from __future__ import annotations

import time

from raspberry_pancake.camera.base import Camera, CameraSettings, H264Frame, JpegFrame
from raspberry_pancake.camera.sim import SimCamera
from raspberry_pancake.detection.slot import RgbSlot
from tests.camera.camhelpers import Collector, running

H264 = "the H.264 output (recording)"
JPEG = "the JPEG output (live view)"
RGB = "the RGB output (detection)"


class HandCamera(Camera):
    """A backend whose captures and deliveries the test makes itself."""

    def _start(self):
        pass

    def _stop(self):
        pass


class Failing:
    def outputframe(self, frame):
        raise RuntimeError("disk on fire")


def h264(n=0):
    return H264Frame(b"K", True, time.monotonic(), time.time(), n)


def owed(camera, seconds_ahead=3600.0):
    """The outputs ``stalled`` names when judged ``seconds_ahead`` from now."""
    problems = camera.stalled(1.0, now=time.monotonic() + seconds_ahead)
    return sorted(
        label for label in (H264, JPEG, RGB) if any(p.startswith(label) for p in problems)
    )


def test_a_camera_that_captured_nothing_is_stalled():
    camera = HandCamera(CameraSettings())
    assert camera.stalled(1.0) == ["the camera has captured no frame yet"]


def test_outputs_that_get_their_frames_are_fine():
    camera = HandCamera(CameraSettings())
    recorder, viewer = Collector(), Collector()
    camera.set_h264_output(recorder)
    camera.set_jpeg_output(viewer)
    camera._mark_alive()
    camera._deliver(recorder, h264())
    camera._deliver(viewer, JpegFrame(b"j", time.monotonic(), time.time(), 0))
    assert camera.stalled(1.0) == []
    # an hour without captures: the camera, not the outputs, is what stopped
    problems = camera.stalled(1.0, now=time.monotonic() + 3600)
    assert len(problems) == 1 and problems[0].startswith("the camera has captured no frame for")


def test_an_output_that_gets_nothing_while_the_camera_captures_is_stalled():
    camera = HandCamera(CameraSettings())
    recorder, viewer = Collector(), Collector()
    camera.set_h264_output(recorder)
    camera.set_jpeg_output(viewer)
    for n in range(3):  # the camera captures on, the live view gets its frames...
        camera._mark_alive()
        camera._deliver(viewer, JpegFrame(b"j", time.monotonic(), time.time(), n))
    assert camera.stalled(1.0) == []  # (not yet: owed for less than max_age)
    assert owed(camera) == [H264]  # ...and the H.264 encoder has frozen
    camera._deliver(recorder, h264())
    assert owed(camera) == []


def test_an_output_that_wants_nothing_is_owed_nothing():
    camera = HandCamera(CameraSettings())
    viewer = Collector(wanted=False)  # the live view without viewers
    camera.set_jpeg_output(viewer)
    camera._mark_alive()
    assert owed(camera) == []
    viewer.wanted = True  # a viewer comes: from the next capture on, frames are owed
    assert owed(camera) == []
    camera._mark_alive()
    assert owed(camera) == [JPEG]
    viewer.wanted = False  # and goes: the debt goes with it (an encoder may stop then)
    camera._mark_alive()
    assert owed(camera) == []


def test_a_frame_an_output_failed_on_does_not_count(caplog):
    camera = HandCamera(CameraSettings())
    broken = Failing()
    camera.set_h264_output(broken)
    camera._mark_alive()
    camera._deliver(broken, h264())
    assert owed(camera) == [H264]
    assert "an output failed on frame 0" in caplog.text


def test_detection_that_asked_and_got_nothing_is_owed_until_a_frame_comes():
    camera = HandCamera(CameraSettings())
    slot = RgbSlot()
    camera.set_rgb_output(slot)
    camera._mark_alive()
    assert owed(camera) == []  # detection has not asked
    assert slot.take(0.01) is None  # it asked, and gave up waiting
    camera._mark_alive()
    assert owed(camera) == [RGB]  # the request stands: a dead RGB path is seen


# the sim camera on its own thread


def wait_until(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_sim_h264_output_frozen_alone_is_seen_while_the_camera_captures_on():
    camera = SimCamera(CameraSettings(resolution=(160, 120), fps=20))
    recorder, viewer, idle = Collector(), Collector(), Collector(wanted=False)
    camera.set_h264_output(recorder)
    camera.set_jpeg_output(viewer)
    camera.set_rgb_output(idle)
    with running(camera):
        recorder.wait_for(5)
        camera.freeze(True, output="h264")
        count = len(recorder.wait_for(1))
        jpegs = len(viewer.wait_for(1))
        # the camera captures on and the live view gets frames; recording gets none
        viewer.wait_for(jpegs + 10)
        wait_until(lambda: H264 in " ".join(camera.stalled(0.3)))
        problems = camera.stalled(0.3)
        assert len(problems) == 1, problems
        assert len(recorder.frames) <= count + 1
        camera.freeze(False, output="h264")
        recorder.wait_for(count + 5)
        wait_until(lambda: camera.stalled(0.3) == [])
    assert idle.frames == []


def test_sim_frozen_whole_is_seen_as_the_camera():
    camera = SimCamera(CameraSettings(resolution=(160, 120), fps=20))
    recorder = Collector()
    camera.set_h264_output(recorder)
    with running(camera):
        recorder.wait_for(3)
        camera.freeze(True)
        wait_until(lambda: any("captured no frame for" in p for p in camera.stalled(0.3)))
        assert owed(camera) == []  # nothing was owed: the camera captured nothing
        camera.freeze(False)
        wait_until(lambda: camera.stalled(0.3) == [])


def test_sim_jpeg_frozen_matters_only_while_someone_watches():
    camera = SimCamera(CameraSettings(resolution=(160, 120), fps=20))
    viewer = Collector(wanted=False)
    camera.set_jpeg_output(viewer)
    with running(camera):
        camera.freeze(True, output="jpeg")
        wait_until(lambda: camera.last_frame_monotonic is not None)
        first = camera.last_frame_monotonic
        wait_until(lambda: camera.last_frame_monotonic > first + 0.5)
        assert owed(camera) == []  # nobody watches: nothing owed, frozen or not
        viewer.wanted = True
        wait_until(lambda: JPEG in " ".join(camera.stalled(0.3)))
        camera.freeze(False, output="jpeg")
        viewer.wait_for(3)
        wait_until(lambda: camera.stalled(0.3) == [])
