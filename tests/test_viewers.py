"""/stream.mjpg, /snapshot.jpg and /health on a real pancake.py, read by real clients.

The clients are written by others: Python's http.client (chunked decoding,
HTTP/1.1 as Home Assistant's and browsers' libraries speak it), Pillow to decode
every JPEG, Debian's ffmpeg run with the arguments go2rtc gives it for an
``ffmpeg:http://...`` source, and Debian's VLC. Each part of the stream carries
its capture time (``X-Timestamp``), which is what the freshness checks read.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from email.message import Message
from http.cookiejar import CookieJar
from typing import Dict, List, Optional, Tuple

import pytest
from PIL import Image

from raspberry_pancake import __version__
from raspberry_pancake.web import live
from raspberry_pancake.web.auth import hash_password
from tests.helpers import (
    ClockBeforeASplit,
    Receiver,
    count_frames,
    ffprobe,
    frame_size,
)

SIZE = (320, 240)


# --- clients ---------------------------------------------------------------


@dataclass
class Part:
    headers: Dict[str, str]
    data: bytes
    read_at: float  # time.time() once the part was read

    @property
    def captured(self) -> float:
        return float(self.headers["x-timestamp"])


class MjpegClient:
    """Reads multipart/x-mixed-replace parts with http.client (which undoes the chunking).

    ``rcvbuf`` shrinks the socket's receive buffer, so that what the client does
    not read stays on the server's side, as on a slow link.
    """

    def __init__(self, port: int, rcvbuf: Optional[int] = None, headers=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        if rcvbuf is not None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(30)
            sock.connect(("127.0.0.1", port))
            self.conn.sock = sock
        self.conn.request("GET", "/stream.mjpg", headers=headers or {})
        self.response = self.conn.getresponse()
        self.boundary = None
        content_type = self.response.getheader("Content-Type", "")
        kind, _, params = content_type.partition(";")
        if kind.strip() == "multipart/x-mixed-replace":
            for param in params.split(";"):
                name, _, value = param.strip().partition("=")
                if name == "boundary":
                    self.boundary = value.strip('"')

    def next_part(self) -> Part:
        delimiter = b"--" + self.boundary.encode()
        line = self._line()
        while line == b"":  # the CRLF after the previous part's body
            line = self._line()
        assert line == delimiter, f"expected the boundary, got {line[:80]!r}"
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            name, _, value = line.decode("ascii").partition(":")
            headers[name.strip().lower()] = value.strip()
        data = self.response.read(int(headers["content-length"]))
        return Part(headers, data, time.time())

    def _line(self) -> bytes:
        line = self.response.readline(1024)
        if not line:
            raise ConnectionError("the server ended the stream")
        return line.rstrip(b"\r\n")

    def close(self) -> None:
        self.conn.close()


def check_jpeg(data: bytes) -> None:
    """Decode it fully with Pillow: a valid JPEG of the live view's size."""
    with Image.open(io.BytesIO(data)) as picture:
        assert picture.format == "JPEG"
        picture.load()
        assert picture.size == SIZE


def fetch(url: str, headers=None, opener=None) -> Tuple[int, Message, bytes]:
    """(status, headers, body) of a GET, whatever the status; header names in any case.

    A 429 (each address may try one password a second) is waited out, as the
    ``Retry-After`` header asks, a few times.
    """
    for _ in range(10):
        request = urllib.request.Request(url, headers=headers or {})
        try:
            with (opener or urllib.request.build_opener()).open(request, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            if e.code != 429:
                return e.code, e.headers, e.read()
            time.sleep(float(e.headers.get("Retry-After", "1")))
    raise AssertionError(f"{url}: still 429 after ten tries")


def health(p, opener=None) -> Tuple[int, dict]:
    status, headers, body = fetch(p.url + "/health", opener=opener)
    assert headers["Content-Type"].startswith("application/json")
    return status, json.loads(body)


def wait_for_health(p, predicate, what: str, timeout: float = 60.0) -> dict:
    """Poll /health until ``predicate(status, report)`` holds; return the report."""
    deadline = time.monotonic() + timeout
    while True:
        status, report = health(p)
        if predicate(status, report):
            return report
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}: {status} {report}")
        time.sleep(0.2)


