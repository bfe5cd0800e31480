"""systemd's notify protocol, received on real datagram sockets as systemd would.

The last test runs ``pancake.py --camera sim`` the way pancake.service does, with
``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` set, and checks READY, the watchdog pings,
that a frozen camera stops them, and STOPPING on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from raspberry_pancake.sdnotify import Notifier
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parent.parent


class Receiver:
    """A bound notify socket, like systemd's, that also reports each sender's pid."""

    def __init__(self, address: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)

    def receive(self, timeout: float = 10.0):
        """(text, sender pid) of the next datagram, or (None, None) after ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            data, ancillary, _flags, _address = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None, None
        pid = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("3i", payload[:12])[0]
        return data.decode("utf-8"), pid

    def wait_for(self, wanted: str, timeout: float, count: int = 1):
        """Read until ``count`` datagrams held the line ``wanted``; (text, pid) of all read."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text, pid = self.receive(max(deadline - time.monotonic(), 0.01))
            if text is None:
                break
            seen.append((text, pid))
            if sum(wanted in t.splitlines() for t, _ in seen) >= count:
                return seen
        raise AssertionError(f"not {count} x {wanted!r} within {timeout} s; got {seen!r}")

    def drain(self, seconds: float):
        """Every datagram arriving within ``seconds``."""
        seen = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return seen
            text, _ = self.receive(left)
            if text is not None:
                seen.append(text)

    def close(self):
        self.sock.close()


@pytest.fixture
def path_receiver(tmp_path):
    address = str(tmp_path / "notify.sock")
    receiver = Receiver(address)
    yield receiver, address
    receiver.close()


@pytest.fixture
def abstract_receiver():
    name = f"pancake-test-notify-{uuid.uuid4().hex}"
    receiver = Receiver("\0" + name)
    yield receiver, "@" + name
    receiver.close()


@pytest.mark.parametrize("kind", ["path_receiver", "abstract_receiver"])
def test_messages_reach_the_socket(request, kind):
    receiver, address = request.getfixturevalue(kind)
    notifier = Notifier({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    notifier.ready("serving on port 8000")
    notifier.watchdog()
    notifier.status("converting 20200623-1715.h264")
    notifier.stopping()
    texts = [receiver.receive()[0] for _ in range(4)]
    assert texts == [
        "READY=1\nSTATUS=serving on port 8000",
        "WATCHDOG=1",
        "STATUS=converting 20200623-1715.h264",
        "STOPPING=1",
    ]
    notifier.ready()
    assert receiver.receive()[0] == "READY=1"
    notifier.close()
    notifier.watchdog()  # after close: a no-op, not an error
    assert receiver.receive(timeout=0.2) == (None, None)


def test_sender_is_the_calling_process(path_receiver):
    receiver, address = path_receiver
    Notifier({"NOTIFY_SOCKET": address}).ready()
    text, pid = receiver.receive()
    assert (text, pid) == ("READY=1", os.getpid())


def test_reads_the_environment_of_a_real_process(abstract_receiver):
    receiver, address = abstract_receiver
    code = "from raspberry_pancake.sdnotify import Notifier; Notifier().stopping()"
    env = dict(os.environ, NOTIFY_SOCKET=address)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=str(ROOT), env=env)
    assert child.wait(timeout=60) == 0
    assert receiver.receive() == ("STOPPING=1", child.pid)


def test_without_notify_socket_nothing_happens(path_receiver):
    receiver, _ = path_receiver
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.ready("x")
    notifier.watchdog()
    notifier.stopping()
    notifier.close()
    assert receiver.receive(timeout=0.2) == (None, None)


def test_a_vanished_receiver_is_not_an_error(tmp_path):
    address = str(tmp_path / "gone.sock")
    Receiver(address).close()
    os.unlink(address)
    notifier = Notifier({"NOTIFY_SOCKET": address})
    notifier.ready()
    notifier.watchdog()
    notifier.close()


@pytest.mark.parametrize(
    "environ, interval",
    [
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout(path_receiver, environ, interval):
    _, address = path_receiver
    notifier = Notifier(dict(environ, NOTIFY_SOCKET=address))
    assert notifier.watchdog_interval == interval
    notifier.close()


# --- pancake.py under a pretend systemd ---------------------------------------------------


def http_answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def wait_for_withheld_pings(log_path, timeout: float = 60) -> None:
    """Until pancake.py has logged that it withholds the watchdog's pings.

    A test that makes a frame source stall and then listens for a quiet spell must
    start listening after this line, not after a fixed wait: on a loaded machine
    frames delivered just before the stall may reach the watchdog seconds later.
    """
    wait_until(
        lambda: b"not pinging the watchdog" in Path(log_path).read_bytes(),
        timeout,
        "pings withheld",
    )


@pytest.fixture
def launch_sim_pancake(abstract_receiver, tmp_path):
    """Factory: pancake.py with the sim camera, a notify socket, a 2 s watchdog and ``args``.

    Returns (process, receiver, port, log path); every process is killed at teardown.
    """
    script = ROOT / "pancake.py"
    if not script.exists():
        pytest.skip("pancake.py does not exist yet")
    helptext = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    if "sim" not in helptext:
        pytest.skip("pancake.py has no sim camera yet")
    receiver, address = abstract_receiver
    started = []

    def launch(*args):
        port = free_port()
        log = tmp_path / "pancake.log"
        env = dict(os.environ, NOTIFY_SOCKET=address, WATCHDOG_USEC="2000000")
        env.pop("WATCHDOG_PID", None)
        command = [sys.executable, str(script), "--camera", "sim", "--port", str(port)]
        command += ["--resolution", "320", "240", "--fps", "10", *args]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command, cwd=str(tmp_path), env=env, stdout=out, stderr=subprocess.STDOUT
            )
        started.append(proc)
        return proc, receiver, port, log

    yield launch
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture
def sim_pancake(launch_sim_pancake):
    """pancake.py with the sim camera, a notify socket and a 2 s watchdog."""
    return launch_sim_pancake()


def test_pancake_notifies_and_stops_pinging_when_frames_stop(sim_pancake):
    proc, receiver, port, log = sim_pancake

    seen = receiver.wait_for("READY=1", timeout=90)
    assert seen[-1][1] == proc.pid  # systemd's NotifyAccess=main needs the main process
    # READY comes after the port is listening, so a connection is accepted right away.
    socket.create_connection(("127.0.0.1", port), timeout=10).close()
    wait_until(lambda: http_answers(port), 60, "the live view answering")

    pings = receiver.wait_for("WATCHDOG=1", timeout=60, count=3)
    assert {pid for _, pid in pings} == {proc.pid}

    proc.send_signal(signal.SIGUSR1)  # freeze the sim camera: frames stop, process lives
    wait_until(lambda: b"frozen" in log.read_bytes(), 60, "the camera freezing")
    wait_for_withheld_pings(log)  # not a fixed wait: a loaded machine may take longer
    receiver.drain(0.5)  # a ping sent just before the line was written
    quiet = receiver.drain(4.0)
    assert "WATCHDOG=1" not in quiet, log.read_text()
    assert proc.poll() is None
    assert http_answers(port)

    proc.send_signal(signal.SIGUSR1)  # frames again: pings again
    receiver.wait_for("WATCHDOG=1", timeout=60)

    proc.send_signal(signal.SIGTERM)
    receiver.wait_for("STOPPING=1", timeout=60)
    assert proc.wait(timeout=60) == 0, log.read_text()


def notified(receiver, wanted, log, timeout, count=1):
    """``receiver.wait_for``, failing with pancake's log (say, of a start that failed)."""
    try:
        return receiver.wait_for(wanted, timeout, count)
    except AssertionError as e:
        raise AssertionError(f"{e}\npancake.py's log:\n{log.read_text()}") from None


