"""The worker threads: one converter, one uploader per destination, one notifier per chat.

Each takes its work from the state store, so what a crash interrupts is picked up
again after a restart. A worker logs and contains every failure; only the daemon's
stop event ends it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from fractions import Fraction
from typing import Callable, Sequence

from ..exc import ConversionError, NotifyError, StoppedError, UploadError
from . import convert
from .notify import MAX_VIDEO_BYTES, TelegramTarget, detection_text
from .schedule import ConversionCounter
from .state import Conversion, Notification, StateStore
from .upload import Destination, dated_dir

logger = logging.getLogger(__name__)

#: Attempts for a notification that fails for a reason other than HTTP 429.
NOTIFY_ATTEMPTS = 5


class Worker(threading.Thread):
    """A daemon thread that sleeps until woken (or ``idle`` seconds) and does a round."""

    idle = 5.0

    def __init__(self, name: str, stop: threading.Event):
        super().__init__(name=name, daemon=True)
        self.stop = stop
        self._wake = threading.Event()

    def wake(self) -> None:
        self._wake.set()

    def run(self) -> None:
        while not self.stop.is_set():
            self._wake.wait(self.idle)
            self._wake.clear()
            if self.stop.is_set():
                break
            try:
                self.round()
            except StoppedError:
                break
            except Exception:
                logger.exception("%s: unexpected error; will retry", self.name)
                self.stop.wait(self.idle)

    def round(self) -> None:
        raise NotImplementedError


class ConvertWorker(Worker):
    """Converts accepted recordings one at a time, oldest first (thread "convert")."""

    def __init__(
        self,
        store: StateStore,
        converter: convert.Converter,
        mp4_dir: str,
        rate: Fraction,
        destinations: Sequence[str],
        upload_limit: int,
        targets: Sequence[str],
        notify_limit: int,
        counter: ConversionCounter,
        on_converted: Callable[[], None],
        on_notification: Callable[[], None],
        stop: threading.Event,
    ):
        super().__init__("convert", stop)
        self.store = store
        self.converter = converter
        self.mp4_dir = mp4_dir
        self.rate = rate
        self.destinations = list(destinations)
        self.upload_limit = upload_limit
        self.targets = list(targets)
        self.notify_limit = notify_limit
        self.counter = counter
        self.on_converted = on_converted
        self.on_notification = on_notification

    def round(self) -> None:
        for job in self.store.pending_conversions():
            if self.stop.is_set():
                raise StoppedError("stopping")
            self._process(job)

    def _process(self, job: Conversion) -> None:
        started = time.monotonic()
        mp4 = None
        if not os.path.isfile(job.h264):
            logger.error("conversion of %s dropped: the file is gone", job.h264)
        else:
            try:
                mp4 = convert.convert_file(
                    self.converter, job.h264, self.mp4_dir, self.rate, self.stop
                )
            except StoppedError:
                logger.info("conversion of %s interrupted; resumes at restart", job.h264)
                raise
            except ConversionError as e:
                logger.error("conversion of %s failed: %s", job.h264, e)
            except Exception as e:
                logger.exception("conversion of %s failed: %s", job.h264, e)
        if mp4 is not None:
            logger.info(
                "converted %s -> %s with %s in %.1f s",
                job.h264,
                mp4,
                self.converter.name,
                time.monotonic() - started,
            )
        notes = []
        if job.detection is not None:
            text = detection_text(job.detection, conversion_failed=mp4 is None)
            notes = [(target, text, mp4) for target in self.targets]
        outcome = self.store.finish_conversion(
            job.id, mp4, self.destinations, self.upload_limit, notes, self.notify_limit
        )
        for dest in outcome.uploads_dropped:
            logger.warning(
                "upload queue of %s is full (%s): dropped %s",
                dest,
                self.upload_limit,
                os.path.basename(mp4 or ""),
            )
        for target in outcome.notifications_dropped:
            logger.warning(
                "notify queue of %s is full (%s): dropped %r",
                target,
                self.notify_limit,
                notes[0][1],
            )
        if notes:
            self.on_notification()
        if mp4 is not None and self.counter.add():
            logger.info("upload trigger: %s conversion(s) done", self.counter.every)
            self.on_converted()


class UploadWorker(Worker):
    """Uploads to one destination, one file at a time (thread "upload-<n>").

    A trigger that arrives while a round is running is skipped, as in the original
    project; what waits goes at the next trigger.
    """

    idle = 3600.0  # only triggers start a round

    def __init__(self, index: int, store: StateStore, destination: Destination, stop):
        super().__init__(f"upload-{index}", stop)
        self.store = store
        self.destination = destination
        self._busy_lock = threading.Lock()  # guards self._busy between triggerers and the worker
        self._busy = False

    def trigger(self, reason: str) -> None:
        with self._busy_lock:
            if self._busy:
                logger.info(
                    "upload to %s still running: trigger (%s) skipped", self.destination, reason
                )
                return
            logger.info("upload to %s triggered (%s)", self.destination, reason)
            self._wake.set()

    def run(self) -> None:
        while not self.stop.is_set():
            self._wake.wait(self.idle)
            with self._busy_lock:
                if not self._wake.is_set():
                    continue
                self._wake.clear()
                self._busy = True
            try:
                if not self.stop.is_set():
                    self.round()
            except StoppedError:
                break
            except Exception:
                logger.exception("upload to %s: unexpected error", self.destination)
            finally:
                with self._busy_lock:
                    self._busy = False

    def round(self) -> None:
        pending = self.store.pending_uploads(self.destination.key)
        if not pending:
            logger.info("upload to %s: nothing waiting", self.destination)
            return
        logger.info("upload to %s: %s file(s)", self.destination, len(pending))
        prepared = set()
        for index, item in enumerate(pending):
            if self.stop.is_set():
                raise StoppedError("stopping")
            name = os.path.basename(item.mp4)
            if not os.path.isfile(item.mp4):
                logger.error("upload of %s to %s dropped: the file is gone", name, self.destination)
                self.store.upload_done(item.id)
                continue
            remote_dir = dated_dir(self.destination.remote_dir, name)
            started = time.monotonic()
            try:
                if remote_dir not in prepared:
                    self.destination.prepare(remote_dir, self.stop)
                    prepared.add(remote_dir)
                self.destination.upload(item.mp4, remote_dir, self.stop)
            except UploadError as e:
                self.store.upload_failed(item.id)
                logger.warning(
                    "upload of %s to %s failed (attempt %s): %s; %s file(s) kept for the next"
                    " trigger",
                    name,
                    self.destination,
                    item.attempts + 1,
                    e,
                    len(pending) - index,
                )
                return
            self.store.upload_done(item.id)
            logger.info(
                "uploaded %s to %s %s in %.1f s",
                name,
                self.destination,
                remote_dir,
                time.monotonic() - started,
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
