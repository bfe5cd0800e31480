"""The .pts timestamp file: its format read back by mkvmerge and by hand, torn and
hostile files, and trimming after a crash."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess

import pytest

from raspberry_pancake import timestamps
from raspberry_pancake.exc import TimestampFileError
from tests.pts_helpers import pts_lines

WALL = 1592925290.25  # 2020-06-23 15:14:50.25 UTC


def write(path, entries, wall=WALL):
    """A .pts as the disk writer writes it: entries are (monotonic s, size, keyframe)."""
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    w = timestamps.TimestampWriter(str(path), fd)
    for monotonic, size, key in entries:
        w.add(monotonic, wall, size, key)
    w.flush()
    w.close()
    return str(path)


def test_written_lines_and_read_back(tmp_path):
    entries = [(100.0, 5000, True), (100.0667, 300, False), (100.5, 310, False)]
    path = write(tmp_path / "20200623-1714.pts", entries)
    comments, times, sizes = pts_lines(path)
    assert comments[0] == "# timestamp format v2"
    assert "2020-06-23T15:14:50.250000Z" in comments[1]
    assert times == [0.0, 66.7, 500.0]
    assert sizes == [(5000, True), (300, False), (310, False)]
    got = timestamps.read(path)
    assert got.milliseconds == times
    assert got.sizes == [5000, 300, 310] and got.keyframes == [True, False, False]
    assert got.first_wall == datetime.datetime(
        2020, 6, 23, 15, 14, 50, 250000, tzinfo=datetime.timezone.utc
    )
    assert got.average_rate() == pytest.approx(2 / 0.5)


@pytest.mark.skipif(shutil.which("mkvmerge") is None, reason="needs mkvmerge (mkvtoolnix)")
def test_mkvmerge_takes_the_file_as_timestamp_format_v2(tmp_path):
    """mkvtoolnix's own reader accepts our comments and times the frames by our lines."""
    from tests.postproc.pp_helpers import make_h264
    from tests.pts_helpers import h264_frames

    h264 = make_h264(str(tmp_path / "a.h264"), 6, 12)
    frames = h264_frames(h264)
    seconds = [0.0, 0.1, 0.2, 1.5, 1.6, 2.0]  # a gap, as after dropped frames
    path = write(tmp_path / "a.pts", [(s, n, k) for s, (n, k) in zip(seconds, frames)])
    mkv = tmp_path / "a.mkv"
    subprocess.run(
        ["mkvmerge", "-q", "-o", str(mkv), "--timestamps", f"0:{path}", h264],
        check=True,
        timeout=60,
    )
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "packet=pts_time", "-of", "csv=p=0", str(mkv)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert [float(t) for t in out] == pytest.approx(seconds, abs=0.001)


def test_torn_last_line_and_lone_size_line_are_ignored(tmp_path):
    text = timestamps.header_text(WALL) + "#= 10 K\n0.000\n#= 11\n33.3"
    assert timestamps.parse(text.encode()).milliseconds == [0.0]
    text = timestamps.header_text(WALL) + "#= 10 K\n0.000\n#= 11\n"
    got = timestamps.parse(text.encode())
    assert got.milliseconds == [0.0] and got.sizes == [10]


def test_raspivid_file_has_times_but_no_sizes():
    got = timestamps.parse(b"# timecode format v2\n0.000\n33.360\n66.680\n")
    assert got.milliseconds == [0.0, 33.36, 66.68]
    assert not got.has_sizes and got.first_wall is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"# timestamp format v1\n0\n",
        b"# timestamp format v2\n0.0\n10.0\n10.0\n",
        b"# timestamp format v2\n0.0\n5.0\n3.0\n",
        b"# timestamp format v2\n0.0\nnan\n",
        b"# timestamp format v2\n0.0\nten\n",
        b"# timestamp format v2\n0.0\n\xff\xfe\n",
    ],
)
def test_unusable_files_are_refused(data):
    with pytest.raises(TimestampFileError):
        timestamps.parse(data)


def test_oversized_file_is_refused_without_reading_it_all(tmp_path, monkeypatch):
    monkeypatch.setattr(timestamps, "MAX_BYTES", 1000)
    path = tmp_path / "big.pts"
    path.write_bytes(b"# timestamp format v2\n" + b"1.0\n" * 1000)
    with pytest.raises(TimestampFileError, match="too large"):
        timestamps.read(str(path))


def test_a_link_is_not_followed(tmp_path):
    real = write(tmp_path / "real.pts", [(0, 10, True)])
    os.symlink(real, tmp_path / "link.pts")
    with pytest.raises(TimestampFileError, match="cannot open"):
        timestamps.read(str(tmp_path / "link.pts"))
    assert timestamps.read(str(tmp_path / "missing.pts")) is None


def test_pts_path():
    assert timestamps.pts_path("/r/20200623-1715-1.h264") == "/r/20200623-1715-1.pts"


def test_trim_to_the_frames_a_shortened_h264_still_holds(tmp_path):
    path = write(tmp_path / "a.pts", [(i / 10, 100, i % 5 == 0) for i in range(10)])
    assert timestamps.trim_to(path, 1000) == 10  # whole: unchanged
    assert timestamps.trim_to(path, 750) == 7
    comments, times, sizes = pts_lines(path)
    assert len(times) == len(sizes) == 7 and comments[0] == "# timestamp format v2"
    assert timestamps.trim_to(path, 50) == 0
    assert timestamps.read(path).milliseconds == []
    assert timestamps.read(path).first_wall is not None
