"""Schedule, state store and receiver, tested in-process with real sockets and files."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import uuid

import pytest

from raspberry_pancake.exc import AddressInUseError
from raspberry_pancake.postproc.notify import detection_text
from raspberry_pancake.postproc.receiver import Receiver
from raspberry_pancake.postproc.recordings import RecordingRules, RejectedPath
from raspberry_pancake.postproc.routing import Routing
from raspberry_pancake.postproc.schedule import ConversionCounter, MinuteSchedule
from raspberry_pancake.postproc.state import FollowUps, Note, StateStore
from raspberry_pancake.postproc.upload import dated_dir


def at(h, m, s=0):
    return dt.datetime(2024, 1, 2, h, m, s)


def test_minute_schedule_fires_once_per_listed_minute():
    sched = MinuteSchedule([0, 20, 40], at(10, 5))
    assert not sched.due(at(10, 19, 59))
    assert sched.due(at(10, 20, 0))
    assert not sched.due(at(10, 20, 30))
    assert sched.seconds_until_due(at(10, 20, 30)) == 19 * 60 + 30
    assert sched.due(at(10, 40, 1))
    assert sched.due(at(11, 0, 0))


def test_minute_schedule_skips_what_a_stall_missed():
    sched = MinuteSchedule([0, 20, 40], at(10, 5))
    # Woken only at 11:25 (e.g. after a very long upload): one trigger, not three.
    assert sched.due(at(11, 25))
    assert not sched.due(at(11, 30))
    assert sched.due(at(11, 40))


def test_minute_schedule_survives_clock_going_back():
    sched = MinuteSchedule([30], at(10, 5))
    assert not sched.due(at(7, 0))  # a Pi without a clock, corrected backwards
    assert sched.due(at(7, 30))


def test_conversion_counter():
    counter = ConversionCounter(3)
    assert [counter.add() for _ in range(7)] == [False, False, True, False, False, True, False]
    assert not ConversionCounter(None).add()


def test_dated_dir():
    assert dated_dir("bak/cam1", "20200624-0900.mp4") == "bak/cam1/2020/06/24"
    assert dated_dir("/srv", "20200624-180511.mp4") == "/srv/2020/06/24"
    assert dated_dir("bak", "clip.mp4") == "bak"


def test_detection_texts():
    assert detection_text(True) == "Detection changed to True"
    assert detection_text(False, True) == "Detection changed to False. MP4 conversion failed."


def test_state_survives_reopen_and_bounds_queues(tmp_path):
    path = str(tmp_path / "state.sqlite")
    store = StateStore(path)
    ids = [store.add_conversion(f"/h/{i}.h264", None if i else True) for i in range(3)]
    store.close()
    store = StateStore(path)
    pending = store.pending_conversions()
    assert [c.h264 for c in pending] == ["/h/0.h264", "/h/1.h264", "/h/2.h264"]
    assert pending[0].detection is True and pending[1].detection is None
    notes = (Note("t", "x", "/m/0.mp4"),)
    out = store.finish_conversion(ids[0], FollowUps("/m/0.mp4", ("a", "b"), 1, notes, 1))
    assert out.uploads_dropped == () and out.notifications_dropped == ()
    notes = (Note("t", "y"),)
    out = store.finish_conversion(ids[1], FollowUps("/m/1.mp4", ("a", "b"), 1, notes, 1))
    assert out.uploads_dropped == ("a", "b") and out.notifications_dropped == ("t",)
    assert [u.mp4 for u in store.pending_uploads("a")] == ["/m/0.mp4"]
    assert store.upload_counts() == {"a": 1, "b": 1}
    up = store.pending_uploads("a")[0]
    store.upload_failed(up.id, 1234.5)
    store.upload_failed(up.id, 1300.0, counted=False)
    store.close()
    store = StateStore(path)
    assert store.pending_uploads("a")[0].attempts == 1
    assert store.pending_uploads("a")[0].next_try == 1300.0
    store.upload_done(up.id)
    assert store.pending_uploads("a") == []
    note = store.next_notification("t")
    assert (note.text, note.video) == ("x", "/m/0.mp4")
    store.notification_done(note.id)
    assert store.next_notification("t") is None
    assert [c.id for c in store.pending_conversions()] == [ids[2]]
    # A failed conversion (no mp4) queues no upload.
    store.finish_conversion(ids[2], FollowUps(None, ("c",), 5, (), 5))
    assert store.pending_uploads("c") == [] and store.pending_conversions() == []
    store.close()


@pytest.fixture
def receiver():
    r = Receiver("pp-unit-" + uuid.uuid4().hex)
    yield r
    r.close()


def send(receiver, data: bytes):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(data, "\0" + receiver.socket_name)


def test_second_receiver_is_refused(receiver):
    with pytest.raises(AddressInUseError, match="in use"):
        Receiver(receiver.socket_name)


def test_bad_datagrams_are_dropped_then_a_good_one_passes(receiver, caplog):
    bad = [
        b"\xff\xfe not utf-8",
        b"not json",
        b"",
        b"[1, 2]",
        b'"text"',
        b"{}",
        b'{"h264": 5}',
        b'{"h264": ""}',
        b'{"h264": null}',
        b'{"detection": "yes"}',
        b'{"detection": 1}',
        b'{"h264": "/x\\u0000.h264"}',
        b'{"h264": "/h/20240102-0304.h264\\r\\nDELE x"}',
        b'{"h264": "/h/\\ud800/20240102-0304.h264"}',  # a lone surrogate
        b'{"mp4": "/x.mp4"}',
        b"[" * 30000 + b"]" * 30000,  # 60 KB of nesting: deeper than the recursion limit
        b'{"h264": ' * 6000 + b"1" + b"}" * 6000,
    ]
    good_ones = [b'{"h264": "/any/20240102-0304.h264", "detection": true}']
    good_ones.append(b'{"detection": false}')
    results = []
    receiver.sock.settimeout(10)
    # One at a time: the kernel queues only a few datagrams (net.unix.max_dgram_qlen).
    for data in bad + good_ones:
        send(receiver, data)
        results.append(receiver.receive())
    assert results[: len(bad)] == [None] * len(bad)
    assert (results[-2].h264, results[-2].detection) == ("/any/20240102-0304.h264", True)
    assert (results[-1].h264, results[-1].detection) == (None, False)
    drops = [r for r in caplog.records if "dropped a bad datagram" in r.getMessage()]
    assert len(drops) == len(bad)


def test_only_recordings_pass_the_rules(tmp_path):
    """Each rule of RecordingRules, on real files, links and directories."""
    h264 = tmp_path / "h264"
    h264.mkdir()
    other = tmp_path / "elsewhere"
    other.mkdir()
    good = h264 / "20240102-0304.h264"
    good.write_bytes(b"\0\0\0\1")
    (other / "20240102-0305.h264").write_bytes(b"x")
    secret = other / "secret.txt"
    secret.write_text("root:x:0:0")
    (h264 / "20240102-0306.h264").symlink_to(secret)
    (tmp_path / "linked").symlink_to(h264, target_is_directory=True)
    (h264 / "20240102-0307.h264").mkdir()
    os.mkfifo(h264 / "20240102-0308.h264")
    (h264 / "20240102-0311.h264").write_bytes(b"x")
    os.link(h264 / "20240102-0311.h264", other / "20240102-0309.h264")  # a second name
    (h264 / "notes.h264").write_bytes(b"x")
    (h264 / "20240102-0310.mp4").write_bytes(b"x")
    rules = RecordingRules([str(h264)])
    assert rules.check(str(good)).count(":") == 2
    refused = {
        "relative/20240102-0304.h264": "not an absolute path",
        f"{h264}/../h264/20240102-0304.h264": "'..'",
        f"{h264}/./20240102-0304.h264": "'.'",
        f"{h264}//20240102-0304.h264": "empty",
        f"{h264}/20240102-0306.h264": "is a symbolic link",
        f"{tmp_path}/linked/20240102-0304.h264": f"{tmp_path}/linked is a symbolic link",
        f"{h264}/20240102-0307.h264": "not a regular file",
        f"{h264}/20240102-0308.h264": "not a regular file",
        f"{h264}/notes.h264": "not a recording's name",
        f"{h264}/20240102-0310.mp4": "not a recording's name",
        f"{h264}/20240102-9999.h264": "not a recording's name",
        f"{other}/20240102-0305.h264": "not in a --h264-dir",
        f"{h264}/20240102-0400.h264": "No such file",
        f"{good}/20240102-0304.h264": "is not a directory",
    }
    for path, reason in refused.items():
        with pytest.raises(RejectedPath, match=re.escape(reason)):
            rules.check(path)
    with pytest.raises(RejectedPath, match="2 hard links"):
        RecordingRules().check(str(other / "20240102-0309.h264"))
    # Without --h264-dir, any directory; still only the user's own files.
    assert RecordingRules().check(str(other / "20240102-0305.h264"))
    with pytest.raises(RejectedPath, match="belongs to uid"):
        RecordingRules(uid=os.geteuid() + 1).check(str(good))


def test_datagram_from_another_user_is_dropped(receiver, tmp_path, caplog):
    if os.getuid() != 0:
        pytest.skip("needs root to send as another uid")
    good = tmp_path / "20240102-0304.h264"
    good.write_bytes(b"\0\0\0\1")
    os.chmod(tmp_path, 0o755)
    payload = json.dumps({"h264": str(good)})
    code = (
        "import os, socket, sys; os.setgid(65534); os.setuid(65534);"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM);"
        "s.sendto(sys.argv[2].encode(), '\\0' + sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, receiver.socket_name, payload], check=True)
    send(receiver, payload.encode())
    receiver.sock.settimeout(10)
    first, second = receiver.receive(), receiver.receive()
    assert first is None
    assert second is not None and second.h264 == str(good)
    assert any("from uid 65534" in r.getMessage() for r in caplog.records)


def test_state_file_of_the_previous_version_is_taken_over(tmp_path):
    """A WAL-mode file without the newer columns and tables keeps its work."""
    import sqlite3

    path = str(tmp_path / "old.sqlite")
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(
        "CREATE TABLE conversions (id INTEGER PRIMARY KEY AUTOINCREMENT, h264 TEXT NOT NULL,"
        " detection INTEGER, accepted REAL NOT NULL);"
        "CREATE TABLE uploads (id INTEGER PRIMARY KEY AUTOINCREMENT, destination TEXT NOT NULL,"
        " mp4 TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, UNIQUE (destination, mp4));"
        "CREATE TABLE notifications (id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL,"
        " text TEXT NOT NULL, video TEXT);"
        "INSERT INTO conversions (h264, detection, accepted) VALUES ('/h/a.h264', NULL, 1);"
        "INSERT INTO uploads (destination, mp4, attempts) VALUES ('d', '/m/a.mp4', 2);"
    )
    db.commit()
    db.close()
    store = StateStore(path)
    assert [c.h264 for c in store.pending_conversions()] == ["/h/a.h264"]
    (up,) = store.pending_uploads("d")
    assert (up.mp4, up.attempts, up.next_try) == ("/m/a.mp4", 2, 0.0)
    assert store.add_conversion("/h/b.h264", None, "1:2:3") is not None
    assert store.add_conversion("/h/b.h264", True, "1:2:3") is None  # the same file again
    assert store.add_conversion("/h/b.h264", None, "1:2:4") is not None  # a new file, same name
    store.close()
    # WAL is the only mode a file remembers; the store left it for its kept journal.
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] != "wal"
    assert os.path.exists(path + "-journal") and not os.path.exists(path + "-wal")


def test_routing_says_where_an_mp4_goes_next():
    routing = Routing(
        destinations=("scp", "ftp"), upload_limit=3, targets=("chat",), notify_limit=4
    )
    plain = routing.follow_ups("/m/a.mp4", None)
    assert plain == FollowUps("/m/a.mp4", ("scp", "ftp"), 3, (), 4)  # no detection: no note
    clip = routing.follow_ups("/m/b.mp4", True)
    assert clip.notes == (Note("chat", detection_text(True), "/m/b.mp4"),)
    failed = routing.follow_ups(None, False)
    assert failed.destinations == ()  # nothing to upload
    assert failed.notes == (Note("chat", detection_text(False, conversion_failed=True), None),)
