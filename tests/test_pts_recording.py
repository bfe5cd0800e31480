"""Recordings that keep true time, end to end: real pancake.py (sim camera) writing
.h264 and .pts, real postproc.py converting, ffprobe reading every mp4.

Frames are dropped the way a camera drops them: SIGUSR1 freezes the sim camera
(no capture at all), so the recording has a gap the mp4 must keep.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time

import pytest

from raspberry_pancake import timestamps
from tests.helpers import Pancake, clock_away_from_a_quarter_hour, count_frames, stop
from tests.postproc.pp_helpers import Postproc, wait_until
from tests.pts_helpers import TICK, h264_frames, mp4_timing, pts_lines

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe")


@pytest.fixture
def procs():
    """Every pancake.py and postproc.py started here is stopped at teardown."""
    started = []
    yield started
    for p in started:
        if isinstance(p, Pancake):
            p.stop()
        elif p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


def start_postproc(tmp_path, procs, mp4_dir, fps: str) -> Postproc:
    pp = Postproc(tmp_path, "--convert", str(mp4_dir), fps)
    procs.append(pp)
    pp.start()
    return pp


def start_pancake(procs, fps: str, h264_dir, *args: str) -> Pancake:
    # every test here expects one continuous file (``recording_in``): on the real
    # clock a run across a quarter hour (a split) would leave two
    cam = Pancake(
        "--camera", "sim", "--fps", fps, "--record-continuous", str(h264_dir), *args,
        env=clock_away_from_a_quarter_hour(),
    )  # fmt: skip
    procs.append(cam)
    return cam


def recording_in(directory) -> str:
    names = [n for n in os.listdir(directory) if n.endswith(".h264")]
    assert len(names) == 1, os.listdir(directory)
    return os.path.join(str(directory), names[0])


def entries(pts_file) -> int:
    try:
        return len(pts_lines(pts_file)[1])
    except FileNotFoundError:
        return 0


def wait_for_entries(directory, count: int) -> str:
    """The recording's .pts once it lists ``count`` frames."""

    def enough():
        names = [n for n in os.listdir(directory) if n.endswith(".pts")]
        return names and entries(os.path.join(str(directory), names[0])) >= count

    wait_until(enough, what=f"{count} frames in the .pts file")
    return timestamps.pts_path(recording_in(directory))


def assert_consistent(h264, pts_file, whole: bool):
    """The .pts describes the h264's own frames, as PyAV's parser cuts them: all of
    them (``whole``), or the first ones (after a kill)."""
    frames = h264_frames(h264)
    comments, times, sizes = pts_lines(pts_file)
    assert comments[0] == "# timestamp format v2"
    assert len(times) == len(sizes)
    if whole:
        assert sizes == frames
    else:
        assert len(sizes) <= len(frames)
        assert sizes == frames[: len(sizes)]
    assert sum(size for size, _ in sizes) <= os.path.getsize(h264)
    return times


def assert_mp4_follows(mp4, times_ms, first_wall_text):
    got = mp4_timing(mp4)
    seconds = [ms / 1000 for ms in times_ms]
    assert got.frames == len(seconds)
    assert got.pts == pytest.approx(seconds, abs=TICK)
    intervals = sorted(b - a for a, b in zip(seconds, seconds[1:]))
    interval = intervals[len(intervals) // 2]
    true_duration = seconds[-1] - seconds[0] + interval
    assert abs(got.duration - true_duration) <= interval + TICK, (got.duration, true_duration)
    assert got.creation_time is not None and got.creation_time[:19] == first_wall_text[:19]
    return got


def first_wall(pts_file) -> str:
    comment = pts_lines(pts_file)[0][1]
    assert comment.startswith("# first frame at "), comment
    return comment.split()[4]


def test_dropped_frames_play_for_the_true_wall_duration(tmp_path, procs):
    h264_dir, mp4_dir = tmp_path / "h264", tmp_path / "mp4"
    h264_dir.mkdir()
    mp4_dir.mkdir()
    pp = start_postproc(tmp_path, procs, mp4_dir, "15")
    started = time.time()
    cam = start_pancake(procs, "15", h264_dir, "--emit", pp.name)
    pts_file = wait_for_entries(h264_dir, 20)
    os.kill(cam.proc.pid, signal.SIGUSR1)  # the camera stops delivering frames...
    threading.Event().wait(2.5)  # ...for a while: this is the gap, not a wait for a condition
    before = entries(pts_file)
    os.kill(cam.proc.pid, signal.SIGUSR1)  # ...and resumes
    wait_until(lambda: entries(pts_file) >= before + 20, what="frames after the gap")
    stop(cam, clean_log=True)
    span = time.time() - started
    pp.wait_log(" with builtin in ")
    h264 = recording_in(h264_dir)
    times = assert_consistent(h264, pts_file, whole=True)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) >= 2000, "the freeze left a gap of at least two seconds"
    mp4 = os.path.join(str(mp4_dir), os.path.basename(h264)[:-5] + ".mp4")
    got = assert_mp4_follows(mp4, times, first_wall(pts_file))
    assert got.duration > got.frames / 15 + 1.9  # numbering at fps would lose the gap
    assert got.duration < span  # no longer than the test itself ran
    assert "Traceback" not in pp.log_text()


