"""The cleanup utilities and pancake's .pts timestamp files: a .pts goes with its
recording, never alone while the recording exists, and orphans are removed.
Real util/limit_*.py subprocesses on temporary trees."""

from __future__ import annotations

import os

from tests.test_cleanup import HOUR, deletion_lines, names, put, run_script


def pair(folder, stem: str, age: float, size: int = 1000, pts_size: int = 500):
    """A recording as pancake leaves it: ``stem.h264`` and ``stem.pts``."""
    put(folder / f"{stem}.h264", size, age)
    put(folder / f"{stem}.pts", pts_size, age)


def test_by_number_deletes_pairs_and_orphans_only(tmp_path):
    d = tmp_path / "h264"
    pair(d, "20200623-1700", 4 * HOUR)
    pair(d, "20200623-1715", 3 * HOUR)
    pair(d, "20200623-1730", 2 * HOUR)
    put(d / "20200623-1645.pts", 500, 5 * HOUR)  # orphan: its recording was deleted by hand
    put(d / "20200623-1800.pts", 500, 5)  # orphan, but just written: may be a new recording's
    put(d / "notes.pts", 10, 5 * HOUR)  # not a recording's name: never ours to delete
    target = put(tmp_path / "elsewhere.txt", 10, 5 * HOUR)
    os.symlink(target, d / "20200623-1600.pts")  # a link is never deleted
    result = run_script("limit_files_by_number.py", d, 1, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert names(d) == [
        "20200623-1600.pts",
        "20200623-1730.h264",
        "20200623-1730.pts",
        "20200623-1800.pts",
        "notes.pts",
    ]
    assert target.exists()
    assert len(deletion_lines(result.stdout)) == 5, result.stdout  # two pairs, one orphan


def test_a_recording_kept_keeps_its_pts(tmp_path):
    """A recording still being written (fresh) is kept, and so is its .pts, however old."""
    d = tmp_path / "h264"
    put(d / "20200623-1700.h264", 1000, 5)
    put(d / "20200623-1700.pts", 500, 2 * HOUR)
    result = run_script("limit_files_by_number.py", d, 0, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert names(d) == ["20200623-1700.h264", "20200623-1700.pts"]


def test_by_size_counts_the_pts(tmp_path):
    d = tmp_path / "h264"
    for hour, stem in enumerate(["20200623-1700", "20200623-1715", "20200623-1730"]):
        pair(d, stem, (4 - hour) * HOUR)
    # three recordings are 3000 bytes of video, 4500 with their timestamp files
    result = run_script("limit_files_by_size.py", d, 3000, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert names(d) == [
        "20200623-1715.h264",
        "20200623-1715.pts",
        "20200623-1730.h264",
        "20200623-1730.pts",
    ]


def test_dry_run_names_the_pts_and_touches_nothing(tmp_path):
    d = tmp_path / "h264"
    pair(d, "20200623-1700", 3 * HOUR)
    pair(d, "20200623-1715", 2 * HOUR)
    put(d / "20200623-1645.pts", 500, 5 * HOUR)
    before = names(d)
    result = run_script("limit_files_by_number.py", "--dry-run", d, 1, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert names(d) == before
    would = " ".join(deletion_lines(result.stdout, "would delete"))
    for name in ("20200623-1700.h264", "20200623-1700.pts", "20200623-1645.pts"):
        assert name in would, result.stdout
    assert "20200623-1715" not in would


def test_free_space_removes_orphans(tmp_path):
    d = tmp_path / "h264"
    pair(d, "20200623-1700", 3 * HOUR)
    put(d / "20200623-1645.pts", 500, 5 * HOUR)
    result = run_script("limit_free_space.py", "--min-free", "1", d, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert names(d) == ["20200623-1700.h264", "20200623-1700.pts"]


def test_days_empties_a_day_folder_of_pairs_and_orphans(tmp_path):
    top = tmp_path / "bak"
    old, new = top / "2020" / "06" / "22", top / "2020" / "06" / "23"
    pair(old, "20200622-1700", 30 * HOUR)
    put(old / "20200622-1600.pts", 500, 30 * HOUR)
    pair(new, "20200623-1700", 3 * HOUR)
    result = run_script("limit_days.py", top, 1, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not old.exists()
    assert names(new) == ["20200623-1700.h264", "20200623-1700.pts"]
