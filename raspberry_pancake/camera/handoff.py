"""Getting work off a camera library's thread: the Picamera2 backend's two hand-offs.

On a Pi 5, Picamera2 runs its pre-callback, its software encoders and their
outputs inline on its one camera thread, so anything slow there holds up every
frame; on earlier Pis a slow output holds up the hardware encoder's buffers
until the camera thread waits for them. Both classes here take a frame on such
a thread in microseconds and do the rest on a thread of their own:

- ``LatestOnly`` for pictures that are converted (live-view JPEG, detection
  RGB): one frame at a time, and a frame offered while the last is still being
  converted is not taken (the caller skips its copy);
- ``InOrder`` for encoded video: every frame, in order, through a bounded queue;
  if the consumer falls so far behind that the queue fills, frames are dropped
  up to the next keyframe, so what gets through still decodes.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Callable, Deque, Optional, Tuple

logger = logging.getLogger(__name__)


class _Worker:
    """A named thread that waits on a condition; ``start()``/``stop()`` on the main thread."""

    def __init__(self, name: str):
        self.name = name
        # guards the subclass's queued work and _stopping
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        raise NotImplementedError


class LatestOnly(_Worker):
    """Converts and delivers one item at a time on its own thread.

    ``offer()`` is called on the camera thread; ``work`` and ``deliver`` run on
    this object's thread. ``stop()`` drops an item not yet taken.
    """

    def __init__(self, name: str, work: Callable, deliver: Callable):
        super().__init__(name)
        self._work = work
        self._deliver = deliver
        self._item = None
        self._busy = False
        self._failures = 0

    def idle(self) -> bool:
        """True when an offer would be taken (cheap: the caller checks before copying)."""
        with self._cond:
            return not self._busy and self._item is None

    def offer(self, item) -> bool:
        with self._cond:
            if self._busy or self._item is not None or self._stopping:
                return False
            self._item = item
            self._cond.notify()
            return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._item is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                item, self._item, self._busy = self._item, None, True
            try:
                result = self._work(item)
                if result is not None:
                    self._deliver(result)
            except Exception:
                self._failures += 1
                if self._failures == 1 or self._failures % 100 == 0:
                    logger.exception("%s failed (%d times)", self.name, self._failures)
            finally:
                with self._cond:
                    self._busy = False


class InOrder(_Worker):
    """Delivers encoded frames in order on its own thread, never blocking the producer.

    ``put()`` is called on an encoder's thread; ``deliver`` runs on this
    object's thread. ``stop()`` delivers what is queued first, so a recording
    ends with its last frame.
    """

    def __init__(self, name: str, deliver: Callable, max_frames: int):
        super().__init__(name)
        self._deliver = deliver
        self.max_frames = max_frames
        self._queue: Deque[Tuple[tuple, bool]] = collections.deque()
        self._dropping = False
        self.dropped = 0

    def put(self, item: tuple, keyframe: bool) -> None:
        with self._cond:
            if self._dropping and not keyframe:
                self.dropped += 1
                return
            if len(self._queue) >= self.max_frames:
                if not self._dropping:
                    logger.error(
                        "%s: the consumer is %d frames behind; dropping frames up to the next "
                        "keyframe",
                        self.name,
                        len(self._queue),
                    )
                self._dropping = True
                self.dropped += 1
                return
            self._dropping = False
            self._queue.append((item, keyframe))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if not self._queue:
                    return
                item, _ = self._queue.popleft()
            try:
                self._deliver(*item)
            except Exception:
                logger.exception("%s could not deliver a frame", self.name)
