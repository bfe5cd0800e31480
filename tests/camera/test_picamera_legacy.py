"""The picamera (legacy stack) backend against the fake picamera 1.13."""

from __future__ import annotations

import inspect
import os
import time

import numpy as np
import pytest

from raspberry_pancake.camera.base import TIMESTAMP_FORMAT, CameraSettings
from raspberry_pancake.exc import CameraUnavailableError
from tests.camera.camhelpers import (
    BLUE,
    BLUE_AT,
    BROWN,
    BROWN_AT,
    Collector,
    colour_at,
    ffprobe_video,
    mirrored,
    nal_types,
    near,
    rgb_frames_while_nobody_waits,
    rgb_picture,
    running,
)
from tests.helpers import PI_H264

pytestmark = pytest.mark.usefixtures("fake_libs")


def make_camera(**settings):
    from raspberry_pancake.camera.picamera_legacy import PicameraCamera

    return PicameraCamera(CameraSettings(**settings), warmup=0)


def the_fake():
    import picamera.fake

    assert len(picamera.fake.cameras) == 1
    return picamera.fake.cameras[0]


def test_uses_one_splitter_port_per_output_within_the_documented_limits():
    camera = make_camera(resolution=(320, 240), fps=10)
    h264, jpeg, rgb = Collector(), Collector(), Collector()
    camera.set_h264_output(h264, (256, 192))
    camera.set_jpeg_output(jpeg)
    camera.set_rgb_output(rgb, (100, 60))
    with running(camera):
        h264.wait_for(3)
        jpeg.wait_for(3)
        rgb.wait_for(3)
    fake = the_fake()
    assert fake.log[0] == ("open", {"resolution": (320, 240), "framerate": 10})
    by_port = {r["port"]: r for r in fake.recordings}
    assert len(by_port) == 3 and set(by_port) <= {0, 1, 2, 3}
    formats = {r["format"]: r for r in fake.recordings}
    assert formats["h264"]["resize"] == (256, 192)
    assert formats["h264"]["options"] == {"inline_headers": True, "intra_period": 10}
    assert formats["mjpeg"]["resize"] is None  # the live view is the camera's resolution
    assert formats["rgb"]["resize"] == (100, 60)


def test_no_resize_when_the_recording_is_the_camera_resolution():
    camera = make_camera(resolution=(320, 240), fps=10)
    camera.set_h264_output(Collector(), (320, 240))
    camera.start()
    camera.stop()
    (recording,) = the_fake().recordings
    assert recording["resize"] is None


def test_h264_is_real_with_headers_and_a_keyframe_every_second(tmp_path):
    fps = 8
    camera = make_camera(resolution=(320, 240), fps=fps)
    h264 = Collector()
    camera.set_h264_output(h264, (192, 144))
    with running(camera):
        frames = h264.wait_for(2 * fps + 1)
    assert frames[0].keyframe
    keyframe_positions = [n for n, f in enumerate(frames) if f.keyframe]
    assert keyframe_positions[:3] == [0, fps, 2 * fps]
    for frame in frames:
        types = nal_types(frame.data)
        if frame.keyframe:
            # headers merged in front of the IDR picture: a file may start here
            assert types[:2] == [7, 8] and 5 in types
        else:
            assert 5 not in types and 7 not in types and 1 in types
    times = [f.wall for f in frames]
    assert times == sorted(times)
    assert abs(times[-1] - time.time()) < 30
    path = tmp_path / "clip.h264"
    path.write_bytes(b"".join(f.data for f in frames))
    probe = ffprobe_video(str(path))
    assert probe == {"codec": "h264", "size": (192, 144), "frames": len(frames)}


