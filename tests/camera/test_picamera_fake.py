"""The fake picamera stands in for picamera 1.13 itself, not only for our backend.

A script written the way the original Raspberry Pancake (nickoala/raspberry-pancake)
used picamera runs against the fake in a subprocess: MJPEG frames split by their
SOI marker on splitter port 0, ``record_sequence`` on port 1, a
``PiCameraCircularIO`` with ``copy_to`` and ``split_recording`` on port 2 and an
endless ``capture_sequence`` of raw RGB on port 3, the camera closed from the main
thread. Its files are checked with ffprobe. The other tests check the rules the
fake takes from picamera's source one by one.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import pytest
from PIL import Image

from tests.helpers import FAKES, ROOT, count_frames, frame_size, starts_with_keyframe

pytestmark = pytest.mark.usefixtures("fake_libs")

ORIGINAL_USAGE = textwrap.dedent(
    """\
    import io
    import itertools
    import json
    import os
    import sys
    import threading
    import time
    from datetime import datetime
    from functools import partial

    import picamera

    out_dir = sys.argv[1]
    results = {}


    def attach_splitter_port(port, *fs):
        return [partial(f, splitter_port=port) for f in fs]


    camera = picamera.PiCamera(resolution=(320, 240), framerate=10)
    camera.vflip = False
    camera.hflip = False
    camera.annotate_text_size = 24
    streaming = threading.Event()


    def capture_jpg_for_streaming(splitter_port):
        start_recording, wait_recording, stop_recording = attach_splitter_port(
            splitter_port, camera.start_recording, camera.wait_recording, camera.stop_recording
        )
        frames = []

        class SplitFrames(object):
            def __init__(self):
                self.frame = None

            def write(self, buf):
                if buf.startswith(b"\\xff\\xd8"):
                    self.frame = io.BytesIO()
                    frames.append(self.frame)
                self.frame.write(buf)

        start_recording(SplitFrames(), "mjpeg")
        try:
            while not streaming.is_set():
                wait_recording(0.2)
        finally:
            stop_recording()
        for n, frame in enumerate(frames[:3]):
            with open(os.path.join(out_dir, "live-%d.jpg" % n), "wb") as f:
                f.write(frame.getvalue())
        results["jpegs"] = len(frames)


    def record_continuously(splitter_port, resize):
        record_sequence, wait_recording, stop_recording = attach_splitter_port(
            splitter_port, camera.record_sequence, camera.wait_recording, camera.stop_recording
        )
        names = (os.path.join(out_dir, "seq-%d.h264" % n) for n in itertools.count())
        ended = []
        sequence = record_sequence(names, resize=resize, intra_period=10)
        try:
            for fname in sequence:
                ended.append(fname)
                wait_recording(1.5)
                if len(ended) == 3:
                    break  # the original never left this loop but by an exception
        finally:
            stop_recording()
        try:
            sequence.close()
        except KeyError:
            # picamera 1.13: the generator's own clean-up finds the port stopped already
            results["sequence_end"] = "KeyError"
        results["sequence"] = ended


    def record_detection(splitter_port):
        start_recording, wait_recording, split_recording, stop_recording, CircularIO = (
            attach_splitter_port(
                splitter_port,
                camera.start_recording,
                camera.wait_recording,
                camera.split_recording,
                camera.stop_recording,
                picamera.PiCameraCircularIO,
            )
        )
        circular = CircularIO(camera, seconds=6)
        start_recording(circular, "h264", resize=None, intra_period=10)
        try:
            wait_recording(3)
            circular.copy_to(os.path.join(out_dir, "edge.h264"), seconds=2)
            split_recording(os.path.join(out_dir, "all.h264"))
            circular.clear()
            wait_recording(2)
            circular.clear()
            split_recording(circular)
            wait_recording(1)
        finally:
            stop_recording()
        results["circular_after_split_back"] = len(circular.getvalue())


    def capture_rgb_for_detection(splitter_port, resize):
        buffers = []

        def g():
            while 1:
                buf = io.BytesIO()
                buffers.append(buf)
                yield buf

        try:
            camera.capture_sequence(
                g(), "rgb", resize=resize, use_video_port=True, splitter_port=splitter_port
            )
        except KeyError:
            # picamera 1.13: close() stopped this port first, then capture_sequence's
            # own clean-up finds the port gone
            results["capture_sequence_end"] = "KeyError"
        results["rgb_sizes"] = sorted({len(b.getvalue()) for b in buffers[:-1]})
        results["rgb_count"] = len(buffers) - 1


    threads = [
        threading.Thread(target=capture_jpg_for_streaming, args=(0,)),
        threading.Thread(target=record_continuously, args=(1, (256, 192))),
        threading.Thread(target=record_detection, args=(2,)),
        threading.Thread(target=capture_rgb_for_detection, args=(3, (100, 60))),
    ]
    for t in threads:
        t.start()
    while threads[1].is_alive() or threads[2].is_alive():
        camera.annotate_text = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        time.sleep(0.2)
    streaming.set()
    threads[0].join()
    camera.close()
    threads[3].join()
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f)
    """
)


def test_a_script_using_picamera_as_the_original_did(tmp_path):
    script = tmp_path / "original_usage.py"
    script.write_text(ORIGINAL_USAGE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([FAKES, ROOT]))
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "results.json").read_text())

    # record_sequence: three files, each a playable stream at the resize
    assert results["sequence"] == [str(tmp_path / f"seq-{n}.h264") for n in range(3)]
    for name in results["sequence"]:
        assert starts_with_keyframe(name) and frame_size(name) == (256, 192)
        assert count_frames(name) >= 10

    # the circular buffer: copy_to from an SPS header at least 2 s back, then the split
    edge = tmp_path / "edge.h264"
    assert starts_with_keyframe(edge) and frame_size(edge) == (320, 240)
    # from the oldest header within the last 2 s (headers come every second)
    assert 10 <= count_frames(edge) <= 21
    every = tmp_path / "all.h264"
    assert starts_with_keyframe(every) and count_frames(every) >= 10
    assert results["circular_after_split_back"] > 0

    # MJPEG: every buffer that starts with SOI starts a whole JPEG
    assert results["jpegs"] >= 20
    for n in range(3):
        picture = Image.open(tmp_path / f"live-{n}.jpg")
        picture.load()
        assert picture.size == (320, 240)

    # raw RGB through a resizer: picamera's rounding (128x64), alpha stripped
    assert results["rgb_sizes"] == [128 * 64 * 3] and results["rgb_count"] >= 10
    assert results["capture_sequence_end"] == results["sequence_end"] == "KeyError"


# --- the rules, one by one -------------------------------------------------------------------


class Writes:
    """An output that keeps what it is given and the port's PiVideoFrame at each write."""

    def __init__(self, camera, port, fail_on=None):
        self.camera, self.port = camera, port
        self.buffers, self.frames = [], []
        self.fail_on = fail_on
        # guards buffers and frames: appended by a port's thread, read by the test
        self.lock = threading.Lock()

    def write(self, buf):
        with self.lock:
            self.buffers.append(bytes(buf))
            self.frames.append(self.camera._encoders[self.port].frame)
            if self.fail_on is not None and len(self.buffers) == self.fail_on:
                raise OSError("No space left on device")
        return len(buf)

    def wait_for(self, count, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if len(self.buffers) >= count:
                    return list(self.frames)
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.buffers)} of {count} writes")
            time.sleep(0.02)


