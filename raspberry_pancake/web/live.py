"""The live view: the latest JPEG, and the flow control every viewer shares.

The flow control is the original project's: the browser sends ``read_frame``,
the server answers with one binary JPEG, and sends nothing more until the next
``read_frame``. On top of that, never more than ``--max-stream-fps`` frames a
second, and never the same frame twice: if the browser asks faster than the
camera films, the answer waits for the next frame. A slow link therefore gets
fewer, but always fresh, frames instead of a growing backlog.

``ViewerPacer`` holds that decision for one viewer whatever carries the frames:
the websocket below asks it on each ``read_frame``; the MJPEG stream
(``mjpeg.py``) asks it each time its previous part has reached the viewer.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, List, Optional

import tornado.ioloop
import tornado.web
import tornado.websocket

from ..camera.base import JpegFrame

logger = logging.getLogger(__name__)

READ_FRAME = "read_frame"
#: how early, as a fraction of the cap's interval, a frame may take its slot
SLOT_SLACK = 0.2
#: sends to one viewer are never closer than this fraction of the cap's interval
BURST_GUARD = 0.5


class FrameBroadcaster:
    """Holds the newest JPEG for all viewers, and hands single frames to snapshots.

    ``outputframe`` and ``wants_frame`` are called on the camera's capture thread;
    every other method runs on the IOLoop, which owns ``latest`` and the waiters.
    ``latest`` is only kept while someone streams: a picture kept while nobody
    watches would go stale, since the camera then stops encoding.
    """

    def __init__(self):
        self._loop: Optional[tornado.ioloop.IOLoop] = None
        self.latest: Optional[JpegFrame] = None
        self._waiters: List[Callable[[], None]] = []
        self._single_waiters: List[Callable[[JpegFrame], None]] = []
        # guards _viewers and _single_wanted, read by the capture thread and
        # written on the IOLoop
        self._demand_lock = threading.Lock()
        self._viewers = 0
        self._single_wanted = 0

    def attach(self, loop: tornado.ioloop.IOLoop) -> None:
        self._loop = loop

    # capture thread

    def wants_frame(self) -> bool:
        """Encode JPEG only while someone streams or waits for a snapshot."""
        with self._demand_lock:
            return self._viewers > 0 or self._single_wanted > 0

    def outputframe(self, frame: JpegFrame) -> None:
        if self._loop is not None:
            self._loop.add_callback(self._publish, frame)

    # IOLoop

    @property
    def viewers(self) -> int:
        with self._demand_lock:
            return self._viewers

    def viewer_joined(self) -> None:
        with self._demand_lock:
            self._viewers += 1

    def viewer_left(self) -> None:
        with self._demand_lock:
            self._viewers -= 1
            nobody = self._viewers == 0
        if nobody:
            self.latest = None  # no one encodes while nobody watches: it would go stale

    def call_on_next_frame(self, callback: Callable[[], None]) -> None:
        """``callback()`` once the next frame has become ``latest``."""
        self._waiters.append(callback)

    def request_single_frame(self, callback: Callable[[JpegFrame], None]) -> Callable[[], None]:
        """Have the camera encode a frame even while nobody streams; ``callback(frame)``.

        The frame is the first one captured after this call. Returns a function
        that withdraws the request (for a caller that gave up waiting).
        """
        with self._demand_lock:
            self._single_wanted += 1
        self._single_waiters.append(callback)

        def withdraw() -> None:
            if callback in self._single_waiters:
                self._single_waiters.remove(callback)
                with self._demand_lock:
                    self._single_wanted -= 1

        return withdraw

    def _publish(self, frame: JpegFrame) -> None:
        if self.viewers:
            self.latest = frame
        singles, self._single_waiters = self._single_waiters, []
        if singles:
            with self._demand_lock:
                self._single_wanted -= len(singles)
        for callback in singles:
            callback(frame)
        waiters, self._waiters = self._waiters, []
        for callback in waiters:
            callback()


class ViewerPacer:
    """One viewer's share of the frames: the newest, never twice, at most the cap.

    The viewer says when it can take a frame (``request``); the pacer calls
    ``deliver(frame)`` once, as soon as a frame is newer than the last one given
    and the rate cap allows it. All its methods run on the IOLoop.

    The cap works on the frames' monotonic capture times: a viewer gets at most
    one frame per slot of 1/max_stream_fps of camera time, whatever the wall
    clock does. Slots are shared with the camera's rhythm, so waiting for the
    cap is waiting for a later frame, which costs nothing, rather than a timer
    per viewer per frame. The slots keep the long-run rate exactly at the cap;
    a frame up to ``SLOT_SLACK`` of a slot before its slot (camera jitter) may
    take it. A guard on the send times stops a viewer that was slow from getting
    a burst when it catches up.
    """

    def __init__(
        self,
        broadcaster: FrameBroadcaster,
        max_stream_fps: float,
        deliver: Callable[[JpegFrame], None],
    ):
        self.broadcaster = broadcaster
        self.deliver = deliver
        self.min_interval = 1.0 / max_stream_fps
        self.slack = self.min_interval * SLOT_SLACK
        self.last_index = -1
        self.next_slot = 0.0  # capture time (monotonic) from which the next frame may go
        self.last_send = -1e9  # loop time of the last send
        self.asked = False
        self.closed = False
        self.timer = None

    def request(self) -> None:
        """The viewer can take one more frame; asking again before it came is a no-op."""
        if not self.asked and not self.closed:
            self.asked = True
            self._answer()

    def close(self) -> None:
        self.closed = True
        if self.timer is not None:
            tornado.ioloop.IOLoop.current().remove_timeout(self.timer)
            self.timer = None

    def _answer(self) -> None:
        """Deliver the next frame if the rate cap and freshness allow, else come back later."""
        self.timer = None
        if not self.asked or self.closed:
            return
        frame = self.broadcaster.latest
        if (
            frame is None
            or frame.index <= self.last_index
            or frame.monotonic < self.next_slot - self.slack
        ):
            self.broadcaster.call_on_next_frame(self._answer)
            return
        loop = tornado.ioloop.IOLoop.current()
        now = loop.time()
        earliest = self.last_send + self.min_interval * BURST_GUARD
        if now < earliest:
            self.timer = loop.call_at(earliest, self._answer)
            return
        self.asked = False
        self.last_index = frame.index
        self.last_send = now
        if frame.monotonic - self.next_slot < self.min_interval:
            self.next_slot += self.min_interval
        else:  # fell behind: slots start from this frame
            self.next_slot = frame.monotonic + self.min_interval
        self.deliver(frame)


class LiveViewSocket(tornado.websocket.WebSocketHandler):
    """One viewer's websocket; all its methods run on the IOLoop."""

    def initialize(self, broadcaster: FrameBroadcaster, max_stream_fps: float, auth):
        self.broadcaster = broadcaster
        self.pacer = ViewerPacer(broadcaster, max_stream_fps, self._send)
        self.auth = auth
        self.joined = False

    def prepare(self):
        # refuse before the upgrade: an unauthenticated browser never gets a socket
        if not self.auth.is_authenticated(self):
            raise tornado.web.HTTPError(403)

    def open(self):
        self.joined = True
        self.broadcaster.viewer_joined()
        logger.info(
            "viewer connected from %s (%d watching)",
            self.request.remote_ip,
            self.broadcaster.viewers,
        )

    def on_message(self, message):
        if message != READ_FRAME:
            logger.warning(
                "closing the live view of %s: unexpected message", self.request.remote_ip
            )
            self.close(1003, "expected read_frame")
            return
        self.pacer.request()

    def _send(self, frame: JpegFrame) -> None:
        try:
            self.write_message(frame.data, binary=True)
        except tornado.websocket.WebSocketClosedError:
            pass

    def on_close(self):
        self.pacer.close()
        if self.joined:
            self.joined = False
            self.broadcaster.viewer_left()
            logger.info("viewer from %s left", self.request.remote_ip)
