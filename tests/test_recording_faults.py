"""pancake.py recording under real faults: a stalled or slow disk at SIGTERM, a power
cut, kill -9, a full disk, and a user's detect() that misbehaves.

Real ``pancake.py --camera sim`` processes; real file systems (a tmpfs, ext4 on a
loop device, frozen with fsfreeze or throttled by a cgroup v1 blkio limit); a real
datagram receiver; ffprobe and ffmpeg on the files. The disk tests need root.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.disk_faults import (
    blkio_throttle,
    fill,
    frozen,
    loop_ext4,
    mounted_image,
    snapshot,
    tmpfs,
)
from tests.helpers import (
    ROOT,
    Receiver,
    clock_away_from_a_quarter_hour,
    count_frames,
    decode_errors,
    free_port,
    run_cli,
    scripted_customize,
    starts_with_keyframe,
)
from tests.pts_helpers import h264_frames, pts_lines

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe")

FPS = 12
#: systemd's TimeoutStopSec in systemd/pancake.service: later, pancake.py is killed
UNIT_STOP_TIMEOUT = 30.0
#: what issue 10 asks for a stop on a stalled disk
STOP_TARGET = 20.0


class LivePancake:
    """A pancake.py subprocess whose log can be waited on while it runs.

    The test's thread drives it; a daemon thread reads its output.
    """

    def __init__(self, *args: str, cgroup_procs=None, env=None):
        for _ in range(3):  # another test may take the free port first (exit status 4)
            self._start(args, cgroup_procs, env)
            if self._wait_for_port():
                return
        raise AssertionError(f"pancake.py did not start:\n{self.log}")

    def _start(self, args, cgroup_procs, env) -> None:
        self.port = free_port()
        cmd = [sys.executable, os.path.join(ROOT, "pancake.py"), "--port", str(self.port)]
        cmd += ["--camera", "sim", "--fps", str(FPS), *args]

        def enter_cgroup():
            with open(cgroup_procs, "w") as f:
                f.write(str(os.getpid()))

        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=enter_cgroup if cgroup_procs else None,
        )
        self._lines = []
        self._cond = threading.Condition()  # guards _lines
        threading.Thread(target=self._read, daemon=True).start()

    def _wait_for_port(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                assert self.proc.returncode == 4, f"exited with {self.proc.returncode}:\n{self.log}"
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"nothing listens on port {self.port} after {timeout} s:\n{self.log}")

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()

    @property
    def log(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def wait_log(self, pattern: str, timeout: float = 60.0) -> str:
        """The log once ``pattern`` (a regex) appears in it."""
        with self._cond:
            found = self._cond.wait_for(
                lambda: re.search(pattern, "".join(self._lines)), timeout=timeout
            )
            log = "".join(self._lines)
        assert found, f"no {pattern!r} after {timeout} s in:\n{log}"
        return log

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=60)


@pytest.fixture
def procs():
    """Every LivePancake started here is killed at teardown, whatever the test did."""
    started = []

    def start(*args, **kwargs) -> LivePancake:
        p = LivePancake(*args, **kwargs)
        started.append(p)
        return p

    yield start
    for p in started:
        if p.proc.poll() is None:
            os.kill(p.proc.pid, signal.SIGCONT)  # in case the test stopped it
        p.kill()


@pytest.fixture
def receiver():
    made = []

    def make(start=True):
        r = Receiver()
        made.append(r)
        return r.start() if start else r

    yield make
    for r in made:
        r.stop()


def wait_until(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def recordings(directory) -> list:
    return sorted(n for n in os.listdir(directory) if n.endswith(".h264"))


def markers(directory) -> list:
    return sorted(n for n in os.listdir(directory) if n.endswith(".pending"))


def frames_in(path) -> int:
    """Frames ffprobe decodes from ``path``; 0 for a file with none."""
    return count_frames(path) if os.path.getsize(path) else 0


def grows(path, seconds: float):
    """Wait until ``path`` exists and has grown for ``seconds``."""
    wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, what=f"{path}")
    time.sleep(seconds)


# SIGTERM on a stalled or slow disk


def test_sigterm_on_a_frozen_disk_announces_what_was_written_in_time(tmp_path, procs, receiver):
    rx = receiver()
    with loop_ext4(tmp_path / "disk") as (mnt, _device, _image):
        p = procs(
            "--record-continuous", mnt, "--emit", rx.name, env=clock_away_from_a_quarter_hour()
        )
        wait_until(lambda: recordings(mnt), what="a recording")
        path = os.path.join(mnt, recordings(mnt)[0])
        grows(path, 2)
        with frozen(mnt):
            time.sleep(2)  # the writer is now stuck in a write to the frozen disk
            started = time.monotonic()
            p.proc.send_signal(signal.SIGTERM)
            messages = rx.wait_for(1, timeout=STOP_TARGET + 10)
            announced = time.monotonic() - started
            log = p.wait_log(r"INFO .*stopped", timeout=STOP_TARGET + 10)
            shut_down = time.monotonic() - started
            held = p.proc.poll() is None
        # a thread blocked in a write to a frozen file system ends only at the thaw
        rc = p.proc.wait(timeout=60)
        print(
            f"frozen disk: announced {announced:.1f} s and shut down {shut_down:.1f} s after"
            f" SIGTERM; process {'held by the kernel until' if held else 'ended before'} the thaw"
        )
        assert rc == 0, log
        assert announced <= STOP_TARGET and shut_down <= STOP_TARGET, (announced, shut_down)
        assert messages == [{"h264": path}]
        assert re.search(r"gave up on the disk after \d+ s", log), log
        assert "Traceback" not in p.log
        # what was written before the freeze is a playable recording
        assert count_frames(path) > FPS and starts_with_keyframe(path)


def test_sigterm_on_a_slow_disk_ends_before_systemd_would_kill(tmp_path, procs, receiver):
    """A disk that takes writes four times slower than the camera makes them."""
    rx = receiver()
    with loop_ext4(tmp_path / "disk") as (mnt, device, _image):
        with blkio_throttle(device, 4096) as cgroup_procs:
            p = procs(
                "--resolution", "640", "480", "--record-continuous", mnt, "--emit", rx.name,
                cgroup_procs=cgroup_procs, env=clock_away_from_a_quarter_hour(),
            )  # fmt: skip
            wait_until(lambda: recordings(mnt), what="a recording")
            path = os.path.join(mnt, recordings(mnt)[0])
            grows(path, 8)
            started = time.monotonic()
            p.proc.send_signal(signal.SIGTERM)
            try:
                rc = p.proc.wait(timeout=UNIT_STOP_TIMEOUT + 60)
            finally:
                stopped = time.monotonic() - started
            print(f"slow disk: pancake.py ended {stopped:.1f} s after SIGTERM")
            assert rc == 0, p.log
            assert stopped < UNIT_STOP_TIMEOUT, p.log
            assert rx.wait_for(1, timeout=10) == [{"h264": path}]
    assert "Traceback" not in p.log


# power cut and kill -9


def test_power_cut_loses_about_two_seconds_and_the_orphan_is_announced(tmp_path, procs, receiver):
    with loop_ext4(tmp_path / "disk") as (mnt, _device, image):
        p = procs("--record-continuous", mnt, env=clock_away_from_a_quarter_hour())
        wait_until(lambda: recordings(mnt), what="a recording")
        name = recordings(mnt)[0]
        grows(os.path.join(mnt, name), 8)
        os.kill(p.proc.pid, signal.SIGSTOP)  # the last instant before the power goes
        live = frames_in(os.path.join(mnt, name))
        copy = str(tmp_path / "after-power-cut.img")
        snapshot(image, copy)
        p.kill()
    with mounted_image(copy, tmp_path / "rebooted") as mnt:
        survived = frames_in(os.path.join(mnt, name))
        print(f"power cut: {live} frames in the page cache, {survived} on the disk")
        # fdatasync at least every 2 s; the margin is for a loaded machine
        assert live - survived <= 3 * FPS, (live, survived)
        assert markers(mnt) == [f".{name}.pending"]
        rx = receiver(start=False)
        p2 = procs(
            "--record-continuous", mnt, "--emit", rx.name, env=clock_away_from_a_quarter_hour()
        )
        p2.wait_log("recovered")
        rx.start()  # a post-processor that starts later still gets it
        assert rx.wait_for(1, timeout=30)[0] == {"h264": os.path.join(mnt, name)}
        assert decode_errors(os.path.join(mnt, name)) == ""
        # its timestamp file, synced after the video, lists no frame the video lost
        _, times, sizes = pts_lines(os.path.join(mnt, name[: -len(".h264")] + ".pts"))
        frames = h264_frames(os.path.join(mnt, name))
        assert len(times) == len(sizes) and 0 < len(sizes) <= len(frames)
        assert sizes == frames[: len(sizes)] and len(frames) - len(sizes) <= 2 * FPS
        p2.proc.send_signal(signal.SIGTERM)
        assert p2.proc.wait(timeout=60) == 0


def test_files_left_by_kill_9_are_announced_at_the_next_start(tmp_path, procs, receiver):
    customize, _ = scripted_customize(tmp_path, [(1.0, None)])
    rec = tmp_path / "h264"
    rec.mkdir()
    nobody = receiver(start=False)  # the post-processor is down: nothing is received
    p = procs(
        "--record-continuous", str(rec), "--record-detection", "all", str(rec),
        "--detect", "no-image", "--detect-interval", "0.1", "--customize", customize,
        "--emit", nobody.name, env=clock_away_from_a_quarter_hour(),
    )  # fmt: skip
    # the continuous file, the all-mode clip (finished, its announcement waiting in
    # memory), then the recording that continues it
    wait_until(lambda: len(recordings(rec)) >= 3, what="three recordings")
    grows(rec / recordings(rec)[-1], 2)
    p.kill()  # kill -9
    orphans = recordings(rec)
    assert len(orphans) == 3 and len(markers(rec)) == 3
    # a power cut can also tear the last frame: cut one file in the middle of a frame
    torn = rec / orphans[0]
    os.truncate(torn, os.path.getsize(torn) - 300)
    rx = receiver(start=False)
    p2 = procs(
        "--record-continuous", str(rec), "--emit", rx.name, env=clock_away_from_a_quarter_hour()
    )
    p2.wait_log("recovered")
    time.sleep(1)
    rx.start()  # the post-processor comes later: the emitter kept them
    messages = rx.wait_for(3, timeout=30)[:3]
    assert sorted(m["h264"] for m in messages) == [str(rec / n) for n in orphans]
    clips = [m for m in messages if "detection" in m]
    assert clips == [{"h264": str(rec / orphans[1]), "detection": True}]
    for name in orphans:
        assert decode_errors(rec / name) == "", name
        assert starts_with_keyframe(rec / name)
    # once sent, the markers of the orphans are gone; the new recording has its own
    wait_until(lambda: not set(markers(rec)) & {f".{n}.pending" for n in orphans}, timeout=30)
    p2.proc.send_signal(signal.SIGTERM)
    assert p2.proc.wait(timeout=60) == 0
    log = p2.log
    assert "Traceback" not in log


def test_cleanup_utilities_leave_pending_markers_alone(tmp_path):
    for name in ("20200101-1200.h264", "20200101-1215.h264", "20200101-1230.h264"):
        (tmp_path / name).write_bytes(b"x" * 1000)
        (tmp_path / f".{name}.pending").write_bytes(b"")
    old = time.time() - 3600
    for entry in tmp_path.iterdir():
        os.utime(entry, (old, old))
    for script, args in [
        ("util/limit_files_by_number.py", [str(tmp_path), "1"]),
        ("util/limit_files_by_size.py", [str(tmp_path), "1"]),
    ]:
        result = run_cli(script, *args)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
    assert recordings(tmp_path) == []
    assert len(markers(tmp_path)) == 3  # the next start of pancake.py forgets them


# full disk


def test_full_disk_edges_still_reach_the_post_processor(tmp_path, procs, receiver):
    customize, _ = scripted_customize(tmp_path, [(3.0, 7.0), (10.0, 14.0)])
    rx = receiver()
    with tmpfs(tmp_path / "full", "2m") as mnt:
        fill(mnt)
        p = procs(
            "--record-detection", "edge", mnt, "--detect", "no-image",
            "--detect-interval", "0.1", "--customize", customize, "--emit", rx.name,
        )  # fmt: skip
        messages = rx.wait_for(4, timeout=90)
        p.proc.send_signal(signal.SIGTERM)
        assert p.proc.wait(timeout=60) == 0
    assert [m.get("detection") for m in messages] == [True, False, True, False]
    assert all("h264" not in m for m in messages), messages
    assert p.log.count("the disk is full") == 1, p.log


def test_disk_full_is_logged_once_while_a_cleanup_frees_a_little_at_a_time(
    tmp_path, procs, receiver
):
    with tmpfs(tmp_path / "full", "3m") as mnt:
        filler = fill(mnt, leave=64 * 1024)
        p = procs(
            "--resolution", "640", "480", "--record-continuous", mnt,
            env=clock_away_from_a_quarter_hour(),
        )  # fmt: skip
        p.wait_log("the disk is full")
        # a cleanup job that frees a little, again and again, less than is recorded
        # meanwhile (about 36 KB in 2 s) but more than a keyframe (about 13 KB): a
        # keyframe and a few frames fit each time, then the disk is full again
        for _ in range(8):
            os.truncate(filler, max(os.path.getsize(filler) - 24 * 1024, 0))
            time.sleep(2)
        os.unlink(filler)  # then space for good
        log = p.wait_log("writing again", timeout=60)
        p.proc.send_signal(signal.SIGTERM)
        assert p.proc.wait(timeout=60) == 0
        (name,) = recordings(mnt)
        assert decode_errors(os.path.join(mnt, name)) == ""
    assert log.count("the disk is full") == 1, log
    assert log.count("writing again") == 1, log


# the user's detect()


def test_detect_raising_systemexit_or_keyboardinterrupt_does_not_stop_detection(
    tmp_path, procs, receiver
):
    customize = tmp_path / "rude.py"
    customize.write_text(
        "import time\n"
        "T0 = time.time()\n"
        "calls = [0]\n"
        "def detect():\n"
        "    calls[0] += 1\n"
        "    if calls[0] == 3:\n"
        "        raise SystemExit('bye')\n"
        "    if calls[0] == 6:\n"
        "        raise KeyboardInterrupt\n"
        "    return time.time() - T0 > 3\n"
    )
    rx = receiver()
    p = procs(
        "--detect", "no-image", "--detect-interval", "0.1", "--customize", str(customize),
        "--emit", rx.name,
    )  # fmt: skip
    assert rx.wait_for(1, timeout=60) == [{"detection": True}]
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(timeout=60) == 0
    log = p.log
    assert "SystemExit: bye" in log, log  # the first with its traceback, then rarely
    assert re.search(r"detection: \d+ calls, 2 raised", log), log


def test_detect_that_never_returns_is_reported(tmp_path, procs):
    customize = tmp_path / "stuck.py"
    customize.write_text(
        "import threading\n"
        "calls = [0]\n"
        "def detect():\n"
        "    calls[0] += 1\n"
        "    if calls[0] == 5:\n"
        "        threading.Event().wait()\n"
        "    return False\n"
    )
    p = procs("--detect", "no-image", "--detect-interval", "0.1", "--customize", str(customize))
    p.wait_log(r"detect\(\) has not returned for \d+ s", timeout=60)
    p.proc.send_signal(signal.SIGTERM)
    assert p.proc.wait(timeout=60) == 0
