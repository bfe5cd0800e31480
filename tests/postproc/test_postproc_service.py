"""What the shipped units promise postproc and pancake: a private socket, private
files (UMask=), secrets as credentials; and that the programs keep those modes."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

from tests.helpers import ROOT, wait_for_port
from tests.postproc.pp_helpers import make_h264, wait_until
from tests.test_systemd_units import UNITS, exec_words, one, parse_unit, verify

RUNTIME = "/run/raspberry-pancake"


@pytest.fixture(scope="module")
def units():
    return {n: parse_unit(UNITS / n) for n in ("pancake.service", "postproc.service")}


def test_the_socket_lives_in_postprocs_private_runtime_directory(units):
    postproc = units["postproc.service"]
    assert one(postproc, "Service", "RuntimeDirectory") == "raspberry-pancake"
    assert one(postproc, "Service", "RuntimeDirectoryMode") == "0700"
    (pp_words,) = exec_words(postproc)
    (cam_words,) = exec_words(units["pancake.service"])
    socket_path = pp_words[2]
    assert os.path.dirname(socket_path) == RUNTIME
    assert cam_words[cam_words.index("--emit") + 1] == socket_path
    # Only recordings from pancake's directory are taken.
    assert (
        pp_words[pp_words.index("--h264-dir") + 1]
        == cam_words[cam_words.index("--record-continuous") + 1]
    )


@pytest.mark.parametrize("name", ["pancake.service", "postproc.service", "pancake-cleanup.service"])
def test_units_keep_files_private(name):
    unit = parse_unit(UNITS / name)
    assert one(unit, "Service", "UMask") == "0027"


def test_secrets_come_as_credentials_never_on_the_command_line(tmp_path):
    text = (UNITS / "postproc.service").read_text()
    for credential in ("ftp-password", "telegram-token"):
        assert re.search(rf"(?m)^#LoadCredential={credential}:/etc/raspberry-pancake/", text)
        assert f"credential:{credential}" in text
    (words,) = exec_words(parse_unit(UNITS / "postproc.service"))
    assert "--upload-ftp" not in words and "--notify-telegram" not in words
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    # Uncommented, as the unit's comment asks, systemd accepts them.
    enabled = tmp_path / "postproc.service"
    enabled.write_text(
        text.replace("#LoadCredential=", "LoadCredential=")
        .replace("/home/pi/raspberry-pancake/.venv/bin/python", sys.executable)
        .replace("/home/pi/raspberry-pancake", ROOT)
        .replace("User=pi", "User=root")
        .replace("Group=pi", "Group=root")
    )
    assert verify([enabled]) == []


def umask_of(name: str) -> int:
    return int(one(parse_unit(UNITS / name), "Service", "UMask"), 8)


def loose_bits(path) -> int:
    """Mode bits beyond 0640 (group write, anything for others, execute)."""
    return stat.S_IMODE(os.lstat(path).st_mode) & ~0o640


def test_files_are_0640_or_tighter_under_the_units_umask(postproc, dirs, tmp_path):
    h264, mp4 = dirs
    log = tmp_path / "log"
    log.mkdir()
    pp = postproc(
        "--convert", str(mp4), "12", "--converter", "ffmpeg",
        umask=umask_of("postproc.service"),
    ).start()  # fmt: skip
    clip = make_h264(str(h264 / "20240102-0304.h264"), 12, 12)
    pp.send({"h264": clip})
    pp.wait_log("converted " + clip)
    assert pp.stop() == 0
    written = [mp4 / "20240102-0304.mp4", pp.log, pp.state]
    written += [p for p in (pp.state + "-journal",) if os.path.exists(p)]
    assert {str(p): oct(loose_bits(p)) for p in written} == dict.fromkeys(map(str, written), "0o0")

    # pancake's recordings, under pancake.service's umask.
    cam_dir = tmp_path / "cam"
    cam_dir.mkdir()
    from tests.helpers import free_port

    port = free_port()
    cam = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "pancake.py"), "--camera", "sim", "--port", str(port)]
        + ["--record-continuous", str(cam_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        umask=umask_of("pancake.service"),
    )
    try:
        wait_for_port(port, cam)
        wait_until(lambda: os.listdir(cam_dir), what="a recording")
    finally:
        cam.terminate()
        cam.wait(60)
    written = os.listdir(cam_dir)  # the recording and its .pts
    assert written and {loose_bits(cam_dir / name) for name in written} == {0}, written