@pytest.fixture
def camera_factory():
    cameras = []

    def make(**kwargs):
        import picamera

        camera = picamera.PiCamera(**kwargs)
        cameras.append(camera)
        return camera

    yield make
    for camera in cameras:
        try:
            camera.close()
        except Exception:
            pass


@pytest.mark.parametrize(
    "resolution, fps, options, error",
    [
        ((1920, 1080), 30, {}, None),
        ((1920, 1080), 31, {}, "macroblocks/s"),
        ((1920, 1080), 31, {"level": "4.2"}, None),
        ((1920, 1080), 30, {"bitrate": 30_000_000}, "bitrate"),
        ((1920, 1080), 30, {"bitrate": 30_000_000, "level": "4.1"}, None),
        ((2048, 1088), 10, {"level": "4"}, "macroblock limit"),
        ((1280, 720), 30, {"level": "5"}, "Invalid H.264 level"),
        ((1280, 720), 30, {"profile": "extended"}, "Invalid H.264 profile"),
    ],
)
def test_h264_level_checks(camera_factory, resolution, fps, options, error):
    import picamera

    camera = camera_factory(resolution=resolution, framerate=fps)
    output = Writes(camera, 1)
    if error is None:
        camera.start_recording(output, "h264", **options)
        camera.stop_recording()
    else:
        with pytest.raises(picamera.PiCameraValueError, match=error):
            camera.start_recording(output, "h264", **options)
        assert not camera.recording


@pytest.mark.parametrize(
    "resolution, resize, use_video_port, size",
    [
        ((1640, 1232), None, True, (1648, 1232)),  # splitter without resizer: width to 16
        ((1640, 1232), None, False, (1664, 1232)),  # the still port: width to 32
        ((1296, 972), None, True, (1296, 976)),
        ((640, 480), (100, 60), True, (128, 64)),  # resizer: rounded, scaled into
    ],
)
def test_raw_frames_are_rounded_as_picamera_rounds_them(
    camera_factory, resolution, resize, use_video_port, size
):
    import picamera

    camera = camera_factory(resolution=resolution, framerate=5)
    out = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        camera.capture(out, "rgb", use_video_port=use_video_port, resize=resize)
    assert len(out.getvalue()) == size[0] * size[1] * 3
    kinds = {type(w.message) for w in caught}
    assert picamera.PiCameraResolutionRounded in kinds
    assert (picamera.PiCameraAlphaStripping in kinds) == (resize is not None)


