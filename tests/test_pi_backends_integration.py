"""The sim camera's end-to-end checks, run through the picamera and Picamera2 backends.

Real ``pancake.py --camera picamera|picamera2`` subprocesses: picamera on its
fake (tests/fakes on PYTHONPATH), Picamera2 the real library on a fake Pi 4
(``picamera2-vc4``) and a fake Pi 5 (``picamera2-pisp``; tests/fakes/fake_pi).
The checks: the live view over a websocket, continuous recording across a
quarter-hour split (libfaketime), an edge clip around a scripted detection fed
with RGB frames. Files are checked with ffprobe; the picamera fake writes how it
was used to a JSON file at close, checked against what the flags asked for, and
Picamera2's H.264 is checked for a keyframe, after its own SPS, every second.
tests/test_picamera2_integration.py has the checks only Picamera2 has.

For picamera alone: systemd's watchdog, on a real notify socket, stops being
pinged when one splitter port dies while the others go on; and the three steps of
the wall clock of tests/clock_steps.py (+1 h, -1 h, +1 h just before an edge).
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import io
import json
import os
import shutil
import signal
import time

import pytest
import tornado.websocket
from PIL import Image

from tests.camera.camhelpers import nal_types
from tests.helpers import (
    FAKES,
    ROOT,
    ClockBeforeASplit,
    Pancake,
    Receiver,
    changes,
    count_frames,
    ffprobe,
    frame_size,
    frames_received,
    scripted_customize,
    starts_with_keyframe,
    stop,
    with_timestamp_files,
)
from tests.pi_platforms import (
    NEEDS_PYTHON_310,
    PICAMERA2_RUNS_HERE,
    PISP_ENCODES_HERE,
    PISP_NEEDS_NEWER_PYAV,
    child_env,
)
from tests.pts_helpers import recorded_seconds
from tests.test_sdnotify import (
    abstract_receiver,  # noqa: F401 - a fixture
    wait_for_withheld_pings,
)

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe")

FPS = 12
BACKENDS = ["picamera", "picamera2-vc4", "picamera2-pisp"]


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def run_pancake(tmp_path):
    """Starts pancake.py on a fake Pi library; returns (process, path of the fake's usage log)."""
    started = []

    def start(backend, *args, extra_env=None, log_path=None):
        camera, _, platform = backend.partition("-")
        usage = tmp_path / f"{backend}-usage.json"
        if platform:
            if not PICAMERA2_RUNS_HERE:
                pytest.skip(NEEDS_PYTHON_310)
            if platform == "pisp" and not PISP_ENCODES_HERE:
                pytest.skip(PISP_NEEDS_NEWER_PYAV)
            env = child_env(platform)
        else:
            env = {"PYTHONPATH": os.pathsep.join([FAKES, ROOT, os.environ.get("PYTHONPATH", "")])}
        env.update({"FAKE_PICAMERA_LOG": str(usage), "TZ": "UTC", **(extra_env or {})})
        p = Pancake("--camera", camera, "--fps", str(FPS), *args, env=env, log_path=log_path)
        started.append(p)
        return p, usage

    yield start
    for p in started:
        p.stop(timeout=60)


def usage_of(path):
    with open(path) as f:
        return json.load(f)


def keyframes(path) -> list:
    """Which decoded frames of a file are keyframes (ffprobe)."""
    out = ffprobe(path, "-show_entries", "frame=key_frame")
    return [n for n, line in enumerate(out.split()) if line.startswith("1")]


async def watch(port, count):
    ws = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{port}/websocket")
    frames = []
    for _ in range(count):
        await ws.write_message("read_frame")
        frames.append(await asyncio.wait_for(ws.read_message(), 30))
    ws.close()
    return frames


@pytest.mark.parametrize("backend", BACKENDS)
def test_live_view_serves_the_cameras_jpegs(backend, run_pancake):
    p, usage = run_pancake(backend, "--resolution", "320", "240", "--max-stream-fps", "30")
    frames = asyncio.run(watch(p.port, 6))
    stop(p, clean_log=True)
    assert len({hashlib.sha1(f).hexdigest() for f in frames}) == 6
    for data in frames:
        picture = Image.open(io.BytesIO(data))
        assert picture.format == "JPEG" and picture.size == (320, 240)
    if backend == "picamera":
        log = usage_of(usage)["log"]
        (start,) = [e for e in log if e[0] == "start_recording"]
        assert start[2] == "mjpeg" and start[3] is None
        assert log[-1][0] in ("close", "stop")


@pytest.mark.parametrize("backend", BACKENDS)
def test_continuous_recording_splits_at_the_quarter_hour(backend, run_pancake, receiver, tmp_path):
    out_dir = tmp_path / "h264"
    out_dir.mkdir()
    # 17:14 UTC, and 17:14:55 once recording: a clock started a few seconds before
    # 17:15 would race a slow start of the camera library
    clock = ClockBeforeASplit(tmp_path, out_dir / "20200623-1714.h264")
    p, usage = run_pancake(
        backend,
        "--record-continuous",
        str(out_dir),
        "--record-resize",
        "256",
        "192",
        "--emit",
        receiver.name,
        extra_env=clock.env,
    )
    clock.wait_and_set(seconds_left=5)
    receiver.wait_for(1)  # the first file is announced at the split, 17:15:00
    first, second = out_dir / "20200623-1714.h264", out_dir / "20200623-1715.h264"
    deadline = time.monotonic() + 30
    # the first file is announced once closed, maybe before the second is opened
    while time.monotonic() < deadline and (not second.exists() or second.stat().st_size < 20000):
        time.sleep(0.2)
    log = stop(p, clean_log=True)
    assert receiver.wait_for(2) == [{"h264": str(first)}, {"h264": str(second)}]
    assert sorted(os.listdir(out_dir)) == with_timestamp_files(first.name, second.name)
    counts = [count_frames(first), count_frames(second)]
    assert all(counts) and sum(counts) == frames_received(log)
    for path in (first, second):
        assert starts_with_keyframe(path) and frame_size(path) == (256, 192)
    assert counts[0] % FPS == 0  # split at a keyframe; keyframes once a second
    if backend == "picamera":
        (h264,) = [r for r in usage_of(usage)["recordings"] if r["format"] == "h264"]
        assert h264["resize"] == [256, 192]
        assert h264["options"] == {"inline_headers": True, "intra_period": FPS}
    else:
        for path in (first, second):
            # a keyframe every second (FPS frames), each after its own SPS and PPS
            marks = keyframes(path)
            assert marks == list(range(0, count_frames(path), FPS))
            assert nal_types(path.read_bytes()).count(7) == len(marks)


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_clips_around_a_scripted_detection(backend, run_pancake, receiver, tmp_path):
    out_dir = tmp_path / "clips"
    out_dir.mkdir()
    # late enough that the pre-roll has frames after the camera's 2 s warm-up
    customize, detect_log = scripted_customize(tmp_path, [(8.0, 13.0)], rgb_size=100 * 60 * 3)
    p, _ = run_pancake(
        backend,
        "--record-detection",
        "edge",
        str(out_dir),
        "--detect",
        "image",
        "--detect-resize",
        "100",
        "60",
        "--detect-interval",
        "0.1",
        "--customize",
        customize,
        "--emit",
        receiver.name,
    )
    messages = receiver.wait_for(2, timeout=120)
    stop(p, clean_log=True)
    assert [m["detection"] for m in messages] == [True, False]
    lines = detect_log.read_text().splitlines()
    assert not [line for line in lines if line.startswith("size")], "RGB of the wrong size"
    edges = [t for t, _ in changes(detect_log)[1:]]  # the first change: initial False
    assert len(edges) == 2
    for m, edge in zip(messages, edges):
        # 4-6 s of capture time, not of frames: a loaded machine makes a camera drop some
        assert 4 <= recorded_seconds(m["h264"], FPS) <= 6
        assert starts_with_keyframe(m["h264"]) and frame_size(m["h264"]) == (320, 240)
        stamp = os.path.basename(m["h264"])[:15]
        start = calendar.timegm(time.strptime(stamp, "%Y%m%d-%H%M%S"))  # named in UTC
        assert edge - 5 < start <= edge - 2


# --- picamera: the watchdog sees one dead splitter port ------------------------------------


@pytest.mark.parametrize("fault", ["freeze", "fail"])
def test_the_watchdog_sees_one_dead_picamera_port(fault, run_pancake, request, tmp_path):
    """The H.264 port freezes (a stalled encoder) or fails (picamera stops it for good)
    while the live view's port goes on: the pings must stop."""
    # a bound notify socket, as systemd's (test_sdnotify's fixture)
    receiver, address = request.getfixturevalue("abstract_receiver")
    faults = tmp_path / "faults"
    out_dir = tmp_path / "h264"
    out_dir.mkdir()
    env = {
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "2000000",
        "WATCHDOG_PID": "",
        "FAKE_PICAMERA_FAULTS": str(faults),
    }
    log = tmp_path / "pancake.log"
    p, _ = run_pancake("picamera", "--record-continuous", str(out_dir), extra_env=env, log_path=log)
    receiver.wait_for("READY=1", timeout=90)
    receiver.wait_for("WATCHDOG=1", timeout=60, count=3)

    faults.write_text(f"{fault} 1\n")  # the fake reads it at its next frame
    # not a fixed wait: on a loaded machine the fake's next frame, and frames
    # delivered just before the fault, may reach the watchdog seconds later
    wait_for_withheld_pings(log)
    receiver.drain(0.5)  # a ping sent just before the line was written
    quiet = receiver.drain(4.0)
    assert "WATCHDOG=1" not in quiet
    assert p.proc.poll() is None
    if fault == "freeze":
        faults.write_text("thaw 1\n")
        receiver.wait_for("WATCHDOG=1", timeout=60)  # frames again: pings again
    p.proc.send_signal(signal.SIGTERM)
    log = stop(p)
    assert "the H.264 output (recording) has delivered nothing" in log, log
    if fault == "fail":
        assert "splitter port 1 has stopped delivering frames" in log, log


# --- picamera: the wall clock set while recording (tests/clock_steps.py) ----------------------


@pytest.fixture
def launch_picamera(run_pancake):
    """clock_steps' launcher: pancake.py --camera picamera on the fake, 320x240.

    A failure also tells how many frames the fake dropped (its usage log).
    """
    usages = []

    def launch(*args, env=None):
        p, usage = run_pancake("picamera", "--resolution", "320", "240", *args, extra_env=env)
        usages.append(usage)
        return p

    def run(scenario, workdir):
        try:
            scenario(launch, workdir, FPS)
        except AssertionError as e:
            frames = [usage_of(u).get("frames") for u in usages if os.path.exists(u)]
            raise AssertionError(f"{e}\nthe fake's frames: {frames}") from None

    return run


def test_picamera_clock_set_forward_an_hour_starts_a_file_named_with_the_new_time(
    launch_picamera, tmp_path
):
    from tests import clock_steps

    launch_picamera(clock_steps.forward_step_starts_a_file_named_with_the_new_time, tmp_path)


def test_picamera_clock_set_back_an_hour_never_overwrites_a_file(launch_picamera, tmp_path):
    from tests import clock_steps

    launch_picamera(clock_steps.backward_step_never_overwrites_a_file, tmp_path)


def test_picamera_clock_set_just_before_an_edge_keeps_the_clip_whole(launch_picamera, tmp_path):
    from tests import clock_steps

    launch_picamera(clock_steps.step_before_an_edge_keeps_the_clip_whole, tmp_path)
