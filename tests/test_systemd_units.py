"""The unit files in systemd/: the directives we promise, and systemd's own verdict."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "systemd"
INSTALL_DIR = "/home/pi/raspberry-pancake"
VENV_PYTHON = INSTALL_DIR + "/.venv/bin/python"
DAEMONS = ["pancake.service", "postproc.service"]
ALL_UNITS = DAEMONS + ["pancake-cleanup.service", "pancake-cleanup.timer"]


def parse_unit(path: Path) -> dict:
    """{section: {key: [values]}} with comments dropped and continuation lines joined.

    configparser cannot read unit files: keys repeat (ExecStart= of a oneshot) and a
    trailing backslash continues a line.
    """
    sections: dict = {}
    current = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not key=value"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}= appears {len(values)} times"
    return values[0]


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)\s*(s|sec|min)?", text)
    assert match, text
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


@pytest.fixture(scope="module")
def units():
    return {name: parse_unit(UNITS / name) for name in ALL_UNITS}


@pytest.mark.parametrize("name", DAEMONS)
def test_daemon_directives(units, name):
    unit = units[name]
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert seconds(one(unit, "Service", "RestartSec")) > 0
    assert seconds(one(unit, "Service", "WatchdogSec")) >= 10
    assert one(unit, "Service", "NoNewPrivileges") == "true"
    assert one(unit, "Service", "User") not in ("", "root", "0")
    assert one(unit, "Service", "ProtectSystem") == "strict"
    assert one(unit, "Service", "ProtectHome") == "read-only"
    assert one(unit, "Service", "PrivateTmp") == "true"
    assert one(unit, "Service", "WorkingDirectory") == INSTALL_DIR
    writable = " ".join(unit["Service"]["ReadWritePaths"]).split()
    assert writable and all(p.startswith(INSTALL_DIR + "/") for p in writable)
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_pancake_keeps_the_camera_reachable(units):
    service = units["pancake.service"]["Service"]
    assert "video" in one(units["pancake.service"], "Service", "SupplementaryGroups").split()
    # Each of these would hide or deny /dev/video*, /dev/dma_heap or /dev/vchiq.
    for key in ("PrivateDevices", "ProtectClock", "DeviceAllow", "DevicePolicy"):
        assert key not in service, key
    text = (UNITS / "pancake.service").read_text()
    assert "PrivateDevices=true" in text and "/dev/video" in text  # the reason, in a comment


def exec_words(unit: dict) -> list:
    return [shlex.split(line.lstrip("-")) for line in unit["Service"]["ExecStart"]]


def test_exec_lines(units):
    (pancake,) = exec_words(units["pancake.service"])
    (postproc,) = exec_words(units["postproc.service"])
    assert pancake[:2] == [VENV_PYTHON, "pancake.py"]
    assert postproc[:2] == [VENV_PYTHON, "postproc.py"]
    # The two daemons must meet on the same socket name.
    emit = pancake[pancake.index("--emit") + 1]
    assert emit == "/run/raspberry-pancake/ppp" and postproc[2] == emit
    convert = postproc.index("--convert")
    assert postproc[convert + 1 : convert + 3] == ["mp4", "12"]
    assert pancake[pancake.index("--fps") + 1] == "12"  # recording and conversion fps match
    for words in exec_words(units["pancake-cleanup.service"]):
        assert words[0] == VENV_PYTHON and (ROOT / words[1]).is_file()


def writable(unit: dict) -> set:
    return set(" ".join(unit["Service"]["ReadWritePaths"]).split())


def test_everything_written_is_writable(units):
    """ProtectSystem=strict makes all else read-only: each directory written is listed."""
    (pancake,) = exec_words(units["pancake.service"])
    wanted = {pancake[pancake.index("--record-continuous") + 1]}
    assert {f"{INSTALL_DIR}/{d}" for d in wanted} <= writable(units["pancake.service"])

    (postproc,) = exec_words(units["postproc.service"])
    wanted = {postproc[postproc.index("--convert") + 1]}
    wanted.add(os.path.dirname(postproc[postproc.index("--log") + 1]))
    assert {f"{INSTALL_DIR}/{d}" for d in wanted} <= writable(units["postproc.service"])
    # The work queue goes to $STATE_DIRECTORY, which systemd makes writable.
    assert "--state" not in postproc
    assert one(units["postproc.service"], "Service", "StateDirectory")

    cleanup = units["pancake-cleanup.service"]
    for words in exec_words(cleanup):
        dirs = [w for w in words[2:] if not w.startswith("-") and not w[0].isdigit()]
        assert dirs and {f"{INSTALL_DIR}/{d}" for d in dirs} <= writable(cleanup)


def flags_of(words: list) -> list:
    return [w for w in words if w.startswith("--")]


@pytest.mark.parametrize(
    "name, script", [("pancake.service", "pancake.py"), ("postproc.service", "postproc.py")]
)
def test_exec_flags_exist(units, name, script):
    if not (ROOT / script).exists():
        pytest.skip(f"{script} does not exist yet")
    helptext = subprocess.run(
        [sys.executable, str(ROOT / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    (words,) = exec_words(units[name])
    for flag in flags_of(words):
        assert re.search(rf"{re.escape(flag)}\b", helptext), f"{script} has no {flag}"


def test_cleanup_commands_run(units, tmp_path):
    """The cleanup unit's commands, with their own arguments, on an empty install."""
    (tmp_path / "h264").mkdir()
    (tmp_path / "mp4").mkdir()
    service = units["pancake-cleanup.service"]
    assert one(service, "Service", "Type") == "oneshot"
    assert one(service, "Service", "User") not in ("", "root", "0")
    assert one(service, "Service", "NoNewPrivileges") == "true"
    assert one(service, "Service", "WorkingDirectory") == INSTALL_DIR
    for words in exec_words(service):
        done = subprocess.run(
            [sys.executable, str(ROOT / words[1]), "--dry-run", *words[2:]],
            cwd=str(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
        # limit_free_space may fail to reach its target on a full disk, never on usage
        assert done.returncode in (0, 1) and not done.stderr, done.stderr


def test_timer(units):
    timer = units["pancake-cleanup.timer"]
    assert one(timer, "Timer", "Persistent") == "true"
    assert one(timer, "Install", "WantedBy") == "timers.target"
    assert "Unit" not in timer["Timer"]  # so it starts pancake-cleanup.service
    calendar = one(timer, "Timer", "OnCalendar")
    if shutil.which("systemd-analyze"):
        done = subprocess.run(
            ["systemd-analyze", "calendar", calendar], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr


def local_copies(tmp_path: Path) -> list:
    """Copies of the units that can be verified here: this checkout, this python, this user.

    ``systemd-analyze verify`` checks that each ExecStart binary exists.
    """
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    copies = []
    for name in ALL_UNITS:
        text = (UNITS / name).read_text()
        text = text.replace(VENV_PYTHON, sys.executable).replace(INSTALL_DIR, str(ROOT))
        text = re.sub(r"(?m)^User=.*$", f"User={user}", text)
        text = re.sub(r"(?m)^Group=.*$", f"Group={group}", text)
        copy = tmp_path / name
        copy.write_text(text)
        copies.append(copy)
    return copies


def verify(paths: list) -> list:
    """Problems ``systemd-analyze verify`` reports about these units (others' ignored)."""
    done = subprocess.run(
        ["systemd-analyze", "verify", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER=""),
    )
    names = [p.name for p in paths]
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if any(name in line for name in names)
    ]
    if done.returncode != 0 and not problems:
        problems.append(f"exit code {done.returncode}: {done.stderr.strip()}")
    return problems


needs_systemd_analyze = pytest.mark.skipif(
    not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed"
)


@needs_systemd_analyze
def test_systemd_analyze_verify(tmp_path):
    assert verify(local_copies(tmp_path)) == []


@needs_systemd_analyze
def test_systemd_analyze_verify_catches_mistakes(tmp_path):
    """The check above can fail: a misspelt key and a missing program are reported."""
    copies = local_copies(tmp_path)
    pancake = tmp_path / "pancake.service"
    pancake.write_text(pancake.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    postproc = tmp_path / "postproc.service"
    postproc.write_text(postproc.read_text().replace(sys.executable, "/nonexistent/python"))
    problems = verify(copies)
    assert any("WatchdogSecs" in line for line in problems), problems
    assert any("/nonexistent/python" in line for line in problems), problems
