"""Recovery of recordings an earlier run left unannounced: real H.264 from libx264,
torn at every kind of place, checked with ffmpeg; markers held by another process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from raspberry_pancake import timestamps
from raspberry_pancake.camera.base import CameraSettings
from raspberry_pancake.camera.h264 import H264Encoder
from raspberry_pancake.camera.scene import Scene
from raspberry_pancake.messages import Message
from raspberry_pancake.recording import pending
from raspberry_pancake.recording.recovery import (
    last_access_unit_start,
    recover,
    trim_last_access_unit,
)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

FPS = 12


@pytest.fixture(scope="module")
def access_units():
    """Three seconds of the sim scene at 320x240, as libx264 encodes it (two slices a frame)."""
    settings = CameraSettings(resolution=(320, 240), fps=FPS)
    scene = Scene(settings)
    encoder = H264Encoder(320, 240, FPS)
    units = []
    for i in range(3 * FPS):
        picture = np.asarray(scene.render(i, i / FPS, 1592932490.0 + i / FPS).convert("RGB"))
        units += [data for data, _ in encoder.encode(picture)]
    return units


def decode(path):
    """(frames ffmpeg decodes, its complaints) for a raw H.264 file."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    frames = int(result.stdout.strip() or 0)
    errors = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True, timeout=120,
    ).stderr.strip()  # fmt: skip
    return frames, errors


def test_a_torn_last_frame_is_cut_off_wherever_it_was_torn(tmp_path, access_units):
    whole = b"".join(access_units)
    ends = [sum(len(u) for u in access_units[: i + 1]) for i in range(len(access_units))]
    last_key = ends[-FPS - 1]  # the last keyframe (with its SPS/PPS) begins here
    cuts = {
        "in the last P frame": ends[-2] + len(access_units[-1]) // 2,
        "between its two slices": ends[-2] + access_units[-1].index(b"\x00\x00\x01", 4),
        "in the SPS of the last keyframe": last_key + 6,
        "in the keyframe's slice": last_key + len(access_units[-FPS]) // 2,
        "after a whole frame": ends[-1],
    }
    for what, cut in cuts.items():
        path = tmp_path / f"{len(os.listdir(tmp_path))}.h264"
        path.write_bytes(whole[:cut])
        torn_frames, torn_errors = decode(path)
        if what not in ("after a whole frame", "between its two slices"):
            assert torn_errors, f"{what}: ffmpeg should notice the torn frame"
        size = trim_last_access_unit(str(path))
        frames, errors = decode(path)
        assert errors == "", what
        # what remains is exactly the whole access units before the torn one
        assert size in ends and size < cut and size >= cut - max(map(len, access_units)) * 2
        assert path.read_bytes() == whole[:size], what
        assert frames == ends.index(size) + 1, what
        assert frames >= torn_frames - 1, what


def test_last_access_unit_start_needs_the_whole_unit_in_view():
    sps, pps, idr = b"\x00\x00\x00\x01\x67AB", b"\x00\x00\x00\x01\x68CD", b"\x00\x00\x01\x65\x88xx"
    p1 = b"\x00\x00\x01\x41\x9axx"
    data = sps + pps + idr + p1
    assert last_access_unit_start(data, True) == len(sps + pps + idr)
    assert last_access_unit_start(sps + pps + idr, True) == 0
    # a window that starts at the SPS might have begun inside a longer access unit
    assert last_access_unit_start(sps + pps + idr, False) is None
    assert last_access_unit_start(b"\x00\x00\x01\x41\x1axx", True) is None  # no first slice


def write_orphan(directory, name, data, marker_content=b""):
    (directory / name).write_bytes(data)
    (directory / f".{name}.pending").write_bytes(marker_content)


class Collect:
    def __init__(self):
        self.messages = []
        self.done = []

    def __call__(self, message, done=None):
        self.messages.append(message)
        self.done.append(done)