def test_15_fps_converted_with_30(tmp_path, procs):
    """With its .pts the mp4 lasts what was recorded; without, frames/30 and a warning."""
    h264_dir, mp4_dir, plain_dir = tmp_path / "h264", tmp_path / "mp4", tmp_path / "plain"
    for d in (h264_dir, mp4_dir, plain_dir):
        d.mkdir()
    pp = start_postproc(tmp_path, procs, mp4_dir, "30")
    cam = start_pancake(procs, "15", h264_dir, "--emit", pp.name)
    pts_file = wait_for_entries(h264_dir, 45)
    stop(cam, clean_log=True)
    log = pp.wait_log(" with builtin in ")
    h264 = recording_in(h264_dir)
    times = assert_consistent(h264, pts_file, whole=True)
    mp4 = os.path.join(str(mp4_dir), os.path.basename(h264)[:-5] + ".mp4")
    got = assert_mp4_follows(mp4, times, first_wall(pts_file))
    # timed at the camera's 15 fps, not at --convert's 30 (half as long). Not "close to
    # len/15": the sim camera drops a slot whenever a loaded machine keeps it more than
    # a frame late (longer), and a late first frame shortens the first interval (a
    # frame shorter at most); assert_mp4_follows has held the mp4 to the true times.
    assert got.duration >= (len(times) - 3) / 15
    warnings = [
        line for line in log.splitlines() if " WARNING raspberry_pancake.postproc.convert" in line
    ]
    assert len(warnings) == 1 and "30 fps" in warnings[0], log
    # the average of the real capture times, as the .pts lists them: about 15, but
    # 14.99 or 13.5 on a loaded machine where the camera drops slots, 15.12 after a
    # late first frame
    average = float(re.search(r"average ([\d.]+) fps", warnings[0]).group(1))
    recorded = (len(times) - 1) * 1000 / (times[-1] - times[0])
    assert average == pytest.approx(recorded, abs=0.006), warnings[0]

    # the same recording without its .pts, as the original pancake wrote them
    plain = str(plain_dir / "20200623-1714.h264")
    shutil.copyfile(h264, plain)
    pp.send({"h264": plain})
    log = pp.wait_log(" with builtin in ", count=2)
    old = mp4_timing(str(mp4_dir / "20200623-1714.mp4"))
    assert old.frames == len(times)
    assert old.pts == pytest.approx([i / 30 for i in range(len(times))], abs=1e-6)
    assert old.duration == pytest.approx(len(times) / 30, abs=1e-6)
    assert old.creation_time is None
    warnings = [
        line for line in log.splitlines() if " WARNING raspberry_pancake.postproc.convert" in line
    ]
    assert len(warnings) == 2 and "no timestamp file" in warnings[1], log


def test_kill_9_leaves_a_pts_never_longer_than_the_frames(tmp_path, procs):
    """After kill -9 the .pts lists no frame the h264 lacks; the next start recovers the
    orphan (its torn last frame cut off, its .pts with it) and announces it, and
    postproc builds the mp4 from the frames the two files agree on."""
    h264_dir, mp4_dir = tmp_path / "h264", tmp_path / "mp4"
    h264_dir.mkdir()
    mp4_dir.mkdir()
    cam = start_pancake(procs, "30", h264_dir)
    pts_file = wait_for_entries(h264_dir, 40)
    cam.proc.kill()
    cam.proc.wait()
    h264 = recording_in(h264_dir)
    killed = assert_consistent(h264, pts_file, whole=False)
    assert len(killed) <= count_frames(h264)
    pp = start_postproc(tmp_path, procs, mp4_dir, "30")
    again = start_pancake(procs, "30", h264_dir, "--emit", pp.name)
    pp.wait_log(f"{os.path.basename(h264)[:-5]}.mp4 with builtin in ")
    stop(again, clean_log=True)
    times = assert_consistent(h264, pts_file, whole=False)
    assert len(times) <= len(killed) and times == killed[: len(times)]
    assert len(times) >= len(killed) - 1  # at most the torn frame went
    mp4 = os.path.join(str(mp4_dir), os.path.basename(h264)[:-5] + ".mp4")
    assert_mp4_follows(mp4, times, first_wall(pts_file))
    assert "Traceback" not in pp.log_text()
