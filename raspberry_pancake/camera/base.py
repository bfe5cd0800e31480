"""The camera interface every backend implements.

A backend owns the camera and hands three kinds of frames to the outputs
registered before ``start()``: H.264 access units for recording, JPEG pictures
for the live view and raw RGB pictures for ``detect(bytes)``, each at its own
size. Outputs follow one tiny contract, ``outputframe(frame)``, called on the
backend's capture thread, so an output must return quickly and must not raise
(the backend logs and contains it if it does). An output may also define
``wants_frame()``; a backend that encodes in software (the sim camera) then skips
the work when nobody is waiting, and the watchdog expects nothing of it meanwhile.

Every frame carries two times: ``monotonic``, its capture time on
CLOCK_MONOTONIC, which measures every duration, and ``wall``, the wall clock read
at capture, which only names files and places quarter-hour marks. A step of the
wall clock (NTP setting the time of a Pi without a real-time clock) therefore
renames what follows at once and changes no duration.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Dict, List, Optional, Protocol, Tuple

logger = logging.getLogger(__name__)

Size = Tuple[int, int]

ROTATIONS = (0, 90, 180, 270)


@dataclass(frozen=True)
class CameraSettings:
    """What the user asked of the picture, whatever the backend (checked by ``config``)."""

    resolution: Size = (320, 240)
    fps: int = 12
    vflip: bool = False
    hflip: bool = False
    rotation: int = 0
    annotate_text_size: int = 24


def frame_times(captured: Optional[float] = None) -> Tuple[float, float]:
    """A frame's two times, ``(monotonic, wall)``: the one place they are decided.

    ``captured`` is the capture time on CLOCK_MONOTONIC, from the camera's own
    timestamp where it gives one (mapped onto CLOCK_MONOTONIC by the backend);
    None means now. The wall time is the wall clock read now, less the frame's
    age: so it follows a step of the wall clock at once, and a frame delivered
    late is still named by when it was captured.
    """
    now, wall_now = time.monotonic(), time.time()
    if captured is None:
        return now, wall_now
    return captured, wall_now - (now - captured)


@dataclass(frozen=True)
class H264Frame:
    """One H.264 access unit; a keyframe carries SPS/PPS headers inline before it."""

    data: bytes
    keyframe: bool
    monotonic: float  # capture time on CLOCK_MONOTONIC: measures every duration
    wall: float  # wall-clock seconds at capture, read per frame: names files and marks
    index: int  # capture sequence number, shared by all outputs of one camera


@dataclass(frozen=True)
class JpegFrame:
    """One JPEG picture at the live-view resolution."""

    data: bytes
    monotonic: float
    wall: float
    index: int


@dataclass(frozen=True)
class RgbFrame:
    """Packed RGB24, exactly ``width * height * 3`` bytes, no row padding."""

    data: bytes
    width: int
    height: int
    monotonic: float
    wall: float
    index: int


class Output(Protocol):
    """The consumer contract; called on the backend's capture thread."""

    def outputframe(self, frame) -> None: ...


def output_wants_frame(output) -> bool:
    """True unless the output says it has nobody waiting."""
    wants = getattr(output, "wants_frame", None)
    return True if wants is None else bool(wants())


class _Liveness:
    """Whether one registered output gets the frames it is owed.

    ``owed_since`` is the monotonic time of the first capture, since this output's
    last delivery, at which it wanted a frame; None while it has nothing owed.
    ``delivered`` is the monotonic time of its last delivery (None before the first).
    """

    __slots__ = ("label", "output", "owed_since", "delivered")

    def __init__(self, label: str, output: Output):
        self.label = label
        self.output = output
        self.owed_since: Optional[float] = None
        self.delivered: Optional[float] = None