# --- /stream.mjpg ------------------------------------------------------------


def test_stream_parts_are_distinct_valid_jpegs_capped_at_max_stream_fps(pancake):
    cap = 5.0
    p = pancake("--camera", "sim", "--fps", "30", "--max-stream-fps", str(cap))
    client = MjpegClient(p.port)
    try:
        assert client.response.status == 200
        assert client.boundary, client.response.getheader("Content-Type")
        assert client.response.getheader("Cache-Control") == "no-store"
        parts: List[Part] = [client.next_part()]
        while parts[-1].captured - parts[0].captured < 4.0:
            parts.append(client.next_part())
    finally:
        client.close()
    for part in parts:
        assert part.headers["content-type"] == "image/jpeg"
        check_jpeg(part.data)
    digests = [hashlib.sha1(part.data).digest() for part in parts]
    assert len(set(digests)) == len(digests), "the same frame was sent twice"
    times = [part.captured for part in parts]
    assert times == sorted(set(times)), "a frame came twice or out of order"
    # the cap counts slots of camera time: one frame per 1/cap, a slot taken at most
    # SLOT_SLACK early; the camera films at 30 fps, six times the cap
    span = times[-1] - times[0]
    assert len(parts) <= cap * span + 1 + live.SLOT_SLACK
    assert len(parts) >= 3


def test_a_slow_reader_gets_fresh_frames_not_a_backlog(pancake):
    """A client that reads a part a second: each part it reads is about a second old.

    A server that only waits for its writes to reach the kernel would have filled
    the kernel's send buffer with many seconds of pictures by then, each read
    older than the one before.
    """
    p = pancake(
        "--camera", "sim", "--fps", "30", "--max-stream-fps", "30",
        "--resolution", *map(str, SIZE),
    )  # fmt: skip
    client = MjpegClient(p.port, rcvbuf=4096)
    pause = 1.0
    ages = []
    try:
        for _ in range(8):
            part = client.next_part()
            check_jpeg(part.data)
            ages.append(part.read_at - part.captured)
            time.sleep(pause)  # the slow reader: this is its behaviour, not a wait
    finally:
        client.close()
    # each part left the server when the one before had been taken, a pause ago
    assert max(ages[2:]) < pause + 2.0, f"frame ages grew: {ages}"


def test_the_stream_counts_as_a_viewer_while_connected(pancake):
    p = pancake("--camera", "sim")
    assert health(p)[1]["live_view"]["viewers"] == 0
    client = MjpegClient(p.port)
    try:
        client.next_part()
        report = health(p)[1]
        assert report["live_view"]["viewers"] == 1
        assert report["camera"]["outputs"]["jpeg"]["encoding"] is True
    finally:
        client.close()
    wait_for_health(p, lambda s, r: r["live_view"]["viewers"] == 0, "the viewer to leave")


def test_ffmpeg_reads_the_stream_as_go2rtc_and_frigate_would(pancake, tmp_path):
    """go2rtc's ``ffmpeg:http://.../stream.mjpg#video=h264`` runs this ffmpeg input."""
    p = pancake("--camera", "sim", "--fps", "15", "--max-stream-fps", "15")
    out = tmp_path / "restream.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error",
         "-fflags", "nobuffer", "-flags", "low_delay", "-i", p.url + "/stream.mjpg",
         "-frames:v", "20", "-c:v", "libx264", "-preset:v", "superfast",
         "-tune:v", "zerolatency", "-pix_fmt:v", "yuv420p", "-an", "-y", str(out)],
        check=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert ffprobe(out, "-show_entries", "stream=codec_name") == "h264"
    assert frame_size(out) == SIZE
    assert count_frames(out) == 20


