"""/stream.mjpg against clients that misbehave, on a real server in this process.

Frames come from ``outputframe`` as a camera's capture thread would send them;
the clients are plain sockets that stop reading or go away early.
"""

from __future__ import annotations

import asyncio
import socket
import time

import tornado.testing

from raspberry_pancake.camera.base import JpegFrame
from raspberry_pancake.web import app as webapp
from raspberry_pancake.web import mjpeg
from raspberry_pancake.web.live import FrameBroadcaster


class MjpegTestCase(tornado.testing.AsyncHTTPTestCase):
    def get_app(self):
        self.broadcaster = FrameBroadcaster()
        self.broadcaster.attach(self.io_loop)
        self.index = 0
        return webapp.make_app(self.broadcaster, None, max_stream_fps=1000)

    def publish(self, data: bytes) -> None:
        self.index += 1
        now = time.monotonic()
        self.broadcaster.outputframe(JpegFrame(data, now, time.time(), self.index))

    def stream_socket(self) -> socket.socket:
        """A client that asks for the stream and then reads nothing."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        port = self.get_http_port()
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
        return sock

    async def until(self, condition, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up waiting for {what}")
            await asyncio.sleep(0.05)


class TestMisbehavingClients(MjpegTestCase):
    @tornado.testing.gen_test(timeout=60)
    async def test_a_client_that_stops_reading_is_dropped_after_the_stall_timeout(self):
        saved, mjpeg.STALL_TIMEOUT = mjpeg.STALL_TIMEOUT, 1.0
        sock = self.stream_socket()
        try:
            await self.until(lambda: self.broadcaster.viewers == 1, "the viewer")
            # far more than the socket buffers on both sides can hold: never drains
            self.publish(b"\xff\xd8" + bytes(16 * 2**20) + b"\xff\xd9")
            await self.until(lambda: self.broadcaster.viewers == 0, "the stalled viewer to go")
            assert not self.broadcaster.wants_frame(), "the camera would encode for nobody"
        finally:
            mjpeg.STALL_TIMEOUT = saved
            sock.close()

    @tornado.testing.gen_test(timeout=60)
    async def test_a_client_that_leaves_before_the_first_frame_is_forgotten(self):
        """Home Assistant checks a stream URL by reading the headers and hanging up."""
        sock = self.stream_socket()
        await self.until(lambda: self.broadcaster.viewers == 1, "the viewer")
        sock.close()
        await self.until(lambda: self.broadcaster.viewers == 0, "the viewer to go")
        self.publish(b"\xff\xd8late\xff\xd9")  # nobody left to take it, nothing breaks
        other = self.stream_socket()
        try:
            await self.until(lambda: self.broadcaster.viewers == 1, "the next viewer")
        finally:
            other.close()
