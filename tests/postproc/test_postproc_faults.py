"""Faults that must not cost accepted work: restarts while Telegram hangs, full disks.

Real postproc processes, pancake's own emitter, a hanging stand-in of the Bot API,
and real tmpfs file systems filled to the last byte.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import pytest

from raspberry_pancake.emitter import Emitter
from raspberry_pancake.messages import Message
from tests.postproc.pp_helpers import assert_mp4, fill, make_h264, wait_until

TOKEN = "123456:hanging-bot"


def test_sigterm_restarts_while_telegram_hangs_lose_nothing(postproc, dirs, bot_api):
    """pancake's emitter keeps sending while postproc is stopped three times.

    Each stop waits the workers' grace because a Telegram request hangs. Every
    recording and every detection edge the emitter handed over must be stored.
    """
    h264, mp4 = dirs
    clips = [make_h264(str(h264 / f"20240102-03{i:02d}.h264"), 6, 12) for i in range(32)]
    edge_messages = [{"detection": i % 2 == 0} for i in range(90)]
    messages = []  # a recording after every three edges
    while edge_messages or clips:
        messages += edge_messages[:3]
        del edge_messages[:3]
        if clips:
            messages.append({"h264": clips.pop(0)})
    edges = sum(1 for m in messages if "detection" in m)
    assert edges == 90 and len(messages) - edges == 32
    bot_api.hang()
    pp = postproc(
        "--convert", str(mp4), "12", "--converter", "builtin",
        "--notify-telegram", TOKEN, "42", "--telegram-api-url", bot_api.url,
        "--notify-queue-size", "1000",
    ).start()  # fmt: skip
    emitter = Emitter(pp.name, retry_interval=0.05)
    emitter.start()
    done_sending = threading.Event()

    def send_all():
        for m in messages:
            emitter.send(Message(**m))
            if done_sending.wait(0.15):
                return

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    try:
        for restart in range(3):
            wait_until(lambda r=restart: emitter.sent >= 25 * (r + 1), what="messages flowing")
            assert pp.stop(signal.SIGTERM) == 0
            pp.start()
        sender.join(120)
        wait_until(lambda: emitter.sent == len(messages), what="every message sent")
    finally:
        done_sending.set()
        emitter.close()
    assert emitter.dropped == 0

    def stored():
        log = pp.log_text()
        clips = sum(1 for m in messages if "h264" in m and f"accepted {m['h264']}\n" in log)
        return clips, log.count("queued notification 'Detection changed to")

    try:  # the last ones sent may still be on their way through the socket
        wait_until(lambda: stored() == (32, 90), what="every message stored")
    except AssertionError:
        pass
    assert stored() == (32, 90)
    log = pp.log_text()
    assert log.count("stopping on SIGTERM") == 3
    for m in messages:
        if "h264" in m:
            assert log.count(f"accepted {m['h264']}\n") == 1, m
    wait_until(lambda: len(os.listdir(mp4)) == 32, what="32 mp4 files")
    bot_api.release()
    pp.wait_log("notified telegram chat 42", count=1)
    wait_until(
        lambda: pp.log_text().count("notified telegram chat 42") >= edges,
        timeout=180,
        what="every notification delivered",
    )
    assert pp.stop() == 0


def test_full_mp4_directory_waits_for_space_across_a_restart(postproc, tmpfs, tmp_path):
    h264 = tmp_path / "h264"
    h264.mkdir()
    mp4 = tmpfs("mp4", "512k")
    filler = fill(mp4)
    names = [f"20240102-04{i:02d}" for i in range(6)]
    for name in names:
        make_h264(str(h264 / f"{name}.h264"), 12, 12)
    args = ("--convert", str(mp4), "12", "--converter", "ffmpeg")
    pp = postproc(*args).start()
    for name in names:
        pp.send({"h264": str(h264 / f"{name}.h264")})
    pp.wait_log("accepted", count=6)
    log = pp.wait_log("mp4 directory is full")
    assert "conversion of" not in log and "dropped" not in log  # not failed, not dropped
    assert sorted(os.listdir(mp4)) == [os.path.basename(filler)]  # no partial file either

    assert pp.stop() == 0
    pp.start()
    log = pp.wait_log("mp4 directory is full")
    assert "resuming 6 conversion(s)" in log
    os.remove(filler)
    pp.wait_log("converted", count=6, timeout=120)
    for name in names:
        assert_mp4(str(mp4 / f"{name}.mp4"), 12, 12)
    assert "space is back" in pp.new_log()
    assert pp.stop() == 0


def test_full_mp4_directory_with_the_builtin_converter(postproc, tmpfs, tmp_path):
    h264 = tmp_path / "h264"
    h264.mkdir()
    mp4 = tmpfs("mp4", "256k")
    clip = make_h264(str(h264 / "20240102-0500.h264"), 24, 12)
    filler = fill(mp4)
    pp = postproc("--convert", str(mp4), "12", "--converter", "builtin").start()
    pp.send({"h264": clip})
    pp.wait_log("mp4 directory is full")
    os.remove(filler)
    pp.wait_log("converted " + clip)
    assert_mp4(str(mp4 / "20240102-0500.mp4"), 24, 12)
    assert pp.stop() == 0


def postproc_with_a_full_state_disk(postproc, tmpfs, tmp_path):
    """A running postproc whose state file lies on a 2 MiB tmpfs, then filled up.

    Returns (postproc, h264 dir, mp4 dir, state file, filler file).
    """
    h264, mp4 = tmp_path / "h264", tmp_path / "mp4"
    h264.mkdir()
    mp4.mkdir()
    state_dir = tmpfs("state", "2m")
    state = str(state_dir / "state.sqlite")
    pp = postproc("--convert", str(mp4), "12", "--converter", "builtin", state=state).start()
    return pp, h264, mp4, state, fill(state_dir)


def test_full_state_disk_keeps_every_message(postproc, tmpfs, tmp_path):
    """The state file's own reserve takes new work while its file system is full."""
    pp, h264, mp4, _, filler = postproc_with_a_full_state_disk(postproc, tmpfs, tmp_path)
    first = [make_h264(str(h264 / f"20240102-06{i:02d}.h264"), 6, 12) for i in range(5)]
    for clip in first:
        pp.send({"h264": clip})
    pp.wait_log("converted", count=5)
    assert "could not queue" not in pp.new_log()
    # A restart on the full disk: the state file opens and takes more.
    assert pp.stop() == 0
    pp.start()
    second = [make_h264(str(h264 / f"20240102-07{i:02d}.h264"), 6, 12) for i in range(3)]
    for clip in second:
        pp.send({"h264": clip})
    pp.wait_log("converted", count=3)
    assert pp.stop() == 0
    expected = [os.path.basename(c)[: -len(".h264")] + ".mp4" for c in first + second]
    assert sorted(os.listdir(mp4)) == sorted(expected)
    os.remove(filler)