def test_timestamps_are_shared_across_ports_and_headers_have_none(camera_factory):
    camera = camera_factory(resolution=(320, 240), framerate=10, clock_mode="raw")
    h264, raw = Writes(camera, 1), Writes(camera, 2)
    camera.start_recording(h264, "h264", splitter_port=1, intra_period=5)
    camera.start_recording(raw, "rgb", splitter_port=2, resize=(64, 48))
    h264.wait_for(12)
    raw.wait_for(12)
    now = camera.timestamp
    camera.stop_recording(2)
    camera.stop_recording(1)
    headers = [f for f in h264.frames if f.frame_type == 2]
    assert headers and all(f.timestamp is None for f in headers)
    pictures = {f.timestamp for f in h264.frames if f.frame_type in (0, 1)}
    assert len(pictures & {f.timestamp for f in raw.frames}) >= 8
    # 'raw' timestamps are the VideoCore's clock: close to camera.timestamp
    assert all(0 < now - t < 10_000_000 for t in pictures)


def test_clock_mode_reset_counts_from_the_start_of_capture(camera_factory):
    camera = camera_factory(resolution=(320, 240), framerate=10)
    assert camera.clock_mode == "reset"
    out = Writes(camera, 1)
    camera.start_recording(out, "mjpeg")
    frames = out.wait_for(5)
    camera.stop_recording()
    stamps = [f.timestamp for f in frames if f.timestamp is not None]
    assert stamps and all(0 <= t < 10_000_000 for t in stamps)
    assert camera.timestamp > 10_000_000  # the clock itself runs from the GPU's boot


def test_an_exception_in_write_stops_that_port_for_good(camera_factory):
    camera = camera_factory(resolution=(320, 240), framerate=10)
    failing, healthy = Writes(camera, 1, fail_on=3), Writes(camera, 2)
    camera.start_recording(failing, "mjpeg", splitter_port=1)
    camera.start_recording(healthy, "mjpeg", splitter_port=2)
    failing.wait_for(3)
    count = len(healthy.buffers)
    healthy.wait_for(count + 10)
    assert len(failing.buffers) == 3  # not one more write after the exception
    with pytest.raises(OSError, match="No space left"):
        camera.wait_recording(0, splitter_port=1)
    with pytest.raises(OSError, match="No space left"):
        camera.stop_recording(splitter_port=1)  # raised again, and the port is closed
    assert 1 not in camera._encoders
    camera.stop_recording(splitter_port=2)


def test_a_write_that_takes_less_than_given_is_an_error(camera_factory):
    import picamera

    class Short:
        def write(self, buf):
            return len(buf) - 1

    camera = camera_factory(resolution=(320, 240), framerate=10)
    camera.start_recording(Short(), "mjpeg")
    deadline = time.monotonic() + 30
    while camera._encoders[1].exception is None and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(picamera.PiCameraIOError):
        camera.stop_recording()


def test_camera_frame_is_one_encoders_and_none_before_any_starts(camera_factory):
    import picamera

    camera = camera_factory(resolution=(320, 240), framerate=10)
    with pytest.raises(picamera.PiCameraRuntimeError):
        print(camera.frame)
    first, second = Writes(camera, 3), Writes(camera, 1)
    camera.start_recording(first, "mjpeg", splitter_port=3)
    camera.start_recording(second, "h264", splitter_port=1)
    first.wait_for(3)
    second.wait_for(3)
    assert camera.frame is camera._encoders[3].frame  # the first registered, here
    with pytest.raises(picamera.PiCameraAlreadyRecording):
        camera.start_recording(io.BytesIO(), "mjpeg", splitter_port=3)
    with pytest.raises(picamera.PiCameraRuntimeError):
        camera.resolution = (640, 480)  # not while recording
    camera.stop_recording(3)
    camera.stop_recording(1)
    with pytest.raises(picamera.PiCameraNotRecording):
        camera.wait_recording(0, splitter_port=1)


def test_a_frozen_port_stops_alone_and_the_gpu_drops_its_frames(camera_factory):
    camera = camera_factory(resolution=(320, 240), framerate=10)
    frozen, other = Writes(camera, 1), Writes(camera, 2)
    camera.start_recording(frozen, "mjpeg", splitter_port=1)
    camera.start_recording(other, "mjpeg", splitter_port=2)
    frozen.wait_for(2)
    camera.fake_fault("freeze", 1)
    time.sleep(0.3)  # let a buffer already in delivery land
    stalled = len(frozen.buffers)
    count = len(other.buffers)
    other.wait_for(count + 15)
    assert len(frozen.buffers) == stalled
    assert camera._encoders[1].frames_dropped > 0
    camera.fake_fault("thaw", 1)
    frozen.wait_for(stalled + 3)


def test_circular_io_keeps_the_newest_bytes():
    import picamera

    stream = picamera.CircularIO(10)
    for chunk in (b"abcd", b"efgh", b"ijkl"):
        stream.write(chunk)
    assert stream.getvalue() == b"cdefghijkl" and stream.tell() == 10
    stream.seek(0)
    assert stream.read1() == b"cd" and stream.read(3) == b"efg"
    stream.seek(2)
    stream.write(b"XY")
    assert stream.getvalue() == b"cdXYghijkl"
    stream.truncate(4)
    assert stream.getvalue() == b"cdXY"
