"""Runs tests marked ``pi_platforms`` once per Raspberry Pi platform, each in its own process.

Picamera2 picks its platform (VC4: Pi Zero to Pi 4; PiSP: Pi 5) when it is
imported, so one process can only ever be one of them. A marked test is
collected once per platform (``[vc4]``, ``[pisp]``); in the pytest process the
user started, running it means asking a child pytest for that platform for its
result. Each platform's child is started once, at the first marked test, with
every selected test of that platform; it runs them in the same order, with
tests/fakes/pi_site on its PYTHONPATH and FAKE_PI_PLATFORM set, so the process
is that Pi before anything imports Picamera2 (tests/fakes/fake_pi). It reports
each result back over a pipe as it finishes, so the parent shows every test's
outcome, failure text and captured output as its own.

tests/camera/conftest.py imports the hooks below.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from typing import Dict, List, Optional

import av
import pytest

from tests.helpers import FAKES, ROOT

PLATFORMS = ("vc4", "pisp")
MARK = "pi_platforms"
#: Picamera2 0.3.38 imports on Python 3.10 and later only (its remote.py writes
#: ``float | None`` in signatures that Python 3.9 evaluates)
PICAMERA2_RUNS_HERE = sys.version_info >= (3, 10)
NEEDS_PYTHON_310 = "the real Picamera2 0.3.38 needs Python 3.10 or later"
#: Picamera2's Pi 5 encoders call av.VideoFrame.from_numpy_buffer, which Debian 12's
#: python3-av 10 lacks (Raspberry Pi OS ships its own newer python3-av): the PiSP
#: tests run only where PyAV has it, the backend's refusal is tested everywhere
PISP_ENCODES_HERE = hasattr(av.VideoFrame, "from_numpy_buffer")
PISP_NEEDS_NEWER_PYAV = (
    f"Picamera2's Pi 5 encoders need av.VideoFrame.from_numpy_buffer, not in PyAV {av.__version__}"
)
CHILD = os.environ.get("PI_PLATFORM_CHILD")  # the platform of this process, in a child
SITE = os.path.join(FAKES, "pi_site")


def child_env(platform: str) -> Dict[str, str]:
    """The environment that makes a Python child process the given Pi."""
    path = [SITE, FAKES, ROOT] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
    ]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), "FAKE_PI_PLATFORM": platform}


def platform_of(item) -> Optional[str]:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("pi_platform") if callspec else None


# --- the parent: one child pytest per platform --------------------------------------


class ChildRun:
    """A child pytest running one platform's tests; results arrive on a reader thread."""

    def __init__(self, platform: str, nodeids: List[str]):
        self.platform = platform
        self.log = tempfile.NamedTemporaryFile(prefix=f"pytest-{platform}-", suffix=".log")
        read_fd, write_fd = os.pipe()
        env = child_env(platform)
        env.update(PI_PLATFORM_CHILD=platform, PI_PLATFORM_REPORT_FD=str(write_fd))
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *nodeids]
        self.proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
        )
        os.close(write_fd)
        # guards results and finished, written by the reader thread
        self._cond = threading.Condition()
        self.results: Dict[str, dict] = {}
        self.finished = False
        self._reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "r") as reports:
            for line in reports:
                result = json.loads(line)
                with self._cond:
                    self.results[result["nodeid"]] = result
                    self._cond.notify_all()
        self.proc.wait()
        with self._cond:
            self.finished = True
            self._cond.notify_all()

    def result(self, nodeid: str) -> Optional[dict]:
        """The child's result for ``nodeid``; None if it ended without one."""
        with self._cond:
            self._cond.wait_for(lambda: nodeid in self.results or self.finished)
            return self.results.get(nodeid)

    def output(self) -> str:
        with open(self.log.name, errors="replace") as f:
            return f.read()[-6000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


_runs: Dict[str, ChildRun] = {}


def _run_for(item) -> ChildRun:
    if not _runs:
        for platform in PLATFORMS:
            ids = [i.nodeid for i in item.session.items if platform_of(i) == platform]
            if ids:
                _runs[platform] = ChildRun(platform, ids)
    return _runs[platform_of(item)]


# --- hooks (imported by tests/camera/conftest.py) -----------------------------------


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"{MARK}: run once per Raspberry Pi platform, each in its own process"
    )


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker(MARK) is not None:
        platforms = [CHILD] if CHILD else list(PLATFORMS)
        metafunc.parametrize("pi_platform", [_param(p) for p in platforms], indirect=True)


def _param(platform: str):
    """One platform's parameter, skipped with the reason where it cannot run here."""
    if not PICAMERA2_RUNS_HERE:
        return pytest.param(platform, marks=pytest.mark.skip(reason=NEEDS_PYTHON_310), id=platform)
    if platform == "pisp" and not PISP_ENCODES_HERE:
        return pytest.param(platform, marks=pytest.mark.skip(PISP_NEEDS_NEWER_PYAV), id=platform)
    return pytest.param(platform, id=platform)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if CHILD or pyfuncitem.get_closest_marker(MARK) is None:
        return None
    run = _run_for(pyfuncitem)
    result = run.result(pyfuncitem.nodeid)
    if result is None:
        pytest.fail(
            f"the {run.platform} child pytest ended without running this test "
            f"(exit {run.proc.returncode}):\n{run.output()}",
            pytrace=False,
        )
    if result["outcome"] == "skipped":
        pytest.skip(f"[{run.platform} process] {result['text']}")
    if result["outcome"] == "failed":
        pytest.fail(f"[{run.platform} process]\n{result['text']}", pytrace=False)
    return True


def pytest_sessionfinish(session):
    for run in _runs.values():
        run.stop()
    _runs.clear()


# --- the child: report each result to the parent ------------------------------------

_outcomes: Dict[str, dict] = {}


def pytest_runtest_logreport(report):
    fd = os.environ.get("PI_PLATFORM_REPORT_FD")
    if not CHILD or not fd:
        return
    result = _outcomes.setdefault(report.nodeid, {"nodeid": report.nodeid, "outcome": "passed"})
    if report.failed or (report.skipped and result["outcome"] == "passed"):
        result["outcome"] = "failed" if report.failed else "skipped"
        if report.skipped and isinstance(report.longrepr, tuple):
            result["text"] = report.longrepr[2]
        else:
            sections = "\n".join(f"--- {name} ---\n{text}" for name, text in report.sections)
            result["text"] = f"{report.longreprtext}\n{sections}"
    if report.when == "teardown":
        os.write(int(fd), (json.dumps(_outcomes.pop(report.nodeid)) + "\n").encode())


@pytest.fixture
def pi_platform(request):
    """The platform this test runs on ("vc4" or "pisp"); this process is that Pi."""
    return request.param
