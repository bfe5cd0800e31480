"""pancake.py as a user runs it: bad input is one line, the sim camera serves JPEGs."""

from __future__ import annotations

import asyncio
import hashlib
import io
import signal
import socket
import threading
import time
import uuid

import pytest
import tornado.websocket
from PIL import Image

from tests.helpers import Pancake, free_port, run_cli


def one_line_error(result, *needles):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--fps", "abc"], "--fps"),
        (["--fps", "0"], "--fps"),
        (["--fps", "500"], "--fps"),
        (["--port", "70000"], "--port"),
        (["--resolution", "640"], "--resolution"),
        (["--resolution", "641", "480"], "even"),
        (["--resolution", "8", "8"], "between"),
        (["--rotation", "45"], "--rotation"),
        (["--max-stream-fps", "-1"], "--max-stream-fps"),
        (["--max-stream-fps", "nan"], "--max-stream-fps"),
        (["--annotate-text-size", "1000"], "--annotate-text-size"),
        (["--camera", "webcam"], "--camera"),
        (["--record-detection", "edge", "/tmp"], "--detect"),
        (["--record-detection", "sometimes", "/tmp", "--detect", "image"], "edge"),
        (["--record-continuous", "/nonexistent/dir"], "does not exist"),
        (["--record-resize", "320", "240"], "--record-resize needs"),
        (["--detect-resize", "100", "100"], "--detect"),
        (["--detect-interval", "0"], "--detect-interval"),
        (["--emit", "ppp"], "nothing to announce"),
        (["--bogus"], "unrecognized"),
    ],
)
def test_bad_flags_are_one_clear_line(args, needle):
    one_line_error(run_cli("pancake.py", "--camera", "sim", *args), needle)


def test_auto_camera_without_a_pi_library_suggests_sim():
    line = one_line_error(run_cli("pancake.py"), "--camera sim")
    assert "camera" in line


def test_missing_and_malformed_password_files(tmp_path):
    one_line_error(
        run_cli("pancake.py", "--camera", "sim", "--login", str(tmp_path / "x")), "does not exist"
    )
    bad = tmp_path / "pw"
    bad.write_text("letmein\n")
    one_line_error(run_cli("pancake.py", "--camera", "sim", "--login", str(bad)), "no valid hash")


def test_port_in_use_is_one_line():
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        port = free_port()
        s.bind(("", port))
        s.listen()
        r = run_cli("pancake.py", "--camera", "sim", "--port", str(port))
    one_line_error(r, "already in use")


def test_a_second_sigterm_during_the_stop_still_ends_cleanly(tmp_path):
    """systemd, a script or an impatient user may send SIGTERM twice: the stop that
    began goes on (here it waits for an absent receiver) and the exit is clean."""
    p = Pancake(
        "--camera", "sim",
        "--record-continuous", str(tmp_path),
        "--emit", f"rp-test-{uuid.uuid4().hex}",
        log_path=str(tmp_path / "log"),
    )  # fmt: skip
    log = tmp_path / "log"
    wait_for_line(p, log, "recording to")  # a file is open: its announcement will wait
    p.proc.send_signal(signal.SIGTERM)
    wait_for_line(p, log, "SIGTERM received")
    threading.Event().wait(0.5)  # into the stop: the emitter waits for the receiver
    assert p.proc.poll() is None
    p.proc.send_signal(signal.SIGTERM)
    rc, out = p.stop(timeout=60)
    assert rc == 0, out
    assert out.rstrip().endswith("stopped"), out


def wait_for_line(p: Pancake, log, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert p.proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no {text!r} in the log"
        threading.Event().wait(0.05)


def test_help_lists_the_spec_flags():
    r = run_cli("pancake.py", "--help")
    assert r.returncode == 0
    for flag in (
        "--port 8000",
        "--resolution 320 240",
        "--fps 12",
        "--max-stream-fps 10",
        "--record-continuous h264_dir",
        "--emit socket_address",
        "--login password_hash_file",
        "--camera",
        "--customize FILE",
    ):
        assert flag in r.stdout, flag


async def _watch(port, frames, headers=None):
    url = f"ws://127.0.0.1:{port}/websocket"
    ws = await tornado.websocket.websocket_connect(
        tornado.httpclient.HTTPRequest(url, headers=headers or {})
    )
    out = []
    for _ in range(frames):
        await ws.write_message("read_frame")
        out.append(await asyncio.wait_for(ws.read_message(), 10))
    ws.close()
    return out


def test_sim_camera_serves_real_distinct_jpegs_at_the_resolution(pancake):
    p = pancake(
        "--camera",
        "sim",
        "--resolution",
        "640",
        "480",
        "--fps",
        "20",
        "--max-stream-fps",
        "20",
        "--rotation",
        "90",
        "--hflip",
    )
    frames = asyncio.run(_watch(p.port, 12))
    assert len({hashlib.sha1(f).hexdigest() for f in frames}) == 12
    for data in frames:
        img = Image.open(io.BytesIO(data))
        assert img.format == "JPEG" and img.size == (640, 480)
    code, out = p.stop()
    assert code == 0, out
    assert "Traceback" not in out


def test_original_client_protocol_works_with_login(pancake, tmp_path):
    """A client of the original project: text 'read_frame', binary JPEG answers."""
    pw = tmp_path / "pw"
    pw.write_text(hashlib.sha512(b"secret").hexdigest())
    p = pancake("--camera", "sim", "--login", str(pw))
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        asyncio.run(_watch(p.port, 1))
    assert refused.value.code == 403
