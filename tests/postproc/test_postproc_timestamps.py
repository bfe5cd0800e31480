"""Conversion timed by .pts files, checked packet by packet with ffprobe.

The h264 files are real libx264 output; their frame sizes come from PyAV's own
H.264 parser, so the index the converter trusts is checked against a reader we
did not write.
"""

from __future__ import annotations

import logging
import os
import shutil
from fractions import Fraction

import pytest

from raspberry_pancake import timestamps
from raspberry_pancake.postproc import convert
from tests.postproc.pp_helpers import PI_FRAMES, make_h264
from tests.pts_helpers import TICK, h264_frames, mp4_timing

WALL = 1592925290.5  # 2020-06-23 15:14:50.5 UTC
FPS = 12


def write_pts(h264, seconds, frames=None, wall=WALL):
    """The .pts pancake would write for ``h264`` with frames captured at ``seconds``."""
    frames = frames if frames is not None else h264_frames(h264)
    text = timestamps.header_text(wall)
    for s, (size, key) in zip(seconds, frames):
        text += timestamps.entry_text(s * 1000, size, key)
    path = timestamps.pts_path(h264)
    with open(path, "w") as f:
        f.write(text)
    return path


def gapped(frames: int, fps: int = FPS, gap_after: int = 10, gap: float = 2.0):
    """Capture times at ``fps`` with ``gap`` seconds missing after frame ``gap_after``."""
    return [i / fps + (gap if i > gap_after else 0.0) for i in range(frames)]


def assert_timed(mp4, seconds, wall=WALL):
    got = mp4_timing(mp4)
    assert got.frames == len(seconds) == len(got.pts)
    assert got.pts == pytest.approx(seconds, abs=TICK)
    interval = min(b - a for a, b in zip(seconds, seconds[1:]))
    true_duration = seconds[-1] - seconds[0] + interval
    assert abs(got.duration - true_duration) <= interval + TICK, (got.duration, true_duration)
    assert got.creation_time is not None
    assert got.creation_time.startswith(timestamps.wall_text(wall)[:19])  # whole seconds
    return got


@pytest.fixture
def builtin():
    return convert.select_converter("builtin")


def test_dropped_frames_keep_their_gap(builtin, tmp_path):
    h264 = make_h264(str(tmp_path / "20200623-1714.h264"), 30, FPS)
    seconds = gapped(30)
    write_pts(h264, seconds)
    out = convert.convert_file(builtin, h264, str(tmp_path / "."), Fraction(FPS))
    got = assert_timed(out, seconds)
    assert got.duration > 30 / FPS + 1.9  # the old numbering would squeeze the gap out
    assert got.keyframes == [k for _, k in h264_frames(h264)]


def test_rate_mismatch_is_one_warning_and_the_timestamps_win(builtin, tmp_path, caplog):
    h264 = make_h264(str(tmp_path / "20200623-1714.h264"), 45, 15)
    seconds = [i / 15 for i in range(45)]
    write_pts(h264, seconds)
    with caplog.at_level(logging.INFO, logger="raspberry_pancake"):
        out = convert.convert_file(builtin, h264, str(tmp_path), Fraction(30))
    assert_timed(out, seconds)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "15.00 fps" in warnings[0].getMessage(), caplog.text


def test_matching_rate_logs_nothing(builtin, tmp_path, caplog):
    h264 = make_h264(str(tmp_path / "20200623-1714.h264"), 24, FPS)
    write_pts(h264, [i / FPS * 1.03 for i in range(24)])  # 3% off: within the 5%
    with caplog.at_level(logging.WARNING, logger="raspberry_pancake"):
        convert.convert_file(builtin, h264, str(tmp_path), Fraction(FPS))
    assert caplog.records == []


def test_without_pts_the_old_timing_and_one_warning_per_run(builtin, tmp_path, caplog):
    sources = [make_h264(str(tmp_path / f"20200623-171{i}.h264"), 24, 15) for i in range(2)]
    with caplog.at_level(logging.WARNING, logger="raspberry_pancake"):
        outs = [convert.convert_file(builtin, s, str(tmp_path), Fraction(30)) for s in sources]
    assert len(caplog.records) == 1 and "no timestamp file" in caplog.text
    for out in outs:
        got = mp4_timing(out)
        assert got.pts == pytest.approx([i / 30 for i in range(24)], abs=1e-6)
        assert got.duration == pytest.approx(24 / 30, abs=1e-6)
        assert got.creation_time is None


@pytest.mark.parametrize("fps", [12, 25, 30])
def test_real_pi_sample_converts_as_before(builtin, pi_h264, tmp_path, fps):
    """No .pts beside raspivid's file: frame n at n/fps exactly, nothing added."""
    out = convert.convert_file(builtin, pi_h264, str(tmp_path), Fraction(fps))
    got = mp4_timing(out)
    assert got.frames == PI_FRAMES
    assert got.pts == pytest.approx([i / fps for i in range(PI_FRAMES)], abs=1e-6)
    assert got.duration == pytest.approx(PI_FRAMES / fps, abs=1e-6)
    assert got.creation_time is None
    assert got.keyframes == [k for _, k in h264_frames(pi_h264)]


