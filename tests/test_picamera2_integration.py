"""``pancake.py --camera picamera2`` on the real Picamera2 0.3.38, on a fake Pi 4 and a fake Pi 5.

Each test starts real pancake.py processes that are a Pi of one platform before
anything imports Picamera2 (tests/fakes/pi_site, tests/fakes/fake_pi) and checks
what only this backend has: one-line errors for bad starts, systemd's watchdog
when the H.264 encoder freezes alone; and the clock-step scenarios every camera
runs (tests/clock_steps.py). The checks every camera has (live view,
quarter-hour split, edge clips) run on both platforms in
tests/test_pi_backends_integration.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests import clock_steps
from tests.helpers import (
    ROOT,
    Pancake,
    free_port,
)
from tests.pi_platforms import (
    NEEDS_PYTHON_310,
    PICAMERA2_RUNS_HERE,
    PISP_ENCODES_HERE,
    PISP_NEEDS_NEWER_PYAV,
    PLATFORMS,
    child_env,
)
from tests.test_sdnotify import (
    abstract_receiver,  # noqa: F401 - a fixture
    wait_for_withheld_pings,
)

pytestmark = [
    pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe"),
    pytest.mark.skipif(not PICAMERA2_RUNS_HERE, reason=NEEDS_PYTHON_310),
]

FPS = 12


@pytest.fixture(params=PLATFORMS)
def platform(request):
    if request.param == "pisp" and not PISP_ENCODES_HERE:
        pytest.skip(PISP_NEEDS_NEWER_PYAV)
    return request.param


@pytest.fixture
def launch(platform):
    """``launch(*flags, env=...)``: pancake.py --camera picamera2 on this Pi, stopped at the end."""
    started = []

    def start(*args, env=None):
        p = Pancake(
            "--camera",
            "picamera2",
            "--fps",
            str(FPS),
            *args,
            env={**child_env(platform), "TZ": "UTC", **(env or {})},
        )
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop(timeout=60)


def run_pancake_to_exit(platform, *args, env=None):
    """pancake.py run to completion (a bad start): its CompletedProcess."""
    with_env = {**child_env(platform), "TZ": "UTC", **(env or {})}
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "pancake.py"), "--camera", "picamera2", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=with_env,
        timeout=120,
    )


BAD_STARTS = {
    "the encoder device refuses this user": (
        "vc4",
        ["--record-continuous", "{out}"],
        {"FAKE_PI_FAULTS": "open:/dev/video11=EACCES"},
        3,
        "Permission denied",
    ),
    "the encoder device refuses its format": (
        "vc4",
        ["--record-continuous", "{out}"],
        {"FAKE_PI_FAULTS": "ioctl:VIDIOC_S_FMT=EINVAL"},
        3,
        "Invalid argument",
    ),
    "a recording larger than the VC4 encoder takes": (
        "vc4",
        ["--record-continuous", "{out}", "--record-resize", "2592", "1944"],
        {},
        2,
        "at most 1920x1920",
    ),
    "no camera": ("any", [], {"FAKE_PICAMERA2_CAMERAS": "0"}, 3, "finds no camera"),
}


@pytest.mark.parametrize("case", list(BAD_STARTS))
def test_a_bad_start_is_one_line_and_a_non_zero_exit(platform, case, tmp_path):
    on, args, env, code, words = BAD_STARTS[case]
    if on not in ("any", platform):
        pytest.skip(f"only a {on} Pi can fail this way")
    args = [a.format(out=tmp_path) for a in args]
    done = run_pancake_to_exit(platform, "--port", str(free_port()), *args, env=env)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and words in lines[0], lines
    assert "Traceback" not in done.stdout + done.stderr


def test_the_watchdog_stops_when_the_h264_encoder_freezes_alone(platform, tmp_path, request):
    """Picamera2 issue 1228: the encoder stops, the camera and the live view go on."""
    # a bound notify socket, as systemd's (test_sdnotify's fixture)
    notify, address = request.getfixturevalue("abstract_receiver")
    control = tmp_path / "control"
    control.mkdir()
    out_dir = tmp_path / "h264"
    out_dir.mkdir()
    log = tmp_path / "pancake.log"
    env = {
        **child_env(platform),
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "2000000",
        "FAKE_PI_CONTROL_DIR": str(control),
    }
    env.pop("WATCHDOG_PID", None)
    p = None
    try:
        p = Pancake(
            "--camera", "picamera2", "--fps", str(FPS), "--record-continuous", str(out_dir),
            env=env, log_path=log,
        )  # fmt: skip
        notify.wait_for("READY=1", timeout=90)
        notify.wait_for("WATCHDOG=1", timeout=60, count=3)
        (control / "freeze-h264").touch()
        # not a fixed wait: on a loaded machine frames encoded before the freeze may
        # still reach the watchdog seconds later
        wait_for_withheld_pings(log)
        notify.drain(0.5)  # a ping sent just before the line was written
        quiet = notify.drain(4.0)
        assert "WATCHDOG=1" not in quiet
        assert p.proc.poll() is None  # the process lives: systemd is the one to restart it
        (control / "freeze-h264").unlink()
        notify.wait_for("WATCHDOG=1", timeout=60)
        p.proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING=1", timeout=60)
        assert p.proc.wait(timeout=60) == 0  # one SIGTERM, as systemd sends
        _, log = p.stop()
        assert "the H.264 output (recording) has delivered nothing" in log, log
    finally:
        if p is not None:
            p.stop(timeout=60)


def test_a_sigterm_while_the_camera_starts_is_an_orderly_stop(launch, tmp_path):
    """pancake.py listens before it opens the camera, and Picamera2 lets exposure
    settle for 2 s: a SIGTERM then (systemctl stop or restart during a slow start, or
    a test done as soon as the port answers) must still stop it in order, exit 0."""
    out_dir = tmp_path / "h264"
    out_dir.mkdir()
    p = launch("--record-continuous", str(out_dir))  # returns once the port listens
    p.proc.send_signal(signal.SIGTERM)
    code, log = p.stop(timeout=60)
    assert code == 0, log
    assert "stopped" in log and "Traceback" not in log, log


# the wall clock set while recording (the scenarios every camera runs: tests/clock_steps.py)


def test_clock_set_forward_an_hour_starts_a_file_named_with_the_new_time(launch, tmp_path):
    clock_steps.forward_step_starts_a_file_named_with_the_new_time(launch, tmp_path, FPS)


def test_clock_set_back_an_hour_never_overwrites_a_file(launch, tmp_path):
    clock_steps.backward_step_never_overwrites_a_file(launch, tmp_path, FPS)


def test_clock_set_just_before_an_edge_keeps_the_clip_whole(launch, tmp_path):
    clock_steps.step_before_an_edge_keeps_the_clip_whole(launch, tmp_path, FPS)
