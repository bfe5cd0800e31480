"""Run external programs (ffmpeg, MP4Box, ssh, scp, ncftpput) safely from worker threads.

Each child gets SIGKILL when the thread that started it dies (``PR_SET_PDEATHSIG``),
so a ``kill -9`` of the daemon never leaves an orphaned transfer writing to the
same remote file as the retry after the restart. A child is also killed on
timeout and when the daemon stops.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from typing import Optional, Sequence

from ..exc import StoppedError
from . import libc

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


_prctl = libc.function("prctl")


def _die_with_parent():
    # Runs in the child between fork and exec: only a plain C call, no Python locks.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def size_timeout(size: int, bytes_per_second: float) -> float:
    """Seconds to allow a program that streams ``size`` bytes at no less than ``bytes_per_second``.

    A fixed two minutes plus the size at that rate, so a big file on a slow device
    still finishes while a hung program is still killed in the end.
    """
    return 120.0 + max(size, 0) / bytes_per_second


class Result:
    """What a finished program left: exit code and stderr (a value for the calling thread)."""

    def __init__(self, returncode: int, stderr: str):
        self.returncode = returncode
        self.stderr = stderr

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def reason(self) -> str:
        tail = " | ".join(line for line in self.stderr.strip().splitlines()[-3:] if line)
        return f"exit code {self.returncode}" + (f": {tail}" if tail else "")


def run(
    argv: Sequence[str],
    timeout: float,
    stop: Optional[threading.Event] = None,
    env: Optional[dict] = None,
    pass_fds: Sequence[int] = (),
) -> Result:
    """Run ``argv`` to completion; raise ``StoppedError`` if ``stop`` is set meanwhile.

    Called from worker threads only. ``pass_fds`` are inherited under the same
    numbers (``/dev/fd/N`` names them for the program). A program that outlives
    ``timeout`` seconds is killed and reported with exit code -9 and a "timed out"
    reason.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        pass_fds=tuple(pass_fds),
        preexec_fn=_die_with_parent,
    )
    stderr_chunks = []
    reader = threading.Thread(
        target=lambda: stderr_chunks.append(proc.stderr.read()), name="stderr", daemon=True
    )
    reader.start()
    waited = 0.0
    step = 0.2
    try:
        while True:
            try:
                proc.wait(step)
                break
            except subprocess.TimeoutExpired:
                waited += step
            if stop is not None and stop.is_set():
                raise StoppedError(f"{argv[0]} interrupted by shutdown")
            if waited >= timeout:
                proc.kill()
                proc.wait()
                reader.join(5)
                return Result(-9, f"timed out after {timeout:.0f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    text = b"".join(stderr_chunks).decode("utf-8", "replace")
    return Result(proc.returncode, text)