class Camera(ABC):
    """Base of every backend: output registration, delivery and liveness.

    ``start()``/``stop()`` are called from the main thread; frames are delivered
    on the backend's own threads. Liveness, for the watchdog: a backend calls
    ``_mark_alive()`` each time the camera captures a frame (its earliest sight
    of one: the sim's capture loop, Picamera2's pre-callback, any picamera port),
    and ``_deliver()`` hands each output its frames. Every output that wants
    frames at a capture is owed one until its next delivery, so an encoder that
    freezes while the sensor runs on (Picamera2 issue 1228, one dead picamera
    port) shows up in ``stalled()``, and so does a camera that stops altogether.
    An output that wants nothing (the live view without viewers, detection busy)
    is owed nothing.
    """

    name = "camera"

    def __init__(self, settings: CameraSettings):
        self.settings = settings
        self.h264_output: Optional[Output] = None
        self.h264_size: Size = settings.resolution
        self.jpeg_output: Optional[Output] = None
        self.rgb_output: Optional[Output] = None
        self.rgb_size: Size = settings.resolution
        self._started = False
        # guards _last_frame_monotonic and every _Liveness.owed_since and .delivered,
        # written by the capture and delivering threads, read by the watchdog and /health
        self._liveness_lock = threading.Lock()
        self._last_frame_monotonic: Optional[float] = None
        self._liveness: Dict[str, _Liveness] = {}  # by kind, in registration order
        self._liveness_of: Dict[int, _Liveness] = {}  # by id() of the output
        self._failures = 0

    # registration (main thread, before start)

    def set_h264_output(self, output: Output, size: Optional[Size] = None) -> None:
        """One H.264 encoder serves every recorder; ``size`` defaults to the resolution."""
        self._check_not_started()
        self.h264_output, self.h264_size = output, tuple(size or self.settings.resolution)
        self._watch("h264", "the H.264 output (recording)", output)

    def set_jpeg_output(self, output: Output) -> None:
        self._check_not_started()
        self.jpeg_output = output
        self._watch("jpeg", "the JPEG output (live view)", output)

    def set_rgb_output(self, output: Output, size: Optional[Size] = None) -> None:
        self._check_not_started()
        self.rgb_output, self.rgb_size = output, tuple(size or self.settings.resolution)
        self._watch("rgb", "the RGB output (detection)", output)

    def _check_not_started(self):
        if self._started:
            raise RuntimeError("outputs must be registered before start()")

    def _watch(self, kind: str, label: str, output: Output) -> None:
        self._liveness[kind] = _Liveness(label, output)
        self._liveness_of = {id(w.output): w for w in self._liveness.values()}

    # lifecycle

    def start(self) -> None:
        self._started = True
        self._start()

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._stop()

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release the device; safe to call more than once, after stop() or instead of it."""

    @abstractmethod
    def _start(self) -> None: ...

    @abstractmethod
    def _stop(self) -> None: ...

    # liveness (read by the watchdog on the main thread)

    @property
    def last_frame_monotonic(self) -> Optional[float]:
        """When the camera last captured a frame (time.monotonic()), None before the first."""
        with self._liveness_lock:
            return self._last_frame_monotonic

    def stalled(self, max_age: float, now: Optional[float] = None) -> List[str]:
        """What has failed for longer than ``max_age`` seconds, in words; empty if all is well.

        The camera itself when it has captured nothing for that long (or nothing
        yet), and each output owed a frame for that long.
        """
        now = time.monotonic() if now is None else now
        problems = []
        with self._liveness_lock:
            last = self._last_frame_monotonic
            owed = [(w.label, w.owed_since) for w in self._liveness.values()]
        if last is None:
            problems.append("the camera has captured no frame yet")
        elif now - last >= max_age:
            problems.append(f"the camera has captured no frame for {now - last:.1f} s")
        for label, since in owed:
            if since is not None and now - since >= max_age:
                problems.append(f"{label} has delivered nothing for {now - since:.1f} s")
        return problems

    def last_deliveries(self) -> Dict[str, Optional[float]]:
        """For each registered output kind ("h264", "jpeg", "rgb"): when it last got a
        frame (time.monotonic()), None before the first; any thread."""
        with self._liveness_lock:
            return {kind: w.delivered for kind, w in self._liveness.items()}

    # delivery (capture and encoder threads)

    def _mark_alive(self) -> None:
        """The camera captured a frame: every output that wants one is now owed one."""
        watched = self._liveness.values()
        wanted = [output_wants_frame(w.output) for w in watched]  # outside our lock
        now = time.monotonic()
        with self._liveness_lock:
            self._last_frame_monotonic = now
            for w, wants in zip(watched, wanted):
                if not wants:
                    w.owed_since = None
                elif w.owed_since is None:
                    w.owed_since = now

    def _deliver(self, output: Optional[Output], frame) -> None:
        """Hand a frame to an output; a failing output is logged, never fatal.

        Only a frame the output took without raising pays what it is owed.
        """
        if output is None:
            return
        try:
            output.outputframe(frame)
        except Exception:
            self._failures += 1
            # the first failure with its traceback, then one line per hundred
            if self._failures == 1:
                logger.exception("an output failed on frame %s", frame.index)
            elif self._failures % 100 == 0:
                logger.error("outputs have failed %d times", self._failures)
            return
        watched = self._liveness_of.get(id(output))
        if watched is not None:
            now = time.monotonic()
            with self._liveness_lock:
                watched.owed_since = None
                watched.delivered = now
