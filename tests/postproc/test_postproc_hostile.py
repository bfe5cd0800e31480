"""Hostile input to a real postproc: other local users, crafted paths and names, secrets.

Another user is played by ``nobody`` (``setpriv``), servers are the suite's real
sshd and pyftpdlib on loopback, and pancake.py is the real program.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.helpers import clock_away_from_a_quarter_hour, run_cli
from tests.postproc.pp_helpers import FtpServer, make_h264, wait_until

NOBODY = 65534
TOKEN = "123456:token-from-a-credential"


@pytest.fixture
def open_base():
    """A directory every user may traverse (pytest's tmp_path is closed to nobody)."""
    base = Path(tempfile.mkdtemp(prefix="pp-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def as_nobody(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run Python ``code`` as the user nobody; its last stdout line is JSON."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to act as another user")
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        + [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


SQUATTER = """
    import errno, json, os, socket, sys
    path = sys.argv[1]
    tried = {}
    for what in ("send", "bind", "unlink", "bind-beside"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            if what == "send":
                s.sendto(b'{"detection": true}', path)
            elif what == "bind":
                s.bind(path)
            elif what == "unlink":
                os.unlink(path)
            else:
                s.bind(path + "-mine")
            tried[what] = "done"
        except OSError as e:
            tried[what] = errno.errorcode[e.errno]
        finally:
            s.close()
    print(json.dumps(tried))
"""


def test_socket_file_cannot_be_taken_over_or_written_by_another_user(postproc, open_base, dirs):
    h264, mp4 = dirs
    path = str(open_base / "run" / "ppp")
    pp = postproc("--convert", str(mp4), "12", "--converter", "builtin", name=path).start()
    run_dir = open_base / "run"
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    done = as_nobody(SQUATTER, path)
    assert done.returncode == 0, done.stderr
    tried = json.loads(done.stdout.splitlines()[-1])
    assert tried == {
        "send": "EACCES",
        "bind": "EACCES",
        "unlink": "EACCES",
        "bind-beside": "EACCES",
    }
    clip = make_h264(str(h264 / "20240102-0304.h264"), 12, 12)
    pp.send({"h264": clip})
    pp.wait_log("converted " + clip)
    assert "Detection changed" not in pp.log_text()
    assert pp.stop() == 0
    assert not os.path.exists(path)  # removed at the stop


def test_abstract_name_can_be_squatted_which_the_log_says(postproc, dirs):
    """The original project's abstract name stays, with its risk stated."""
    name = f"pp-squat-{uuid.uuid4().hex}"
    holder = subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable]
        + ["-c", "import socket,sys,time; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM);"
           "s.bind('\\0'+sys.argv[1]); print('bound', flush=True); time.sleep(120)", name],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "bound"
        result = run_cli("postproc.py", name, "--convert", str(dirs[1]), "12")
        assert result.returncode == 4
        assert "is in use" in result.stderr
    finally:
        holder.kill()
        holder.wait()
    pp = postproc("--convert", str(dirs[1]), "12", name=name).start()
    assert "any local user can take it" in pp.log_text()
    assert pp.stop() == 0


def test_socket_directory_made_by_another_user_is_refused(open_base, dirs):
    squatted = open_base / "run"
    squatted.mkdir(mode=0o777)
    os.chmod(squatted, 0o777)
    os.chown(squatted, NOBODY, NOBODY)
    result = run_cli("postproc.py", str(squatted / "ppp"), "--convert", str(dirs[1]), "12")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"belongs to uid {NOBODY}" in lines[0], result.stderr
    # Our own directory, but open to others: refused too.
    mine = open_base / "mine"
    mine.mkdir()
    os.chmod(mine, 0o755)
    result = run_cli("postproc.py", str(mine / "ppp"), "--convert", str(dirs[1]), "12")
    assert result.returncode == 2 and "chmod 700" in result.stderr
    # ... and under a directory another user could rename things in.
    deep = squatted / "deeper"
    os.mkdir(deep, 0o700)
    result = run_cli("postproc.py", str(deep / "ppp"), "--convert", str(dirs[1]), "12")
    assert result.returncode == 2 and "another user" in result.stderr


def test_stale_socket_file_after_kill9_and_a_live_one(postproc, open_base, dirs):
    path = str(open_base / "run" / "ppp")
    pp = postproc("--convert", str(dirs[1]), "12", name=path).start()
    second = run_cli("postproc.py", path, "--convert", str(dirs[1]), "12")
    assert second.returncode == 4 and "is in use" in second.stderr
    pp.kill9()
    assert os.path.exists(path)  # left by the killed process
    pp.start()  # takes it over
    assert pp.stop() == 0


def test_pancake_emits_to_a_socket_file(pancake, postproc, open_base, tmp_path):
    h264, mp4 = tmp_path / "h264", tmp_path / "mp4"
    h264.mkdir()
    mp4.mkdir()
    path = str(open_base / "run" / "ppp")
    pp = postproc(
        "--convert", str(mp4), "12", "--converter", "builtin", "--h264-dir", str(h264), name=path
    ).start()  # fmt: skip
    cam = pancake(
        "--camera", "sim", "--fps", "12", "--record-continuous", str(h264), "--emit", path,
        # the one .h264 below: on the real clock a quarter hour could split it
        env=clock_away_from_a_quarter_hour(),
    )  # fmt: skip
    wait_until(lambda: os.listdir(h264), what="a recording")
    code, out = cam.stop()
    assert code == 0, out
    (name,) = [n for n in os.listdir(h264) if n.endswith(".h264")]  # and its .pts
    pp.wait_log("converted " + str(h264 / name), timeout=120)
    assert os.path.exists(mp4 / name.replace(".h264", ".mp4"))
    assert pp.stop() == 0


def test_only_recordings_are_accepted_and_only_once(postproc, dirs, tmp_path):
    h264, mp4 = dirs
    other = tmp_path / "elsewhere"
    other.mkdir()
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret:19000:0:99999:7:::\n")
    (h264 / "20240102-0301.h264").symlink_to(secret)
    (tmp_path / "h264-link").symlink_to(h264, target_is_directory=True)
    good = make_h264(str(h264 / "20240102-0304.h264"), 12, 12)
    shutil.copy(good, other / "20240102-0305.h264")
    shutil.copy(good, h264 / "clip.h264")
    pp = postproc(
        "--convert", str(mp4), "12", "--converter", "builtin", "--h264-dir", str(h264)
    ).start()  # fmt: skip
    refused = {
        str(h264 / "20240102-0301.h264"): "is a symbolic link",
        str(tmp_path / "h264-link" / "20240102-0304.h264"): "is a symbolic link",
        f"{h264}/../h264/20240102-0304.h264": "'..'",
        str(other / "20240102-0305.h264"): "not in a --h264-dir",
        str(h264 / "clip.h264"): "not a recording's name",
    }
    for i, (path, reason) in enumerate(refused.items()):
        pp.send({"h264": path})
        log = pp.wait_log("dropped a message", count=i + 1)
        assert reason in log.splitlines()[-1], log
    pp.send({"h264": good})
    pp.wait_log("converted " + good)
    assert pp.stop() == 0
    log = pp.log_text()
    assert log.count("accepted ") == 1
    assert sorted(os.listdir(mp4)) == ["20240102-0304.mp4"]
    assert "root:" not in log


def test_five_thousand_identical_messages_make_one_conversion(postproc, dirs):
    h264, mp4 = dirs
    good = make_h264(str(h264 / "20240102-0304.h264"), 12, 12)
    pp = postproc("--convert", str(mp4), "12", "--converter", "builtin").start()
    data = json.dumps({"h264": good}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        for _ in range(5000):
            s.sendto(data, pp.address)
    pp.send({"detection": True})  # after the 5,000 in the socket's order
    pp.wait_log("Detection changed to True")
    pp.wait_log("converted " + good)
    assert pp.stop() == 0
    log = pp.log_text()
    assert (log.count("accepted "), log.count("converted ")) == (1, 1)
    pp.start()  # nothing else was queued
    assert "resuming" not in pp.new_log()
    assert pp.stop() == 0
    assert sorted(os.listdir(mp4)) == ["20240102-0304.mp4"]


def test_crlf_in_a_name_never_reaches_the_ftp_server(postproc, dirs, ftpd):
    """A name with CR LF would make ncftpput send a command of the sender's choice."""
    h264, mp4 = dirs
    victim = Path(ftpd.remote) / "victim.txt"
    victim.write_text("keep me")
    name = "x\r\nDELE victim.txt\r\nNOOP 20240102-0304.h264"
    make_h264(str(h264 / name), 12, 12)
    pp = postproc(
        "--convert", str(mp4), "12", "--converter", "builtin", "--upload-after-convert", "1",
        *ftpd.ftp_flag("."),
    ).start()  # fmt: skip
    pp.send({"h264": str(h264 / name)})
    clip = make_h264(str(h264 / "20240102-0305.h264"), 12, 12)
    pp.send({"h264": clip})
    wait_until(lambda: " upload of " in pp.new_log() or "uploaded " in pp.new_log())
    assert victim.read_text() == "keep me"
    pp.wait_log("uploaded 20240102-0305.mp4")
    assert "control character" in pp.new_log()
    assert victim.read_text() == "keep me"
    assert pp.stop() == 0


def legacy_scp(tmp_path) -> str:
    """A PATH directory whose scp always speaks the original protocol, as on Buster and
    Bullseye (OpenSSH before 9.0): the server's shell reads the target path."""
    bin_dir = tmp_path / "legacy-bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "scp"
    wrapper.write_text('#!/bin/sh\nexec /usr/bin/scp -O "$@"\n')
    wrapper.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def test_shell_syntax_in_remote_dir_is_a_name_for_legacy_scp(postproc, dirs, sshd, tmp_path):
    h264, mp4 = dirs
    mark = tmp_path / "pwned"
    injecting = os.path.join(sshd.remote, f"cam $(touch {mark}) `touch {mark}`")
    quoted = os.path.join(sshd.remote, 'it\'s "quoted" & spaced; *')
    pp = postproc(
        "--convert", str(mp4), "12", "--converter", "builtin", "--upload-after-convert", "1",
        *sshd.scp_flag(injecting), *sshd.scp_flag(quoted), "--ssh-config", sshd.client_config,
        env={"PATH": legacy_scp(tmp_path)},
    ).start()  # fmt: skip
    clip = make_h264(str(h264 / "20240102-0304.h264"), 12, 12)
    pp.send({"h264": clip})
    wait_until(lambda: pp.new_log().count(" upload of ") + pp.new_log().count("uploaded ") >= 2)
    assert not mark.exists()
    pp.wait_log("uploaded 20240102-0304.mp4", count=2, timeout=120)
    assert pp.stop() == 0
    assert not mark.exists()
    for remote_dir in (injecting, quoted):
        landed = Path(remote_dir) / "2024/01/02/20240102-0304.mp4"
        assert landed.read_bytes() == (mp4 / "20240102-0304.mp4").read_bytes()


def secret_file(tmp_path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / f"secret-{uuid.uuid4().hex[:6]}"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def test_secrets_from_a_file_and_a_credential_stay_off_command_lines(
    postproc, dirs, ftpd, bot_api, tmp_path
):
    h264, mp4 = dirs
    password = secret_file(tmp_path, FtpServer.password)
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "telegram-token").write_text(TOKEN + "\n")
    (credentials / "telegram-token").chmod(0o400)
    pp = postproc(
        "--convert", str(mp4), "12", "--converter", "builtin", "--upload-after-convert", "1",
        "--upload-ftp", "127.0.0.1", str(ftpd.port), ftpd.user, f"file:{password}", "cam",
        "--notify-telegram", "credential:telegram-token", "42",
        "--telegram-api-url", bot_api.url,
        env={"CREDENTIALS_DIRECTORY": str(credentials)},
    ).start()  # fmt: skip
    clip = make_h264(str(h264 / "20240102-0304.h264"), 12, 12)
    pp.send({"h264": clip, "detection": True})
    pp.wait_log("uploaded 20240102-0304.mp4")
    pp.wait_log("notified telegram chat 42")
    assert [r["token"] for r in bot_api.of("sendVideo")] == [TOKEN]
    assert os.path.exists(os.path.join(ftpd.remote, "cam/2024/01/02/20240102-0304.mp4"))
    cmdline = Path(f"/proc/{pp.proc.pid}/cmdline").read_bytes().decode()
    assert FtpServer.password not in cmdline and TOKEN not in cmdline
    log = pp.log_text()
    assert FtpServer.password not in log and TOKEN not in log
    assert pp.stop() == 0


@pytest.mark.parametrize(
    "flag, message",
    [
        ("file", "chmod 600"),
        ("missing", "cannot read"),
        ("credential", "needs a systemd credential"),
        ("empty", "the secret is empty"),
    ],
)
def test_bad_secrets_are_one_line(dirs, tmp_path, flag, message):
    value = {
        "file": f"file:{secret_file(tmp_path, 'x', 0o644)}",
        "missing": f"file:{tmp_path}/nonexistent",
        "credential": "credential:ftp-password",
        "empty": f"file:{secret_file(tmp_path, '')}",
    }[flag]
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    result = run_cli(
        "postproc.py", f"pp-{uuid.uuid4().hex}", "--convert", str(dirs[1]), "12",
        "--state", str(tmp_path / "s"), "--upload-minutes", "0",
        "--upload-ftp", "127.0.0.1", "21", "u", value, "cam", env=env,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_kill9_during_an_ftp_upload_leaves_no_login_file(postproc, dirs, tmp_path, request):
    h264, mp4 = dirs
    slow = FtpServer(tmp_path, read_limit=20000)
    slow.start()
    request.addfinalizer(slow.stop)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    pp = postproc(
        "--convert", str(mp4), "12", "--converter", "builtin", "--upload-after-convert", "1",
        *slow.ftp_flag("cam"), env={"TMPDIR": str(tmpdir)},
    ).start()  # fmt: skip
    pp.send({"h264": make_h264(str(h264 / "20240102-0304.h264"), 36, 12, (640, 360))})
    found = {}

    def ncftpput_started():
        for pid in os.listdir("/proc"):  # only the children of this test's postproc
            try:
                parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if parent == pp.proc.pid and argv[0] == b"ncftpput":
                    login = argv[argv.index(b"-f") + 1].decode()
                    found["argv"], found["pid"] = argv, pid
                    found["login"] = os.readlink(f"/proc/{pid}/fd/{login.rsplit('/', 1)[1]}")
                    return True
            except (OSError, ValueError, IndexError):
                continue
        return False

    def gone(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    wait_until(ncftpput_started, timeout=120, what="ncftpput uploading")
    assert found["login"].startswith("/memfd:")  # in memory only, never a file
    assert FtpServer.password.encode() not in b" ".join(found["argv"])
    pp.proc.send_signal(signal.SIGKILL)
    pp.proc.wait()
    wait_until(lambda: gone(found["pid"]), what="ncftpput gone with postproc")
    assert os.listdir(tmpdir) == []