def test_state_disk_full_beyond_the_reserve_holds_messages_back(postproc, tmpfs, tmp_path):
    """With the reserve used up, messages wait (in postproc, then in pancake's emitter)."""
    pp, h264, mp4, state, filler = postproc_with_a_full_state_disk(postproc, tmpfs, tmp_path)
    # Use the reserve up from outside, as a long episode of a full disk would.
    db = sqlite3.connect(state, timeout=30)
    db.execute("CREATE TABLE ballast (b BLOB)")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        while True:
            db.execute("INSERT INTO ballast VALUES (zeroblob(4000))")
            db.commit()
    db.close()
    clips = [make_h264(str(h264 / f"20240102-08{i:02d}.h264"), 6, 12) for i in range(20)]
    emitter = Emitter(pp.name, retry_interval=0.05)
    emitter.start()
    try:
        for clip in clips:
            emitter.send(Message(h264=clip))
        pp.wait_log("waits in memory")
        # Kernel queue full, the rest waits in the emitter: nothing was taken and lost.
        wait_until(lambda: emitter.sent < len(clips) and emitter.dropped == 0, what="backlog")
        os.remove(filler)
        pp.wait_log("converted", count=len(clips), timeout=120)
        wait_until(lambda: emitter.sent == len(clips), what="every message sent")
    finally:
        emitter.close()
    assert "the state file takes writes again" in pp.new_log()
    assert pp.stop() == 0
    assert len(os.listdir(mp4)) == len(clips)


def test_a_second_sigterm_while_workers_finish_still_ends_cleanly(postproc, dirs, bot_api):
    """systemd sends one SIGTERM, an impatient user two: the second one must not kill
    postproc while it gives a hanging Telegram request its grace."""
    _, mp4 = dirs
    bot_api.hang()
    pp = postproc(
        "--convert", str(mp4), "12",
        "--notify-telegram", TOKEN, "42", "--telegram-api-url", bot_api.url,
    ).start()  # fmt: skip
    pp.send({"detection": True})
    pp.wait_log("queued notification")
    time.sleep(1)  # the notifier is now inside its hanging request
    pp.proc.send_signal(signal.SIGTERM)
    pp.wait_log("stopping on SIGTERM")
    time.sleep(1)  # into the workers' grace, which the hanging request fills
    assert pp.proc.poll() is None, "postproc ended before its grace"
    pp.proc.send_signal(signal.SIGTERM)
    assert pp.proc.wait(timeout=60) == 0, pp.log_text()
    assert "did not stop in time" in pp.log_text()
