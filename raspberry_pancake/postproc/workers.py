"""The worker threads: one converter, one uploader per destination, one notifier per chat.

Each takes its work from the state store, so what a crash interrupts is picked up
again after a restart. A worker logs and contains every failure; only the daemon's
stop event ends it. A full disk is waited out, never turned into lost work.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import List, Optional, Tuple

from ..exc import (
    ConversionError,
    NoSpaceError,
    NotifyError,
    StateFullError,
    StoppedError,
    UploadError,
)
from . import convert
from .events import Events
from .notify import MAX_VIDEO_BYTES, TelegramTarget
from .recordings import RecordingRules, RejectedPath
from .routing import Routing
from .state import Conversion, Notification, StateStore, Upload
from .upload import Destination, dated_dir

logger = logging.getLogger(__name__)

#: Attempts for a notification that fails for a reason other than HTTP 429.
NOTIFY_ATTEMPTS = 5

#: Seconds between looks at the free space of a full mp4 directory.
SPACE_POLL = 2.0
#: Longest wait between two tries of a conversion that keeps finding the disk full
#: although free space looks sufficient (a quota, say).
SPACE_RETRY_MAX = 300.0


class Worker(threading.Thread):
    """A daemon thread that sleeps until woken (or ``idle`` seconds) and does a round.

    A subclass changes how long it sleeps (``seconds_to_sleep``) and what a wake-up
    does (``on_wake``); the loop, the stop and the busy flag are this class's.
    """

    idle = 5.0
    #: Told what happened (the daemon sets its observer here); called from this thread.
    events = Events()

    def __init__(self, name: str, stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self.stop = stop
        self._wake = threading.Event()
        # guards _busy, set by this thread around each wake-up and read by wakers
        self._busy_lock = threading.Lock()
        self._busy = False
        self._state_full = False  # only this thread reads and writes it

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        while not self.stop.is_set():
            self._wake.wait(self.seconds_to_sleep())
            with self._busy_lock:
                woken = self._wake.is_set()
                self._wake.clear()
                self._busy = True
            try:
                if self.stop.is_set():
                    break
                self.on_wake(woken)
            finally:
                with self._busy_lock:
                    self._busy = False

    def seconds_to_sleep(self) -> float:
        return self.idle

    def on_wake(self, woken: bool) -> None:
        """A round at every wake-up, and every ``idle`` seconds."""
        self.guarded_round()

    def guarded_round(self, *args) -> None:
        """One round, with every failure logged and contained."""
        try:
            self.round(*args)
        except StoppedError:
            return
        except StateFullError as e:
            if not self._state_full:
                logger.warning("%s: %s; the work stays queued and is retried", self.name, e)
                self._state_full = True
            self.stop.wait(self.idle)
            self._wake.set()  # try again
            return
        except Exception:
            logger.exception("%s: unexpected error; will retry", self.name)
            self.stop.wait(self.idle)
            return
        if self._state_full:
            logger.info("%s: the state file takes writes again", self.name)
            self._state_full = False

    def round(self) -> None:
        raise NotImplementedError


class ConvertWorker(Worker):
    """Converts accepted recordings one at a time, oldest first (thread "convert").

    When the mp4 directory is full, the conversion waits for space and is tried
    again; it is never dropped for that, and it stays queued across restarts.
    """

    def __init__(
        self,
        store: StateStore,
        converter: convert.Converter,
        mp4_dir: str,
        rate: Fraction,
        rules: RecordingRules,
        routing: Routing,
        stop: threading.Event,
    ):
        super().__init__("convert", stop)
        self.store = store
        self.converter = converter
        self.mp4_dir = mp4_dir
        self.rate = rate
        self.rules = rules
        self.routing = routing
        self._space_failures = 0  # consecutive conversions that found the disk full

    def round(self) -> None:
        for job in self.store.pending_conversions():
            while True:
                if self.stop.is_set():
                    raise StoppedError("stopping")
                try:
                    mp4 = self._convert(job)
                except NoSpaceError as e:
                    self._wait_for_space(job, e)
                    continue
                break
            self._finish(job, mp4)

    def _convert(self, job: Conversion) -> Optional[str]:
        """The mp4 made from ``job``, or None if it cannot be made; raises ``NoSpaceError``."""
        try:
            fd, _ = self.rules.open(job.h264)
        except RejectedPath as e:
            logger.error("conversion of %s dropped: %s", job.h264, e)
            return None
        started = time.monotonic()
        try:
            mp4 = convert.convert_file(
                self.converter, job.h264, self.mp4_dir, self.rate, self.stop, fd=fd
            )
        except StoppedError:
            logger.info("conversion of %s interrupted; resumes at restart", job.h264)
            raise
        except NoSpaceError:
            raise
        except ConversionError as e:
            logger.error("conversion of %s failed: %s", job.h264, e)
            return None
        except Exception as e:
            logger.exception("conversion of %s failed: %s", job.h264, e)
            return None
        finally:
            os.close(fd)
        if self._space_failures:
            logger.info("space is back in %s: conversions go on", self.mp4_dir)
            self._space_failures = 0
        logger.info(
            "converted %s -> %s with %s in %.1f s",
            job.h264,
            mp4,
            self.converter.name,
            time.monotonic() - started,
        )
        return mp4

    def _wait_for_space(self, job: Conversion, error: NoSpaceError) -> None:
        """Block until ``mp4_dir`` has room for another try; raise StoppedError on stop."""
        self._space_failures += 1
        if self._space_failures == 1:
            logger.warning(
                "mp4 directory is full, %s waits for space: %s (conversions resume by"
                " themselves once there is room)",
                os.path.basename(job.h264),
                error,
            )
        # A retry that found the disk full although statvfs showed room: wait longer.
        earliest = time.monotonic() + min(SPACE_POLL * 2**self._space_failures, SPACE_RETRY_MAX)
        while not self.stop.wait(SPACE_POLL):
            try:
                room = convert.free_bytes(self.mp4_dir) >= error.needed
            except OSError:
                room = False
            if room and time.monotonic() >= earliest:
                return
        raise StoppedError("stopping")

    def _finish(self, job: Conversion, mp4: Optional[str]) -> None:
        """Retire ``job`` and queue its uploads and notifications (a conversion ended)."""
        routing = self.routing
        follow_ups = routing.follow_ups(mp4, job.detection)
        outcome = self.store.finish_conversion(job.id, follow_ups)
        for dest in outcome.uploads_dropped:
            logger.warning(
                "upload queue of %s is full (%s): dropped %s",
                dest,
                follow_ups.upload_limit,
                os.path.basename(mp4 or ""),
            )
        for target in outcome.notifications_dropped:
            logger.warning(
                "notify queue of %s is full (%s): dropped %r",
                target,
                follow_ups.notify_limit,
                follow_ups.notes[0].text,
            )
        self.events.recording(job.h264, mp4, job.detection)
        if follow_ups.notes:
            routing.on_notification()
        if mp4 is not None and routing.counter.add():
            logger.info("upload trigger: %s conversion(s) done", routing.counter.every)
            routing.on_converted()


@dataclass(frozen=True)
class RetryPolicy:
    """How failed uploads are tried again (``--upload-attempts``, ``--upload-retry``)."""

    #: Failures a file may have, while others go through, before it is given up.
    attempts: int = 10
    #: Seconds before the first retry; each further failure doubles the wait.
    first_delay: float = 60.0
    #: Longest wait before retrying one file.
    file_delay_max: float = 3600.0
    #: Longest wait before trying a server that could not be reached.
    away_delay_max: float = 900.0

    def file_delay(self, attempts: int) -> float:
        return min(self.first_delay * 2 ** max(attempts - 1, 0), self.file_delay_max)

    def away_delay(self, rounds: int) -> float:
        return min(self.first_delay * 2 ** max(rounds - 1, 0), self.away_delay_max)


class UploadWorker(Worker):
    """Uploads to one destination, one file at a time (thread "upload-<n>").

    A round starts at a trigger, or by itself when a retry is due. It goes through
    every file that is due, so one file that keeps failing never holds back the
    others. A failure counts against the file only when the destination is shown to
    work (another file went through in the same round); the file is then retried
    after a growing delay and given up after ``RetryPolicy.attempts`` failures. When
    the server cannot be reached, or nothing goes through, nothing is counted: the
    destination is tried again after a growing delay, or at the next trigger.

    A trigger that arrives while a round is running is skipped, as in the original
    project; the round in progress takes everything that is due.
    """

    idle = 3600.0

    def __init__(
        self,
        index: int,
        store: StateStore,
        destination: Destination,
        stop: threading.Event,
        retry: Optional[RetryPolicy] = None,
    ):
        super().__init__(f"upload-{index}", stop)
        self.store = store
        self.destination = destination
        self.retry = retry or RetryPolicy()
        # Only this thread uses these: when to try a destination that was away, and
        # how many rounds in a row found it so.
        self._away_until = 0.0
        self._away_rounds = 0

    def trigger(self, reason: str) -> None:
        with self._busy_lock:
            if self._busy:
                logger.info(
                    "upload to %s still running: trigger (%s) skipped", self.destination, reason
                )
                return
            logger.info("upload to %s triggered (%s)", self.destination, reason)
            self._wake.set()

    def on_wake(self, woken: bool) -> None:
        """A round at a trigger, or when a retry is due; otherwise nothing."""
        if woken:
            self.guarded_round("trigger")
        elif self._away_rounds and time.monotonic() >= self._away_until:
            self.guarded_round("retry")
        elif not self._away_rounds and self._due_retries():
            self.guarded_round("retry of failed files")

    def seconds_to_sleep(self) -> float:
        """Until the next retry is due, at most ``idle``."""
        if self._away_rounds:
            wait = self._away_until - time.monotonic()
        else:
            try:
                retries = [u.next_try for u in self._pending() if u.next_try > 0]
            except Exception:  # a failing state file is reported by the rounds
                retries = []
            wait = min(retries) - time.time() if retries else self.idle
        return min(max(wait, 0.0), self.idle) + 0.05

    def _pending(self) -> List[Upload]:
        return self.store.pending_uploads(self.destination.key)

    def _is_due(self, item: Upload, now: float) -> bool:
        # A wall clock set back (a Pi syncing its time) must not postpone a retry for
        # longer than the longest delay.
        return item.next_try <= now or item.next_try > now + self.retry.file_delay_max

    def _due_retries(self) -> bool:
        now = time.time()
        return any(u.next_try > 0 and self._is_due(u, now) for u in self._pending())

    def round(self, why: str = "trigger") -> None:
        """Upload what is due: everything at a trigger or after the destination was away,
        only failed files whose delay has passed at a retry of failed files."""
        previous_away, self._away_rounds = self._away_rounds, 0
        now = time.time()
        pending = self._pending()
        due = [u for u in pending if self._is_due(u, now)]
        if why == "retry of failed files":
            due = [u for u in due if u.next_try > 0]
        if not due:
            if why == "trigger":
                waiting = f"{len(pending)} file(s) wait for a retry" if pending else "nothing waits"
                logger.info("upload to %s: %s", self.destination, waiting)
            return
        logger.info("upload to %s: %s file(s) (%s)", self.destination, len(due), why)
        prepared = set()
        went_through = 0
        failed: List[Tuple[Upload, UploadError]] = []
        for index, item in enumerate(due):
            if self.stop.is_set():
                raise StoppedError("stopping")
            name = os.path.basename(item.mp4)
            if not os.path.isfile(item.mp4):
                logger.error("upload of %s to %s dropped: the file is gone", name, self.destination)
                self.store.upload_done(item.id)
                self.events.uploaded(item.mp4, str(self.destination), False, "the file is gone")
                continue
            remote_dir = dated_dir(self.destination.remote_dir, name)
            started = time.monotonic()
            try:
                if remote_dir not in prepared:
                    self.destination.prepare(remote_dir, self.stop)
                    prepared.add(remote_dir)
                self.destination.upload(item.mp4, remote_dir, self.stop)
            except UploadError as e:
                self.events.uploaded(item.mp4, str(self.destination), False, str(e))
                if not e.reachable:
                    self._away(str(e), len(due) - index, previous_away + 1)
                    return
                failed.append((item, e))
                continue
            self._uploaded(item, remote_dir, time.monotonic() - started)
            went_through += 1
        if went_through:
            for item, error in failed:
                self._file_failed(item, error)
        elif failed:
            reasons = "; ".join(f"{os.path.basename(i.mp4)}: {e}" for i, e in failed[:3])
            self._away(f"every file failed ({reasons})", len(failed), previous_away + 1)

    def _uploaded(self, item: Upload, remote_dir: str, seconds: float) -> None:
        """One file went through: it leaves the queue."""
        self.store.upload_done(item.id)
        self.events.uploaded(item.mp4, str(self.destination), True, remote_dir)
        logger.info(
            "uploaded %s to %s %s in %.1f s",
            os.path.basename(item.mp4),
            self.destination,
            remote_dir,
            seconds,
        )

    def _file_failed(self, item: Upload, error: UploadError) -> None:
        """This file failed while others went through: count it, retry later or give up."""
        attempts = item.attempts + 1
        name = os.path.basename(item.mp4)
        if attempts >= self.retry.attempts:
            self.store.upload_done(item.id)
            logger.error(
                "upload of %s to %s given up after %s failed attempts (%s); the mp4 stays in"
                " the mp4 directory",
                name,
                self.destination,
                attempts,
                error,
            )
            return
        delay = self.retry.file_delay(attempts)
        self.store.upload_failed(item.id, time.time() + delay)
        logger.warning(
            "upload of %s to %s failed (attempt %s of %s): %s; retry in %.0f s",
            name,
            self.destination,
            attempts,
            self.retry.attempts,
            error,
            delay,
        )

    def _away(self, reason: str, waiting: int, rounds: int) -> None:
        """The destination did not work at all: count nothing, try again later."""
        self._away_rounds = rounds
        delay = self.retry.away_delay(self._away_rounds)
        self._away_until = time.monotonic() + delay
        log = logger.warning if self._away_rounds == 1 else logger.info
        log(
            "upload to %s did not work: %s; %s file(s) wait, not counted as failures;"
            " next try in %.0f s or at the next trigger",
            self.destination,
            reason,
            waiting,
            delay,
        )


class NotifyWorker(Worker):
    """Sends one chat's notifications in order (thread "notify-<n>")."""

    def __init__(self, index: int, store: StateStore, target: TelegramTarget, stop):
        super().__init__(f"notify-{index}", stop)
        self.store = store
        self.target = target

    def round(self) -> None:
        while not self.stop.is_set():
            note = self.store.next_notification(self.target.key)
            if note is None:
                return
            self._deliver(note)
            self.store.notification_done(note.id)

    def _deliver(self, note: Notification) -> None:
        failures = 0
        while True:
            if self.stop.is_set():
                raise StoppedError("stopping")
            try:
                what = self._send(note)
                logger.info("notified %s: %s (%s)", self.target, note.text, what)
                self.events.notified(str(self.target), note.text, True, what)
                return
            except NotifyError as e:
                if e.retry_after:
                    logger.warning(
                        "notify %s: rate limited, retrying in %.0f s", self.target, e.retry_after
                    )
                    self.stop.wait(e.retry_after)
                    continue
                failures += 1
                if e.permanent or failures >= NOTIFY_ATTEMPTS:
                    logger.error(
                        "notify %s: dropped %r after %s attempt(s): %s",
                        self.target,
                        note.text,
                        failures,
                        e,
                    )
                    self.events.notified(str(self.target), note.text, False, str(e))
                    return
                delay = 2.0**failures
                logger.warning(
                    "notify %s failed (%s), retry %s in %.0f s", self.target, e, failures, delay
                )
                self.stop.wait(delay)

    def _send(self, note: Notification) -> str:
        if note.video:
            try:
                size = os.path.getsize(note.video)
            except OSError:
                size = -1
            if 0 <= size <= MAX_VIDEO_BYTES:
                self.target.send_video(note.video, note.text)
                return f"video {os.path.basename(note.video)}"
            reason = "gone" if size < 0 else f"{size / 1e6:.0f} MB, over the Bot API limit"
            self.target.send_message(note.text)
            return f"message instead of video {os.path.basename(note.video)} ({reason})"
        self.target.send_message(note.text)
        return "message"
