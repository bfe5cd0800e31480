"""The Picamera2 backend against the fake Picamera2 0.3 (and its libcamera)."""

from __future__ import annotations

import inspect
import io
import time

import av
import numpy as np
import pytest
from PIL import Image

from raspberry_pancake.camera.base import CameraSettings
from raspberry_pancake.camera.picamera2_backend import (
    StreamPlan,
    TimestampOverlay,
    plan_streams,
    yuv420_planes,
    yuv420_to_rgb,
)
from raspberry_pancake.exc import CameraUnavailableError, ConfigError
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

pytestmark = pytest.mark.usefixtures("fake_libs")


def make_camera(**settings):
    from raspberry_pancake.camera.picamera2_backend import Picamera2Camera

    return Picamera2Camera(CameraSettings(**settings), warmup=0)


def the_fake():
    import picamera2.fake

    assert len(picamera2.fake.cameras) == 1
    return picamera2.fake.cameras[0]


def logged(fake, call):
    return [entry for entry in fake.log if entry[0] == call]


def decode_jpeg(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def first_picture(h264: bytes) -> np.ndarray:
    codec = av.CodecContext.create("h264", "r")
    for packet in codec.parse(h264):
        for frame in codec.decode(packet):
            return frame.to_ndarray(format="rgb24")
    raise AssertionError("no picture decoded")


# the stream plan (pure)


@pytest.mark.parametrize(
    "record, jpeg, rgb, plan",
    [
        ((320, 240), True, None, StreamPlan((320, 240), None, "main", "main", None)),
        ((640, 480), True, None, StreamPlan((640, 480), (320, 240), "main", "lores", None)),
        ((160, 120), True, None, StreamPlan((320, 240), (160, 120), "lores", "main", None)),
        (None, True, (100, 60), StreamPlan((320, 240), (100, 60), None, "main", "lores")),
        ((640, 480), True, (100, 60), StreamPlan((640, 480), (320, 240), "main", "lores", "lores")),
        ((160, 120), True, (200, 150), StreamPlan((320, 240), (160, 120), "lores", "main", "main")),
        (None, False, None, StreamPlan((320, 240), None, None, None, None)),
    ],
)
def test_plan_streams(record, jpeg, rgb, plan):
    assert plan_streams((320, 240), record, jpeg, rgb) == plan
    if plan.lores:
        assert plan.lores[0] <= plan.main[0] and plan.lores[1] <= plan.main[1]


def test_plan_refuses_sizes_that_do_not_nest():
    with pytest.raises(ConfigError, match="fit one inside the other"):
        plan_streams((320, 240), (400, 200), True, None)


# conversions and the overlay (pure)


def yuv420_buffer(rgb: np.ndarray, stride: int) -> np.ndarray:
    from picamera2.request import image_to_yuv420

    return image_to_yuv420(Image.fromarray(rgb), stride)


def test_yuv420_to_rgb_honours_the_stride():
    rng = np.random.default_rng(1)
    small = rng.integers(0, 255, (15, 25, 3), dtype=np.uint8)
    rgb = np.asarray(Image.fromarray(small).resize((100, 60), Image.NEAREST))
    buf = yuv420_buffer(rgb, stride=128)  # 28 junk bytes right of every row
    assert buf.shape == (90, 128)
    back = yuv420_to_rgb(buf, (100, 60))
    assert back.shape == (60, 100, 3)
    assert np.abs(back.astype(int) - rgb).mean() < 12


def test_yuv420_planes_are_views_into_the_buffer():
    buf = np.zeros((90, 128), dtype=np.uint8)
    y, u, v = yuv420_planes(buf, (100, 60))
    assert (y.shape, u.shape, v.shape) == ((60, 100), (30, 50), (30, 50))
    y[:] = 1
    u[:] = 2
    v[:] = 3
    flat = buf.reshape(-1)
    assert flat[:128].tolist() == [1] * 100 + [0] * 28
    assert flat[60 * 128] == 2 and flat[60 * 128 + 30 * 64] == 3


def test_overlay_draws_the_time_into_luma_and_greys_the_chroma():
    rgb = np.full((240, 320, 3), (40, 120, 200), dtype=np.uint8)
    buf = yuv420_buffer(rgb, stride=320)
    overlay = TimestampOverlay((320, 240), 24)
    overlay.draw(buf, time.mktime((2020, 6, 23, 17, 14, 50, 0, 0, -1)))
    y, u, v = yuv420_planes(buf, (320, 240))
    box = y[4:24, 60:260]
    assert (box <= 20).mean() > 0.3 and (box >= 200).any()
    assert (u[2:10, 40:120] == 128).all() and (v[2:10, 40:120] == 128).all()
    assert (y[200:] > 60).all()  # nothing drawn below the box


# the backend against the fake


def run_all_outputs(settings, record=(640, 480), detect=(100, 60), frames=3):
    camera = make_camera(**settings)
    h264, jpeg, rgb = Collector(), Collector(), Collector()
    camera.set_h264_output(h264, record)
    camera.set_jpeg_output(jpeg)
    camera.set_rgb_output(rgb, detect)
    with running(camera):
        h264.wait_for(frames)
        jpeg.wait_for(frames)
        rgb.wait_for(frames)
    return camera, h264.frames, jpeg.frames, rgb.frames


def test_configures_documented_streams_and_encoders():
    camera, *_ = run_all_outputs({"resolution": (320, 240), "fps": 10})
    fake = the_fake()
    (configure,) = logged(fake, "configure")
    config = configure[1]
    assert config["main"]["size"] == (640, 480) and config["main"]["format"] == "YUV420"
    assert config["lores"]["size"] == (320, 240) and config["lores"]["format"] == "YUV420"
    assert config["controls"]["FrameDurationLimits"] == (100000, 100000)
    encoders = {entry[1]: entry for entry in logged(fake, "start_encoder")}
    assert set(encoders) == {"H264Encoder", "MJPEGEncoder"}
    _, _, stream, params = encoders["H264Encoder"]
    assert stream == "main" and params["repeat"] is True and params["iperiod"] == 10
    assert encoders["MJPEGEncoder"][2] == "lores"
    assert fake.callback_errors == []


def test_software_jpeg_when_the_board_has_no_mjpeg_encoder(monkeypatch):
    monkeypatch.setenv("FAKE_PICAMERA2_NO_HW_MJPEG", "1")
    _, _, jpeg, _ = run_all_outputs({"resolution": (320, 240), "fps": 10})
    encoders = [entry[1] for entry in logged(the_fake(), "start_encoder")]
    assert encoders == ["H264Encoder", "JpegEncoder"]
    assert decode_jpeg(jpeg[-1].data).shape == (240, 320, 3)


def test_h264_is_real_with_headers_and_a_keyframe_every_second(tmp_path):
    fps = 8
    camera = make_camera(resolution=(320, 240), fps=fps)
    h264 = Collector()
    camera.set_h264_output(h264, (320, 240))
    with running(camera):
        frames = h264.wait_for(2 * fps + 1)
    assert [n for n, f in enumerate(frames) if f.keyframe][:3] == [0, fps, 2 * fps]
    for frame in frames:
        types = nal_types(frame.data)
        assert (types[:2] == [7, 8] and 5 in types) if frame.keyframe else 5 not in types
    times = [f.wall for f in frames]
    assert times == sorted(times) and abs(times[-1] - time.time()) < 30
    path = tmp_path / "clip.h264"
    path.write_bytes(b"".join(f.data for f in frames))
    assert ffprobe_video(str(path)) == {"codec": "h264", "size": (320, 240), "frames": len(frames)}


def test_rgb_is_exactly_w_h_3_bytes_of_the_picture():
    *_, rgb = run_all_outputs({"resolution": (320, 240), "fps": 10}, detect=(100, 60))
    for frame in rgb:
        assert (frame.width, frame.height, len(frame.data)) == (100, 60, 100 * 60 * 3)
    picture = rgb_picture(rgb[-1])
    assert near(colour_at(picture, BROWN_AT), BROWN, 35)
    assert near(colour_at(picture, BLUE_AT), BLUE, 35)


def test_rgb_is_skipped_while_nobody_waits():
    assert rgb_frames_while_nobody_waits(make_camera(resolution=(320, 240), fps=10)) == []


@pytest.mark.parametrize(
    "flips, transform",
    [
        ({}, (0, 0)),
        ({"hflip": True}, (1, 0)),
        ({"vflip": True}, (0, 1)),
        ({"rotation": 180}, (1, 1)),
        ({"rotation": 180, "hflip": True}, (0, 1)),
    ],
)
def test_flips_and_half_turn_are_the_configuration_transform(flips, transform):
    camera = make_camera(resolution=(320, 240), fps=10, **flips)
    camera.set_jpeg_output(Collector())
    camera.start()
    camera.stop()
    (configure,) = logged(the_fake(), "configure")
    t = configure[1]["transform"]
    assert (t.hflip, t.vflip, t.transpose) == (*transform, 0)


def test_hflip_mirrors_the_picture():
    *_, rgb = run_all_outputs(
        {"resolution": (320, 240), "fps": 10, "hflip": True}, detect=(320, 240)
    )
    picture = rgb_picture(rgb[-1])
    assert near(colour_at(picture, mirrored(BROWN_AT)), BROWN, 35)


@pytest.mark.parametrize("rotation", [90, 270])
def test_quarter_turns_are_refused_in_one_line(rotation):
    with pytest.raises(ConfigError, match="cannot rotate") as info:
        make_camera(rotation=rotation)
    assert "\n" not in str(info.value)


def test_timestamp_is_drawn_into_every_stream_before_encoding():
    camera, h264, jpeg, rgb = run_all_outputs({"resolution": (320, 240), "fps": 10})
    fake = the_fake()
    assert fake.fake_mapped["main"] > 0 and fake.fake_mapped["lores"] > 0
    for picture, height in (
        (decode_jpeg(jpeg[-1].data), 240),
        (first_picture(b"".join(f.data for f in h264)), 480),
        (rgb_picture(rgb[-1]), 60),
    ):
        w = picture.shape[1]
        band = picture[max(2, height // 60) : height // 10, w // 3 : 2 * w // 3]
        dark = (band.max(axis=2) < 50).mean()
        assert dark > 0.3 and (band.min(axis=2) > 180).any(), (height, dark)


def test_stop_stops_encoders_and_camera_then_closes():
    camera = make_camera(resolution=(320, 240), fps=10)
    h264 = Collector()
    camera.set_h264_output(h264)
    camera.start()
    h264.wait_for(2)
    camera.stop()
    fake = the_fake()
    calls = [e[0] for e in fake.log]
    assert calls[-4:] == ["stop_encoder", "stop", "close", "stop"] or calls[-3:] == [
        "stop_encoder",
        "stop",
        "close",
    ]
    assert fake._closed and not fake.started and not fake.encoders
    count = len(h264.frames)
    time.sleep(0.5)
    assert len(h264.frames) == count


def test_warmup_is_two_seconds_by_default_and_a_constructor_argument():
    from raspberry_pancake.camera.picamera2_backend import Picamera2Camera

    assert inspect.signature(Picamera2Camera).parameters["warmup"].default == 2.0
    camera = Picamera2Camera(CameraSettings(), warmup=0.4)
    camera.set_jpeg_output(Collector())
    began = time.monotonic()
    camera.start()
    waited = time.monotonic() - began
    encoders = logged(the_fake(), "start_encoder")
    camera.stop()
    assert waited >= 0.4 and len(encoders) == 1


def test_no_camera_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", "0")
    with pytest.raises(CameraUnavailableError, match="finds no camera.*--camera sim") as info:
        make_camera()
    assert "\n" not in str(info.value)


def test_frame_output_accepts_old_and_new_outputframe_calls():
    from picamera2.outputs import Output

    from raspberry_pancake.camera.picamera2_backend import make_frame_output_class

    got = []
    output = make_frame_output_class(Output)(lambda *frame: got.append(frame))
    assert isinstance(output, Output)
    output.outputframe(b"a", True, 5_000_000)  # Picamera2 before audio support
    output.outputframe(b"b", False, 5_500_000, None, False)
    output.outputframe(None, True, 5_600_000, object(), True)  # audio: not ours
    (_, k1, t1), (_, k2, t2) = got
    assert (k1, k2) == (True, False) and t2 - t1 == pytest.approx(0.5)


def test_a_failing_output_does_not_stop_the_others():
    class Broken:
        def outputframe(self, frame):
            raise RuntimeError("disk full")

    camera = make_camera(resolution=(320, 240), fps=10)
    jpeg = Collector()
    camera.set_h264_output(Broken())
    camera.set_jpeg_output(jpeg)
    with running(camera):
        jpeg.wait_for(5)
    assert the_fake().callback_errors == []


def test_sizes_that_do_not_nest_stop_at_start_and_release_the_camera():
    camera = make_camera(resolution=(320, 240), fps=10)
    camera.set_h264_output(Collector(), (400, 200))
    camera.set_jpeg_output(Collector())
    with pytest.raises(ConfigError, match="fit one inside the other"):
        camera.start()
    assert the_fake()._closed


def test_an_encoder_the_camera_refuses_is_one_error_and_everything_is_released():
    camera = make_camera(resolution=(320, 240), fps=10)
    camera.set_h264_output(Collector(), (2592, 1944))  # beyond the Pi 4's H.264 encoder
    camera.set_jpeg_output(Collector())
    with pytest.raises(CameraUnavailableError, match="1920x1080") as info:
        camera.start()
    assert "\n" not in str(info.value)
    fake = the_fake()
    assert fake._closed and not fake.started and not fake.encoders
