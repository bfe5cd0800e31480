"""``pancake.py --camera picamera2`` on the real Picamera2 0.3.38, on a fake Pi 4 and a fake Pi 5.

Each test starts real pancake.py processes that are a Pi of one platform before
anything imports Picamera2 (tests/fakes/pi_site, tests/fakes/fake_pi) and checks
what a user would see: the live view over a websocket, continuous recording
across a quarter-hour split (libfaketime), edge clips around a scripted
detection fed with RGB frames, one-line errors for bad starts, systemd's
watchdog when the H.264 encoder freezes alone. Files are checked with ffprobe.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest
import tornado.websocket
from PIL import Image

from tests.helpers import (
    ROOT,
    Pancake,
    Receiver,
    changes,
    count_frames,
    fake_clock_env,
    ffprobe,
    frame_size,
    frames_received,
    free_port,
    scripted_customize,
    starts_with_keyframe,
    stop,
)
from tests.pi_platforms import NEEDS_PYTHON_310, PICAMERA2_RUNS_HERE, PLATFORMS, child_env
from tests.test_sdnotify import Receiver as NotifyReceiver

pytestmark = [
    pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe"),
    pytest.mark.skipif(not PICAMERA2_RUNS_HERE, reason=NEEDS_PYTHON_310),
]

FPS = 12


@pytest.fixture(params=PLATFORMS)
def platform(request):
    return request.param


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def launch(platform):
    """``launch(*flags, env=...)``: pancake.py --camera picamera2 on this Pi, stopped at the end."""
    started = []

    def start(*args, env=None):
        p = Pancake(
            "--camera",
            "picamera2",
            "--fps",
            str(FPS),
            *args,
            env={**child_env(platform), "TZ": "UTC", **(env or {})},
        )
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop(timeout=60)


def run_pancake_to_exit(platform, *args, env=None):
    """pancake.py run to completion (a bad start): its CompletedProcess."""
    with_env = {**child_env(platform), "TZ": "UTC", **(env or {})}
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "pancake.py"), "--camera", "picamera2", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=with_env,
        timeout=120,
    )


async def watch(port, count):
    ws = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{port}/websocket")
    frames = []
    for _ in range(count):
        await ws.write_message("read_frame")
        frames.append(await asyncio.wait_for(ws.read_message(), 30))
    ws.close()
    return frames


def nal_types_in_file(path) -> list:
    data = open(path, "rb").read()
    types, i = [], 0
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0 or i + 3 >= len(data):
            return types
        types.append(data[i + 3] & 0x1F)
        i += 3


def keyframes(path) -> list:
    """Which decoded frames of a file are keyframes (ffprobe)."""
    out = ffprobe(path, "-show_entries", "frame=key_frame")
    return [n for n, line in enumerate(out.split()) if line.startswith("1")]


def test_live_view_serves_the_cameras_jpegs(platform, launch):
    p = launch("--resolution", "320", "240", "--max-stream-fps", "30")
    frames = asyncio.run(watch(p.port, 6))
    stop(p, clean_log=True)
    assert len({hashlib.sha1(f).hexdigest() for f in frames}) == 6
    for data in frames:
        picture = Image.open(io.BytesIO(data))
        assert picture.format == "JPEG" and picture.size == (320, 240)


def test_continuous_recording_splits_at_the_quarter_hour(platform, launch, receiver, tmp_path):
    out_dir = tmp_path / "h264"
    out_dir.mkdir()
    p = launch(
        "--record-continuous",
        str(out_dir),
        "--record-resize",
        "256",
        "192",
        "--emit",
        receiver.name,
        env=fake_clock_env("2020-06-23 17:14:50"),
    )
    receiver.wait_for(1)  # the first file is announced at the split, 17:15:00
    first, second = out_dir / "20200623-1714.h264", out_dir / "20200623-1715.h264"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not second.exists() or second.stat().st_size < 20000):
        time.sleep(0.2)
    log = stop(p, clean_log=True)
    assert receiver.wait_for(2) == [{"h264": str(first)}, {"h264": str(second)}]
    assert sorted(os.listdir(out_dir)) == [first.name, second.name]
    counts = [count_frames(first), count_frames(second)]
    assert all(counts) and sum(counts) == frames_received(log)
    for path in (first, second):
        assert starts_with_keyframe(path) and frame_size(path) == (256, 192)
        marks = keyframes(path)
        # a keyframe every second (FPS frames), each after its own SPS and PPS
        assert marks == list(range(0, count_frames(path), FPS))
        assert nal_types_in_file(path).count(7) == len(marks)
    assert counts[0] % FPS == 0  # split at a keyframe


def test_edge_clips_around_a_scripted_detection(platform, launch, receiver, tmp_path):
    out_dir = tmp_path / "clips"
    out_dir.mkdir()
    # late enough that the pre-roll has frames after the camera's 2 s warm-up
    customize, detect_log = scripted_customize(tmp_path, [(8.0, 13.0)], rgb_size=100 * 60 * 3)
    p = launch(
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
        frames = count_frames(m["h264"])
        assert 4 * FPS <= frames <= 6 * FPS, frames
        assert starts_with_keyframe(m["h264"]) and frame_size(m["h264"]) == (320, 240)
        stamp = os.path.basename(m["h264"])[:15]
        start = calendar.timegm(time.strptime(stamp, "%Y%m%d-%H%M%S"))  # named in UTC
        assert edge - 5 < start <= edge - 2


BAD_STARTS = {
    "the encoder device refuses this user": (
        "vc4",
        ["--record-continuous", "{out}"],
        {"FAKE_PI_FAULTS": "open:/dev/video11=EACCES"},
        3,
        "Permission denied",
    ),
    "the encoder device refuses its format": (
        "vc4",
        ["--record-continuous", "{out}"],
        {"FAKE_PI_FAULTS": "ioctl:VIDIOC_S_FMT=EINVAL"},
        3,
        "Invalid argument",
    ),
    "a recording larger than the VC4 encoder takes": (
        "vc4",
        ["--record-continuous", "{out}", "--record-resize", "2592", "1944"],
        {},
        2,
        "at most 1920x1920",
    ),
    "no camera": ("any", [], {"FAKE_PICAMERA2_CAMERAS": "0"}, 3, "finds no camera"),
}


@pytest.mark.parametrize("case", list(BAD_STARTS))
def test_a_bad_start_is_one_line_and_a_non_zero_exit(platform, case, tmp_path):
    on, args, env, code, words = BAD_STARTS[case]
    if on not in ("any", platform):
        pytest.skip(f"only a {on} Pi can fail this way")
    args = [a.format(out=tmp_path) for a in args]
    done = run_pancake_to_exit(platform, "--port", str(free_port()), *args, env=env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and words in lines[0], lines
    assert "Traceback" not in done.stdout + done.stderr


def test_the_watchdog_stops_when_the_h264_encoder_freezes_alone(platform, tmp_path):
    """Picamera2 issue 1228: the encoder stops, the camera and the live view go on."""
    address = f"@pancake-test-notify-{uuid.uuid4().hex}"
    notify = NotifyReceiver("\0" + address[1:])
    control = tmp_path / "control"
    control.mkdir()
    out_dir = tmp_path / "h264"
    out_dir.mkdir()
    env = {
        **child_env(platform),
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "2000000",
        "FAKE_PI_CONTROL_DIR": str(control),
    }
    env.pop("WATCHDOG_PID", None)
    p = None
    try:
        p = Pancake(
            "--camera", "picamera2", "--fps", str(FPS), "--record-continuous", str(out_dir), env=env
        )
        notify.wait_for("READY=1", timeout=90)
        notify.wait_for("WATCHDOG=1", timeout=60, count=3)
        (control / "freeze-h264").touch()
        notify.drain(3.0)  # a ping decided just before the freeze may still come
        quiet = notify.drain(4.0)
        assert "WATCHDOG=1" not in quiet
        assert p.proc.poll() is None  # the process lives: systemd is the one to restart it
        (control / "freeze-h264").unlink()
        notify.wait_for("WATCHDOG=1", timeout=60)
        p.proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", timeout=60)
        assert p.proc.wait(timeout=60) == 0
    finally:
        if p is not None:
            p.stop(timeout=60)
        notify.close()