def test_orphans_are_trimmed_announced_and_forgotten_once_sent(tmp_path, access_units):
    whole = b"".join(access_units)
    first_au = len(access_units[0])
    write_orphan(tmp_path, "20200623-1700.h264", whole[:-100])  # torn
    finished = Message(h264="/elsewhere/20200623-170005.h264", detection=True)
    write_orphan(tmp_path, "20200623-170005.h264", whole, finished.encode())
    write_orphan(tmp_path, "20200623-1715.h264", whole[: first_au // 2])  # no whole frame
    (tmp_path / ".20200623-1730.h264.pending").write_bytes(b"")  # its file was cleaned up
    (tmp_path / "20200623-1745.h264").write_bytes(whole)  # announced long ago: no marker
    announce = Collect()
    forgotten = []
    assert recover([str(tmp_path), str(tmp_path) + "/"], announce, forgotten.append) == 2
    assert announce.messages == [
        Message(h264=str(tmp_path / "20200623-1700.h264")),
        # finished before the crash: announced as it is, its edge with it, untouched
        Message(h264=str(tmp_path / "20200623-170005.h264"), detection=True),
    ]
    assert (tmp_path / "20200623-170005.h264").read_bytes() == whole
    assert decode(tmp_path / "20200623-1700.h264")[1] == ""
    assert sorted(os.listdir(tmp_path)) == [
        ".20200623-1700.h264.pending",
        ".20200623-170005.h264.pending",
        "20200623-1700.h264",
        "20200623-170005.h264",
        "20200623-1745.h264",
    ]
    for done in announce.done:
        done()
    assert forgotten == [
        str(tmp_path / ".20200623-1700.h264.pending"),
        str(tmp_path / ".20200623-170005.h264.pending"),
    ]


def write_timestamps(directory, name, units):
    """The .pts the disk writer would have written for ``units`` at FPS."""
    text = timestamps.header_text(1592932490.0)
    for i, unit in enumerate(units):
        text += timestamps.entry_text(i * 1000 / FPS, len(unit), i % FPS == 0)
    path = directory / (name[: -len(".h264")] + ".pts")
    path.write_text(text)
    return path


def listed(pts):
    """(sizes, timestamps) of a .pts file, read line by line (not by the project's reader)."""
    lines = pts.read_text().splitlines()
    sizes = [int(line.split()[1]) for line in lines if line.startswith("#= ")]
    times = [float(line) for line in lines if line and not line.startswith("#")]
    return sizes, times


def test_an_orphans_timestamp_file_is_cut_to_the_frames_that_remain(tmp_path, access_units):
    """After a crash the .pts may list frames the h264 lost (a power cut keeps the
    timestamp file's later write but not the video's); after the recovery it lists
    exactly the frames left, and one whose h264 held nothing goes with it."""
    whole = b"".join(access_units)
    write_orphan(tmp_path, "20200623-1700.h264", whole[: -len(access_units[-1]) - 100])
    torn = write_timestamps(tmp_path, "20200623-1700.h264", access_units)
    finished = Message(h264="/elsewhere/20200623-1715.h264")
    write_orphan(tmp_path, "20200623-1715.h264", whole, finished.encode())
    kept = write_timestamps(tmp_path, "20200623-1715.h264", access_units)
    before = kept.read_bytes()
    write_orphan(tmp_path, "20200623-1730.h264", whole[: len(access_units[0]) // 2])
    write_timestamps(tmp_path, "20200623-1730.h264", access_units)
    announce = Collect()
    assert recover([str(tmp_path)], announce, lambda marker: None) == 2
    h264 = tmp_path / "20200623-1700.h264"
    sizes, times = listed(torn)
    assert sizes == [len(u) for u in access_units[: len(sizes)]]
    assert sum(sizes) == h264.stat().st_size
    assert len(sizes) == len(access_units) - 2  # the lost frame and the torn one
    assert times == pytest.approx([i * 1000 / FPS for i in range(len(sizes))], abs=1e-3)
    assert decode(h264) == (len(sizes), "")
    assert kept.read_bytes() == before  # finished: untouched
    assert not (tmp_path / "20200623-1730.pts").exists()
    assert not (tmp_path / "20200623-1730.h264").exists()


def test_a_marker_held_by_a_live_process_is_left_alone(tmp_path, access_units):
    whole = b"".join(access_units)
    write_orphan(tmp_path, "20200623-1700.h264", whole)
    marker = tmp_path / ".20200623-1700.h264.pending"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('held', flush=True)\n"
         "sys.stdin.read()\n",
         str(marker)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        announce = Collect()
        assert recover([str(tmp_path)], announce, lambda m: None) == 0
        assert announce.messages == []
        assert (tmp_path / "20200623-1700.h264").read_bytes() == whole  # not trimmed
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # once that process is gone (even killed), the marker is an orphan's
    announce = Collect()
    assert recover([str(tmp_path)], announce, lambda m: None) == 1


def test_a_marker_is_never_followed_through_a_symlink(tmp_path, access_units):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "secret.h264").write_bytes(b"\x00\x00\x01\x65\x88precious")
    rec = tmp_path / "rec"
    rec.mkdir()
    os.symlink(target / "secret.h264", rec / "20200623-1700.h264")
    (rec / ".20200623-1700.h264.pending").write_bytes(b"")
    announce = Collect()
    assert recover([str(rec)], announce, lambda m: None) == 0
    assert (target / "secret.h264").read_bytes() == b"\x00\x00\x01\x65\x88precious"
    assert not (rec / ".20200623-1700.h264.pending").exists()


def test_pending_marker_create_takes_over_a_stale_one(tmp_path):
    path = tmp_path / "20200623-1700.h264"
    path.write_bytes(b"")
    stale = tmp_path / ".20200623-1700.h264.pending"
    stale.write_bytes(b'{"h264": "old"}')
    os.utime(stale, (time.time() - 3600,) * 2)
    marker = pending.PendingMarker.create(str(path))
    try:
        assert stale.read_bytes() == b""
    finally:
        marker.release()


def test_emitter_says_when_a_message_has_left_and_only_then(tmp_path):
    """So a recording's marker outlives its announcement waiting in pancake.py's memory."""
    from raspberry_pancake.emitter import Emitter
    from tests.helpers import Receiver

    rx = Receiver()
    emitter = Emitter(rx.name, queue_size=2, retry_interval=0.05)
    done = []
    emitter.start()
    try:
        emitter.send(Message(h264="/rec/a.h264"), lambda: done.append("a"))
        emitter.send(Message(h264="/rec/b.h264"), lambda: done.append("b"))
        time.sleep(0.3)  # nobody listens: nothing has left
        assert done == []
        emitter.send(Message(h264="/rec/c.h264"), lambda: done.append("c"))
        assert done == ["a"]  # dropped to make room: gone for good
        rx.start()
        assert [m["h264"] for m in rx.wait_for(2, timeout=30)] == ["/rec/b.h264", "/rec/c.h264"]
        deadline = time.monotonic() + 30
        while len(done) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert done == ["a", "b", "c"]
        rx.stop()
        emitter.send(Message(h264="/rec/d.h264"), lambda: done.append("d"))
    finally:
        emitter.close(timeout=0.2)
        rx.stop()
    assert done == ["a", "b", "c"]  # d never left: its marker stays for the next start