CVLC = shutil.which("cvlc")


@pytest.fixture
def world_writable_dir():
    """A directory anyone may write, outside pytest's root-only tree; removed after."""
    path = tempfile.mkdtemp(prefix="rp-test-")
    os.chmod(path, 0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(CVLC is None, reason="Debian's vlc-bin is not installed")
@pytest.mark.parametrize("login", [False, True], ids=["open", "password-in-url"])
def test_vlc_plays_the_stream(pancake, world_writable_dir, tmp_path, login):
    """VLC decodes the stream; its scene filter saves each picture it shows.

    With ``--login`` the password is in the URL, as the README tells VLC users.
    VLC refuses to run as root, so it runs as nobody, as a user would run it.
    """
    flags = ["--camera", "sim", "--fps", "15", "--max-stream-fps", "10"]
    if login:
        pw = tmp_path / "password.txt"
        pw.write_text(hash_password(PASSWORD) + "\n")
        flags += ["--login", str(pw)]
    p = pancake(*flags)
    url = p.url + "/stream.mjpg"
    if login:
        url = f"http://vlc:{urllib.parse.quote(PASSWORD, safe='')}@127.0.0.1:{p.port}/stream.mjpg"
    pictures = world_writable_dir
    as_nobody = (
        ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]
        if os.geteuid() == 0
        else []
    )
    vlc = subprocess.Popen(
        [*as_nobody, "env", f"HOME={pictures}", CVLC, "-I", "dummy", "--no-audio",
         "--vout=dummy", "--video-filter=scene", f"--scene-path={pictures}",
         "--scene-format=png", "--scene-ratio=1", "--scene-prefix=shown", url],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        distinct = set()
        deadline = time.monotonic() + 60
        while len(distinct) < 5 and time.monotonic() < deadline and vlc.poll() is None:
            for name in os.listdir(pictures):
                if not name.endswith(".png"):
                    continue  # VLC writes each picture to a .swp file, then renames it
                with Image.open(os.path.join(pictures, name)) as shown:
                    shown.load()
                    distinct.add(hashlib.sha1(shown.tobytes()).digest())
            time.sleep(0.2)
    finally:
        vlc.terminate()
        out, _ = vlc.communicate(timeout=30)
    assert len(distinct) >= 5, out.decode(errors="replace")[-2000:]


# --- /snapshot.jpg ------------------------------------------------------------


def test_snapshot_while_nobody_watches_is_a_new_frame(pancake):
    p = pancake("--camera", "sim", "--fps", "12")
    client = MjpegClient(p.port)
    streamed = client.next_part()
    client.close()
    wait_for_health(p, lambda s, r: r["live_view"]["viewers"] == 0, "the viewer to leave")
    # nothing is encoded while nobody watches: the live-view output falls silent
    # while the camera itself keeps delivering frames
    idle = 1.0
    wait_for_health(
        p,
        lambda s, r: (
            r["camera"]["outputs"]["jpeg"]["last_frame_age_seconds"] > idle
            and r["camera"]["last_frame_age_seconds"] < idle
            and not r["camera"]["outputs"]["jpeg"]["encoding"]
        ),
        "the JPEG encoder to rest",
    )
    idle_seen = time.time()  # no JPEG since idle_seen - idle at the latest
    status, headers, body = fetch(p.url + "/snapshot.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    check_jpeg(body)
    assert body != streamed.data
    # so the camera encoded this one for the request: a kept picture would be older
    assert float(headers["X-Timestamp"]) > idle_seen - idle
    report = health(p)[1]
    assert report["live_view"]["viewers"] == 0
    assert not report["camera"]["outputs"]["jpeg"]["encoding"]


def test_a_frozen_camera_gives_no_snapshot_and_an_unhealthy_report(pancake):
    p = pancake("--camera", "sim")
    wait_for_health(p, lambda s, r: s == 200 and r["ok"], "a healthy camera")
    p.proc.send_signal(signal.SIGUSR1)  # the sim camera stops delivering frames
    report = wait_for_health(p, lambda s, r: s == 503, "the report to turn unhealthy")
    assert report["ok"] is False
    assert any("no frame" in problem for problem in report["problems"]), report
    status, headers, body = fetch(p.url + "/snapshot.jpg")
    assert status == 503 and headers.get("Retry-After")
    assert b"\xff\xd8" not in body
    p.proc.send_signal(signal.SIGUSR1)  # and resumes
    wait_for_health(p, lambda s, r: s == 200 and r["ok"], "the camera to recover")
    status, headers, body = fetch(p.url + "/snapshot.jpg")
    assert status == 200
    check_jpeg(body)


# --- /health ------------------------------------------------------------------


def test_health_reports_recordings_disks_and_the_emitter_backlog(pancake, tmp_path):
    """A recording split at a quarter-hour is announced to a receiver that is not there.

    The clock is set to just before 17:15 once recording, so the first file closes
    within seconds (started there, a slow start-up could miss 17:14 altogether).
    """
    h264 = tmp_path / "h264"
    h264.mkdir()
    name = f"rp-test-{uuid.uuid4().hex}"
    clock = ClockBeforeASplit(tmp_path, h264 / "20200623-1714.h264")
    p = pancake(
        "--camera", "sim", "--record-continuous", str(h264), "--emit", name, env=clock.env
    )  # fmt: skip
    clock.wait_and_set(seconds_left=3)
    report = wait_for_health(
        p,
        lambda s, r: (
            r["recordings"]["in_progress"] and r["recordings"]["in_progress"][0]["frames"] > 0
        ),
        "a recording in progress",
    )
    assert report["ok"] is True and report["problems"] == []
    assert report["version"] == __version__
    assert report["uptime_seconds"] >= 0
    assert report["camera"]["backend"] == "sim"
    assert set(report["camera"]["outputs"]) == {"h264", "jpeg"}
    assert report["camera"]["outputs"]["h264"]["last_frame_age_seconds"] < 5
    recording = report["recordings"]["in_progress"][0]
    assert recording["path"] == str(h264 / recording["file"])
    assert recording["bytes"] > 0
    assert report["recordings"]["write_error"] is None
    (disk,) = report["disks"]
    assert disk["directory"] == str(h264) and disk["used_for"] == ["continuous"]
    st = os.statvfs(h264)
    assert disk["total_bytes"] == st.f_blocks * st.f_frsize
    assert 0 < disk["free_bytes"] <= disk["total_bytes"]
    assert report["emitter"]["socket"] == name

    # 17:15: the first file is finished and announced, and nobody receives it yet
    report = wait_for_health(p, lambda s, r: r["emitter"]["backlog"] >= 1, "a backlog")
    assert report["emitter"]["sent"] == 0
    receiver = Receiver(name).start()
    try:
        report = wait_for_health(p, lambda s, r: r["emitter"]["backlog"] == 0, "the backlog")
        assert report["emitter"]["sent"] >= 1
        assert receiver.wait_for(1)[0]["h264"].endswith("-1714.h264")
    finally:
        receiver.stop()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 256 KiB tmpfs under tmp_path (needs root): a disk that fills in seconds."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_health_reports_a_full_disk(pancake, small_tmpfs):
    p = pancake("--camera", "sim", "--resolution", "640", "480", "--record-continuous",
                str(small_tmpfs))  # fmt: skip
    # a 503 alone is not enough: before its first frame the camera is a problem too
    report = wait_for_health(
        p, lambda s, r: r["recordings"]["write_error"] is not None, "the disk to fill up"
    )
    assert report["recordings"]["write_error"] == "ENOSPC"
    assert report["ok"] is False
    assert any("ENOSPC" in problem for problem in report["problems"]), report
    (disk,) = report["disks"]
    assert disk["directory"] == str(small_tmpfs)
    assert disk["free_bytes"] < 64 * 1024


# --- with --login --------------------------------------------------------------

PASSWORD = "pancake for breakfast"


def log_in(p) -> urllib.request.OpenerDirector:
    """An opener holding the session cookie, obtained through the login form."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(p.url + "/login", timeout=30).read()
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    form = urllib.parse.urlencode({"password": PASSWORD, "_xsrf": xsrf}).encode()
    opener.open(p.url + "/login", data=form, timeout=30).read()
    assert any(c.name == "pancake_session" for c in jar), "the login failed"
    return opener


def test_with_login_anonymous_callers_see_only_ok(pancake, tmp_path):
    pw = tmp_path / "password.txt"
    pw.write_text(hash_password(PASSWORD) + "\n")
    p = pancake("--camera", "sim", "--login", str(pw))
    status, report = health(p)
    assert report == {"ok": True} and status == 200
    for path in ("/snapshot.jpg", "/stream.mjpg"):
        status, headers, body = fetch(p.url + path)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith("Basic "), path
        assert b"\xff\xd8" not in body
    opener = log_in(p)  # a browser's session cookie is as good as the password
    status, report = health(p, opener=opener)
    assert status == 200 and report["version"] == __version__ and "camera" in report
    status, headers, body = fetch(p.url + "/snapshot.jpg", opener=opener)
    assert status == 200
    check_jpeg(body)


def basic_auth_opener(url: str, user: str, password: str) -> urllib.request.OpenerDirector:
    """urllib's own Basic auth: it sends the password only after a 401 challenge."""
    passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    passwords.add_password(None, url, user, password)
    return urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(passwords))


def basic(user: str, password: str) -> dict:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_programs_log_in_with_basic_auth(pancake, tmp_path):
    """Any user name and the password, as Home Assistant's MJPEG camera sends them."""
    pw = tmp_path / "password.txt"
    pw.write_text(hash_password(PASSWORD) + "\n")
    p = pancake("--camera", "sim", "--login", str(pw))
    for user in ("pancake", "homeassistant"):
        opener = basic_auth_opener(p.url, user, PASSWORD)
        status, headers, body = fetch(p.url + "/snapshot.jpg", opener=opener)
        assert status == 200 and headers["Content-Type"] == "image/jpeg"
        check_jpeg(body)
        # /health challenges nobody (anonymous callers get {"ok": ...}): send it at once
        status, headers, body = fetch(p.url + "/health", headers=basic(user, PASSWORD))
        assert status == 200 and "camera" in json.loads(body)
    client = MjpegClient(p.port, headers=basic("pancake", PASSWORD))
    try:
        assert client.response.status == 200
        check_jpeg(client.next_part().data)
    finally:
        client.close()
    for path in ("/snapshot.jpg", "/stream.mjpg", "/health"):
        status, headers, body = fetch(p.url + path, headers=basic("pancake", "not it"))
        if path == "/health":
            assert status == 200 and json.loads(body) == {"ok": True}
            continue
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic "), path
        assert b"\xff\xd8" not in body


def test_ffmpeg_sends_the_password_written_in_the_url(pancake, tmp_path):
    """As go2rtc's and Frigate's ``ffmpeg:http://user:password@...`` inputs do."""
    password = "p@ss: w/rd#1"
    pw = tmp_path / "password.txt"
    pw.write_text(hash_password(password) + "\n")
    p = pancake("--camera", "sim", "--login", str(pw))
    url = f"http://pancake:{urllib.parse.quote(password, safe='')}@127.0.0.1:{p.port}/stream.mjpg"
    out = tmp_path / "restream.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", url,
         "-frames:v", "5", "-c:v", "libx264", "-an", "-y", str(out)],
        check=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert count_frames(out) == 5