def test_raspivid_style_pts_without_sizes_is_used_by_parsing(builtin, pi_h264, tmp_path):
    h264 = str(tmp_path / "20200623-1714.h264")
    shutil.copyfile(pi_h264, h264)
    seconds = gapped(PI_FRAMES, 30, gap_after=50, gap=1.0)
    with open(timestamps.pts_path(h264), "w") as f:
        f.write("# timecode format v2\n" + "".join(f"{s * 1000:.3f}\n" for s in seconds))
    got = mp4_timing(convert.convert_file(builtin, h264, str(tmp_path), Fraction(30)))
    assert got.pts == pytest.approx(seconds, abs=TICK)
    assert got.creation_time is None  # raspivid notes no wall-clock time


@pytest.mark.parametrize(
    "damage", ["sizes shifted", "keyframe claimed", "sizes doubled", "first size too large"]
)
def test_an_index_that_does_not_fit_falls_back_to_parsing(builtin, tmp_path, caplog, damage):
    h264 = make_h264(str(tmp_path / "20200623-1714.h264"), 30, FPS)
    frames = h264_frames(h264)
    seconds = gapped(30)
    if damage == "sizes shifted":  # frame 4 would start inside a NAL unit
        frames[3] = (frames[3][0] + 7, frames[3][1])
        frames[4] = (frames[4][0] - 7, frames[4][1])
    elif damage == "keyframe claimed":
        frames[5] = (frames[5][0], True)
    elif damage == "sizes doubled":
        frames = [(size * 2, key) for size, key in frames]
    else:
        frames[0] = (os.path.getsize(h264) + 1, True)
    write_pts(h264, seconds, frames)
    with caplog.at_level(logging.WARNING, logger="raspberry_pancake"):
        out = convert.convert_file(builtin, h264, str(tmp_path), Fraction(FPS))
    if convert.packets_are_writable():  # PyAV 10 always parses: no index to distrust
        assert "do not fit" in caplog.text
    assert_timed(out, seconds)


def test_pts_shorter_than_the_h264_after_a_crash(builtin, tmp_path, caplog):
    """The frames after the last timestamp are left out, and the log says so."""
    h264 = make_h264(str(tmp_path / "20200623-1714.h264"), 30, FPS)
    seconds = gapped(30)[:22]
    write_pts(h264, seconds)
    with caplog.at_level(logging.WARNING, logger="raspberry_pancake"):
        out = convert.convert_file(builtin, h264, str(tmp_path), Fraction(FPS))
    assert_timed(out, seconds)
    assert "after the first 22 have no timestamp" in caplog.text


def test_pts_longer_than_the_h264_is_cut_to_the_frames_on_disk(builtin, tmp_path):
    h264 = make_h264(str(tmp_path / "20200623-1714.h264"), 30, FPS)
    frames = h264_frames(h264)
    seconds = gapped(30)
    write_pts(h264, seconds, frames)
    with open(h264, "r+b") as f:  # as if the last frames never reached the disk
        f.truncate(sum(size for size, _ in frames[:25]))
    out = convert.convert_file(builtin, h264, str(tmp_path), Fraction(FPS))
    assert_timed(out, seconds[:25])


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_ffmpeg_cannot_use_the_pts_and_says_so_once(tmp_path, caplog):
    h264 = make_h264(str(tmp_path / "20200623-1714.h264"), 24, 15)
    write_pts(h264, [i / 15 for i in range(24)])
    ffmpeg = convert.select_converter("ffmpeg")
    with caplog.at_level(logging.WARNING, logger="raspberry_pancake"):
        out = convert.convert_file(ffmpeg, h264, str(tmp_path), Fraction(30))
    assert len(caplog.records) == 1 and "cannot use them" in caplog.text
    got = mp4_timing(out)
    assert got.pts == pytest.approx([i / 30 for i in range(24)], abs=1e-6)


def test_unusable_pts_is_one_warning_and_the_old_timing(builtin, tmp_path, caplog):
    h264 = make_h264(str(tmp_path / "20200623-1714.h264"), 24, FPS)
    with open(timestamps.pts_path(h264), "w") as f:
        f.write("# timestamp format v2\n0\n10\n5\n")
    with caplog.at_level(logging.WARNING, logger="raspberry_pancake"):
        out = convert.convert_file(builtin, h264, str(tmp_path), Fraction(FPS))
    assert len(caplog.records) == 1 and "not increasing" in caplog.text
    assert mp4_timing(out).duration == pytest.approx(24 / FPS, abs=1e-6)


def test_stop_interrupts_an_indexed_conversion(builtin, tmp_path):
    from raspberry_pancake.exc import StoppedError

    h264 = make_h264(str(tmp_path / "20200623-1714.h264"), 24, FPS)
    write_pts(h264, [i / FPS for i in range(24)])
    stop = convert.threading.Event()
    stop.set()
    mp4_dir = tmp_path / "mp4"
    mp4_dir.mkdir()
    with pytest.raises(StoppedError):
        convert.convert_file(builtin, h264, str(mp4_dir), Fraction(FPS), stop)
    assert os.listdir(mp4_dir) == []
