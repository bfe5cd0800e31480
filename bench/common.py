"""Shared pieces of the live-view benchmarks: frames, /proc readings, servers, viewers.

The benchmarks run every server as a subprocess of their own and read its CPU
time and memory from /proc, so nothing here needs psutil. Frames are encoded
once from the sim camera's scene, before any measurement, so that the servers
under test only serve bytes and the encoder does not blur the comparison.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    # the scripts run as ``python3 bench/x.py``: make the package importable
    sys.path.insert(0, ROOT)

logger = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STAMP_MARK = b"rpbench"
STAMP_FORMAT = b"rpbench %012d %.6f"


# --- /proc -----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a whole process (all its threads), in seconds.

    Read from the process's CPU-time clock, which counts nanoseconds; /proc's
    utime + stime count 10 ms ticks, too coarse for a window of a few seconds,
    and are the fallback where the clock cannot be read.
    """
    try:
        return time.clock_gettime(_process_cpu_clock(pid))
    except OSError:
        pass
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # the command name may hold spaces; the fields we want follow its closing paren
    fields = stat[stat.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS


def _process_cpu_clock(pid: int) -> int:
    """The clock id that clock_getcpuclockid(pid) would return on Linux.

    The kernel encodes another process's CPU clock as the complemented pid shifted
    left by 3, with the low bits naming the clock (2: scheduler runtime, all threads).
    """
    return ((~pid) << 3) | 2


def memory_kib(pid: int) -> Dict[str, int]:
    """VmRSS and VmHWM (peak resident set) of a process, in KiB."""
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# --- processes and ports ---------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    """Return once something listens on host:port; fail early if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout} s")


def spawn(
    args: Sequence[str],
    prefix: Sequence[str] = (),
    log=None,
    cpus: Optional[Sequence[int]] = None,
) -> subprocess.Popen:
    """Start ``python3 args...`` (optionally behind a prefix such as ``ip netns exec``).

    ``log``: an open file for the process's stdout and stderr (default: ours).
    ``cpus``: CPUs the process and all its threads may run on (default: any).
    """
    pin = None
    if cpus is not None:
        allowed = set(cpus)

        def pin():
            # in the child before exec, so every thread it ever starts inherits it
            os.sched_setaffinity(0, allowed)

    return subprocess.Popen(
        [*prefix, sys.executable, *args], cwd=ROOT, stdout=log, stderr=log, preexec_fn=pin
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- frames ----------------------------------------------------------------


def encode_frames(
    count: int, size: Tuple[int, int], quality: int = 80, noise: float = 0.0
) -> List[bytes]:
    """``count`` JPEGs of the sim scene, always the same bytes for the same arguments.

    ``noise`` (a standard deviation in grey levels) makes the pictures harder to
    compress, like a real sensor's grain, for benchmarks that need big frames.
    """
    import io

    import numpy as np
    from PIL import Image

    from raspberry_pancake.camera.base import CameraSettings
    from raspberry_pancake.camera.scene import Scene

    fps = 30
    scene = Scene(CameraSettings(resolution=size, fps=fps))
    grain = np.random.RandomState(1)
    frames = []
    for index in range(count):
        # a fixed wall time so every process draws the same annotation
        image = scene.render(index, index / fps, 1_700_000_000.0 + index / fps)
        if noise:
            pixels = np.asarray(image).astype(np.float32)
            pixels += grain.normal(0.0, noise, pixels.shape).astype(np.float32)
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=quality)
        frames.append(buf.getvalue())
    return frames


def stamp(jpeg: bytes, index: int, when: float) -> bytes:
    """The JPEG with a comment segment carrying its capture index and wall time."""
    payload = STAMP_FORMAT % (index, when)
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def read_stamp(jpeg: bytes) -> Optional[Tuple[int, float]]:
    """The (index, capture time) that ``stamp`` wrote, or None for an unstamped JPEG."""
    if jpeg[2:4] != b"\xff\xfe":
        return None
    (length,) = struct.unpack(">H", jpeg[4:6])
    fields = jpeg[6 : 4 + length].split()
    if len(fields) != 3 or fields[0] != STAMP_MARK:
        return None
    return int(fields[1]), float(fields[2])


class FrameSource:
    """Plays pre-encoded JPEGs at ``fps`` from a thread of its own, like a capture thread.

    Each frame is stamped with its index and the wall time of its "capture" and
    handed to ``publish(data, index, when)`` on this thread.
    """

    def __init__(
        self, frames: List[bytes], fps: float, publish: Callable[[bytes, int, float], None]
    ):
        self.frames = frames
        self.period = 1.0 / fps
        self.publish = publish
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-source", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        index = 0
        next_due = time.monotonic()
        while not self._stop.is_set():
            delay = next_due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            when = time.time()
            self.publish(stamp(self.frames[index % len(self.frames)], index, when), index, when)
            index += 1
            next_due += self.period
            if time.monotonic() - next_due > self.period:
                next_due = time.monotonic()  # fell behind: skip, as a sensor drops frames


# --- the server under test -------------------------------------------------


def serve_ours(host: str, port: int, frames: List[bytes], fps: float, max_stream_fps: float):
    """Run the project's live view (FrameBroadcaster + make_app) until SIGTERM."""
    import tornado.ioloop

    from raspberry_pancake.camera.base import JpegFrame
    from raspberry_pancake.web.app import make_app
    from raspberry_pancake.web.live import FrameBroadcaster

    loop = tornado.ioloop.IOLoop.current()
    broadcaster = FrameBroadcaster()
    broadcaster.attach(loop)

    def publish(data: bytes, index: int, when: float) -> None:
        # what the sim camera does, minus the encoding
        if broadcaster.wants_frame():
            broadcaster.outputframe(JpegFrame(data, time.monotonic(), when, index))

    app = make_app(broadcaster, None, max_stream_fps=max_stream_fps)
    app.listen(port, address=host)
    run_until_terminated(loop, FrameSource(frames, fps, publish))


def run_until_terminated(loop, source: FrameSource) -> None:
    """Start the frame source, run the IOLoop, stop both on SIGTERM."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: loop.add_callback_from_signal(loop.stop))
    source.start()
    try:
        loop.start()
    finally:
        source.stop()


# --- viewers (tornado websocket clients) -----------------------------------


class Viewers:
    """``count`` websocket viewers that ask for the next frame as soon as one arrives.

    They run on the asyncio loop of the calling process; ``frames`` and
    ``received`` grow as pictures come in.
    """

    def __init__(self, url: str, count: int):
        self.url = url
        self.count = count
        self.frames = 0
        self.received = 0
        self.failures: List[str] = []
        self._tasks: List[asyncio.Task] = []
        self._connections: list = []

    async def start(self, timeout: float = 20) -> None:
        import tornado.websocket

        for _ in range(self.count):
            conn = await asyncio.wait_for(
                tornado.websocket.websocket_connect(self.url, max_message_size=16 << 20), timeout
            )
            self._connections.append(conn)
            self._tasks.append(asyncio.ensure_future(self._watch(conn)))

    async def _watch(self, conn) -> None:
        try:
            while True:
                await conn.write_message("read_frame")
                message = await conn.read_message()
                if message is None:
                    self.failures.append("connection closed by the server")
                    return
                self.frames += 1
                self.received += len(message)
        except Exception as e:  # reported by the caller, not fatal to the others
            self.failures.append(repr(e))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for conn in self._connections:
            conn.close()
        await asyncio.sleep(0.2)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
