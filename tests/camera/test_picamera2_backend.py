"""The Picamera2 backend on the real Picamera2 0.3.38, on a fake Pi of each platform.

Tests marked with ``on_each_pi`` run once on a Pi 4 (VC4: hardware encoder on
/dev/video11) and once on a Pi 5 (PiSP: libav encoders on the camera thread),
each in a process of its own (tests/pi_platforms.py). Below Picamera2 sit the
fakes of libcamera and the kernel (tests/fakes/libcamera, tests/fakes/fake_pi).
"""

from __future__ import annotations

import inspect
import io
import logging
import threading
import time

import av
import numpy as np
import pytest
from PIL import Image

from raspberry_pancake.camera import yuv420
from raspberry_pancake.camera.annotation import TimestampOverlay
from raspberry_pancake.camera.base import CameraSettings
from raspberry_pancake.camera.picamera2_backend import (
    StreamPlan,
    make_frame_output_class,
    plan_streams,
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
from tests.helpers import ffprobe


def on_each_pi(test):
    """Run ``test`` on the real Picamera2, once per Pi platform, each in its own process."""
    return pytest.mark.pi_platforms(pytest.mark.usefixtures("fake_libs")(test))


def make_camera(warmup: float = 0, **settings):
    from raspberry_pancake.camera.picamera2_backend import Picamera2Camera

    return Picamera2Camera(CameraSettings(**settings), warmup=warmup)


def fake_camera():
    """The fake libcamera's camera (its ``acquired`` is a test hook)."""
    import libcamera

    return libcamera.CameraManager.singleton().cameras[0]


def decode_jpeg(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def first_picture(h264: bytes) -> np.ndarray:
    codec = av.CodecContext.create("h264", "r")
    for packet in codec.parse(h264):
        for frame in codec.decode(packet):
            return frame.to_ndarray(format="rgb24")
    raise AssertionError("no picture decoded")


def write_h264(tmp_path, frames, name="clip.h264"):
    path = tmp_path / name
    path.write_bytes(b"".join(f.data for f in frames))
    return path


def wait_until(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def gaps_in(frames) -> list:
    """Positions of the frames that do not follow on from the one before."""
    return [n for n in range(1, len(frames)) if frames[n].index != frames[n - 1].index + 1]


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


@pytest.mark.parametrize("rotation", [90, 270])
def test_quarter_turns_are_refused_in_one_line(rotation):
    with pytest.raises(ConfigError, match="cannot rotate") as info:
        make_camera(rotation=rotation)
    assert "\n" not in str(info.value)


def test_frame_output_times_frames_from_the_encoders_first_timestamp():
    class Encoder:
        firsttimestamp = 7_000_000_123  # µs on CLOCK_MONOTONIC: the first frame's capture

    got = []
    output = make_frame_output_class(object)(Encoder(), lambda *frame: got.append(frame))
    output.outputframe(b"a", True, 0)  # Picamera2 before audio support: three arguments
    output.outputframe(b"b", False, 500_000, None, False)
    output.outputframe(None, True, 600_000, object(), True)  # audio: not ours
    assert got == [(b"a", True, 7_000_000_123), (b"b", False, 7_000_500_123)]


# conversions and the overlay (pure, on the fake ISP's pictures)


def yuv_buffer(rgb: np.ndarray, colour_space: str, stride: int) -> np.ndarray:
    """A (height*3/2, stride) YUV420 buffer of ``rgb``, written by the fake libcamera's ISP."""
    import libcamera
    from libcamera.sensor import fill_buffer

    h, w = rgb.shape[:2]
    cfg = libcamera.StreamConfiguration(libcamera.StreamRole.Viewfinder, None)
    cfg.size, cfg.pixel_format = libcamera.Size(w, h), libcamera.PixelFormat("YUV420")
    cfg.stride, cfg.frame_size = stride, stride * h * 3 // 2
    cfg.color_space = getattr(libcamera.ColorSpace, colour_space)()
    data = np.frombuffer(fill_buffer(cfg, rgb), dtype=np.uint8)
    return data.reshape(h * 3 // 2, stride).copy()


@pytest.mark.usefixtures("fake_libs")
@pytest.mark.parametrize(
    "space, ycbcr",
    [
        ("Smpte170m", yuv420.YCbCr("601")),
        ("Rec709", yuv420.YCbCr("709")),
        ("Sycc", yuv420.YCbCr("601", full_range=True)),
    ],
)
def test_yuv420_to_rgb_honours_stride_matrix_and_range(space, ycbcr):
    rng = np.random.default_rng(1)
    small = rng.integers(0, 255, (15, 25, 3), dtype=np.uint8)
    rgb = np.asarray(Image.fromarray(small).resize((100, 60), Image.NEAREST))
    buf = yuv_buffer(rgb, space, stride=128)  # 28 junk bytes right of every row
    back = yuv420.to_rgb(buf, (100, 60), ycbcr)
    assert back.shape == (60, 100, 3)
    assert np.abs(back.astype(int) - rgb).mean() < 8


@pytest.mark.usefixtures("fake_libs")
@pytest.mark.parametrize("space", ["Smpte170m", "Rec709"])
def test_jfif_planes_decode_to_the_original_colours(space):
    rng = np.random.default_rng(2)
    rgb = np.asarray(
        Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((64, 48))
    )
    buf = yuv_buffer(rgb, space, stride=64)
    source = yuv420.YCbCr("709" if space == "Rec709" else "601")
    data = yuv420.encode_jpeg(buf, (64, 48), source, quality=95)
    assert np.abs(decode_jpeg(data).astype(int) - rgb).mean() < 10


def test_yuv420_planes_are_views_into_the_buffer():
    buf = np.zeros((90, 128), dtype=np.uint8)
    y, u, v = yuv420.planes(buf, (100, 60))
    assert (y.shape, u.shape, v.shape) == ((60, 100), (30, 50), (30, 50))
    y[:] = 1
    u[:] = 2
    v[:] = 3
    flat = buf.reshape(-1)
    assert flat[:128].tolist() == [1] * 100 + [0] * 28
    assert flat[60 * 128] == 2 and flat[60 * 128 + 30 * 64] == 3


@pytest.mark.usefixtures("fake_libs")
def test_overlay_draws_the_time_into_luma_and_greys_the_chroma():
    rgb = np.full((240, 320, 3), (40, 120, 200), dtype=np.uint8)
    buf = yuv_buffer(rgb, "Smpte170m", stride=320)
    overlay = TimestampOverlay((320, 240), 24)
    overlay.draw(buf, time.mktime((2020, 6, 23, 17, 14, 50, 0, 0, -1)))
    y, u, v = yuv420.planes(buf, (320, 240))
    box = y[4:24, 60:260]
    assert (box <= 20).mean() > 0.3 and (box >= 200).any()
    assert (u[2:10, 40:120] == 128).all() and (v[2:10, 40:120] == 128).all()
    assert (y[200:] > 60).all()  # nothing drawn below the box


# the backend on the real Picamera2


@on_each_pi
def test_configures_yuv420_streams_and_the_platforms_h264_encoder(pi_platform):
    import fake_pi

    camera = make_camera(resolution=(320, 240), fps=10)  # Picamera2's import probes the nodes
    opened = fake_pi.kernel.opened["/dev/video11"]
    h264, jpeg = Collector(), Collector()
    camera.set_h264_output(h264, (640, 480))
    camera.set_jpeg_output(jpeg)
    with running(camera):
        h264.wait_for(3)
        jpeg.wait_for(3)
        config = camera._picam2.camera_configuration()
    assert config["main"]["size"] == (640, 480) and config["main"]["format"] == "YUV420"
    assert config["lores"]["size"] == (320, 240) and config["lores"]["format"] == "YUV420"
    assert camera.frame_us == 100_000 and camera.intra_period == 10
    if pi_platform == "vc4":
        # the hardware encoder: our H.264 (and nothing else) went through /dev/video11
        assert fake_pi.kernel.opened["/dev/video11"] == opened + 1
    else:
        assert fake_pi.kernel.opened["/dev/video11"] == 0  # a Pi 5 has no such device


@on_each_pi
def test_h264_is_real_with_headers_and_a_keyframe_every_second(pi_platform, tmp_path):
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
    path = write_h264(tmp_path, frames)
    assert ffprobe_video(str(path)) == {"codec": "h264", "size": (320, 240), "frames": len(frames)}


@on_each_pi
def test_every_frame_carries_its_sensor_timestamp_and_the_wall_clock_of_its_capture(pi_platform):
    camera = make_camera(resolution=(320, 240), fps=10)
    h264, jpeg, rgb = Collector(), Collector(), Collector()
    camera.set_h264_output(h264, (640, 480))
    camera.set_jpeg_output(jpeg)
    camera.set_rgb_output(rgb, (100, 60))
    stamps = {}  # µs -> ns, as libcamera reported them (a post-callback sees every request)
    camera._picam2.post_callback = lambda request: stamps.setdefault(
        request.get_metadata()["SensorTimestamp"] // 1000,
        request.get_metadata()["SensorTimestamp"],
    )
    with running(camera):
        for collector in (h264, jpeg, rgb):
            collector.wait_for(5)
    now_ns, now_wall = time.monotonic_ns(), time.time()
    by_time = {}
    for collector in (h264, jpeg, rgb):
        for frame in collector.frames:
            sensor_us = round(frame.monotonic * 1e6)
            assert sensor_us in stamps, "a frame time that is not a SensorTimestamp"
            # the sensor's clock is CLOCK_MONOTONIC: the frame was taken in the last minute
            assert 0 <= now_ns - stamps[sensor_us] < 60e9
            expected_wall = now_wall - (now_ns / 1e9 - frame.monotonic)
            assert abs(frame.wall - expected_wall) < 2.0
            by_time.setdefault(sensor_us, set()).add(frame.index)
    assert all(len(indexes) == 1 for indexes in by_time.values()), "one capture, one index"


@on_each_pi
def test_a_wall_clock_step_reaches_the_very_next_frame(pi_platform, monkeypatch):
    camera = make_camera(resolution=(320, 240), fps=10)
    h264, jpeg = Collector(), Collector()
    camera.set_h264_output(h264)
    camera.set_jpeg_output(jpeg)
    real_time = time.time
    with running(camera):
        h264.wait_for(3)
        monkeypatch.setattr(time, "time", lambda: real_time() + 3600)  # NTP sets the clock
        stepped = time.monotonic()
        seen = {c: len(c.frames) for c in (h264, jpeg)}
        for collector in (h264, jpeg):
            collector.wait_for(seen[collector] + 5)
    monkeypatch.undo()
    for collector in (h264, jpeg):
        later = [f for f in collector.frames if f.monotonic > stepped + 0.3]
        assert later
        for frame in later:
            unstepped = real_time() - (time.monotonic() - frame.monotonic)
            assert abs(frame.wall - unstepped - 3600) < 2.0, "the frame's name missed the step"
        times = [f.monotonic for f in collector.frames]
        assert times == sorted(times) and max(np.diff(times)) < 5, "durations noticed the step"


@on_each_pi
def test_the_live_view_is_encoded_only_while_someone_watches(pi_platform):
    camera = make_camera(resolution=(320, 240), fps=10)
    h264, jpeg = Collector(), Collector(wanted=False)
    camera.set_h264_output(h264)
    camera.set_jpeg_output(jpeg)
    with running(camera):
        h264.wait_for(15)  # a second and a half with nobody watching
        assert jpeg.frames == []
        running_encoders = {type(e).__name__ for e in camera._picam2.encoders}
        jpeg.wanted = True
        frames = jpeg.wait_for(3)
    assert running_encoders == {"H264Encoder" if pi_platform == "vc4" else "LibavH264Encoder"}
    assert decode_jpeg(frames[-1].data).shape == (240, 320, 3)


@on_each_pi
def test_a_recorder_that_blocks_never_holds_up_the_camera(pi_platform, tmp_path, caplog):
    class Blocking(Collector):
        """An H.264 consumer stuck on its first frame until released."""

        def __init__(self):
            super().__init__()
            self.entered, self.release = threading.Event(), threading.Event()

        def outputframe(self, frame):
            self.entered.set()
            self.release.wait(120)
            super().outputframe(frame)

    camera = make_camera(resolution=(320, 240), fps=10)
    h264, jpeg, rgb = Blocking(), Collector(), Collector()
    camera.set_h264_output(h264)
    camera.set_jpeg_output(jpeg)
    camera.set_rgb_output(rgb, (100, 60))
    with caplog.at_level(logging.ERROR), running(camera):
        assert h264.entered.wait(60)
        # the recorder is stuck; the live view and detection go on, for longer than the
        # hand-off's backlog, until frames are dropped
        start = {c: len(c.frames) for c in (jpeg, rgb)}
        wait_until(lambda: "dropping frames" in caplog.text, 120, "the backlog overflowing")
        for collector in (jpeg, rgb):
            collector.wait_for(start[collector] + 10)
        h264.release.set()
        wait_until(lambda: len(gaps_in(h264.frames)) == 1, 60, "recording resuming after a gap")
        h264.wait_for(len(h264.frames) + 5)
        frames = list(h264.frames)
    gaps = gaps_in(frames)
    assert len(gaps) == 1 and frames[gaps[0]].keyframe, "a drop must end at a keyframe"
    path = write_h264(tmp_path, frames)
    assert ffprobe_video(str(path))["frames"] == len(frames)  # still decodes, every frame


@on_each_pi
@pytest.mark.parametrize(
    "fault, reason",
    [
        ("open:/dev/video11=EACCES", "Permission denied"),
        ("ioctl:VIDIOC_S_FMT=EINVAL", "Invalid argument"),
        ("ioctl:VIDIOC_REQBUFS=ENOMEM", "Cannot allocate memory"),
    ],
)
def test_a_v4l2_encoder_failing_at_start_is_one_line_and_releases_everything(
    pi_platform, fault, reason, monkeypatch
):
    if pi_platform == "pisp":
        pytest.skip("a Pi 5 encodes in software: there is no V4L2 encoder to fail")
    threads_before = set(threading.enumerate())
    monkeypatch.setenv("FAKE_PI_FAULTS", fault)
    camera = make_camera(resolution=(320, 240), fps=10)
    camera.set_h264_output(Collector())
    camera.set_jpeg_output(Collector())
    with pytest.raises(CameraUnavailableError, match=reason) as info:
        camera.start()
    camera.stop()  # what pancake.py does next: nothing more to do
    assert "\n" not in str(info.value)
    wait_until(
        lambda: not set(threading.enumerate()) - threads_before,
        30,
        f"threads ending: {set(threading.enumerate()) - threads_before}",
    )
    assert not fake_camera().acquired
    monkeypatch.delenv("FAKE_PI_FAULTS")
    make_camera().close()  # and the camera opens again


@on_each_pi
def test_recording_wider_than_1920_is_refused_on_vc4_and_works_on_pisp(
    pi_platform, monkeypatch, tmp_path
):
    monkeypatch.setenv("FAKE_LIBCAMERA_DISTINCT_FRAMES", "2")
    camera = make_camera(resolution=(320, 240), fps=5)
    camera.set_h264_output(Collector(), (1920, 1920))  # the VC4 encoder's largest
    h264 = Collector()
    if pi_platform == "vc4":
        with pytest.raises(ConfigError, match="at most 1920x1920") as info:
            camera.set_h264_output(h264, (2592, 1944))
        camera.close()
        assert "\n" not in str(info.value) and not fake_camera().acquired
        return
    camera.set_h264_output(h264, (2592, 1944))
    with running(camera):
        frames = h264.wait_for(2)
    assert first_picture(b"".join(f.data for f in frames)).shape == (1944, 2592, 3)


@on_each_pi
def test_a_pi5_with_a_pyav_too_old_for_picamera2s_encoder_is_one_line(pi_platform, monkeypatch):
    """Debian 12's python3-av lacks what Picamera2's libav encoder calls on every frame."""
    from raspberry_pancake.camera import picamera2_backend

    monkeypatch.setattr(picamera2_backend, "pyav_takes_numpy_buffers", lambda: False)
    camera = make_camera(resolution=(320, 240), fps=5)
    if pi_platform == "vc4":  # the V4L2 encoder needs nothing of PyAV
        camera.set_h264_output(Collector())
        camera.close()
        return
    with pytest.raises(ConfigError, match="from_numpy_buffer") as info:
        camera.set_h264_output(Collector())
    camera.close()
    assert "\n" not in str(info.value) and not fake_camera().acquired


@on_each_pi
def test_an_unreachable_frame_rate_is_reported_and_keyframes_stay_a_second_apart(
    pi_platform, monkeypatch, caplog, tmp_path
):
    monkeypatch.setenv("FAKE_LIBCAMERA_DISTINCT_FRAMES", "4")
    camera = make_camera(resolution=(1920, 1080), fps=60)
    h264 = Collector()
    camera.set_h264_output(h264)
    with caplog.at_level(logging.WARNING), running(camera):
        frames = h264.wait_for(100)
    # the imx219's 1920x1080 mode: 47.57 fps at most
    assert 1e6 / camera.frame_us == pytest.approx(47.57, abs=0.01)
    assert camera.intra_period == 48
    assert "--fps 60" in caplog.text and "47.57" in caplog.text
    assert [n for n, f in enumerate(frames) if f.keyframe][:3] == [0, 48, 96]
    if pi_platform == "vc4":
        # Picamera2 asks the hardware for level 4.2 once it knows the real rate
        path = write_h264(tmp_path, frames[:5])
        assert ffprobe(path, "-show_entries", "stream=level") == "42"


@on_each_pi
@pytest.mark.parametrize("resolution", [(320, 240), (1280, 720)])  # SMPTE 170M, Rec.709
def test_the_live_view_shows_black_as_black_and_white_as_white(
    pi_platform, resolution, monkeypatch
):
    monkeypatch.setenv("FAKE_LIBCAMERA_SCENE", "black-and-white")
    monkeypatch.setenv("FAKE_LIBCAMERA_DISTINCT_FRAMES", "1")
    camera = make_camera(resolution=resolution, fps=10)
    jpeg, rgb = Collector(), Collector()
    camera.set_jpeg_output(jpeg)
    camera.set_rgb_output(rgb, (160, 90))
    with running(camera):
        view = decode_jpeg(jpeg.wait_for(2)[-1].data)
        detect = rgb_picture(rgb.wait_for(2)[-1])
    for picture in (view, detect):
        h, w = picture.shape[:2]
        middle = picture[h // 3 : 2 * h // 3]
        assert middle[:, w // 8 : 3 * w // 8].max() <= 8, "black is grey"
        assert middle[:, 5 * w // 8 : 7 * w // 8].min() >= 247, "white is grey"


@on_each_pi
def test_rgb_is_exactly_w_h_3_bytes_of_the_picture(pi_platform):
    *_, rgb = run_all_outputs({"resolution": (320, 240), "fps": 10}, detect=(100, 60))
    for frame in rgb:
        assert (frame.width, frame.height, len(frame.data)) == (100, 60, 100 * 60 * 3)
    picture = rgb_picture(rgb[-1])
    assert near(colour_at(picture, BROWN_AT), BROWN, 35)
    assert near(colour_at(picture, BLUE_AT), BLUE, 35)


@on_each_pi
def test_rgb_is_skipped_while_nobody_waits(pi_platform):
    assert rgb_frames_while_nobody_waits(make_camera(resolution=(320, 240), fps=10)) == []


@on_each_pi
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
def test_flips_and_half_turn_are_the_configuration_transform(pi_platform, flips, transform):
    camera = make_camera(resolution=(320, 240), fps=10, **flips)
    camera.set_jpeg_output(Collector())
    camera.start()
    t = camera._picam2.camera_configuration()["transform"]
    camera.stop()
    assert (int(t.hflip), int(t.vflip), int(t.transpose)) == (*transform, 0)


@on_each_pi
def test_hflip_mirrors_the_picture(pi_platform):
    *_, rgb = run_all_outputs(
        {"resolution": (320, 240), "fps": 10, "hflip": True}, detect=(320, 240)
    )
    picture = rgb_picture(rgb[-1])
    assert near(colour_at(picture, mirrored(BROWN_AT)), BROWN, 35)


@on_each_pi
def test_timestamp_is_drawn_into_every_stream_before_encoding(pi_platform):
    camera, h264, jpeg, rgb = run_all_outputs({"resolution": (320, 240), "fps": 10})
    for picture, height in (
        (decode_jpeg(jpeg[-1].data), 240),
        (first_picture(b"".join(f.data for f in h264)), 480),
        (rgb_picture(rgb[-1]), 60),
    ):
        w = picture.shape[1]
        band = picture[max(2, height // 60) : height // 10, w // 3 : 2 * w // 3]
        dark = (band.max(axis=2) < 50).mean()
        assert dark > 0.3 and (band.min(axis=2) > 180).any(), (height, dark)


@on_each_pi
def test_stop_stops_everything_and_releases_the_camera(pi_platform):
    threads_before = set(threading.enumerate())
    camera = make_camera(resolution=(320, 240), fps=10)
    h264, jpeg = Collector(), Collector()
    camera.set_h264_output(h264)
    camera.set_jpeg_output(jpeg)
    camera.start()
    h264.wait_for(2)
    camera.stop()
    count = len(h264.frames)
    assert not fake_camera().acquired
    wait_until(lambda: not set(threading.enumerate()) - threads_before, 30, "threads ending")
    assert len(h264.frames) == count


@on_each_pi
def test_warmup_is_two_seconds_by_default_and_a_constructor_argument(pi_platform):
    from raspberry_pancake.camera.picamera2_backend import Picamera2Camera

    assert inspect.signature(Picamera2Camera).parameters["warmup"].default == 2.0
    camera = make_camera(warmup=0.4)
    h264 = Collector()
    camera.set_h264_output(h264)
    began = time.monotonic()
    camera.start()
    waited = time.monotonic() - began
    camera.stop()
    assert waited >= 0.4


@on_each_pi
def test_no_camera_is_one_clear_error(pi_platform, monkeypatch):
    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", "0")
    with pytest.raises(CameraUnavailableError, match="finds no camera.*--camera sim") as info:
        make_camera()
    assert "\n" not in str(info.value)


@on_each_pi
def test_a_failing_output_does_not_stop_the_others(pi_platform):
    class Broken:
        def outputframe(self, frame):
            raise RuntimeError("disk full")

    camera = make_camera(resolution=(320, 240), fps=10)
    jpeg = Collector()
    camera.set_h264_output(Broken())
    camera.set_jpeg_output(jpeg)
    with running(camera):
        jpeg.wait_for(15)


@on_each_pi
def test_sizes_that_do_not_nest_stop_at_start_and_release_the_camera(pi_platform):
    camera = make_camera(resolution=(320, 240), fps=10)
    camera.set_h264_output(Collector(), (400, 200))
    camera.set_jpeg_output(Collector())
    with pytest.raises(ConfigError, match="fit one inside the other"):
        camera.start()
    assert not fake_camera().acquired


@on_each_pi
def test_picamera2_sees_the_imx219_modes_and_their_frame_rates(pi_platform):
    from picamera2 import Picamera2

    with Picamera2() as picam2:
        modes = {(m["size"], m["bit_depth"]): m["fps"] for m in picam2.sensor_modes}
    # as `rpicam-hello --list-cameras` lists them for a Camera Module 2
    assert modes[((1920, 1080), 10)] == 47.57
    assert modes[((3280, 2464), 10)] == 21.19
    assert modes[((1640, 1232), 10)] == 41.85


@on_each_pi
def test_canary_the_picamera2_internals_the_harness_relies_on(pi_platform):
    """Fails loudly when Picamera2 moves a private name tests/fakes/fake_pi depends on."""
    import fake_pi
    import picamera2
    from picamera2 import dma_heap
    from picamera2.encoders import encoder, libav_h264_encoder, v4l2_encoder

    # the platform comes from Picamera2's own probe of the stand-in video nodes
    assert picamera2.Picamera2.platform.name == {"vc4": "VC4", "pisp": "PISP"}[pi_platform]
    assert picamera2.encoders._hw_encoder_available == (pi_platform == "vc4")
    # the allocator opens a heap the stand-in provides
    assert any(name in fake_pi.kernel.nodes for name in dma_heap.heapNames)
    # the V4L2 encoder still opens /dev/video11 and talks ioctl/poll to it
    source = inspect.getsource(v4l2_encoder.V4L2Encoder)
    assert "/dev/video11" in source and "select.poll" in source and "fcntl.ioctl" in source
    # fake_pi.freeze wraps LibavH264Encoder._encode, which Encoder.encode must still call
    assert getattr(libav_h264_encoder.LibavH264Encoder._encode, "freezable", False)
    assert "_encode" in encoder.Encoder.encode.__code__.co_names
    # the backend times frames by the encoders' firsttimestamp, taken from SensorTimestamp
    stamp_source = inspect.getsource(encoder.Encoder._timestamp)
    assert "SensorTimestamp" in stamp_source and "firsttimestamp" in stamp_source


@on_each_pi
def test_the_h264_encoder_can_freeze_alone(pi_platform, tmp_path, monkeypatch):
    """The harness's Picamera2 issue 1228: H.264 stops, the camera and live view go on."""
    monkeypatch.setenv("FAKE_PI_CONTROL_DIR", str(tmp_path))
    camera = make_camera(resolution=(320, 240), fps=10)
    h264, jpeg = Collector(), Collector()
    camera.set_h264_output(h264)
    camera.set_jpeg_output(jpeg)
    with running(camera):
        h264.wait_for(3)
        (tmp_path / "freeze-h264").touch()
        jpeg.wait_for(len(jpeg.frames) + 5)  # a frame already in the encoder may come out
        frozen_at = len(h264.frames)
        jpeg.wait_for(len(jpeg.frames) + 15)  # 1.5 s of live view
        assert len(h264.frames) == frozen_at
        (tmp_path / "freeze-h264").unlink()
        h264.wait_for(frozen_at + 3)
