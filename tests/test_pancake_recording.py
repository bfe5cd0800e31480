"""pancake.py recording end to end: the sim camera, a real datagram receiver, ffprobe.

Each test runs real ``pancake.py --camera sim`` processes; files are checked with
ffprobe, messages with a receiver bound to a unique abstract socket name.
"""

from __future__ import annotations

import os
import re
import shutil
import time

import pytest

from tests.helpers import (
    ROOT,
    ClockBeforeASplit,
    Pancake,
    Receiver,
    changes,
    clock_away_from_a_quarter_hour,
    count_frames,
    frames_received,
    run_cli,
    scripted_customize,
    starts_with_keyframe,
    stop,
    with_timestamp_files,
)
from tests.pts_helpers import recorded_seconds

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe")

FPS = 12


@pytest.fixture
def receiver():
    """Factory: ``receiver(name=None, start=True)``; all are stopped at teardown."""
    made = []

    def make(name=None, start=True):
        r = Receiver(name)
        made.append(r)
        return r.start() if start else r

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def procs():
    """Every pancake.py started here is stopped at teardown, whatever the test did."""
    started = []
    yield started
    for p in started:
        p.stop()


def start_pancake(procs, *args, **kwargs) -> Pancake:
    p = Pancake("--camera", "sim", "--fps", str(FPS), *args, **kwargs)
    procs.append(p)
    return p


def scripted_detection(customize: str) -> list:
    """Flags that ask a ``scripted_customize`` file ten times a second, without pictures."""
    return ["--detect", "no-image", "--detect-interval", "0.1", "--customize", customize]


def clip_start(path: str) -> float:
    """The local time in a clip's name, YYYYMMDD-hhmmss."""
    stamp = os.path.basename(path)[:15]
    return time.mktime(time.strptime(stamp, "%Y%m%d-%H%M%S"))


# continuous


def test_continuous_splits_at_the_quarter_hour_and_loses_no_frame(
    tmp_path, tmp_path_factory, procs, receiver
):
    rx = receiver()
    # the process clock reads 17:14 local time, and 17:14:55 once recording (in
    # Kolkata, UTC+5:30, so a half-hour time zone splits on its own quarter hours)
    kolkata = os.path.exists("/usr/share/zoneinfo/Asia/Kolkata")
    zone, utc_minute = (
        ("Asia/Kolkata", "2020-06-23 11:44") if kolkata else ("UTC", "2020-06-23 17:14")
    )
    clock = ClockBeforeASplit(
        tmp_path_factory.mktemp("clock"), tmp_path / "20200623-1714.h264", utc_minute
    )
    p = start_pancake(
        procs,
        "--record-continuous",
        str(tmp_path),
        "--emit",
        rx.name,
        env={**clock.env, "TZ": zone},
    )
    clock.wait_and_set(seconds_left=5)
    # the first file is announced once the split at 17:15:00 has happened
    rx.wait_for(1, timeout=90)
    first = tmp_path / "20200623-1714.h264"
    second = tmp_path / "20200623-1715.h264"
    deadline = time.monotonic() + 30
    # the first file is announced once closed, maybe before the second is opened
    while time.monotonic() < deadline and (not second.exists() or second.stat().st_size < 20000):
        time.sleep(0.2)  # let the second file grow a few seconds
    log = stop(p)
    messages = rx.wait_for(2)
    assert messages == [{"h264": str(first)}, {"h264": str(second)}]
    assert sorted(os.listdir(tmp_path)) == with_timestamp_files(first.name, second.name)
    counts = [count_frames(str(first)), count_frames(str(second))]
    assert all(counts) and all(starts_with_keyframe(str(f)) for f in (first, second))
    assert sum(counts) == frames_received(log), "every frame once, none lost"
    # the split is at the first keyframe at or after 17:15:00: under one second later
    assert counts[0] % FPS == 0  # the first file is whole one-second groups


# detection


def test_shipped_motion_detector_records_the_sim_scene_moving(tmp_path, procs, receiver):
    """The README demo: clips when the ball starts and stops moving, nothing in between."""
    rx = receiver()
    p = start_pancake(
        procs,
        "--record-continuous",
        str(tmp_path),
        "--record-detection",
        "edge",
        str(tmp_path),
        "--detect",
        "image",
        "--emit",
        rx.name,
        # far from a quarter hour: one continuous file, whenever the test runs
        env=clock_away_from_a_quarter_hour(),
    )
    # the ball moves from 6 s to 14 s of each 20 s cycle
    messages = rx.wait_for(2, timeout=90)
    log = stop(p)
    messages = rx.wait_for(3)
    clips = [m for m in messages if "detection" in m]
    assert [m["detection"] for m in clips] == [True, False]
    for m in clips:
        # 4-6 s of capture time (a frame count would also count the frames a loaded
        # machine made the camera drop)
        assert 4 <= recorded_seconds(m["h264"], FPS) <= 6
        assert starts_with_keyframe(m["h264"])
    (continuous,) = [m["h264"] for m in messages if "detection" not in m]
    assert count_frames(continuous) == frames_received(log)
    # motion lasts 8 s: the clips are that far apart, give or take the detector
    assert 5 <= clip_start(clips[1]["h264"]) - clip_start(clips[0]["h264"]) <= 11


