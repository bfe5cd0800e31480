"""postproc.py as a real process: systemd notify, dispatch, Telegram, bad input."""

from __future__ import annotations

import os
import signal
import socket
import uuid

from tests.postproc.pp_helpers import assert_mp4, make_h264, wait_until

TOKEN = "123456:SECRET-token-never-logged"


def test_sd_notify_ready_watchdog_stopping(postproc, dirs):
    name = "\0pp-notify-" + uuid.uuid4().hex
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sd:
        sd.bind(name)
        sd.settimeout(60)
        env = {"NOTIFY_SOCKET": "@" + name[1:], "WATCHDOG_USEC": "1000000"}
        env.pop("WATCHDOG_PID", None)
        pp = postproc("--convert", str(dirs[1]), "12", env=env, log=False)
        pp.start(wait_ready=False)
        first = sd.recv(4096).decode()
        assert first.startswith("READY=1"), first
        pings = [sd.recv(4096).decode() for _ in range(3)]
        assert pings == ["WATCHDOG=1"] * 3
        assert pp.stop(signal.SIGTERM) == 0
        rest = []
        while True:
            text = sd.recv(4096).decode()
            rest.append(text)
            if text == "STOPPING=1":
                break
        assert set(rest) <= {"WATCHDOG=1", "STOPPING=1"}
    assert "stopping on SIGTERM" in pp.log_text()


def test_sigint_also_stops_cleanly(postproc, dirs):
    pp = postproc("--convert", str(dirs[1]), "12").start()
    assert pp.stop(signal.SIGINT) == 0
    assert "stopping on SIGINT" in pp.log_text()


def test_edge_clip_detection_and_failed_conversion(postproc, dirs, bot_api):
    h264, mp4 = dirs
    clip = make_h264(str(h264 / "20240102-030405.h264"), 36, 12)
    broken = h264 / "20240102-031000.h264"
    broken.write_bytes(b"not h264 at all" * 50)
    pp = postproc(
        "--convert", str(mp4), "12", "--converter", "builtin",
        "--notify-telegram", TOKEN, "1001", "--notify-telegram", TOKEN + "2", "-2002",
        "--telegram-api-url", bot_api.url,
    ).start()  # fmt: skip
    pp.send({"h264": clip, "detection": True})
    wait_until(lambda: len(bot_api.of("sendVideo")) == 2, what="two sendVideo")
    out = str(mp4 / "20240102-030405.mp4")
    assert_mp4(out, 36, 12)
    videos = sorted(bot_api.of("sendVideo"), key=lambda r: r["fields"]["chat_id"])
    assert [v["fields"]["chat_id"] for v in videos] == ["-2002", "1001"]
    assert [v["token"] for v in videos] == [TOKEN + "2", TOKEN]
    for v in videos:
        assert v["fields"]["caption"] == "Detection changed to True"
        filename, payload = v["files"]["video"]
        assert filename == "20240102-030405.mp4"
        assert payload == open(out, "rb").read()

    pp.send({"detection": False})
    wait_until(lambda: len(bot_api.of("sendMessage")) == 2, what="two sendMessage")
    assert {r["fields"]["text"] for r in bot_api.of("sendMessage")} == {
        "Detection changed to False"
    }

    pp.send({"h264": str(broken), "detection": True})
    wait_until(lambda: len(bot_api.of("sendMessage")) == 4, what="conversion-failed messages")
    texts = [r["fields"]["text"] for r in bot_api.of("sendMessage")[2:]]
    assert texts == ["Detection changed to True. MP4 conversion failed."] * 2
    assert sorted(os.listdir(mp4)) == ["20240102-030405.mp4"]

    # A plain recording converts but notifies nobody.
    plain = make_h264(str(h264 / "20240102-0315.h264"), 12, 12)
    pp.send({"h264": plain})
    pp.wait_log("converted " + plain)
    assert pp.stop() == 0
    assert len(bot_api.requests) == 6 and bot_api.problems == []
    log = pp.log_text()
    assert TOKEN not in log and "SECRET" not in log
    assert log.count("notified telegram chat") == 6
    assert "conversion of " + str(broken) + " failed" in log