def test_pancake_stops_pinging_when_the_h264_encoder_freezes_alone(launch_sim_pancake, tmp_path):
    """Picamera2 issue 1228: the encoder stops without raising while the camera runs on.

    SIGUSR2 makes the sim camera skip its H.264 output alone: it still captures
    and serves the live view, which kept the old watchdog pinging.
    """
    recordings = tmp_path / "h264"
    recordings.mkdir()
    proc, receiver, port, log = launch_sim_pancake("--record-continuous", str(recordings))
    notified(receiver, "READY=1", log, timeout=90)
    notified(receiver, "WATCHDOG=1", log, timeout=60, count=3)

    proc.send_signal(signal.SIGUSR2)
    wait_until(lambda: b"h264 output frozen" in log.read_bytes(), 60, "the encoder freezing")
    wait_for_withheld_pings(log)
    receiver.drain(0.5)  # a ping sent just before the line was written
    quiet = receiver.drain(4.0)
    assert "WATCHDOG=1" not in quiet, log.read_text()
    assert "the H.264 output (recording) has delivered nothing" in log.read_text()
    assert "the camera has captured no frame" not in log.read_text()  # it still captures
    assert proc.poll() is None and http_answers(port)

    proc.send_signal(signal.SIGUSR2)  # the encoder again: pings again
    notified(receiver, "WATCHDOG=1", log, timeout=60)
    assert b"pinging the watchdog again" in log.read_bytes()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()


def test_busy_detection_and_an_empty_live_view_do_not_stop_the_pings(launch_sim_pancake, tmp_path):
    """Outputs that ask for nothing (detection in a slow detect(), no viewer) are not waited for."""
    calls = tmp_path / "calls.log"
    customize = tmp_path / "slow.py"
    customize.write_text(
        "import threading\n"
        "def detect(rgb):\n"
        f"    with open({str(calls)!r}, 'a') as f:\n"
        "        f.write('call\\n')\n"
        "    threading.Event().wait(3.0)  # longer than the watchdog's 1 s\n"
        "    return False\n"
    )
    args = ["--detect", "image", "--customize", str(customize), "--detect-interval", "0.1"]
    proc, receiver, port, log = launch_sim_pancake(*args)
    notified(receiver, "READY=1", log, timeout=90)
    wait_until(lambda: calls.exists(), 60, "detect() being called")
    # two slow calls' worth of pings, one a second: none may be missing
    notified(receiver, "WATCHDOG=1", log, timeout=60, count=6)
    wait_until(lambda: calls.read_text().count("call") >= 3, 60, "three detect() calls")
    assert "not pinging" not in log.read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()
