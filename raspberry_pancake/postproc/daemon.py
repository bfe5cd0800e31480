"""The post-processor's main loop: receive, dispatch, trigger uploads, ping systemd.

The main thread owns the socket, the minute schedule and the watchdog; the work
itself runs on the worker threads, which it wakes. SIGTERM and SIGINT end the loop
through a wake-up socket, so the stop is immediate and the exit code is 0.

Nothing the kernel accepted is lost: at a stop the socket first refuses new
datagrams (pancake keeps those and sends them to the next post-processor), then
everything already queued is read and stored, and only then do the workers get
their grace period. A datagram that cannot be stored because the state disk is
full waits in memory, and no more are read (they wait in pancake) until it is.
"""

from __future__ import annotations

import datetime as dt
import logging
import selectors
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Deque, Iterator, List, Optional

from ..exc import StateFullError
from ..messages import Message
from ..sdnotify import Notifier
from . import convert
from .events import Events
from .mqtt import MqttPublisher, MqttSettings
from .notify import TelegramTarget, detection_text
from .receiver import Receiver
from .recordings import RecordingRules, RejectedPath
from .routing import Routing
from .schedule import ConversionCounter, MinuteSchedule
from .state import StateStore
from .upload import Destination
from .workers import ConvertWorker, NotifyWorker, RetryPolicy, UploadWorker

logger = logging.getLogger(__name__)

