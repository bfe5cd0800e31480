"""systemd's watchdog, pinged only while the camera and every output deliver."""

from __future__ import annotations

import logging

import tornado.ioloop

from .sdnotify import Notifier

logger = logging.getLogger(__name__)


class Watchdog:
    """Pings while the camera captures and every output gets the frames it asks for.

    An output that asks for nothing (the live view without viewers, detection
    busy) is not waited for; one that asks and gets nothing for ``max_age`` (a
    frozen encoder) stops the pings as surely as a stuck camera, and systemd then
    restarts pancake.py. Runs on the IOLoop (the main thread).
    """

    def __init__(self, camera, notifier: Notifier, fps: int):
        self.camera = camera
        self.notifier = notifier
        self.fps = fps
        self._withheld = False
        self._callback = None

    def start(self) -> None:
        interval = self.notifier.watchdog_interval
        if interval is None:
            return  # not under a systemd unit with WatchdogSec=
        max_age = max(interval, 3.0 / self.fps)
        self._callback = tornado.ioloop.PeriodicCallback(
            lambda: self.check(max_age), interval * 1000
        )
        self._callback.start()

    def stop(self) -> None:
        if self._callback is not None:
            self._callback.stop()

    def check(self, max_age: float) -> None:
        problems = self.camera.stalled(max_age)
        if not problems:
            if self._withheld:
                self._withheld = False
                logger.warning("frames flow again: pinging the watchdog again")
            self.notifier.watchdog()
        elif not self._withheld:
            self._withheld = True
            logger.error("not pinging the watchdog: %s", "; ".join(problems))