def test_telegram_429_is_honoured(postproc, dirs, bot_api):
    bot_api.answer_429 = 2
    bot_api.retry_after = 1
    pp = postproc(
        "--convert", str(dirs[1]), "12", "--notify-telegram", TOKEN, "42",
        "--telegram-api-url", bot_api.url,
    ).start()  # fmt: skip
    pp.send({"detection": True})
    pp.wait_log("notified telegram chat 42")
    sent = bot_api.of("sendMessage")
    assert len(sent) == 3
    assert all(r["fields"] == {"chat_id": "42", "text": "Detection changed to True"} for r in sent)
    # The retries waited at least retry_after each (the stand-in's clock, not a timing test).
    assert sent[1]["time"] - sent[0]["time"] >= 0.9
    assert sent[2]["time"] - sent[1]["time"] >= 0.9
    assert pp.log_text().count("rate limited, retrying in 1 s") == 2
    assert pp.stop() == 0


def test_notify_queue_bound_drops_and_logs(postproc, dirs, bot_api):
    bot_api.answer_429 = 1000
    bot_api.retry_after = 60
    pp = postproc(
        "--convert", str(dirs[1]), "12", "--notify-telegram", TOKEN, "42",
        "--telegram-api-url", bot_api.url, "--notify-queue-size", "2",
    ).start()  # fmt: skip
    for value in (True, False, True, False):
        pp.send({"detection": value})
    pp.wait_log("dropped", count=2)
    log = pp.new_log()
    assert log.count("notify queue of telegram chat 42 is full (2): dropped") == 2
    assert pp.stop() == 0


def test_no_datagram_ends_postproc(postproc, dirs, tmp_path):
    """Each bad datagram costs one log line; the audit's two killers are among them."""
    h264, mp4 = dirs
    clip = make_h264(str(h264 / "20240102-0304.h264"), 12, 12)
    (h264 / "notes.txt").write_text("x")
    pp = postproc("--convert", str(mp4), "12", "--converter", "builtin").start()
    bad = [
        b"\x00\x01garbage",
        b"{not json",
        b"[]",
        b'{"h264": 1}',
        b'{"detection": "true"}',
        b'{"h264": "20240102-0304.h264"}',
        b'{"h264": "/nonexistent/20240102-0304.h264"}',
        b'{"h264": "%s"}' % str(h264 / "notes.txt").encode(),
        b'{"h264": "%s"}' % str(h264).encode(),
        b"[" * 30000 + b"]" * 30000,  # 60 KB of nesting: RecursionError in json
        b'{"h264": "%s/\\ud800.h264"}' % str(h264).encode(),  # UnicodeEncodeError in os.stat
        b'{"h264": "%s/\\udcff/20240102-0304.h264"}' % str(h264).encode(),
    ]
    for i, data in enumerate(bad):
        pp.send(data)
        pp.wait_log("dropped a", count=i + 1)
        assert pp.proc.poll() is None
    pp.send({"h264": clip})
    pp.wait_log("converted " + clip)
    assert_mp4(str(mp4 / "20240102-0304.mp4"), 12, 12)
    assert pp.proc.poll() is None
    assert pp.stop() == 0
    assert "Traceback" not in pp.log_text()


def test_video_over_the_bot_api_limit_goes_as_a_message(tmp_path, monkeypatch):
    """The worker's choice, with a lowered limit instead of a 50 MB file."""
    import threading

    from raspberry_pancake.postproc import workers
    from raspberry_pancake.postproc.state import FollowUps, Note, StateStore

    sent = []

    class Target:
        key = "telegram:1:x"

        def send_video(self, path, caption):
            sent.append(("video", caption))

        def send_message(self, text):
            sent.append(("message", text))

    video = tmp_path / "20240102-0304.mp4"
    video.write_bytes(b"x" * 1000)
    store = StateStore(str(tmp_path / "s.sqlite"))
    note = Note(Target.key, "Detection changed to True", str(video))
    store.finish_conversion(
        store.add_conversion("/h.h264", True), FollowUps(str(video), (), 1, (note, note), 5)
    )
    worker = workers.NotifyWorker(0, store, Target(), threading.Event())
    monkeypatch.setattr(workers, "MAX_VIDEO_BYTES", 999)
    note = store.next_notification(Target.key)
    worker._deliver(note)
    store.notification_done(note.id)
    monkeypatch.setattr(workers, "MAX_VIDEO_BYTES", 1000)
    worker._deliver(store.next_notification(Target.key))
    assert sent == [
        ("message", "Detection changed to True"),
        ("video", "Detection changed to True"),
    ]
