"""The thread that calls the user's ``detect()`` and turns its answers into edges."""

from __future__ import annotations

import inspect
import logging
import threading
import time
from typing import Callable, Optional

from .edges import Edge, EdgeSampler
from .slot import RgbSlot

logger = logging.getLogger(__name__)

#: While detect() keeps raising, one log line per this many seconds.
ERROR_LOG_INTERVAL = 60.0
#: How long to wait for an RGB frame before looking again (seconds).
FRAME_WAIT = 1.0
#: A detect() call running longer than this (or ten intervals, if longer) is
#: reported as stalled; checked this often.
STALL_SECONDS = 10.0
STALL_CHECK_SECONDS = 1.0


class DetectionThread:
    """Calls ``detect`` every ``interval`` seconds and reports edges to ``on_edge``.

    Its own thread calls ``detect`` and ``on_edge``; ``start`` and ``close`` are
    called on the main thread. The state found is stamped with the moment it
    describes, on the monotonic clock as frames are: the capture time of the RGB
    frame for ``detect(bytes)``, the time of the call for ``detect()``. Whatever
    ``detect`` raises (SystemExit and KeyboardInterrupt too: in user code they are
    just exceptions) counts as False and is logged, once with its traceback and
    then at most once a minute. A call that does not return is reported by a
    small watch thread, and again when it returns.
    """

    def __init__(
        self,
        detect: Callable,
        interval: float,
        on_edge: Callable[[Edge], None],
        slot: Optional[RgbSlot] = None,
    ):
        self.detect = detect
        self.interval = interval
        self.on_edge = on_edge
        self.slot = slot
        self.sampler = EdgeSampler()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.calls = 0
        self.failures = 0
        self._next_error_log = 0.0
        self.stall_seconds = max(STALL_SECONDS, 10 * interval)
        # guards _call_started (monotonic start of the detect() call under way, or
        # None) and _stall_reported, shared by the detection and watch threads
        self._call_lock = threading.Lock()
        self._call_started: Optional[float] = None
        self._stall_reported = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="detection", daemon=True)
        self._thread.start()
        threading.Thread(target=self._watch, name="detection-watch", daemon=True).start()

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.slot is not None:
            self.slot.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning(
                    "detect() is still running after %.0f s; not waiting for it", timeout
                )
        logger.info("detection: %d calls, %d raised", self.calls, self.failures)

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            # the next call is an interval after this one started, never a burst
            due = max(due + self.interval, time.monotonic())
            try:
                self.run_once()
            except Exception:
                logger.exception("detection step failed; detection goes on")

    def run_once(self) -> None:
        """One detection: get the input, call detect, report an edge if there is one."""
        if self.slot is not None:
            frame = self.slot.take(FRAME_WAIT)
            if frame is None:
                return
            when, args = frame.monotonic, (frame.data,)
        else:
            when, args = time.monotonic(), ()
        with self._call_lock:
            self._call_started = time.monotonic()
        try:
            state = _truth(self.detect(*args))
        except BaseException as e:  # noqa: B036 - the user's code must not end detection
            state = False
            self._log_failure(e)
        finally:
            self._returned()
        self.calls += 1
        edge = self.sampler.observe(when, state)
        if edge is not None:
            logger.info("detection %s", "true" if edge.state else "false")
            self.on_edge(edge)

    def _returned(self) -> None:
        with self._call_lock:
            started, self._call_started = self._call_started, None
            reported, self._stall_reported = self._stall_reported, False
        if reported:
            logger.warning(
                "detect() returned after %.0f s; detection goes on", time.monotonic() - started
            )

    def _watch(self) -> None:
        """Say when a detect() call has run for ``stall_seconds`` (watch thread)."""
        while not self._stop.wait(STALL_CHECK_SECONDS):
            with self._call_lock:
                started = self._call_started
                running = 0.0 if started is None else time.monotonic() - started
                report = running >= self.stall_seconds and not self._stall_reported
                if report:
                    self._stall_reported = True
            if report:
                logger.error(
                    "detect() has not returned for %.0f s: detection is stalled until it does",
                    running,
                )

    def _log_failure(self, error: BaseException) -> None:
        self.failures += 1
        now = time.monotonic()
        if self.failures == 1:
            logger.exception("detect() raised; counted as no detection")
            self._next_error_log = now + ERROR_LOG_INTERVAL
        elif now >= self._next_error_log:
            logger.error(
                "detect() keeps raising (%d times in all, last %r); counted as no detection",
                self.failures,
                error,
            )
            self._next_error_log = now + ERROR_LOG_INTERVAL


def _truth(answer) -> bool:
    """What detect() said; an ``async def detect`` would otherwise always count as True."""
    if inspect.isawaitable(answer):
        if inspect.iscoroutine(answer):
            answer.close()  # never awaited: no warning at exit
        raise TypeError("detect() returned an awaitable: define it with def, not async def")
    return bool(answer)
