"""Helpers shared by the whole suite: paths, free ports, running pancake.py and scripts,
receiving what it emits, and reading video files with ffprobe."""

from __future__ import annotations

import calendar
import contextlib
import glob
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from typing import List, Optional, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: files the tests read, kept in the repository (tests/data/README.md says what and whence)
TESTDATA = os.path.join(ROOT, "tests", "data")
#: raspivid's own output from a real Pi camera
PI_H264 = os.path.join(TESTDATA, "raspivid-1080p-116frames.h264")
#: stand-ins for the Pi camera libraries (picamera, picamera2, libcamera)
FAKES = os.path.join(ROOT, "tests", "fakes")


def free_port() -> int:
    """A port free on every address, as pancake.py binds it (a port free on 127.0.0.1
    alone may still be held by a connection from another loopback address)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Wait until ``proc`` (the server) listens on ``port``; fail at once if it exits.

    Something else listening there is not enough: another test's server that took
    the port first answers too, while ``proc`` fails to bind it.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"{proc.args[:2]} exited with {proc.returncode}: {out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            time.sleep(0.1)
            continue
        if listens(proc.pid, port):
            return
        time.sleep(0.1)
    raise AssertionError(f"{proc.args[:2]} does not listen on port {port} after {timeout} s")


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid``, or a child of it, holds a listening TCP socket on ``port``."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()  # sl local_address rem_address st ... inode
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    sockets.add(f"socket:[{fields[9]}]")
    pids = [pid]
    while pids:
        current = pids.pop()
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{current}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{current}/fd/{fd}") in sockets:
                        return True
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    pids += [int(child) for child in f.read().split()]
    return False


class Pancake:
    """A real pancake.py subprocess on a free port."""

    def __init__(
        self, *args: str, env=None, cwd=ROOT, preexec_fn=None, log_path=None, program=None
    ):
        """``log_path``: the log goes to that file, never filling a pipe (long or noisy runs).
        ``program``: the command to start instead of this checkout's pancake.py."""
        self.log_path = log_path
        program = program or [sys.executable, os.path.join(ROOT, "pancake.py")]
        # Another process (the other CI run shares the machine) may take the free port
        # between free_port() and pancake's own bind: pancake then exits, saying so,
        # and is started again on another port.
        for attempt in range(3):
            self.port = free_port()
            cmd = [*program, "--port", str(self.port)]
            out = open(log_path, "w") if log_path else subprocess.PIPE
            self.proc = subprocess.Popen(
                [*cmd, *args],
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                preexec_fn=preexec_fn,  # e.g. resource limits or a cgroup, set in the child
            )
            if log_path:
                out.close()
            try:
                wait_for_port(self.port, self.proc)
                return
            except AssertionError as e:
                said = str(e) + (open(log_path, errors="replace").read() if log_path else "")
                if attempt == 2 or f"port {self.port} is already in use" not in said:
                    raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 30.0) -> tuple:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        if self.log_path:
            with open(self.log_path, errors="replace") as f:
                out = f.read()
        return self.proc.returncode, out


def run_cli(script: str, *args: str, input: str = "", timeout: float = 60, cwd=ROOT, env=None):
    """Run one of the project's scripts to completion; returns CompletedProcess.

    ``env`` replaces the whole environment (None: this process's own).
    """
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def libfaketime() -> str:
    """Path of the libfaketime library to preload; skips the test where it is missing.

    The thread-safe build (libfaketimeMT, in the same package) comes first: with
    several threads reading the clock, the plain build of 0.9.10 now and then
    returns the real time, or restarts a start-at time (data races upstream fixed
    later, wolfcw/libfaketime#488 and #547); our children read it from a few threads.
    """
    for pattern in (
        "/usr/lib/*/faketime/libfaketimeMT.so.1",
        "/usr/local/lib*/faketime/libfaketimeMT.so.1",
        "/usr/lib/*/faketime/libfaketime.so.1",
        "/usr/local/lib*/faketime/libfaketime.so.1",
    ):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    pytest.skip("needs libfaketime (apt install faketime)")