def test_rgb_is_cropped_from_the_padded_buffer_to_exactly_w_h_3_bytes():
    camera = make_camera(resolution=(320, 240), fps=10)
    rgb = Collector()
    camera.set_rgb_output(rgb, (100, 60))  # padded by the camera to 128x64
    with running(camera):
        frames = rgb.wait_for(3)
    for frame in frames:
        assert (frame.width, frame.height, len(frame.data)) == (100, 60, 100 * 60 * 3)
    picture = rgb_picture(frames[-1])
    assert near(colour_at(picture, BROWN_AT), BROWN) and near(colour_at(picture, BLUE_AT), BLUE)
    # the fake fills the padding with 0xA5: none of it may survive on the right or bottom edge
    assert not (picture[:, -1] == 0xA5).all() and not (picture[-1] == 0xA5).all()


def test_crop_padded_rgb_keeps_exactly_the_picture():
    from raspberry_pancake.camera.picamera_legacy import crop_padded_rgb, padded_size

    assert padded_size((100, 60)) == (128, 64)
    assert padded_size((320, 240)) == (320, 240)
    picture = np.arange(60 * 100 * 3, dtype=np.uint32).astype(np.uint8).reshape(60, 100, 3)
    padded = np.full((64, 128, 3), 7, dtype=np.uint8)
    padded[:60, :100] = picture
    assert crop_padded_rgb(padded.tobytes(), (100, 60)) == picture.tobytes()
    with pytest.raises(ValueError):
        crop_padded_rgb(b"\0" * (100 * 60 * 3), (100, 60))


def test_rgb_is_skipped_while_nobody_waits():
    assert rgb_frames_while_nobody_waits(make_camera(resolution=(320, 240), fps=10)) == []


def test_flips_and_rotation_are_the_camera_settings():
    camera = make_camera(resolution=(320, 240), fps=10, hflip=True, vflip=False, rotation=180)
    camera.close()
    fake = the_fake()
    sets = {entry[1]: entry[2] for entry in fake.log if entry[0] == "set"}
    assert (sets["hflip"], sets["vflip"], sets["rotation"]) == (True, False, 180)


def test_hflip_mirrors_the_picture():
    camera = make_camera(resolution=(320, 240), fps=10, hflip=True)
    rgb = Collector()
    camera.set_rgb_output(rgb)
    with running(camera):
        picture = rgb_picture(rgb.wait_for(2)[-1])
    assert near(colour_at(picture, mirrored(BROWN_AT)), BROWN)
    assert near(colour_at(picture, mirrored(BLUE_AT)), BLUE)


def test_annotation_is_the_time_rewritten_every_second():
    camera = make_camera(resolution=(320, 240), fps=10, annotate_text_size=30)
    rgb = Collector()
    camera.set_rgb_output(rgb)
    with running(camera):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            texts = [e[2] for e in the_fake().log if e[:2] == ("set", "annotate_text")]
            if len(set(texts)) >= 3:
                break
            time.sleep(0.1)
        picture = rgb_picture(rgb.wait_for(1)[-1])
    assert len(set(texts)) >= 3, texts
    for text in texts:
        time.strptime(text, TIMESTAMP_FORMAT)
    assert texts == sorted(texts)
    sets = {entry[1]: entry[2] for entry in the_fake().log if entry[0] == "set"}
    assert sets["annotate_text_size"] == 30
    # burnt in by the camera: white text on the black box at the top centre
    band = picture[2:30, 100:220]
    assert (band.max(axis=2) < 40).mean() > 0.3 and (band.min(axis=2) > 200).any()


def test_stop_stops_every_recording_then_closes_the_camera():
    camera = make_camera(resolution=(320, 240), fps=10)
    outputs = Collector(), Collector(), Collector()
    camera.set_h264_output(outputs[0])
    camera.set_jpeg_output(outputs[1])
    camera.set_rgb_output(outputs[2])
    camera.start()
    outputs[0].wait_for(2)
    camera.stop()
    fake = the_fake()
    assert fake.closed
    calls = [e[0] for e in fake.log if e[0] in ("start_recording", "stop_recording", "close")]
    assert calls == ["start_recording"] * 3 + ["stop_recording"] * 3 + ["close"]
    counts = [len(o.frames) for o in outputs]
    time.sleep(0.5)
    assert [len(o.frames) for o in outputs] == counts