#: Seconds the workers get to finish their current step at shutdown.
STOP_GRACE = 10.0
#: Seconds between tries to store a message while the state disk is full.
STORE_RETRY = 1.0
#: Seconds between checks of the state file's reserve for a full disk.
RESERVE_CHECK = 60.0


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
    upload_retry: RetryPolicy = field(default_factory=RetryPolicy)
    targets: List[TelegramTarget] = field(default_factory=list)
    notify_queue_size: int = 8
    rules: RecordingRules = field(default_factory=RecordingRules)
    mqtt: Optional[MqttSettings] = None


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
        self.rules = settings.rules
        self.schedule = MinuteSchedule(settings.upload_minutes, dt.datetime.now())
        self.uploaders = [
            UploadWorker(i, self.store, d, self.stop, settings.upload_retry)
            for i, d in enumerate(settings.destinations)
        ]
        self.notifiers = [
            NotifyWorker(i, self.store, t, self.stop) for i, t in enumerate(settings.targets)
        ]
        self.converter = ConvertWorker(
            self.store,
            settings.converter,
            settings.mp4_dir,
            settings.rate,
            self.rules,
            Routing(
                destinations=tuple(d.key for d in settings.destinations),
                upload_limit=settings.upload_queue_size,
                targets=tuple(t.key for t in settings.targets),
                notify_limit=settings.notify_queue_size,
                counter=ConversionCounter(settings.upload_after_convert),
                on_converted=lambda: self.trigger_uploads("after conversions"),
                on_notification=self.wake_notifiers,
            ),
            stop=self.stop,
        )
        self.events = (
            Events() if settings.mqtt is None else MqttPublisher(settings.mqtt, self.upload_backlog)
        )
        for worker in [self.converter, *self.uploaders, *self.notifiers]:
            worker.events = self.events
        self._signalled: Optional[int] = None
        #: Messages read but not stored yet because the state disk is full (main thread).
        self._unstored: Deque[Message] = deque()

    # -- called from any thread --------------------------------------------------

    def trigger_uploads(self, reason: str) -> None:
        for worker in self.uploaders:
            worker.trigger(reason)

    def wake_notifiers(self) -> None:
        for worker in self.notifiers:
            worker.wake()

    def upload_backlog(self) -> int:
        return sum(self.store.upload_counts().values())

    # -- main thread ------------------------------------------------------------

    def dispatch(self, message: Message) -> None:
        """Store the work a message asks for (the original project's three cases).

        Raises ``StateFullError`` when it cannot be stored; the message is then kept.
        """
        if message.h264 is not None:
            try:
                identity = self.rules.check(message.h264)
            except RejectedPath as e:
                reason = str(e)  # a path may be as long as a datagram
                logger.warning("dropped a message: %s", reason[:300] + "..." * (len(reason) > 300))
                return
            if self.store.add_conversion(message.h264, message.detection, identity) is None:
                logger.debug("ignored a repeated message for %s", message.h264)
                return
            if message.detection is None:
                logger.info("accepted %s", message.h264)
            else:
                logger.info("accepted %s (detection %s)", message.h264, message.detection)
                self.events.detection(message.detection)
            self.converter.wake()
            return
        self.events.detection(message.detection)
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
            self.events.start()
            self._start_workers()
            where = self.receiver.description
            self.notifier.ready(f"listening on {where}")
            logger.info("post-processor ready on %s", where)
            if self.receiver.path is None:
                logger.warning(
                    "%s is an abstract socket name: any local user can take it before"
                    " postproc starts; a socket path (such as /run/raspberry-pancake/ppp)"
                    " is private",
                    where,
                )
            self._loop(selector, wake_r)
            logger.info("stopping on %s", signal.Signals(self._signalled).name)
            self.notifier.stopping()
            self._close_socket()
        finally:
            self.stop.set()
            selector.close()
            self.receiver.close()
            self._join_workers()
            self.events.close()
            self.store.close()
            self.notifier.close()
            # only now: a second SIGTERM during the workers' grace must find our handler
            signal.set_wakeup_fd(old_fd)
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            wake_r.close()
            wake_w.close()
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
        next_reserve_check = time.monotonic() + RESERVE_CHECK
        reading = True
        while self._signalled is None:
            now = time.monotonic()
            if interval and now >= next_ping:
                if self._workers_alive():
                    self.notifier.watchdog()
                else:
                    logger.error("a worker thread died; withholding the watchdog ping")
                next_ping = now + interval
            if now >= next_reserve_check:
                self.store.keep_reserve()
                next_reserve_check = now + RESERVE_CHECK
            if self.schedule.due(dt.datetime.now()):
                self.trigger_uploads("minute schedule")
            if self._unstored:
                self._store_unstored()
            # While a message waits to be stored, the socket is left unread: what
            # comes meanwhile waits in the kernel's queue and then in pancake's.
            if reading == bool(self._unstored):
                reading = not self._unstored
                if reading:
                    selector.register(self.receiver.sock, selectors.EVENT_READ, "socket")
                else:
                    selector.unregister(self.receiver.sock)
            timeout = STORE_RETRY
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

    def _received(self) -> Iterator[Message]:
        """The messages waiting in the socket, read one at a time until none is left.

        A datagram that is bad in any way costs one log line, never the loop.
        """
        while True:
            try:
                message = self.receiver.receive()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                logger.error("receiving failed: %s", e)
                return
            except Exception as e:  # one datagram must never end postproc
                logger.error("dropped a datagram: %s: %s", type(e).__name__, e)
                continue
            if message is not None:
                yield message

    def _receive_all(self) -> None:
        """Read and store datagrams until none waits, or one cannot be stored."""
        for message in self._received():
            self._store(message)
            if self._unstored:
                return  # the rest stays in the socket

    def _store(self, message: Message) -> None:
        try:
            self.dispatch(message)
        except StateFullError as e:
            if not self._unstored:
                logger.warning(
                    "%s: %s waits in memory, and new messages wait in pancake, until it"
                    " can be stored",
                    e,
                    message.encode().decode(),
                )
            self._unstored.append(message)
        except Exception as e:  # one message must never end postproc
            logger.error("could not queue %s: %s: %s", message, type(e).__name__, e)

    def _store_unstored(self) -> None:
        while self._unstored:
            message = self._unstored.popleft()
            try:
                self.dispatch(message)
            except StateFullError:
                self._unstored.appendleft(message)
                return
            except Exception as e:  # one message must never end postproc
                logger.error("could not queue %s: %s: %s", message, type(e).__name__, e)
        logger.info("the state file takes writes again: waiting messages are stored")

    def _close_socket(self) -> None:
        """Refuse new datagrams, store every one the kernel already took, then close."""
        self.receiver.stop_receiving()
        queued = list(self._received())
        if queued:
            logger.info("storing %s message(s) received before the stop", len(queued))
        if self._unstored:
            self._store_unstored()
        for message in queued:
            if self._unstored:
                self._unstored.append(message)  # keeps the order
            else:
                self._store(message)
        for message in self._unstored:
            logger.error(
                "lost %s: the state disk is still full at the stop", message.encode().decode()
            )
        self.receiver.close()


def _drain(sock: socket.socket) -> None:
    try:
        while sock.recv(512):
            pass
    except (BlockingIOError, InterruptedError):
        pass
