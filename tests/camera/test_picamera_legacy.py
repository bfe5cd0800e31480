"""The picamera (legacy stack) backend against the fake picamera 1.13.

The fake follows picamera 1.13's own rules (tests/fakes/picamera cites them): raw
frame rounding, the H.264 level checks, a port that stops for good after an
exception in its callback, timestamps on the VideoCore's clock shared by all
ports (sometimes None), and a delay between capture and delivery.
"""

from __future__ import annotations

import inspect
import logging
import time

import numpy as np
import pytest

from raspberry_pancake.camera.annotation import TIMESTAMP_FORMAT
from raspberry_pancake.camera.base import CameraSettings
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
from tests.helpers import PI_H264

pytestmark = pytest.mark.usefixtures("fake_libs")


def make_camera(**settings):
    from raspberry_pancake.camera.picamera_legacy import PicameraCamera

    return PicameraCamera(CameraSettings(**settings), warmup=0)


def the_fake():
    import picamera.fake

    assert len(picamera.fake.cameras) == 1
    return picamera.fake.cameras[0]


def wait_until(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def recording_and_live_view():
    """A 320x240 10 fps camera with H.264 and JPEG collectors: (camera, h264, jpeg)."""
    camera = make_camera(resolution=(320, 240), fps=10)
    h264, jpeg = Collector(), Collector()
    camera.set_h264_output(h264)
    camera.set_jpeg_output(jpeg)
    return camera, h264, jpeg


class TimedCollector(Collector):
    """A Collector that also notes CLOCK_MONOTONIC and the wall clock at each delivery."""

    def __init__(self, wanted: bool = True):
        super().__init__(wanted)
        self.delivered = []

    def outputframe(self, frame) -> None:
        with self.got:
            self.delivered.append((time.monotonic(), time.time()))
        super().outputframe(frame)


# --- what the backend asks of picamera --------------------------------------------------


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
    assert fake.log[0] == ("open", {"resolution": (320, 240), "framerate": 10.0})
    by_port = {r["port"]: r for r in fake.recordings}
    assert len(by_port) == 3 and set(by_port) <= {0, 1, 2, 3}
    formats = {r["format"]: r for r in fake.recordings}
    assert formats["h264"]["resize"] == (256, 192)
    assert formats["h264"]["options"] == {"inline_headers": True, "intra_period": 10}
    assert formats["mjpeg"]["resize"] is None  # the live view is the camera's resolution
    # detection at another size: the rounded size, in RGBA, as picamera would ask itself
    assert formats["rgba"]["resize"] == (128, 64)


def test_the_camera_runs_on_the_videocore_clock():
    camera = make_camera(resolution=(320, 240), fps=10)
    assert the_fake().clock_mode == "raw"
    camera.close()


def test_no_resize_when_the_recording_is_the_camera_resolution():
    camera = make_camera(resolution=(320, 240), fps=10)
    camera.set_h264_output(Collector(), (320, 240))
    camera.start()
    camera.stop()
    (recording,) = the_fake().recordings
    assert recording["resize"] is None


def test_h264_is_real_with_headers_and_a_keyframe_every_second(tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_PICAMERA_BUFFER_SIZE", "700")  # frames come in several buffers
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


# --- defect 8: detect gets exactly the requested picture, all of it ----------------------


def furniture_edges(picture: np.ndarray):
    """Where the scene's blue cabinet, brown cupboard and floor are, as fractions.

    The sim scene draws them at fixed fractions of the picture (camera/scene.py):
    brown x 0.08-0.22, blue x 0.70-0.92 (at 68% of the height, below the resting
    ball), floor from 75% of the height down.
    """
    h, w = picture.shape[:2]
    row = picture[int(h * 0.68)].astype(int)
    # the background's gradient comes within 21 of the blue: match closer than that
    blue = np.flatnonzero(np.abs(row - BLUE).max(axis=1) <= 12)
    brown = np.flatnonzero(np.abs(row - BROWN).max(axis=1) <= 12)
    # the lower half only: the timestamp box at the top blurs into anything when scaled
    column = picture[h // 2 :, int(w * 0.5)].astype(int)
    floor = h // 2 + np.flatnonzero(np.abs(column - (90, 80, 70)).max(axis=1) <= 12)
    return {
        "blue": ((blue.min() + 0.5) / w, (blue.max() + 0.5) / w),
        "brown": ((brown.min() + 0.5) / w, (brown.max() + 0.5) / w),
        "floor": (floor.min() + 0.5) / h,
    }


@pytest.mark.parametrize(
    "resolution, rgb_size",
    [
        ((1640, 1232), (1640, 1232)),  # the v2 camera's binned mode: 1640 is not a multiple of 32
        ((1296, 972), (1296, 972)),  # the v1 camera's binned mode
        ((720, 480), (720, 480)),
        ((640, 480), (100, 60)),  # resized: rounded to 128x64 by picamera
        ((640, 480), (250, 150)),  # rounded to 256x160
        ((640, 480), (320, 240)),  # already a multiple of 32x16
    ],
)
def test_detect_gets_exactly_the_requested_picture_all_of_it(resolution, rgb_size):
    camera = make_camera(resolution=resolution, fps=4)
    rgb = Collector()
    camera.set_rgb_output(rgb, rgb_size)
    with running(camera):
        frames = rgb.wait_for(2, timeout=60)
    w, h = rgb_size
    frame = frames[-1]
    assert (frame.width, frame.height, len(frame.data)) == (w, h, w * h * 3)
    edges = furniture_edges(rgb_picture(frame))
    tolerance = 2.5 / w  # a pixel or two of scaling blur
    assert edges["blue"][0] == pytest.approx(0.70, abs=tolerance + 0.01)
    assert edges["blue"][1] == pytest.approx(0.92, abs=tolerance + 0.01)
    assert edges["brown"][0] == pytest.approx(0.08, abs=tolerance + 0.01)
    assert edges["brown"][1] == pytest.approx(0.22, abs=tolerance + 0.01)
    assert edges["floor"] == pytest.approx(0.75, abs=2.5 / h + 0.01)


def test_rgb_layouts_follow_picamera_rounding():
    from raspberry_pancake.camera.picamera_legacy import RgbLayout

    same = RgbLayout((1640, 1232), (1640, 1232))
    assert (same.resize, same.format, same.frame_size) == (None, "rgb", (1648, 1232))
    odd = RgbLayout((1296, 972), (1296, 972))
    assert odd.frame_size == (1296, 976)
    resized = RgbLayout((100, 60), (640, 480))
    assert (resized.resize, resized.format, resized.frame_size) == ((128, 64), "rgba", (128, 64))
    picture = np.arange(972 * 1296 * 3, dtype=np.uint32).astype(np.uint8).reshape(972, 1296, 3)
    padded = np.full((976, 1296, 3), 7, dtype=np.uint8)
    padded[:972] = picture
    assert odd.exact(padded.tobytes()) == picture.tobytes()
    with pytest.raises(ValueError):
        odd.exact(picture.tobytes())
    # a resized frame is scaled, not cropped: a left-right ramp stays a full ramp
    ramp = np.zeros((64, 128, 4), dtype=np.uint8)
    ramp[..., 0] = np.linspace(0, 255, 128, dtype=np.uint8)[None, :]
    out = np.frombuffer(resized.exact(ramp.tobytes()), dtype=np.uint8).reshape(60, 100, 3)
    assert out[:, 0, 0].max() < 5 and out[:, -1, 0].min() > 250


def test_rgb_is_skipped_while_nobody_waits():
    assert rgb_frames_while_nobody_waits(make_camera(resolution=(320, 240), fps=10)) == []


# --- defect 9: H.264 levels ------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, fps, level",
    [
        ((1920, 1080), 30, "4"),
        ((1640, 1232), 30, "4"),
        ((1920, 1080), 31, "4.2"),
        ((1920, 1080), 64, "4.2"),
        ((1280, 720), 60, "4"),
        ((1280, 720), 120, "4.2"),
    ],
)
def test_h264_level_is_the_lowest_that_fits(size, fps, level):
    from raspberry_pancake.camera.picamera_legacy import h264_level

    assert h264_level(size, fps) == level


@pytest.mark.parametrize(
    "size, fps, message",
    [
        ((1920, 1080), 65, "macroblocks a second"),
        ((1920, 1440), 10, "macroblocks a frame"),
        ((2592, 1944), 10, "at most 1920 pixels a side"),
    ],
)
def test_h264_beyond_level_4_2_is_one_clear_error(size, fps, message):
    from raspberry_pancake.camera.picamera_legacy import h264_level

    with pytest.raises(ConfigError, match=message) as info:
        h264_level(size, fps)
    assert "\n" not in str(info.value)


def test_1080p_above_30_fps_records_at_level_4_2():
    camera = make_camera(resolution=(1920, 1080), fps=40)
    h264 = Collector()
    camera.set_h264_output(h264)
    with running(camera):
        frames = h264.wait_for(2)
    assert frames[0].keyframe
    (recording,) = the_fake().recordings
    assert recording["options"]["level"] == "4.2"


@pytest.mark.parametrize(
    "resolution, fps, message",
    [
        ((1920, 1080), 90, "lower --fps"),  # beyond level 4.2
        ((2592, 1944), 10, "at most 1920 pixels a side"),  # beyond the encoder
    ],
)
def test_h264_the_pi_cannot_record_is_one_clear_error_and_the_camera_is_released(
    resolution, fps, message
):
    camera = make_camera(resolution=resolution, fps=fps)
    camera.set_h264_output(Collector())
    with pytest.raises(ConfigError, match=message) as info:
        camera.start()
    assert "\n" not in str(info.value) and the_fake().closed
    assert not the_fake().recordings


# --- defect 10: one port's failure --------------------------------------------------------


class FailsOnce(Collector):
    """An RGB output whose wants_frame() raises once, on its third call."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def wants_frame(self) -> bool:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("a bug in the detection slot")
        return True


def test_an_error_while_handling_a_frame_costs_that_frame_only(caplog):
    camera = make_camera(resolution=(320, 240), fps=10)
    rgb, jpeg = FailsOnce(), Collector()
    camera.set_rgb_output(rgb, (100, 60))
    camera.set_jpeg_output(jpeg)
    with caplog.at_level(logging.ERROR), running(camera):
        frames = rgb.wait_for(8, timeout=30)
        assert not the_fake()._encoders[3].port.stopped
    assert rgb.calls >= 9 and len(frames) >= 8
    lost = [r for r in caplog.records if "a frame was lost" in r.getMessage()]
    assert len(lost) == 1 and "a bug in the detection slot" in caplog.text


def test_a_port_that_dies_is_reported_once_and_the_others_keep_going(caplog):
    camera, h264, jpeg = recording_and_live_view()
    with caplog.at_level(logging.ERROR), running(camera):
        h264.wait_for(3)
        the_fake().fake_fault("fail", 1)
        wait_until(lambda: "port 1 has stopped delivering" in caplog.text, "the report")
        stalled = len(h264.frames)
        count = len(jpeg.frames)
        jpeg.wait_for(count + 10)
        assert len(h264.frames) == stalled
    reports = [r for r in caplog.records if "has stopped delivering" in r.getMessage()]
    assert len(reports) == 1
    assert the_fake().closed  # stop_recording re-raised the port's error; stop() carried on


def test_the_watchdog_sees_a_frozen_port_alone():
    """The H.264 port stalls in the firmware while the live view's port goes on:
    the camera still captures, and the H.264 output is named as owed frames."""
    camera, h264, jpeg = recording_and_live_view()
    with running(camera):
        h264.wait_for(3)
        jpeg.wait_for(3)
        assert camera.stalled(1.0) == []
        the_fake().fake_fault("freeze", 1)
        wait_until(lambda: camera.stalled(1.0), "the H.264 output counted as stalled")
        (problem,) = camera.stalled(1.0)
        assert problem.startswith("the H.264 output (recording) has delivered nothing")
        the_fake().fake_fault("thaw", 1)
        wait_until(lambda: camera.stalled(1.0) == [], "the H.264 output delivering again")


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


# --- section 3: the two times of a frame ----------------------------------------------------


def test_frame_times_are_the_capture_times_the_camera_stamped(monkeypatch):
    # the VideoCore's clock is far from CLOCK_MONOTONIC, and buffers arrive 0.4 s late
    monkeypatch.setenv("FAKE_PICAMERA_STC_OFFSET", "1234.5")
    monkeypatch.setenv("FAKE_PICAMERA_LATENCY", "0.4")
    camera = make_camera(resolution=(320, 240), fps=10)
    h264, jpeg, rgb = TimedCollector(), TimedCollector(), TimedCollector()
    camera.set_h264_output(h264)
    camera.set_jpeg_output(jpeg)
    camera.set_rgb_output(rgb, (100, 60))
    captures = []
    fake = the_fake()
    stamp = fake._frame_pts

    def note_capture(captured):
        captures.append(captured)
        return stamp(captured)

    monkeypatch.setattr(fake, "_frame_pts", note_capture)
    with running(camera):
        for output in (h264, jpeg, rgb):
            output.wait_for(12)
    truth = np.array(captures)
    for output in (h264, jpeg, rgb):
        for frame, (delivered, delivered_wall) in zip(output.frames, output.delivered):
            # each frame's monotonic time is the capture of some sensor frame
            assert np.abs(truth - frame.monotonic).min() < 0.005
            assert delivered - frame.monotonic >= 0.39
            # and its wall time is the wall clock of that moment
            age = delivered - frame.monotonic
            assert delivered_wall - frame.wall == pytest.approx(age, abs=0.01)
    # the splitter gives every port the same picture at the same time
    shared = {f.monotonic for f in h264.frames} & {f.monotonic for f in jpeg.frames}
    assert len(shared) >= 8


class SteppableWall:
    """The ``time`` module as the camera code sees it, with a wall clock that can jump."""

    def __init__(self):
        self.step = 0.0

    def time(self):
        return time.time() + self.step

    def __getattr__(self, name):
        return getattr(time, name)


def test_a_wall_clock_step_reaches_the_very_next_frames(monkeypatch):
    import raspberry_pancake.camera.base as base
    import raspberry_pancake.camera.picamera_legacy as legacy

    clock = SteppableWall()
    monkeypatch.setattr(legacy, "time", clock)
    monkeypatch.setattr(base, "time", clock)  # frame_times() reads the wall clock
    camera, h264, jpeg = recording_and_live_view()
    with running(camera):
        h264.wait_for(3)
        clock.step = 3600.0  # NTP syncs an hour later than the clock the Pi booted with
        before = len(h264.frames), len(jpeg.frames)
        h264.wait_for(before[0] + 3)
        jpeg.wait_for(before[1] + 3)
    for output, count in zip((h264, jpeg), before):
        stepped = output.frames[count + 1 :]
        assert stepped and all(abs(f.wall - (time.time() + 3600)) < 60 for f in stepped)
        assert all(abs(f.wall - time.time()) < 60 for f in output.frames[: count - 1])
        monotonic = [f.monotonic for f in output.frames]
        assert monotonic == sorted(monotonic)  # durations never saw the step


def test_frames_without_a_timestamp_still_get_plausible_times(monkeypatch):
    monkeypatch.setenv("FAKE_PICAMERA_UNKNOWN_PTS_EVERY", "3")
    monkeypatch.setenv("FAKE_PICAMERA_LATENCY", "0.3")
    camera = make_camera(resolution=(320, 240), fps=10)
    h264 = TimedCollector()
    camera.set_h264_output(h264)
    with running(camera):
        frames = h264.wait_for(12)
    monotonic = [f.monotonic for f in frames]
    assert monotonic == sorted(monotonic)
    for frame, (delivered, _) in zip(frames, h264.delivered):
        # estimated from the port's usual delay, not taken as the delivery time
        assert delivered - frame.monotonic > 0.2


def test_implausible_timestamps_fall_back_to_delivery_times_with_one_warning(caplog):
    from picamera.frames import PiVideoFrame, PiVideoFrameType

    from raspberry_pancake.camera.picamera_legacy import CaptureClock, PortWriter

    clock = CaptureClock(lambda: 0)
    clock.sync()
    got = []
    an_hour_ahead = int((time.monotonic() - clock.offset + 3600) * 1e6)
    info = PiVideoFrame(0, PiVideoFrameType.frame, 3, 3, 3, an_hour_ahead, True)
    writer = PortWriter(1, lambda: info, clock, lambda data, i, m, w: got.append((m, w)))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert writer.write(b"abc") == 3
    assert len(got) == 3 and all(abs(m - time.monotonic()) < 5 for m, _ in got)
    assert caplog.text.count("implausible") == 1


def test_capture_clock_takes_the_tightest_reading():
    from raspberry_pancake.camera.picamera_legacy import CaptureClock

    readings = iter([(0.05, 5_000_000), (0.0, 7_000_000), (0.02, 9_000_000)])

    def slow_camera_clock():
        delay, value = next(readings)
        time.sleep(delay)
        return value

    clock = CaptureClock(slow_camera_clock)
    before = time.monotonic()
    clock.sync()
    assert before - 7.0 - 0.1 < clock.offset < time.monotonic() - 7.0 + 0.01
    assert clock.to_monotonic(None) is None
    assert clock.to_monotonic(8_000_000) == pytest.approx(clock.offset + 8.0)


# --- settings, annotation, lifecycle ----------------------------------------------------------


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


def test_a_real_pi_bitstream_passes_through_unchanged():
    """raspivid's own output, cut into buffers as MMAL delivers them, loses and gains nothing.

    PyAV's H.264 parser cuts the file into access units; the headers before each
    keyframe go in a buffer of their own, each picture in two.
    """
    import av
    from picamera.encoders import split_headers
    from picamera.frames import PiVideoFrame, PiVideoFrameType

    from raspberry_pancake.camera.picamera_legacy import CaptureClock, PortWriter

    camera = make_camera()
    out = Collector()
    camera.h264_output = out
    data = open(PI_H264, "rb").read()
    parser = av.CodecContext.create("h264", "r")
    units = [bytes(p) for p in parser.parse(data) + parser.parse(None)]
    current = {}
    writer = PortWriter(1, lambda: current["info"], CaptureClock(lambda: 0), camera._on_h264)
    for unit in units:
        header, picture = split_headers(unit)
        if header:
            current["info"] = PiVideoFrame(0, PiVideoFrameType.sps_header, 0, 0, 0, None, True)
            writer.write(header)
        kind = PiVideoFrameType.key_frame if 5 in nal_types(picture) else PiVideoFrameType.frame
        half = len(picture) // 2
        current["info"] = PiVideoFrame(0, kind, 0, 0, 0, 1000, False)
        writer.write(picture[:half])
        current["info"] = PiVideoFrame(0, kind, 0, 0, 0, 1000, True)
        writer.write(picture[half:])
    camera.close()
    frames = out.frames
    assert len(frames) == 116 and sum(f.keyframe for f in frames) == 2
    assert nal_types(frames[0].data)[:3] == [7, 8, 5]
    assert b"".join(f.data for f in frames) == data


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
