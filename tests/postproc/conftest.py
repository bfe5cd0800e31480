"""Fixtures for the post-processor tests: loopback servers and postproc processes."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.helpers import PI_H264
from tests.postproc.pp_helpers import BotApi, FtpServer, Postproc, SshServer


@pytest.fixture
def postproc(tmp_path):
    """Factory: ``postproc(*flags)`` makes a (not yet started) daemon; all stop at teardown."""
    made = []

    def make(*args, **kwargs) -> Postproc:
        p = Postproc(tmp_path, *args, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        if p.proc is not None and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


@pytest.fixture
def sshd(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the test sshd runs as root (as in CI): it needs /run/sshd and any user")
    server = SshServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def ftpd(tmp_path):
    server = FtpServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bot_api():
    api = BotApi()
    yield api
    api.close()


@pytest.fixture
def pi_h264():
    return PI_H264


@pytest.fixture
def base_args(tmp_path):
    """The least postproc.py takes: a unique socket name, --convert, --state."""
    mp4 = tmp_path / "mp4"
    mp4.mkdir()
    return ["sock-" + uuid.uuid4().hex, "--convert", str(mp4), "12", "--state", str(tmp_path / "s")]


@pytest.fixture
def dirs(tmp_path):
    """h264 and mp4 directories."""
    h264 = tmp_path / "h264"
    mp4 = tmp_path / "mp4"
    h264.mkdir()
    mp4.mkdir()
    return h264, mp4


@pytest.fixture
def tmpfs(tmp_path):
    """Factory: ``tmpfs(name, size)`` mounts a small tmpfs at tmp_path/name; all unmounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = []

    def mount(name: str, size: str):
        where = tmp_path / name
        where.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True
        )
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], check=False)
