"""The disk writer on a real directory: no overwrite, slow disk, full disk, announcements."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time

from rec_synthetic import drive, local, make_frames

from raspberry_pancake.messages import Message
from raspberry_pancake.recording import writer as writer_module
from raspberry_pancake.recording.actions import Close, Emit, Open, RecordingFile, Write
from raspberry_pancake.recording.continuous import ContinuousRecorder
from raspberry_pancake.recording.writer import DiskWriter

T0 = local("2020-06-23 17:00:00")


def content(frames):
    return b"".join(f.data for f in frames)


def perform_all(writer, actions):
    for action in actions:
        writer.perform(action)


def test_existing_file_is_never_overwritten(tmp_path):
    (tmp_path / "20200623-1700.h264").write_bytes(b"precious")
    (tmp_path / "20200623-1700-1.h264").write_bytes(b"also precious")
    announced = []
    writer = DiskWriter(announced.append)
    frames = make_frames(T0, 3)
    perform_all(writer, drive(ContinuousRecorder(str(tmp_path)), frames))
    assert (tmp_path / "20200623-1700.h264").read_bytes() == b"precious"
    assert (tmp_path / "20200623-1700-1.h264").read_bytes() == b"also precious"
    assert (tmp_path / "20200623-1700-2.h264").read_bytes() == content(frames)
    assert announced == [Message(h264=str(tmp_path / "20200623-1700-2.h264"))]


def test_same_name_twice_after_the_clock_went_back_gets_a_suffix(tmp_path):
    before = make_frames(local("2020-06-23 17:14:00"), 3 * 60, fps=2, gop=2)
    after = make_frames(local("2020-06-23 16:59:00"), 20 * 60, fps=2, gop=2, first_index=360)
    announced = []
    writer = DiskWriter(announced.append)
    perform_all(writer, drive(ContinuousRecorder(str(tmp_path)), before + after))
    names = [os.path.basename(m.h264) for m in announced]
    assert names == [
        "20200623-1714.h264",
        "20200623-1715.h264",
        "20200623-1659.h264",
        "20200623-1700.h264",
        "20200623-1715-1.h264",
    ]
    total = b"".join((tmp_path / n).read_bytes() for n in names)
    assert total == content(before + after)


def test_announces_only_after_the_file_is_closed_and_in_order(tmp_path):
    seen = []

    def announce(message):
        # by now the file is complete: no descriptor of ours still points at it
        if message.h264:
            targets = set()
            for fd in os.listdir("/proc/self/fd"):
                try:
                    targets.add(os.readlink(f"/proc/self/fd/{fd}"))
                except OSError:
                    pass  # the descriptor of the listing itself
            assert message.h264 not in targets
            seen.append(("file", os.path.getsize(message.h264)))
        else:
            seen.append(("detection", message.detection))

    writer = DiskWriter(announce)
    writer.start()
    file = RecordingFile(str(tmp_path), "x.h264")
    frames = make_frames(T0, 2)
    writer.put(Open(file))
    for f in frames:
        writer.put(Write(file, f))
    writer.put(Emit(Message(detection=False)))
    writer.put(Close(file))
    writer.close()
    assert seen == [("detection", False), ("file", len(content(frames)))]


def test_slow_disk_drops_frames_without_blocking_and_files_stay_playable(tmp_path, caplog):
    writer = DiskWriter(lambda m: None, max_bytes=10**9, max_frames=25)
    file = RecordingFile(str(tmp_path), "slow.h264")
    frames = make_frames(T0, 6, fps=10, gop=10)
    with caplog.at_level(logging.ERROR):
        # the writer thread has not started: a disk that does not move at all
        writer.put(Open(file))
        for f in frames[:30]:
            writer.put(Write(file, f))  # never blocks: the 26th frame on are dropped
        assert writer.frames_dropped == 5
        writer.start()
        deadline = time.monotonic() + 60
        while writer.queued_frames and time.monotonic() < deadline:
            time.sleep(0.01)
        for f in frames[30:50]:  # fewer than the queue holds: none dropped
            writer.put(Write(file, f))
        writer.put(Close(file))
        writer.close()
    # the file picks up again at the next keyframe after the lost frames
    assert (tmp_path / "slow.h264").read_bytes() == content(frames[:25] + frames[30:50])
    assert writer.frames_dropped == 5
    assert "write queue is full" in caplog.text
    assert "5 frames were lost" in caplog.text


def test_full_disk_is_logged_once_and_recording_resumes(tmp_path, caplog, monkeypatch):
    real_write = os.write
    full = threading.Event()

    def write(fd, data):
        if full.is_set():
            real_write(fd, bytes(data[:1]))  # a partial frame, as a filling disk leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(writer_module.os, "write", write)
    announced = []
    writer = DiskWriter(announced.append)
    file = RecordingFile(str(tmp_path), "full.h264")
    frames = make_frames(T0, 5, fps=10, gop=10)
    writer.perform(Open(file))
    with caplog.at_level(logging.WARNING):
        for i, f in enumerate(frames):
            if i == 13:
                full.set()
            elif i == 25:
                full.clear()  # space is back; 25-29 wait for the keyframe 30
            writer.perform(Write(file, f))
        writer.perform(Close(file))
    assert (tmp_path / "full.h264").read_bytes() == content(frames[:13] + frames[30:])
    assert caplog.text.count("the disk is full") == 1
    assert "writing again" in caplog.text and "17 frames were lost" in caplog.text
    assert writer.frames_lost == 17
    assert announced == [Message(h264=str(tmp_path / "full.h264"))]


def test_file_that_could_not_be_created_is_retried_at_a_keyframe(tmp_path, caplog):
    directory = tmp_path / "later"
    writer = DiskWriter(lambda m: None)
    file = RecordingFile(str(directory), "a.h264")
    frames = make_frames(T0, 3, fps=10, gop=10)
    with caplog.at_level(logging.ERROR):
        writer.perform(Open(file))
        for f in frames[:15]:
            writer.perform(Write(file, f))
        directory.mkdir()
        for f in frames[15:]:
            writer.perform(Write(file, f))
        writer.perform(Close(file))
    assert (directory / "a.h264").read_bytes() == content(frames[20:])
    assert caplog.text.count("cannot create a.h264") == 1


def test_empty_file_is_removed_and_not_announced(tmp_path):
    announced = []
    writer = DiskWriter(announced.append)
    file = RecordingFile(str(tmp_path), "empty.h264")
    writer.perform(Open(file))
    writer.perform(Close(file))
    assert announced == [] and list(tmp_path.iterdir()) == []