def test_warmup_is_two_seconds_by_default_and_a_constructor_argument():
    from raspberry_pancake.camera.picamera_legacy import PicameraCamera

    assert inspect.signature(PicameraCamera).parameters["warmup"].default == 2.0
    camera = PicameraCamera(CameraSettings(), warmup=0.4)
    camera.set_jpeg_output(Collector())
    began = time.monotonic()
    camera.start()
    waited = time.monotonic() - began
    started = [e for e in the_fake().log if e[0] == "start_recording"]
    camera.stop()
    assert waited >= 0.4 and len(started) == 1


def test_a_missing_camera_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("FAKE_PICAMERA_NO_CAMERA", "1")
    with pytest.raises(CameraUnavailableError, match="--camera sim") as info:
        make_camera()
    assert "\n" not in str(info.value)


def test_watchdog_sees_frames_arrive():
    camera = make_camera(resolution=(320, 240), fps=10)
    jpeg = Collector()
    camera.set_jpeg_output(jpeg)
    assert camera.last_frame_monotonic is None
    with running(camera):
        jpeg.wait_for(2)
        assert camera.last_frame_monotonic is not None


@pytest.mark.skipif(not os.path.exists(PI_H264), reason="../shared/testdata is absent")
def test_a_real_pi_bitstream_passes_through_unchanged():
    """raspivid's own output, cut into buffers as MMAL delivers them, loses and gains nothing."""
    from picamera.camera import nal_units
    from picamera.frames import PiVideoFrame, PiVideoFrameType

    from raspberry_pancake.camera.picamera_legacy import PortWriter

    camera = make_camera()
    out = Collector()
    camera.h264_output = out
    data = open(PI_H264, "rb").read()
    current = {}
    writer = PortWriter(lambda: current["info"], camera._on_h264)
    header = b""
    for nal_type, unit in nal_units(data):
        if nal_type in (7, 8):
            header += unit
            continue
        if header:
            current["info"] = PiVideoFrame(0, PiVideoFrameType.sps_header, 0, 0, 0, None, True)
            writer.write(header)
            header = b""
        kind = PiVideoFrameType.key_frame if nal_type == 5 else PiVideoFrameType.frame
        half = len(unit) // 2
        current["info"] = PiVideoFrame(0, kind, 0, 0, 0, 1000, False)
        writer.write(unit[:half])
        current["info"] = PiVideoFrame(0, kind, 0, 0, 0, 1000, True)
        writer.write(unit[half:])
    camera.close()
    frames = out.frames
    assert len(frames) == 116 and sum(f.keyframe for f in frames) == 2
    assert nal_types(frames[0].data)[:3] == [7, 8, 5]
    assert b"".join(f.data for f in frames) == data


def test_h264_beyond_1080p_is_one_clear_error_and_the_camera_is_released():
    from raspberry_pancake.exc import ConfigError

    camera = make_camera(resolution=(2592, 1944), fps=10)
    camera.set_h264_output(Collector())
    with pytest.raises(ConfigError, match="at most 1920x1080") as info:
        camera.start()
    assert "\n" not in str(info.value) and the_fake().closed


def test_a_recording_the_camera_refuses_is_one_error_and_everything_is_released(monkeypatch):
    import picamera

    camera = make_camera(resolution=(320, 240), fps=10)
    camera.set_h264_output(Collector())
    camera.set_jpeg_output(Collector())
    fake = the_fake()
    real_start = fake.start_recording

    def refuse_mjpeg(output, format=None, **kwargs):
        if format == "mjpeg":
            raise picamera.PiCameraError("Failed to enable connection: Out of resources")
        return real_start(output, format, **kwargs)

    monkeypatch.setattr(fake, "start_recording", refuse_mjpeg)
    with pytest.raises(CameraUnavailableError, match="Out of resources"):
        camera.start()
    assert fake.closed
    assert [e[0] for e in fake.log if e[0] in ("stop_recording", "close")] == [
        "stop_recording",
        "close",
    ]