def test_edge_clips_around_a_scripted_detection(tmp_path, procs, receiver):
    customize, changes_log = scripted_customize(tmp_path, [(5.0, 10.0)])
    rx = receiver()
    p = start_pancake(
        procs,
        "--record-detection",
        "edge",
        str(tmp_path),
        *scripted_detection(customize),
        "--emit",
        rx.name,
    )
    rx.wait_for(2, timeout=90)
    stop(p)
    messages = rx.messages
    assert [m["detection"] for m in messages] == [True, False]
    edges = [t for t, state in changes(changes_log)[1:]]  # the first entry is the initial False
    for m, edge in zip(messages, edges):
        # 4-6 s of capture time, not of frames: a loaded machine makes the camera drop some
        assert 4 <= recorded_seconds(m["h264"], FPS) <= 6
        assert starts_with_keyframe(m["h264"])
        # named after its first frame, a keyframe 2-4 s before the edge (names have seconds)
        assert edge - 5 < clip_start(m["h264"]) <= edge - 2


def test_all_mode_sequence_and_sigterm_closing_a_recording(tmp_path, procs, receiver):
    customize, changes_log = scripted_customize(tmp_path, [(4.0, 8.0), (14.0, None)])
    rx = receiver()
    p = start_pancake(
        procs,
        "--record-continuous",
        str(tmp_path),
        "--record-detection",
        "all",
        str(tmp_path),
        *scripted_detection(customize),
        "--emit",
        rx.name,
        # one continuous file, announced last: on the real clock a quarter hour
        # passing during the test would split it and add a message among these
        env=clock_away_from_a_quarter_hour(),
    )
    rx.wait_for(4, timeout=90)  # the second recording's clip
    time.sleep(2)  # now well inside the second recording
    log = stop(p)
    messages = rx.wait_for(6)
    clip1, false, rest1, clip2 = messages[:4]
    assert clip1["detection"] is True and set(clip1) == {"h264", "detection"}
    assert false == {"detection": False}
    assert set(rest1) == {"h264"}
    assert clip2["detection"] is True
    # at SIGTERM both recordings in progress are closed and announced
    by_kind = {len(os.path.basename(m["h264"])): m for m in messages[4:]}
    continuous, rest2 = by_kind[len("20200623-1715.h264")], by_kind[len("20200623-171500.h264")]
    assert set(rest2) == {"h264"} and set(continuous) == {"h264"}
    for m in (clip1, rest1, clip2, rest2, continuous):
        assert starts_with_keyframe(m["h264"])
    assert count_frames(continuous["h264"]) == frames_received(log)
    # the clip and the recording that continues it hold each frame once, no gap:
    # detection lasted 4 s, then 3 s of hold, so about 7 s plus the 2-4 s pre-roll.
    # Measured in capture time from the .pts, and from when detect() answered: a
    # loaded machine drops frames and calls detect() late, which moves the edges.
    (came, _), (went, _) = changes(changes_log)[1:3]
    total = recorded_seconds(clip1["h264"], FPS) + recorded_seconds(rest1["h264"], FPS)
    assert (went - came) + 4.8 <= total <= (went - came) + 7.5, (total, went - came)


def test_emitter_sends_what_waited_once_the_receiver_is_back(tmp_path, procs, receiver):
    customize, changes_log = scripted_customize(tmp_path, [(1.0, 3.0)])
    rx = receiver(start=False)
    p = start_pancake(
        procs,
        *scripted_detection(customize),
        "--emit",
        rx.name,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(changes(changes_log)) < 3:
        time.sleep(0.2)  # both edges have happened with nobody listening
    time.sleep(1.5)
    rx.start()
    messages = rx.wait_for(2, timeout=30)
    log = stop(p)
    assert messages == [{"detection": True}, {"detection": False}]
    assert "no receiver on" in log


def test_customize_that_raises_is_logged_and_recording_goes_on(tmp_path, procs):
    customize = tmp_path / "broken.py"
    customize.write_text("def detect(rgb):\n    raise RuntimeError('broken detector')\n")
    p = start_pancake(
        procs,
        "--record-continuous",
        str(tmp_path),
        "--record-detection",
        "edge",
        str(tmp_path),
        "--detect",
        "image",
        "--detect-interval",
        "0.05",
        "--customize",
        str(customize),
        # the one .h264 below: on the real clock a quarter hour could split it
        env=clock_away_from_a_quarter_hour(),
    )
    time.sleep(4)
    log = stop(p)
    assert log.count("Traceback") == 1  # logged once, not once per call
    assert "broken detector" in log
    calls = int(re.search(r"detection: (\d+) calls, (\d+) raised", log).group(1))
    assert calls > 10 and f"{calls} calls, {calls} raised" in log
    (name,) = [n for n in os.listdir(tmp_path) if n.endswith(".h264")]
    assert count_frames(str(tmp_path / name)) == frames_received(log)


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "does not exist"),
        ("def detect(:\n", "failed to import"),
        ("raise RuntimeError('boom')\n", "failed to import"),
        ("detect = 3\n", "does not define a function detect()"),
        ("def detect():\n    return True\n", "calls detect(bytes)"),
    ],
)
def test_bad_customize_file_is_one_clear_line(tmp_path, content, expected):
    path = tmp_path / "customize_bad.py"
    if content is not None:
        path.write_text(content)
    result = run_cli(
        "pancake.py",
        "--camera",
        "sim",
        "--port",
        "1",
        "--detect",
        "image",
        "--customize",
        str(path),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert lines[0].startswith("pancake.py: error: --customize")


def test_shipped_customize_file_answers_both_ways():
    spec_path = os.path.join(ROOT, "customize.py")
    from raspberry_pancake.detection.loader import load_detect

    detect = load_detect(spec_path, "image")
    assert load_detect(spec_path, "no-image") is not None
    assert detect(bytes(300)) is False  # the first picture: nothing to compare with yet
    assert detect() in (True, False)
