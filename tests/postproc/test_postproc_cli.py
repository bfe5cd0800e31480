"""Start-up checks: each mistake is one line on stderr and a non-zero exit."""

from __future__ import annotations

import os
import socket

import pytest

from raspberry_pancake.postproc.cli import default_state_path
from tests.helpers import run_cli


def run_postproc(*args, timeout=60, env=None):
    return run_cli("postproc.py", *args, timeout=timeout, env=env)


SCP = ["--upload-scp", "pi@127.0.0.1", "22", "bak"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (SCP, "need a trigger"),
        (["--upload-ftp", "h", "21", "u", "p", "bak"], "need a trigger"),
        (["--upload-after-convert", "1"], "need a destination"),
        (["--upload-minutes", "0", "30"], "need a destination"),
        (["--upload-minutes", "5", "60", *SCP], "'60' is not a minute"),
        (["--upload-minutes", "5", "x", *SCP], "'x' is not a minute"),
        (["--upload-minutes", "5", "10", "5", *SCP], "minute 5 is given more than once"),
        (["--upload-after-convert", "0", *SCP], "must be greater than zero"),
        (["--upload-after-convert", "1", "--upload-scp", "pi@h", "99999", "b"], "port '99999'"),
        (["--upload-after-convert", "1", "--upload-ftp", "h", "x", "u", "p", "b"], "port 'x'"),
        (["--upload-after-convert", "1", *SCP, *SCP], "destination given twice"),
        (["--upload-after-convert", "1", *SCP, "--ssh-config", "/nonexistent"], "--ssh-config"),
        (["--upload-queue-size", "0"], "must be greater than zero"),
        (["--notify-queue-size", "-1"], "must be greater than zero"),
        (["--converter", "gstreamer"], "invalid choice"),
        (["--telegram-api-url", "ftp://x"], "not an http(s) URL"),
        (["--log", "/nonexistent/dir/pp.log"], "--log: directory"),
    ],
)
def test_bad_flags(base_args, extra, message):
    result = run_postproc(*base_args, *extra)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["s", "--convert", "/nonexistent/mp4", "12"], "directory '/nonexistent/mp4' does not"),
        (["s", "--convert", "/tmp", "zero"], "fps 'zero' is not a number"),
        (["s", "--convert", "/tmp", "0"], "greater than zero"),
        (["s"], "--convert"),
        (["s", "--convert", "/tmp", "12", "--state", "/nonexistent/s.db"], "--state: directory"),
    ],
)
def test_bad_convert_and_state(args, message):
    result = run_postproc(*args)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr


def test_socket_name_in_use(base_args):
    name = base_args[0]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as holder:
        holder.bind("\0" + name)
        result = run_postproc(*base_args)
    assert result.returncode == 4
    assert result.stderr.strip().splitlines() == [
        f"postproc.py: error: socket name {name!r} is in use (is another post-processor running?)"
    ]


def test_unusable_state_file(base_args, tmp_path):
    bad = tmp_path / "not-sqlite"
    bad.write_bytes(b"garbage" * 1000)
    args = base_args[:-1] + [str(bad)]
    result = run_postproc(*args)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--state: cannot use" in result.stderr


def test_help_lists_every_flag():
    result = run_postproc("--help")
    assert result.returncode == 0
    for flag in (
        "socket_name", "--convert mp4_dir fps", "--upload-after-convert N",
        "--upload-minutes {0..59} [{0..59} ...]", "--upload-scp user@host port remote_dir",
        "--upload-ftp host port user password remote_dir", "--upload-queue-size 8",
        "--notify-telegram bot_token chat_id", "--notify-queue-size 8", "--log path",
        "--converter {auto,mp4box,ffmpeg,builtin}", "--ssh-config FILE",
        "--telegram-api-url URL", "--state FILE",
    ):  # fmt: skip
        assert flag in result.stdout, flag


def test_default_state_path():
    env = {"STATE_DIRECTORY": "/var/lib/pancake"}
    assert default_state_path("ppp", env) == "/var/lib/pancake/postproc-ppp.sqlite"
    env = {"XDG_STATE_HOME": "/home/pi/.state"}
    assert default_state_path("a b", env) == "/home/pi/.state/raspberry-pancake/postproc-a_b.sqlite"
    # A socket path counts by its name: the shipped units keep the state file of "ppp".
    env = {"STATE_DIRECTORY": "/var/lib/pancake"}
    path = default_state_path("/run/raspberry-pancake/ppp", env)
    assert path == "/var/lib/pancake/postproc-ppp.sqlite"


def test_log_file_rotates_at_midnight_and_keeps_33_days(tmp_path):
    from raspberry_pancake.postproc.cli import _log_handler

    handler = _log_handler(str(tmp_path / "postproc.log"))
    try:
        assert handler.when == "MIDNIGHT" and handler.backupCount == 33
    finally:
        handler.close()
    assert _log_handler(None) is None  # stdout


def test_default_state_directory_that_cannot_be_made(base_args, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = {**os.environ, "STATE_DIRECTORY": str(blocker / "sub")}
    args = base_args[:-2]  # no --state: use the default
    result = run_postproc(*args, env=env)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "use --state FILE" in result.stderr
