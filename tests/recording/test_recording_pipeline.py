"""build_pipeline: which outputs the flags register on the camera, and startup errors."""

from __future__ import annotations

import argparse

import pytest

from raspberry_pancake.exc import CustomizeError
from raspberry_pancake.pipeline import build_pipeline
from raspberry_pancake.recording.fanout import RecordingFanout


class RegisteringCamera:
    """Remembers what the pipeline registered, as the camera base class would take it."""

    def __init__(self):
        self.h264 = self.rgb = None

    def set_h264_output(self, output, size=None):
        self.h264 = (output, size)

    def set_rgb_output(self, output, size=None):
        self.rgb = (output, size)


def args(**flags):
    base = dict(
        record_continuous=None,
        record_detection=None,
        record_resize=None,
        detect=None,
        detect_resize=None,
        detect_interval=0.1,
        emit=None,
        customize="/nonexistent/customize.py",
    )
    base.update(flags)
    return argparse.Namespace(**base)


def test_nothing_asked_builds_nothing():
    camera = RegisteringCamera()
    assert build_pipeline(args(emit="ppp"), camera) is None
    assert camera.h264 is None and camera.rgb is None


def test_both_recordings_share_one_h264_output(tmp_path):
    camera = RegisteringCamera()
    customize = tmp_path / "c.py"
    customize.write_text("def detect(rgb):\n    return False\n")
    pipeline = build_pipeline(
        args(
            record_continuous=str(tmp_path),
            record_detection=("all", str(tmp_path)),
            record_resize=[640, 480],
            detect="image",
            detect_resize=[64, 48],
            customize=str(customize),
        ),
        camera,
    )
    output, size = camera.h264
    assert isinstance(output, RecordingFanout) and size == (640, 480)
    assert [r.name for r in output.recorders] == ["continuous recording", "all-mode recording"]
    assert camera.rgb[1] == (64, 48) and hasattr(camera.rgb[0], "wants_frame")
    pipeline.start()
    pipeline.close()


def test_no_image_detection_needs_no_rgb_frames(tmp_path):
    camera = RegisteringCamera()
    customize = tmp_path / "c.py"
    customize.write_text("def detect():\n    return False\n")
    pipeline = build_pipeline(args(detect="no-image", customize=str(customize)), camera)
    assert camera.rgb is None and camera.h264 is None
    pipeline.start()
    pipeline.close()


def test_bad_customize_is_refused_before_anything_is_registered():
    camera = RegisteringCamera()
    with pytest.raises(CustomizeError, match="does not exist"):
        build_pipeline(args(record_detection=("edge", "/tmp"), detect="image"), camera)
    assert camera.h264 is None and camera.rgb is None


def test_a_failing_recorder_is_contained_and_logged_once(caplog):
    from rec_synthetic import local, make_frames

    from raspberry_pancake.recording.continuous import ContinuousRecorder

    class Broken:
        name = "broken recorder"

        def on_frame(self, frame):
            raise RuntimeError("bug")

        def finish(self):
            return []

    queued = []

    class ListWriter:
        put = staticmethod(queued.append)

    fanout = RecordingFanout([Broken(), ContinuousRecorder("/rec")], ListWriter())
    frames = make_frames(local("2020-06-23 17:00:00"), 5)
    for frame in frames:
        fanout.outputframe(frame)
    fanout.finish()
    assert len(queued) == len(frames) + 2  # open, every frame, close
    assert caplog.text.count("Traceback") == 1
