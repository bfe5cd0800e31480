"""The disk writer on a real directory: no overwrite, slow disk, full disk, announcements,
syncing, pending markers, and giving up on a stalled disk at shutdown."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time

from rec_synthetic import drive, local, make_frames

from raspberry_pancake.messages import Message
from raspberry_pancake.recording import pending
from raspberry_pancake.recording import writer as writer_module
from raspberry_pancake.recording.actions import Close, Emit, Open, RecordingFile, Write
from raspberry_pancake.recording.continuous import ContinuousRecorder
from raspberry_pancake.recording.writer import DiskWriter

T0 = local("2020-06-23 17:00:00")


class Announced(list):
    """An announce callback: keeps the messages; ``done`` runs at once unless held."""

    def __init__(self, hold=False):
        super().__init__()
        self.hold = hold
        self.done = []

    def __call__(self, message, done=None):
        self.append(message)
        if done is not None:
            (self.done.append if self.hold else lambda f: f())(done)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def content(frames):
    return b"".join(f.data for f in frames)


def perform_all(writer, actions):
    for action in actions:
        writer.perform(action)


def test_existing_file_is_never_overwritten(tmp_path):
    (tmp_path / "20200623-1700.h264").write_bytes(b"precious")
    (tmp_path / "20200623-1700-1.h264").write_bytes(b"also precious")
    announced = Announced()
    writer = DiskWriter(announced)
    frames = make_frames(T0, 3)
    perform_all(writer, drive(ContinuousRecorder(str(tmp_path)), frames))
    assert (tmp_path / "20200623-1700.h264").read_bytes() == b"precious"
    assert (tmp_path / "20200623-1700-1.h264").read_bytes() == b"also precious"
    assert (tmp_path / "20200623-1700-2.h264").read_bytes() == content(frames)
    assert announced == [Message(h264=str(tmp_path / "20200623-1700-2.h264"))]


def test_same_name_twice_after_the_clock_went_back_gets_a_suffix(tmp_path):
    before = make_frames(local("2020-06-23 17:14:00"), 3 * 60, fps=2, gop=2)
    after = make_frames(local("2020-06-23 16:59:00"), 20 * 60, fps=2, gop=2, first_index=360)
    announced = Announced()
    writer = DiskWriter(announced)
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

    def announce(message, done=None):
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
    writer = DiskWriter(Announced(), max_bytes=10**9, max_frames=25)
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


def failing_writes(monkeypatch):
    """os.write as the writer sees it, failing with ENOSPC while the event is set."""
    real_write = os.write
    full = threading.Event()

    def write(fd, data):
        if full.is_set():
            real_write(fd, bytes(data[:1]))  # a partial frame, as a filling disk leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(writer_module.os, "write", write)
    return full


def test_full_disk_is_logged_once_and_recording_resumes(tmp_path, caplog, monkeypatch):
    full = failing_writes(monkeypatch)
    announced = Announced()
    clock = Clock()
    writer = DiskWriter(announced, clock=clock)
    file = RecordingFile(str(tmp_path), "full.h264")
    frames = make_frames(T0, 15, fps=10, gop=10)
    writer.perform(Open(file))
    with caplog.at_level(logging.WARNING):
        for i, f in enumerate(frames):
            if i == 13:
                full.set()
            elif i == 25:
                full.clear()  # space is back; 25-29 wait for the keyframe 30
            writer.perform(Write(file, f))
            clock.now += 0.1
        writer.perform(Close(file))
    assert (tmp_path / "full.h264").read_bytes() == content(frames[:13] + frames[30:])
    assert caplog.text.count("the disk is full") == 1
    # the last failure was the keyframe 20; ten seconds later the episode is over
    assert caplog.text.count("writing again") == 1 and "17 frames were lost" in caplog.text
    assert writer.frames_lost == 17
    assert announced == [Message(h264=str(tmp_path / "full.h264"))]


def test_a_disk_at_the_brink_of_full_is_one_episode_in_the_log(tmp_path, caplog, monkeypatch):
    full = failing_writes(monkeypatch)
    clock = Clock()
    writer = DiskWriter(Announced(), clock=clock)
    file = RecordingFile(str(tmp_path), "brink.h264")
    frames = make_frames(T0, 30, fps=10, gop=10)
    writer.perform(Open(file))
    with caplog.at_level(logging.WARNING):
        for i, f in enumerate(frames):
            # a cleanup frees a little now and then: one keyframe fits, then the disk is full
            if i < 200 and i % 20 == 13:
                full.set()
            elif i < 200 and i % 20 == 0:
                full.clear()
            elif i == 200:
                full.clear()
            writer.perform(Write(file, f))
            clock.now += 0.1
        writer.perform(Close(file))
    assert caplog.text.count("the disk is full") == 1, caplog.text
    assert caplog.text.count("writing again") == 1, caplog.text


def test_written_video_is_synced_every_second_in_big_steps_and_at_close(tmp_path, monkeypatch):
    synced = []
    real_fdatasync = os.fdatasync

    def fdatasync(fd):
        if not os.readlink(f"/proc/self/fd/{fd}").endswith(".pts"):
            synced.append(os.fstat(fd).st_size)
        real_fdatasync(fd)

    monkeypatch.setattr(writer_module.os, "fdatasync", fdatasync)
    clock = Clock()
    writer = DiskWriter(Announced(), clock=clock)
    writer.start()
    file = RecordingFile(str(tmp_path), "synced.h264")
    frames = make_frames(T0, 3, fps=10, gop=10)
    writer.put(Open(file))
    for f in frames[:10]:
        writer.put(Write(file, f))
    deadline = time.monotonic() + 60
    while writer.queued_frames and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # two of the writer's rounds: nothing is a second old yet
    assert synced == []
    clock.now += 1.0
    while not synced and time.monotonic() < deadline:
        time.sleep(0.01)
    assert synced == [len(content(frames[:10]))]
    # a big frame is synced at once, whatever the clock says
    big = frames[10].__class__(b"K" * (1024 * 1024), True, 0.0, 0.0, 10)
    writer.put(Write(file, big))
    for f in frames[11:]:
        writer.put(Write(file, f))
    writer.put(Close(file))
    writer.close()
    total = len(content(frames[:10])) + len(big.data) + len(content(frames[11:]))
    assert synced == [len(content(frames[:10])), total - len(content(frames[11:])), total]


def test_a_disk_that_syncs_slowly_is_synced_in_small_steps(tmp_path, monkeypatch):
    """So that a stop never waits behind one long fdatasync (it cannot be interrupted)."""
    clock = Clock()
    synced = []

    def fdatasync(fd):  # a card that takes one second per 4 KiB (of video)
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".pts"):
            return
        size = os.fstat(fd).st_size
        clock.now += (size - sum(synced)) / 4096
        synced.append(size - sum(synced))

    monkeypatch.setattr(writer_module.os, "fdatasync", fdatasync)
    writer = DiskWriter(Announced(), clock=clock)
    file = RecordingFile(str(tmp_path), "slow.h264")
    frame = make_frames(T0, 1)[0]
    writer.perform(Open(file))
    writer.perform(Write(file, frame.__class__(b"K" * 1536 * 1024, True, 0.0, 0.0, 0)))
    for i in range(1, 40):
        writer.perform(Write(file, frame.__class__(b"P" * 3000, False, 0.0, 0.0, i)))
    writer.perform(Close(file))
    # the first sync (a big keyframe) showed the disk's speed; then about 4 KiB a step
    assert synced[0] == 1536 * 1024
    assert max(synced[1:]) <= 2 * 3000 and len(synced) >= 20, synced


def test_marker_lives_from_before_the_first_frame_until_the_announcement_left(tmp_path):
    announced = Announced(hold=True)
    writer = DiskWriter(announced)
    writer.start()
    file = RecordingFile(str(tmp_path), "20200623-1700.h264")
    marker = tmp_path / ".20200623-1700.h264.pending"
    frames = make_frames(T0, 2)
    writer.put(Open(file))
    writer.put(Emit(Message(detection=True)))  # tells the test the file is open
    deadline = time.monotonic() + 60
    while len(announced) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    # there before any frame; held, so that nobody takes the file for an orphan
    assert marker.exists() and (tmp_path / "20200623-1700.h264").stat().st_size == 0
    assert pending.claim(str(marker)) is None
    for f in frames:
        writer.put(Write(file, f))
    writer.put(Close(file, True))
    while len(announced) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    message = Message(h264=str(tmp_path / "20200623-1700.h264"), detection=True)
    assert announced[1] == message
    assert marker.read_bytes() == message.encode()  # whole: no trim after a crash now
    fd = pending.claim(str(marker))  # released with the file
    assert fd is not None
    os.close(fd)
    (done,) = announced.done
    done()  # the emitter sent it
    while marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.close()
    assert not marker.exists()


def test_clip_that_could_not_be_written_still_announces_its_edge(tmp_path):
    announced = Announced()
    writer = DiskWriter(announced)
    nowhere = RecordingFile(str(tmp_path / "missing"), "a.h264")
    empty = RecordingFile(str(tmp_path), "b.h264")
    for action in (Open(nowhere), Close(nowhere, True), Open(empty), Close(empty, False)):
        writer.perform(action)
    assert announced == [Message(detection=True), Message(detection=False)]
    assert list(tmp_path.iterdir()) == []  # the empty clip and its marker are gone


def test_finish_gives_up_on_a_stuck_disk_and_announces_what_was_written(
    tmp_path, caplog, monkeypatch
):
    real_write = os.write
    stuck = threading.Event()
    release = threading.Event()

    def write(fd, data):
        if bytes(data[:1]) == b"S":  # the frame the disk never takes
            stuck.set()
            release.wait(60)
        return real_write(fd, data)

    monkeypatch.setattr(writer_module.os, "write", write)
    announced = Announced()
    writer = DiskWriter(announced)
    writer.start()
    clip = RecordingFile(str(tmp_path), "clip.h264")
    later = RecordingFile(str(tmp_path), "later.h264")
    frames = make_frames(T0, 1)
    writer.put(Open(clip))
    for f in frames[:5]:
        writer.put(Write(clip, f))
    writer.put(Write(clip, frames[5].__class__(b"S5", False, 0.0, 0.0, 5)))
    for f in frames[6:]:
        writer.put(Write(clip, f))
    writer.put(Open(later))
    writer.put(Close(clip, True))
    writer.put(Emit(Message(detection=False)))
    writer.put(Close(later, True))
    assert stuck.wait(60)
    with caplog.at_level(logging.ERROR):
        assert writer.finish(0.2) is False
    release.set()
    writer.close(10)
    clip_path = str(tmp_path / "clip.h264")
    # announced once each, in order, from what was written before the disk stuck
    assert announced == [
        Message(h264=clip_path, detection=True),
        Message(detection=False),
        Message(detection=True),  # the second clip never began: its edge still counts
    ]
    assert "gave up on the disk after 0 s: 5 frames" in caplog.text
    # the marker stays: the next start checks the file again
    assert (tmp_path / ".clip.h264.pending").exists()


def test_file_that_could_not_be_created_is_retried_at_a_keyframe(tmp_path, caplog):
    directory = tmp_path / "later"
    writer = DiskWriter(Announced())
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
    announced = Announced()
    writer = DiskWriter(announced)
    file = RecordingFile(str(tmp_path), "empty.h264")
    writer.perform(Open(file))
    writer.perform(Close(file))
    assert announced == [] and list(tmp_path.iterdir()) == []


def test_timestamp_file_stays_in_step_with_the_video_on_a_full_disk(tmp_path):
    """A real tmpfs fills up mid-recording, then space comes back: every .pts entry
    still names a frame that is in the .h264, in order, with its size and time."""
    import subprocess

    import pytest

    from raspberry_pancake import timestamps

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], check=True)
    try:
        filler = mnt / "filler"
        filler.write_bytes(b"x" * 40 * 1024)
        frames = [
            f.__class__(f.data + b"\0" * 1500, f.keyframe, f.monotonic, f.wall, f.index)
            for f in make_frames(T0, 12, fps=10, gop=10)
        ]
        writer = DiskWriter(Announced())
        writer.start()
        file = RecordingFile(str(mnt), "20200623-1700.h264")
        writer.put(Open(file))
        for f in frames[:60]:  # more than fits: the disk fills up
            writer.put(Write(file, f))
        deadline = time.monotonic() + 60
        while writer.frames_written + writer.frames_lost < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert writer.frames_lost > 0, "the disk never filled up"
        filler.unlink()  # space is back
        for f in frames[60:]:
            writer.put(Write(file, f))
        writer.put(Close(file))
        writer.close()
        video = (mnt / "20200623-1700.h264").read_bytes()
        times = timestamps.read(str(mnt / "20200623-1700.pts"))
        # entries count from the file's first frame, which the wall-clock comment names
        first = round((times.first_wall.timestamp() - T0) * 10)
        by_index = {f.index: f for f in frames}
        listed = [by_index[first + round(ms / 100)] for ms in times.milliseconds]
        assert listed and listed[0].keyframe
        assert b"".join(f.data for f in listed) == video
        assert times.sizes == [len(f.data) for f in listed]
        assert times.keyframes == [f.keyframe for f in listed]
        assert listed[-1].index == frames[-1].index, "recording resumed after the full disk"
        assert len(listed) < len(frames)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
