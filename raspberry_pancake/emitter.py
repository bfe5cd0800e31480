"""Sends protocol messages to the post-processor, keeping them while it is away."""

from __future__ import annotations

import logging
import socket
import threading
from collections import deque
from typing import Callable, Deque, Optional, Tuple

from .messages import Message, socket_address

logger = logging.getLogger(__name__)

#: Messages kept while no receiver listens: hours of recordings at four files an hour.
DEFAULT_QUEUE_SIZE = 1000
#: How often to try again while the receiver is away (seconds).
RETRY_INTERVAL = 0.5


class Emitter:
    """JSON datagrams to the post-processor's socket, on a thread of its own.

    ``name`` is an abstract name (``ppp``) or a socket file's path (any name with a
    slash), as ``messages.socket_address`` reads it.

    ``send`` is called on the disk writer's and the detection thread and never
    blocks: the message joins a bounded queue (when full, the oldest is dropped and
    logged) that the sender thread empties in order. A receiver that is missing, or
    too busy to take more, keeps the queue waiting; it is sent once it returns, so a
    restart of the post-processor loses nothing. A message's ``done`` callback runs
    on the sender thread once the message has left the queue for good (sent, or
    dropped to make room), never for one still waiting at ``close``: the disk
    writer keeps a recording's pending marker until then.
    """

    def __init__(
        self,
        name: str,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        retry_interval: float = RETRY_INTERVAL,
    ):
        self.name = name
        self.address = socket_address(name)
        self.queue_size = queue_size
        self.retry_interval = retry_interval
        # guards _queue and _closing
        self._cond = threading.Condition()
        self._queue: Deque[Tuple[Message, Optional[Callable[[], None]]]] = deque()
        self._closing = False
        self._thread: Optional[threading.Thread] = None
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self.sent = 0
        self.dropped = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="emitter", daemon=True)
        self._thread.start()

    def send(self, message: Message, done: Optional[Callable[[], None]] = None) -> None:
        lost = None
        with self._cond:
            if len(self._queue) >= self.queue_size:
                lost, lost_done = self._queue.popleft()
                self.dropped += 1
            self._queue.append((message, done))
            self._cond.notify()
        if lost is not None:
            logger.warning(
                "emit queue full (%d messages waiting for %r): dropped the oldest, %s",
                self.queue_size,
                self.name,
                lost.encode().decode(),
            )
            _call(lost_done)

    @property
    def backlog(self) -> int:
        """Messages waiting to be sent; any thread."""
        with self._cond:
            return len(self._queue)

    def close(self, timeout: float = 3.0) -> None:
        """Give waiting messages ``timeout`` seconds to go out, then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
        if left:
            logger.error(
                "%d messages for %r were never received: nobody listened (the recordings"
                " among them are announced again at the next start)",
                left,
                self.name,
            )
        self._socket.close()

    # sender thread

    def _run(self) -> None:
        away = False
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                message, done = self._queue[0]
            try:
                self._socket.sendto(message.encode(), self.address)
            except OSError as e:
                if not away:
                    away = True
                    logger.warning(
                        "no receiver on %r (%s): messages wait and are sent when it is back",
                        self.name,
                        e.strerror or e,
                    )
                with self._cond:
                    # even when closing: close() waits for us only as long as it allows
                    self._cond.wait(self.retry_interval)
                continue
            with self._cond:
                # counted as it leaves the backlog, so the two never disagree (/health)
                self.sent += 1
                if self._queue and self._queue[0][0] is message:
                    self._queue.popleft()
                else:
                    done = None  # dropped meanwhile: send() called it
            _call(done)
            if away:
                away = False
                logger.info("receiver %r is back", self.name)
            logger.debug("emitted %s", message)


def _call(done: Optional[Callable[[], None]]) -> None:
    if done is not None:
        try:
            done()
        except Exception:
            logger.exception("a sent message's callback failed")
