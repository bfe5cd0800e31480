"""Helpers shared by the whole suite: paths, free ports, running pancake.py and scripts."""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = os.path.join(os.path.dirname(ROOT), "shared", "testdata")
PI_H264 = os.path.join(TESTDATA, "raspivid-1080p-116frames.h264")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"pancake.py exited with {proc.returncode}: {out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


class Pancake:
    """A real pancake.py subprocess on a free port."""

    def __init__(self, *args: str, env=None, cwd=ROOT):
        self.port = free_port()
        cmd = [sys.executable, os.path.join(ROOT, "pancake.py"), "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*cmd, *args],
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for_port(self.port, self.proc)

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
        return self.proc.returncode, out


def run_cli(script: str, *args: str, input: str = "", timeout: float = 60, cwd=ROOT):
    """Run one of the project's scripts to completion; returns CompletedProcess."""
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def fake_clock_env(start: str) -> dict:
    """Environment that starts a child's wall clock at ``start`` (local time), running.

    libfaketime is preloaded directly: the ``faketime`` wrapper would stand between
    a test's SIGTERM and the child. Only the wall clock is shifted: libfaketime
    0.9.10 also fakes CLOCK_MONOTONIC as a date-sized value, and Python's timed
    waits (Event.wait, Thread.join) then sleep until the real clock catches up.
    Recording decisions come from frame times, which follow the wall clock.
    """
    for pattern in (
        "/usr/lib/*/faketime/libfaketime.so.1",
        "/usr/local/lib*/faketime/libfaketime.so.1",
    ):
        found = sorted(glob.glob(pattern))
        if found:
            return {
                "LD_PRELOAD": found[0],
                "FAKETIME": "@" + start,
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            }
    pytest.skip("needs libfaketime (apt install faketime)")


def count_frames(path: str) -> int:
    """Frames ffprobe decodes from a video file (raw H.264 or mp4)."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            path,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return int(out.stdout.strip())