def fake_clock_env(start: str) -> dict:
    """Environment that starts a child's wall clock at ``start`` (local time), running.

    libfaketime is preloaded directly: the ``faketime`` wrapper would stand between
    a test's SIGTERM and the child. Only the wall clock is shifted: libfaketime
    0.9.10 also fakes CLOCK_MONOTONIC as a date-sized value, and Python's timed
    waits (Event.wait, Thread.join) then sleep until the real clock catches up.
    Durations come from frames' monotonic capture times, names from the wall clock.
    """
    return {
        "LD_PRELOAD": libfaketime(),
        "FAKETIME": "@" + start,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


#: A local start time for a child's clock (``fake_clock_env``) thirteen minutes before
#: the next quarter hour and far from midnight. Continuous recording splits its file
#: at :00, :15, :30 and :45 of the wall clock, and a test on the real clock that
#: expects one file, one name or a count of files fails whenever CI happens to run it
#: across such a mark; from here the child's clock runs on in real time, so its
#: recording stays one file however slowly a loaded machine runs the test.
AWAY_FROM_A_QUARTER_HOUR = "2020-06-23 17:02:00"


def clock_away_from_a_quarter_hour() -> dict:
    """``fake_clock_env`` at ``AWAY_FROM_A_QUARTER_HOUR``: one continuous file, whenever run."""
    return fake_clock_env(AWAY_FROM_A_QUARTER_HOUR)


class SteppableClock:
    """A child's wall clock that the test sets while the child runs, as NTP would.

    libfaketime reads ``FAKETIME_TIMESTAMP_FILE`` at every clock call
    (``FAKETIME_NO_CACHE=1``). The file holds an offset from the real clock, so a
    new time written there makes the child's clock read that time at once and run
    on from it, and ``step`` moves it by an exact amount whatever its time. Times
    are UTC, and the child runs with ``TZ=UTC``. The monotonic clock is left alone. Give
    ``env`` to the child (it must not also have ``FAKETIME``, which would win).
    """

    def __init__(self, directory, start: str):
        self.path = os.path.join(str(directory), f"faketime-{uuid.uuid4().hex}.rc")
        self.set(start)
        self.env = {
            "LD_PRELOAD": libfaketime(),
            "FAKETIME_TIMESTAMP_FILE": self.path,
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "TZ": "UTC",
        }

    def set(self, when: str) -> None:
        """Set the child's clock to ``when`` (UTC, ``YYYY-mm-dd HH:MM:SS``), now."""
        self._write(calendar.timegm(time.strptime(when, "%Y-%m-%d %H:%M:%S")) - time.time())

    def step(self, seconds: float) -> None:
        """Move the child's clock by exactly ``seconds``, whenever it is now."""
        self._write(self._offset + seconds)

    def _write(self, offset: float) -> None:
        self._offset = offset
        temporary = self.path + ".new"
        with open(temporary, "w") as f:
            f.write(f"{offset:+.6f}\n")
        os.replace(temporary, self.path)  # never a half-written file for the child to read


class ClockBeforeASplit(SteppableClock):
    """A child's clock whose recording reaches a quarter hour (17:15) seconds after it began.

    A clock simply started a few seconds before 17:15 races the child's start-up: on
    a loaded machine importing and opening the camera can take longer than those
    seconds, and the first file is then named for 17:15 and lasts a quarter hour.
    This clock starts at 17:14:00 (``utc_minute``, in UTC: give the child another
    ``TZ`` to split on that zone's quarter hours) and ``wait_and_set`` sets it to
    seconds before the split once ``first_file`` (the file named for that minute)
    holds a frame. Both times are in the same minute: the file keeps its name.
    """

    def __init__(self, workdir, first_file, utc_minute: str = "2020-06-23 17:14"):
        super().__init__(workdir, utc_minute + ":00")
        self.first_file = str(first_file)
        self.minute = utc_minute

    def wait_and_set(self, seconds_left: int = 5, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not (os.path.exists(self.first_file) and os.path.getsize(self.first_file) > 0):
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing recorded in {self.first_file} after {timeout} s")
            threading.Event().wait(0.1)
        self.set(f"{self.minute}:{60 - seconds_left:02d}")


def stop(p: Pancake, clean_log: bool = False) -> str:
    """SIGTERM, then the exit code must be 0 (with ``clean_log``, no traceback either).

    Returns the log.
    """
    rc, out = p.stop(timeout=60)
    assert rc == 0, out
    if clean_log:
        assert "Traceback" not in out, out
    return out


def with_timestamp_files(*h264_names: str) -> List[str]:
    """What a directory holds after pancake recorded these files: each with its .pts."""
    names = [os.path.basename(n) for n in h264_names]
    return sorted(names + [n[: -len(".h264")] + ".pts" for n in names])


def frames_received(log: str) -> int:
    """The frame count pancake.py logs when its recording stops."""
    return int(re.search(r"recording received (\d+) H.264 frames", log).group(1))


class Receiver:
    """A post-processor stand-in: collects the JSON datagrams sent to a unique abstract name.

    The test's thread starts, waits and stops it; a daemon thread of its own reads.
    """

    def __init__(self, name: Optional[str] = None):
        self.name = name or f"rp-test-{uuid.uuid4().hex}"
        self.messages: List[dict] = []
        self._cond = threading.Condition()  # guards messages
        self._sock = None

    def start(self) -> Receiver:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + self.name)
        threading.Thread(target=self._run, args=(self._sock,), daemon=True).start()
        return self

    def _run(self, sock) -> None:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return  # shut down
            with self._cond:
                self.messages.append(json.loads(data))
                self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 90.0) -> List[dict]:
        """All messages once there are at least ``count``."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(f"gave up waiting; received {self.messages}")
            return list(self.messages)

    def stop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the reading thread
            except OSError:
                pass
            self._sock.close()


def scripted_customize(tmp_path, windows, name: str = "scripted.py", rgb_size=None):
    """A customize file whose detect() is true in ``windows`` (seconds after import).

    ``windows`` holds (start, end) pairs; an end of None means for ever. It writes
    each change of its answer, with the time, to a log file (read with ``changes``).
    With ``rgb_size`` it is detect(rgb) and also logs "size N" for a picture of
    another length; without, detect(). Returns (path of the file, path of the log).
    """
    log = tmp_path / (name + ".log")
    path = tmp_path / name
    path.write_text(
        textwrap.dedent(f"""\
        import time

        T0 = time.time()
        WINDOWS = {windows!r}
        RGB_SIZE = {rgb_size!r}
        _last = [None]


        def _note(line):
            with open({str(log)!r}, "a") as f:
                f.write(line + "\\n")


        def _answer():
            t = time.time() - T0
            state = any(a <= t and (b is None or t < b) for a, b in WINDOWS)
            if state != _last[0]:
                _last[0] = state
                _note("%r %s" % (time.time(), state))
            return state


        if RGB_SIZE is None:

            def detect():
                return _answer()

        else:

            def detect(rgb):
                if len(rgb) != RGB_SIZE:
                    _note("size %d" % len(rgb))
                return _answer()
        """)
    )
    return str(path), log


def changes(log_path) -> List[Tuple[float, bool]]:
    """(time, state) of every change a ``scripted_customize`` detector made."""
    out = []
    if not log_path.exists():
        return out  # detect() has not run yet (the process may still be starting)
    for line in log_path.read_text().splitlines():
        when, state = line.split()
        out.append((float(when), state == "True"))
    return out


def ffprobe(path, *args: str, of: str = "csv=p=0") -> str:
    """What ffprobe prints about the first video stream of ``path`` with ``args``."""
    return subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", *args, "-of", of, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()


def decode_errors(path) -> str:
    """What ffprobe complains about while decoding every frame of ``path`` (empty: clean).

    ffprobe, not ``ffmpeg -f null``: ffmpeg re-times the frames for its output at the
    stream's guessed rate, and then calls two frames of a variable-rate mp4 that lie
    closer than one nominal interval "non monotonically increasing": a complaint
    about its own output, not about the file.
    """
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    status = "" if result.returncode == 0 else f" (exit {result.returncode})"
    return result.stderr.strip() + status


def count_frames(path) -> int:
    """Frames ffprobe decodes from a video file (raw H.264 or mp4)."""
    return int(ffprobe(path, "-count_frames", "-show_entries", "stream=nb_read_frames"))


def frame_size(path) -> Tuple[int, int]:
    width, height = ffprobe(path, "-show_entries", "stream=width,height").split(",")
    return int(width), int(height)


def starts_with_keyframe(path) -> bool:
    first = ffprobe(path, "-read_intervals", "%+#1", "-show_entries", "frame=key_frame")
    return first.splitlines()[0].startswith("1")
