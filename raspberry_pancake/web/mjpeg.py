"""The camera for clients other than the page: ``/snapshot.jpg`` and ``/stream.mjpg``.

Home Assistant, VLC, ffmpeg (and so Frigate and go2rtc), and an ``<img>`` tag all
read these. The stream never builds a backlog: like the websocket, each client
gets the newest frame once it has taken the previous one, capped by
``--max-stream-fps`` and never the same frame twice (``live.ViewerPacer``). A
multipart client cannot say when it has taken a frame, so the server watches its
own socket instead: a part counts as taken when tornado has handed it all to the
kernel (``flush()``) *and* the kernel holds none of it unacknowledged. Waiting
for ``flush()`` alone is not enough: the kernel's send buffer then fills with
seconds of pictures on a slow link (the "push-latest" server of
``bench/live_view_freshness.py``).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
import termios
from typing import Optional

import tornado.ioloop
import tornado.iostream

from ..camera.base import JpegFrame
from .base import BaseHandler
from .live import FrameBroadcaster, ViewerPacer

logger = logging.getLogger(__name__)

BOUNDARY = "pancakeframe"
#: a snapshot waits this long for the camera's next frame before answering 503
SNAPSHOT_TIMEOUT = 5.0
#: a stream whose previous part has not reached the client after this long is closed
STALL_TIMEOUT = 30.0
#: bounds of the wait between two looks at the kernel's send queue (seconds)
DRAIN_POLL_MIN = 0.001
DRAIN_POLL_MAX = 0.05


def part(frame: JpegFrame) -> bytes:
    """One multipart part: the boundary, its headers, the JPEG.

    ``X-Timestamp`` is the wall-clock time of capture, as mjpg-streamer sends it;
    players ignore it, and a monitoring script can tell a frame's age from it.
    """
    head = (
        f"--{BOUNDARY}\r\n"
        "Content-Type: image/jpeg\r\n"
        f"Content-Length: {len(frame.data)}\r\n"
        f"X-Timestamp: {frame.wall:.6f}\r\n\r\n"
    )
    return head.encode("ascii") + frame.data + b"\r\n"


def unacknowledged_bytes(sock: socket.socket) -> int:
    """Bytes the kernel still holds for ``sock``: not sent yet, or sent and not acknowledged."""
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")  # SIOCOUTQ on Linux
    return struct.unpack("i", raw)[0]


class ViewerEndpoint(BaseHandler):
    """Base of both endpoints: with ``--login``, only for whoever has shown the password.

    The clients are programs that cannot fill in a login form (Home Assistant,
    VLC, ffmpeg), so the password may also come with HTTP Basic auth; a refused
    caller gets 401 and the challenge. A browser's session cookie works too.
    """

    allow_basic_auth = True


class SnapshotHandler(ViewerEndpoint):
    """``GET /snapshot.jpg``: the camera's next frame, as one JPEG; runs on the IOLoop.

    It waits for a frame captured after the request (at most one frame interval
    while the camera runs) rather than serve a kept one: while nobody watches the
    camera encodes no JPEG, so a kept picture could be minutes old.
    """

    def initialize(self, auth, broadcaster: FrameBroadcaster, **kwargs):
        super().initialize(auth)
        self.broadcaster = broadcaster

    async def get(self):
        frame = await self._next_frame()
        if frame is None:
            logger.warning("snapshot for %s: no frame from the camera", self.request.remote_ip)
            self.set_status(503, "No frame from the camera")
            self.set_header("Retry-After", "5")
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
            self.write("503: no frame from the camera\n")
            return
        self.set_header("Content-Type", "image/jpeg")
        self.set_header("X-Timestamp", f"{frame.wall:.6f}")
        self.write(frame.data)

    async def _next_frame(self) -> Optional[JpegFrame]:
        future: asyncio.Future = asyncio.get_running_loop().create_future()

        def take(frame: JpegFrame) -> None:
            if not future.done():
                future.set_result(frame)

        withdraw = self.broadcaster.request_single_frame(take)
        try:
            return await asyncio.wait_for(future, SNAPSHOT_TIMEOUT)
        except asyncio.TimeoutError:
            return None
        finally:
            withdraw()


class MjpegStreamHandler(ViewerEndpoint):
    """``GET /stream.mjpg``: an endless multipart/x-mixed-replace response; on the IOLoop.

    The client counts as a viewer for as long as it is connected, so the camera
    encodes JPEG for it as it does for the page.
    """

    def initialize(self, auth, broadcaster: FrameBroadcaster, max_stream_fps: float, **kwargs):
        super().initialize(auth)
        self.broadcaster = broadcaster
        self.max_stream_fps = max_stream_fps
        self._frame: Optional[asyncio.Future] = None
        self._gone = False

    async def get(self):
        self.set_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        pacer = ViewerPacer(self.broadcaster, self.max_stream_fps, self._take)
        self.broadcaster.viewer_joined()
        logger.info(
            "MJPEG viewer connected from %s (%d watching)",
            self.request.remote_ip,
            self.broadcaster.viewers,
        )
        try:
            await self.flush()  # the headers at once: clients wait for them before the frames
            while not self._gone:
                self._frame = asyncio.get_running_loop().create_future()
                pacer.request()
                frame = await self._frame
                if frame is None:
                    break
                self.write(part(frame))
                try:
                    await asyncio.wait_for(self._send(), STALL_TIMEOUT)
                except asyncio.TimeoutError:
                    logger.warning(
                        "closing the MJPEG stream of %s: it took no frame for %.0f s",
                        self.request.remote_ip,
                        STALL_TIMEOUT,
                    )
                    self.request.connection.stream.close()
                    break
        except tornado.iostream.StreamClosedError:
            pass  # the client went away while a part was on its way
        finally:
            pacer.close()
            self.broadcaster.viewer_left()
            logger.info("MJPEG viewer from %s left", self.request.remote_ip)

    def _take(self, frame: JpegFrame) -> None:
        if self._frame is not None and not self._frame.done():
            self._frame.set_result(frame)

    def on_connection_close(self):
        self._gone = True
        if self._frame is not None and not self._frame.done():
            self._frame.set_result(None)

    async def _send(self) -> None:
        """Return once the part just written has reached the client, as far as we can tell."""
        await self.flush()
        stream = self.request.connection.stream
        loop = tornado.ioloop.IOLoop.current()
        last_pending, last_time = None, loop.time()
        while not stream.closed():
            try:
                pending = unacknowledged_bytes(stream.socket)
            except (OSError, AttributeError):
                return  # not a TCP socket we can ask: flush() is all we know
            if pending <= 0:
                return
            now = loop.time()
            delay = DRAIN_POLL_MIN * 2
            if last_pending is not None and last_pending > pending and now > last_time:
                # come back when the queue should be empty at the rate it drains
                delay = pending * (now - last_time) / (last_pending - pending)
            last_pending, last_time = pending, now
            await asyncio.sleep(min(max(delay, DRAIN_POLL_MIN), DRAIN_POLL_MAX))
