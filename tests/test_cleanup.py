"""The util/limit_*.py cleanup scripts, run as real subprocesses on temporary trees."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from raspberry_pancake import cleanup

ROOT = Path(__file__).resolve().parent.parent
UTIL = ROOT / "util"
HOUR = 3600


def run_script(name, *args, cwd):
    """Run one utility from ``cwd``; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, str(UTIL / name), *map(str, args)],
        cwd=str(cwd),
        capture_output=True,
        text=True,
        timeout=120,
    )


def put(path: Path, size: int = 1000, age: float = HOUR) -> Path:
    """Create a file of ``size`` bytes last modified ``age`` seconds ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))
    return path


def names(folder: Path):
    return sorted(p.name for p in folder.iterdir())


def deletion_lines(output: str, word: str = "deleted"):
    return [line for line in output.splitlines() if f" {word} " in line]


def assert_one_line_error(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "error" in lines[0]
    return lines[0]


# --- names and sizes -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("20200623-1715.h264", (2020, 6, 23, 17, 15, 0)),
        ("20200623-180511.h264", (2020, 6, 23, 18, 5, 11)),
        ("20200623-1715.mp4", (2020, 6, 23, 17, 15, 0)),
        ("20200623-1715-1.h264", (2020, 6, 23, 17, 15, 0)),
        ("20200623-180511_2.mp4", (2020, 6, 23, 18, 5, 11)),
        ("20200623-1715.h264.part", None),
        ("20200623-1715.mp4.tmp", None),
        ("20200623-1715.txt", None),
        ("20200623-17151.h264", None),
        ("20201323-1715.h264", None),
        ("20200623-2460.h264", None),
        ("x20200623-1715.h264", None),
        ("20200623-1715-.h264", None),
        ("20200623-1715-a.h264", None),
        ("20200623-1715.H264", None),
    ],
)
def test_recording_names(name, expected):
    started = cleanup.recording_time(name)
    if expected is None:
        assert started is None
    else:
        assert started.timetuple()[:6] == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0", 0),
        ("1048576", 1048576),
        ("500K", 500 * 1024),
        ("500M", 500 * 1024**2),
        ("2G", 2 * 1024**3),
        ("1.5g", 3 * 1024**3 // 2),
        ("1T", 1024**4),
        ("10MiB", 10 * 1024**2),
        ("10MB", 10 * 1024**2),
    ],
)
def test_parse_size(text, expected):
    assert cleanup.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-1", "12Q", "1..5G", "G5", "1 000"])
def test_parse_size_rejects(text):
    with pytest.raises(cleanup.ConfigError):
        cleanup.parse_size(text)


# --- a directory of recordings with traps ----------------------------------------------


def recordings_dir(tmp_path: Path) -> Path:
    """h264/ with six old recordings (oldest first by name), a fresh one and traps."""
    h264 = tmp_path / "h264"
    # Oldest by name but newest mtime: the name decides.
    put(h264 / "20200101-0000.h264", age=HOUR)
    put(h264 / "20200623-1715.h264", age=9 * HOUR)
    # Same start time as the one above (minute vs second precision): mtime breaks the tie.
    put(h264 / "20200623-171500.h264", age=10 * HOUR)
    put(h264 / "20200623-1715-1.h264", age=8 * HOUR)
    put(h264 / "20200623-1730.mp4", age=7 * HOUR)
    put(h264 / "20200623-180511_2.h264", age=6 * HOUR)
    # A fresh file whose name is old (a Pi booted with a clock in the past).
    put(h264 / "20190101-0000.h264", age=0)
    # Things that must never be touched.
    put(h264 / "notes.txt", age=100 * HOUR)
    put(h264 / "20190101-0000.h264.part", age=100 * HOUR)
    outside = put(tmp_path / "keep" / "20180101-0000.h264", age=100 * HOUR)
    (h264 / "20180101-0001.h264").symlink_to(outside)
    (h264 / "20180101-0002.h264").symlink_to(tmp_path / "nowhere.h264")  # dangling
    (h264 / "20180101-0003.h264").mkdir()
    put(h264 / "sub" / "20170101-0000.h264", age=100 * HOUR)
    (h264 / "linked").symlink_to(tmp_path / "keep", target_is_directory=True)
    return h264


ORDERED = [  # the old recordings of recordings_dir, oldest first
    "20200101-0000.h264",
    "20200623-171500.h264",
    "20200623-1715.h264",
    "20200623-1715-1.h264",
    "20200623-1730.mp4",
    "20200623-180511_2.h264",
]
TRAPS = [
    "20180101-0001.h264",
    "20180101-0002.h264",
    "20180101-0003.h264",
    "20190101-0000.h264",
    "20190101-0000.h264.part",
    "linked",
    "notes.txt",
    "sub",
]


def test_find_recordings_order_and_traps(tmp_path):
    h264 = recordings_dir(tmp_path)
    found = [Path(r.path).name for r in cleanup.find_recordings(str(h264))]
    assert found == ["20190101-0000.h264"] + ORDERED
    deep = [Path(r.path).name for r in cleanup.find_recordings(str(h264), recursive=True)]
    assert deep == ["20170101-0000.h264", "20190101-0000.h264"] + ORDERED


def test_deleter_looks_again_just_before_deleting(tmp_path):
    """What changed since the scan (replaced by a link, written again) is kept."""
    h264 = tmp_path / "h264"
    for minute in range(10, 14):
        put(h264 / f"20200623-09{minute}.h264")
    found = cleanup.find_recordings(str(h264))
    target = put(tmp_path / "precious.bin")
    (h264 / "20200623-0910.h264").unlink()
    (h264 / "20200623-0910.h264").symlink_to(target)
    os.utime(h264 / "20200623-0911.h264")  # written to again, just now
    (h264 / "20200623-0912.h264").unlink()
    deleter = cleanup.Deleter()
    assert [deleter.delete(r) for r in found] == [False, False, False, True]
    assert names(h264) == ["20200623-0910.h264", "20200623-0911.h264"]
    assert target.exists() and deleter.deleted == 1 and deleter.failures == 0


def test_limit_by_number_keeps_newest(tmp_path):
    h264 = recordings_dir(tmp_path)
    result = run_script("limit_files_by_number.py", "h264", 3, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # 7 recordings, 4 beyond the newest 3; the fresh one is among them by its name
    # but was written a moment ago, so it stays.
    gone = ORDERED[:3]
    assert names(h264) == sorted(set(ORDERED[3:]) | set(TRAPS))
    lines = deletion_lines(result.stdout)
    assert [line.rsplit(" (", 1)[0].rsplit("/", 1)[1] for line in lines] == gone
    assert "keeping h264/20190101-0000.h264" in result.stdout
    assert (tmp_path / "keep" / "20180101-0000.h264").exists()
    assert (h264 / "sub" / "20170101-0000.h264").exists()


def test_limit_by_number_zero_and_several_pairs(tmp_path):
    h264 = recordings_dir(tmp_path)
    mp4 = tmp_path / "mp4"
    for hour in range(10, 15):
        put(mp4 / f"20200624-{hour}00.mp4")
    result = run_script("limit_files_by_number.py", "h264", 0, "mp4", 2, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert names(h264) == sorted(TRAPS)
    assert names(mp4) == ["20200624-1300.mp4", "20200624-1400.mp4"]
    assert len(deletion_lines(result.stdout)) == len(ORDERED) + 3


def test_limit_by_number_recursive_never_enters_links(tmp_path):
    h264 = recordings_dir(tmp_path)
    result = run_script("limit_files_by_number.py", "--recursive", "h264", 1, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (h264 / "sub" / "20170101-0000.h264").exists()
    assert (tmp_path / "keep" / "20180101-0000.h264").exists()
    assert names(h264) == sorted(set(TRAPS) | {ORDERED[-1]})


def test_limit_by_number_dry_run_changes_nothing(tmp_path):
    h264 = recordings_dir(tmp_path)
    before = names(h264)
    result = run_script("limit_files_by_number.py", "--dry-run", "h264", 3, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert names(h264) == before
    assert len(deletion_lines(result.stdout, "would delete")) == 3
    assert not deletion_lines(result.stdout)


def test_limit_by_size(tmp_path):
    h264 = recordings_dir(tmp_path)  # each recording is 1000 bytes
    result = run_script("limit_files_by_size.py", "h264", 3500, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Newest first: 1000 + 1000 + 1000 + 1000 > 3500, so three stay (and the fresh one).
    assert names(h264) == sorted(set(ORDERED[-3:]) | set(TRAPS))
    assert len(deletion_lines(result.stdout)) == 3


def test_limit_by_size_with_suffixes_and_pairs(tmp_path):
    h264, mp4 = tmp_path / "h264", tmp_path / "mp4"
    for minute in range(10, 15):
        put(h264 / f"20200624-09{minute}.h264", size=1024)
        put(mp4 / f"20200624-09{minute}.mp4", size=1024)
    put(h264 / "big.bin", size=100_000)
    result = run_script("limit_files_by_size.py", "h264", "2K", "mp4", "3k", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert names(h264) == ["20200624-0913.h264", "20200624-0914.h264", "big.bin"]
    assert names(mp4) == ["20200624-0912.mp4", "20200624-0913.mp4", "20200624-0914.mp4"]


def test_limit_by_size_dry_run_changes_nothing(tmp_path):
    h264 = recordings_dir(tmp_path)
    before = names(h264)
    result = run_script("limit_files_by_size.py", "--dry-run", "h264", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert names(h264) == before
    assert len(deletion_lines(result.stdout, "would delete")) == len(ORDERED)


# --- limit_days --------------------------------------------------------------------------


def day_tree(tmp_path: Path) -> Path:
    """bak/ with seven day folders over three years, and traps."""
    bak = tmp_path / "bak"
    put(bak / "2019/12/31/20191231-2300.mp4")
    put(bak / "2020/06/22/20200622-0900.mp4")
    put(bak / "2020/06/22/20200622-0915.mp4")
    put(bak / "2020/06/23/20200623-0900.mp4")
    put(bak / "2020/06/23/notes.txt")
    put(bak / "2020/06/24/20200624-0900.mp4", age=0)
    put(bak / "2020/07/01/20200701-0900.mp4")
    put(bak / "2021/01/01/20210101-0900.mp4")
    put(bak / "2021/01/02/20210102-0900.mp4")
    put(bak / "2020/13/01/20201301-0900.mp4")  # not a date: ignored
    outside = put(tmp_path / "elsewhere/2015/01/01/20150101-0900.mp4")
    (bak / "2015").symlink_to(outside.parent.parent.parent, target_is_directory=True)
    return bak


def tree(top: Path):
    return sorted(str(p.relative_to(top)) for p in top.rglob("*"))


def test_limit_days_removes_old_days(tmp_path):
    bak = day_tree(tmp_path)
    result = run_script("limit_days.py", "bak", 3, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert tree(bak) == [
        "2015",
        "2020",
        "2020/06",
        "2020/06/23",
        "2020/06/23/notes.txt",
        "2020/06/24",
        "2020/06/24/20200624-0900.mp4",
        "2020/07",
        "2020/07/01",
        "2020/07/01/20200701-0900.mp4",
        "2020/13",
        "2020/13/01",
        "2020/13/01/20201301-0900.mp4",
        "2021",
        "2021/01",
        "2021/01/01",
        "2021/01/01/20210101-0900.mp4",
        "2021/01/02",
        "2021/01/02/20210102-0900.mp4",
    ]
    assert (tmp_path / "elsewhere/2015/01/01/20150101-0900.mp4").exists()
    assert len(deletion_lines(result.stdout)) == 4
    assert "keeping folder bak/2020/06/23" in result.stdout
    assert "removed folder bak/2019\n" in result.stdout + "\n"
    assert "removed folder bak/2019/12\n" in result.stdout


def test_limit_days_several_trees_and_zero(tmp_path):
    bak = day_tree(tmp_path)
    other = tmp_path / "other"
    put(other / "2022/02/02/20220202-0202.h264")
    put(other / "2022/02/03/20220203-0202.h264")
    result = run_script("limit_days.py", "bak", 2, "other", 0, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert names(other) == []
    assert names(bak) == ["2015", "2020", "2021"]
    assert names(bak / "2021" / "01") == ["01", "02"]


def test_limit_days_dry_run_changes_nothing(tmp_path):
    bak = day_tree(tmp_path)
    before = tree(bak)
    result = run_script("limit_days.py", "--dry-run", "bak", 3, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert tree(bak) == before
    out = result.stdout
    assert len(deletion_lines(out, "would delete")) == 4
    for folder in ("bak/2019/12/31", "bak/2019/12", "bak/2019", "bak/2020/06/22"):
        assert f"would remove folder {folder}\n" in out
    assert "would remove folder bak/2020/06\n" not in out
    assert "keeping folder bak/2020/06/23" in out


# --- limit_free_space -------------------------------------------------------------------


@functools.cache
def can_mount_tmpfs() -> bool:
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs x /mnt"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


DRIVER = textwrap.dedent(
    """
    import json, os, subprocess, sys, time
    top, script, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    mib = 1 << 20
    files = {
        "h264/20200101-0000.h264": (mib, 0),       # oldest name, but fresh: kept
        "h264/20200623-0900.h264": (mib, 3600),
        "mp4/20200623-0905.mp4": (mib, 3600),
        "h264/20200623-0915.h264": (mib, 3600),
        "mp4/20200623-0920.mp4": (mib, 3600),
        "h264/20200623-0930.h264": (mib, 3600),
        "mp4/other.bin": (mib, 7200),              # unrelated: kept
    }
    for name, (size, age) in files.items():
        path = os.path.join(top, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        os.utime(path, (time.time() - age,) * 2)
    done = subprocess.run([sys.executable, script] + args, cwd=top, capture_output=True,
                          text=True)
    left = sorted(os.path.join(d, n) for d in ("h264", "mp4")
                  for n in os.listdir(os.path.join(top, d)))
    print(json.dumps({"rc": done.returncode, "out": done.stdout, "err": done.stderr,
                      "left": left}))
    """
)


def run_in_tmpfs(tmp_path: Path, *args) -> dict:
    """Run limit_free_space.py on a fresh 8 MiB tmpfs seen only by this test."""
    if not can_mount_tmpfs():
        pytest.skip("needs root and unshare to mount a private tmpfs")
    top = tmp_path / f"fs-{uuid.uuid4().hex[:8]}"
    top.mkdir()
    command = 'mount -t tmpfs -o size=8m tmpfs "$1" && exec "$2" -c "$3" "$1" "$4" "$5"'
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", command, "sh"]
        + [str(top), sys.executable, DRIVER, str(UTIL / "limit_free_space.py"), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


ALL_LEFT = [
    "h264/20200101-0000.h264",
    "h264/20200623-0900.h264",
    "h264/20200623-0915.h264",
    "h264/20200623-0930.h264",
    "mp4/20200623-0905.mp4",
    "mp4/20200623-0920.mp4",
    "mp4/other.bin",
]


def test_free_space_on_tmpfs_deletes_oldest_across_dirs(tmp_path):
    # 8 MiB file system, 7 MiB written: 1 MiB free; 3.5 MiB wanted means 3 old files go.
    done = run_in_tmpfs(tmp_path, "--min-free", "3.5M", "h264", "mp4")
    assert done["rc"] == 0, done["err"]
    assert done["left"] == [
        "h264/20200101-0000.h264",
        "h264/20200623-0930.h264",
        "mp4/20200623-0920.mp4",
        "mp4/other.bin",
    ]
    assert len(deletion_lines(done["out"])) == 3
    assert "keeping h264/20200101-0000.h264" in done["out"]


def test_free_space_on_tmpfs_dry_run(tmp_path):
    done = run_in_tmpfs(tmp_path, "--dry-run", "--min-free", "3.5M", "h264", "mp4")
    assert done["rc"] == 0, done["err"]
    assert done["left"] == ALL_LEFT
    would = deletion_lines(done["out"], "would delete")
    assert [line.split(" would delete ")[1].split(" (")[0] for line in would] == [
        "h264/20200623-0900.h264",
        "mp4/20200623-0905.mp4",
        "h264/20200623-0915.h264",
    ]


def test_free_space_on_tmpfs_unreachable(tmp_path):
    done = run_in_tmpfs(tmp_path, "--min-free", "7M", "h264", "mp4")
    assert done["rc"] == 1
    assert done["left"] == ["h264/20200101-0000.h264", "mp4/other.bin"]
    assert "WARNING" in done["out"]


def test_free_space_on_tmpfs_already_enough(tmp_path):
    done = run_in_tmpfs(tmp_path, "--min-free", "512K", "h264", "mp4")
    assert done["rc"] == 0, done["err"]
    assert done["left"] == ALL_LEFT
    assert not deletion_lines(done["out"])


def test_free_space_relative_to_current_disk(tmp_path):
    """The same on the disk under tmp_path, with targets taken from its free space.

    Other processes write to this disk too, so only what does not depend on a few
    MiB either way is asserted: the oldest goes, deletions follow age, others stay.
    """
    mib = 1 << 20
    h264 = tmp_path / "h264"
    h264.mkdir()
    order = [f"20200623-{hour:02d}00.h264" for hour in range(10, 16)]
    for name in order:
        (h264 / name).write_bytes(bytes(32 * mib))
        os.utime(h264 / name, (time.time() - HOUR,) * 2)
    put(h264 / "other.bin", size=mib)
    put(h264 / "20200101-0000.h264", size=mib, age=0)

    result = run_script("limit_free_space.py", "--min-free", "1", "h264", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(names(h264)) == len(order) + 2

    target = cleanup.free_bytes(str(tmp_path)) + 80 * mib
    result = run_script(
        "limit_free_space.py", "--dry-run", "--min-free", target, "h264", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert len(names(h264)) == len(order) + 2
    assert deletion_lines(result.stdout, "would delete")

    target = cleanup.free_bytes(str(tmp_path)) + 80 * mib
    result = run_script("limit_free_space.py", "--min-free", target, "h264", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    left = [name for name in order if (h264 / name).exists()]
    assert left == order[len(order) - len(left) :]
    assert 0 < len(order) - len(left) < len(order)
    assert (h264 / "other.bin").exists() and (h264 / "20200101-0000.h264").exists()

    target = cleanup.free_bytes(str(tmp_path)) + (1 << 50)
    result = run_script("limit_free_space.py", "--min-free", target, "h264", cwd=tmp_path)
    assert result.returncode == 1
    assert names(h264) == ["20200101-0000.h264", "other.bin"]


# --- bad arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "script, args, expected",
    [
        ("limit_files_by_number.py", [], "required"),
        ("limit_files_by_number.py", ["h264"], "pairs"),
        ("limit_files_by_number.py", ["h264", "ten"], "'ten'"),
        ("limit_files_by_number.py", ["h264", "-1"], "'-1'"),
        ("limit_files_by_number.py", ["missing", "3"], "missing: no such directory"),
        ("limit_files_by_number.py", ["--bogus", "h264", "3"], "--bogus"),
        ("limit_files_by_size.py", ["h264", "12Q"], "'12Q'"),
        ("limit_files_by_size.py", ["h264", "1G", "mp4"], "pairs"),
        ("limit_files_by_size.py", ["notes.txt", "1G"], "notes.txt: no such directory"),
        ("limit_days.py", ["h264", "1.5"], "'1.5'"),
        ("limit_days.py", ["missing", "7"], "missing: no such directory"),
        ("limit_free_space.py", ["h264"], "--min-free"),
        ("limit_free_space.py", ["--min-free", "1G"], "required"),
        ("limit_free_space.py", ["--min-free", "lots", "h264"], "'lots'"),
        ("limit_free_space.py", ["--min-free", "1G", "h264", "missing"], "missing: no such"),
    ],
)
def test_bad_arguments(tmp_path, script, args, expected):
    recording = put(tmp_path / "h264" / "20200101-0000.h264")
    put(tmp_path / "notes.txt")
    result = run_script(script, *args, cwd=tmp_path)
    line = assert_one_line_error(result)
    assert expected in line
    assert line.startswith(script)
    assert recording.exists()
    assert result.stdout == ""


@pytest.mark.parametrize(
    "script",
    ["limit_files_by_number.py", "limit_files_by_size.py", "limit_days.py", "limit_free_space.py"],
)
def test_help_shows_an_example(tmp_path, script):
    result = run_script(script, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "example:" in result.stdout
    assert "--dry-run" in result.stdout


# --- a folder swapped for a link while the cleanup runs ------------------------------------


def test_day_folder_swapped_for_a_link_between_scan_and_delete(tmp_path, monkeypatch):
    """Deterministic: the swap happens right after the day folder was listed."""
    bak = tmp_path / "bak"
    victim = tmp_path / "victim"
    names_ = [f"20200101-00{m:02d}.mp4" for m in range(5)]
    for name in names_:
        put(bak / "2020/01/01" / name)
        put(victim / name)
    put(bak / "2021/01/01/20210101-0000.mp4")
    real_find = cleanup.find_recordings

    def find_then_swap(*args, **kwargs):
        found = real_find(*args, **kwargs)
        if found and not (bak / "2020/01/01").is_symlink():
            (bak / "2020/01/01").rename(bak / "2020/01/real")
            (bak / "2020/01/01").symlink_to(victim, target_is_directory=True)
        return found

    monkeypatch.setattr(cleanup, "find_recordings", find_then_swap)
    deleter = cleanup.Deleter()
    cleanup.limit_days(str(bak), 1, deleter)
    assert names(victim) == names_  # 5 of 5 kept
    assert names(bak / "2020/01/real") == names_  # the real folder moved away: left alone
    assert (bak / "2020/01/01").is_symlink()
    assert deleter.deleted == 0


ATTACKER = textwrap.dedent(
    """
    import os, sys, time
    month, victim, stop, started = sys.argv[1:5]
    day, moved = os.path.join(month, "01"), os.path.join(month, "real")
    swaps = 0
    while not os.path.exists(stop):
        os.rename(day, moved)
        os.symlink(victim, day)
        swaps += 1
        if swaps == 1:
            open(started, "w").close()
        time.sleep(0.001)  # half of the time the day folder is a link
        os.unlink(day)
        os.rename(moved, day)
        time.sleep(0.001)
    print(swaps)
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the attacker as nobody")
def test_root_cleanup_races_a_user_swapping_folders_for_links(tmp_path):
    """For real: root runs limit_days.py over a tree that the user nobody owns, while
    nobody keeps swapping a day folder for a link to a folder nobody cannot write."""
    if not shutil.which("setpriv"):
        pytest.skip("needs setpriv")
    base = Path(tempfile.mkdtemp(prefix="cleanup-race-"))
    try:
        os.chmod(base, 0o755)  # nobody must reach its tree
        victim = base / "victim"
        bak = base / "bak"
        names_ = [f"20200101-{h:02d}{m:02d}.mp4" for h in range(10) for m in range(60)]
        for name in names_:
            put(victim / name, size=10)
            put(bak / "2020/01/01" / name, size=10)
        put(bak / "2021/01/01/20210101-0000.mp4")
        for path in [bak, *bak.rglob("*")]:
            os.chown(path, 65534, 65534, follow_symlinks=False)
        stop, started = base / "stop", bak / "started"
        attacker = subprocess.Popen(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
            + ["-c", ATTACKER, str(bak / "2020/01"), str(victim), str(stop), str(started)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not started.exists():
                assert attacker.poll() is None, attacker.stderr.read()
                assert time.monotonic() < deadline, "the attacker never started"
                time.sleep(0.05)
            runs = []
            while len(runs) < 10 and (bak / "2020").exists():
                runs.append(run_script("limit_days.py", str(bak), 1, cwd=base))
        finally:
            stop.touch()
            out, err = attacker.communicate(timeout=60)
        assert attacker.returncode == 0, err
        assert int(out) > 0
        for result in runs:
            assert "Traceback" not in result.stderr, result.stderr
        assert names(victim) == sorted(names_)  # nothing deleted where nobody cannot write
        assert "20210101-0000.mp4" in names(bak / "2021/01/01")
    finally:
        shutil.rmtree(base)
