"""The post-processor's main loop: receive, dispatch, trigger uploads, ping systemd.

The main thread owns the socket, the minute schedule and the watchdog; the work
itself runs on the worker threads, which it wakes. SIGTERM and SIGINT end the loop
through a wake-up socket, so the stop is immediate and the exit code is 0.
"""

from __future__ import annotations

import datetime as dt
import logging
import selectors
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import List, Optional

from ..messages import Message
from ..sdnotify import Notifier
from . import convert
from .notify import TelegramTarget, detection_text
from .receiver import Receiver
from .schedule import ConversionCounter, MinuteSchedule
from .state import StateStore
from .upload import Destination
from .workers import ConvertWorker, NotifyWorker, UploadWorker

logger = logging.getLogger(__name__)

#: Seconds the workers get to finish their current step at shutdown.
STOP_GRACE = 10.0


@dataclass
class Settings:
    """Everything the command line decided, already checked; built on the main thread."""

    socket_name: str
    mp4_dir: str
    rate: Fraction
    converter: convert.Converter
    state_path: str
    upload_after_convert: Optional[int] = None
    upload_minutes: List[int] = field(default_factory=list)
    destinations: List[Destination] = field(default_factory=list)
    upload_queue_size: int = 8
    targets: List[TelegramTarget] = field(default_factory=list)
    notify_queue_size: int = 8


class Daemon:
    """Owns the socket, the state store and the workers. Runs on the main thread."""

    def __init__(self, settings: Settings, notifier: Optional[Notifier] = None):
        self.settings = settings
        self.notifier = notifier or Notifier()
        self.stop = threading.Event()
        self.receiver = Receiver(settings.socket_name)
        try:
            self.store = StateStore(settings.state_path)
        except BaseException:
            self.receiver.close()
            raise
        self.schedule = MinuteSchedule(settings.upload_minutes, dt.datetime.now())
        self.uploaders = [
            UploadWorker(i, self.store, d, self.stop) for i, d in enumerate(settings.destinations)
        ]
        self.notifiers = [
            NotifyWorker(i, self.store, t, self.stop) for i, t in enumerate(settings.targets)
        ]
        self.converter = ConvertWorker(
            self.store,
            settings.converter,
            settings.mp4_dir,
            settings.rate,
            [d.key for d in settings.destinations],
            settings.upload_queue_size,
            [t.key for t in settings.targets],
            settings.notify_queue_size,
            ConversionCounter(settings.upload_after_convert),
            on_converted=lambda: self.trigger_uploads("after conversions"),
            on_notification=self.wake_notifiers,
            stop=self.stop,
        )
        self._signalled: Optional[int] = None

    # -- called from any thread --------------------------------------------------

    def trigger_uploads(self, reason: str) -> None:
        for worker in self.uploaders:
            worker.trigger(reason)

    def wake_notifiers(self) -> None:
        for worker in self.notifiers:
            worker.wake()

    # -- main thread ------------------------------------------------------------

    def dispatch(self, message: Message) -> None:
        """Queue the work a message asks for (the original project's three cases)."""
        if message.h264 is not None:
            self.store.add_conversion(message.h264, message.detection)
            if message.detection is None:
                logger.info("accepted %s", message.h264)
            else:
                logger.info("accepted %s (detection %s)", message.h264, message.detection)
            self.converter.wake()
            return
        text = detection_text(message.detection)
        if not self.settings.targets:
            logger.info("%s (no notifier configured)", text)
            return
        for target in self.settings.targets:
            if self.store.add_notification(target.key, text, self.settings.notify_queue_size):
                logger.info("queued notification %r for %s", text, target)
            else:
                logger.warning(
                    "notify queue of %s is full (%s): dropped %r",
                    target,
                    self.settings.notify_queue_size,
                    text,
                )
        self.wake_notifiers()

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; return the exit code (0)."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        old_fd = signal.set_wakeup_fd(wake_w.fileno())
        old_handlers = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        selector = selectors.DefaultSelector()
        selector.register(self.receiver.sock, selectors.EVENT_READ, "socket")
        selector.register(wake_r, selectors.EVENT_READ, "wake")
        try:
            self._start_workers()
            self.notifier.ready(f"listening on @{self.settings.socket_name}")
            logger.info("post-processor ready on @%s", self.settings.socket_name)
            self._loop(selector, wake_r)
            logger.info("stopping on %s", signal.Signals(self._signalled).name)
            self.notifier.stopping()
        finally:
            self.stop.set()
            signal.set_wakeup_fd(old_fd)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            selector.close()
            wake_r.close()
            wake_w.close()
            self._join_workers()
            self.receiver.close()
            self.store.close()
            self.notifier.close()
        return 0

    def _on_signal(self, signum, frame) -> None:
        self._signalled = signum

    def _start_workers(self) -> None:
        for worker in [self.converter, *self.uploaders, *self.notifiers]:
            worker.start()
        pending = self.store.pending_conversions()
        if pending:
            logger.info("resuming %s conversion(s)", len(pending))
        self.converter.wake()
        counts = self.store.upload_counts()
        for worker in self.uploaders:
            waiting = counts.pop(worker.destination.key, 0)
            if waiting:
                logger.info("resuming %s upload(s) to %s", waiting, worker.destination)
                worker.trigger("resume after restart")
        for key, waiting in counts.items():
            logger.warning("%s upload(s) kept for %s, which is not configured now", waiting, key)
        self.wake_notifiers()

    def _join_workers(self) -> None:
        workers = [self.converter, *self.uploaders, *self.notifiers]
        for worker in workers:
            worker.wake()  # the stop event is set: a woken worker returns at once
        deadline = time.monotonic() + STOP_GRACE
        for worker in workers:
            if worker.is_alive():
                worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                logger.warning("%s did not stop in time; its work resumes at restart", worker.name)

    def _workers_alive(self) -> bool:
        return all(w.is_alive() for w in [self.converter, *self.uploaders, *self.notifiers])

    def _loop(self, selector, wake_r) -> None:
        interval = self.notifier.watchdog_interval
        next_ping = time.monotonic()
        while self._signalled is None:
            now = time.monotonic()
            if interval and now >= next_ping:
                if self._workers_alive():
                    self.notifier.watchdog()
                else:
                    logger.error("a worker thread died; withholding the watchdog ping")
                next_ping = now + interval
            if self.schedule.due(dt.datetime.now()):
                self.trigger_uploads("minute schedule")
            timeout = 1.0
            if interval:
                timeout = min(timeout, max(0.0, next_ping - time.monotonic()))
            until_minute = self.schedule.seconds_until_due(dt.datetime.now())
            if until_minute is not None:
                timeout = min(timeout, until_minute + 0.01)
            for key, _ in selector.select(timeout):
                if key.data == "wake":
                    _drain(wake_r)
                else:
                    self._receive_all()

    def _receive_all(self) -> None:
        while True:
            try:
                message = self.receiver.receive()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                logger.error("receiving failed: %s", e)
                return
            if message is not None:
                try:
                    self.dispatch(message)
                except Exception:
                    logger.exception("could not queue %s", message)


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(512):
            pass
    except (BlockingIOError, InterruptedError):
        pass
