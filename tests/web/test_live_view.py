"""The live view's flow control, on a real server and real websocket clients.

Frames come from a thread calling ``outputframe``, as a camera's capture thread does.
"""

from __future__ import annotations

import asyncio
import threading
import time

import tornado.httpclient
import tornado.testing
import tornado.websocket

from raspberry_pancake.camera.base import JpegFrame
from raspberry_pancake.web import app as webapp
from raspberry_pancake.web import live
from raspberry_pancake.web.live import FrameBroadcaster


class FakeCapture:
    """Publishes numbered frames from its own thread at ``fps`` (0: only on demand)."""

    def __init__(self, broadcaster: FrameBroadcaster, fps: float = 0):
        self.broadcaster = broadcaster
        self.index = 0
        self.fps = fps
        self._stop = threading.Event()
        self._thread = None
        self.encoded = 0

    def publish(self, monotonic=None, wall=None):
        """One frame, by default captured now on both clocks."""
        self.index += 1
        if self.broadcaster.wants_frame():
            self.encoded += 1
            data = b"\xff\xd8frame-%d\xff\xd9" % self.index
            monotonic = time.monotonic() if monotonic is None else monotonic
            wall = time.time() if wall is None else wall
            self.broadcaster.outputframe(JpegFrame(data, monotonic, wall, self.index))

    def start(self):
        def run():
            while not self._stop.wait(1.0 / self.fps):
                self.publish()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join()


def frame_number(message: bytes) -> int:
    return int(message[len(b"\xff\xd8frame-") : -2])


class LiveViewTestCase(tornado.testing.AsyncHTTPTestCase):
    max_stream_fps = 1000.0
    camera_fps = 0

    def get_app(self):
        self.broadcaster = FrameBroadcaster()
        self.broadcaster.attach(self.io_loop)
        self.capture = FakeCapture(self.broadcaster, self.camera_fps)
        return webapp.make_app(self.broadcaster, max_stream_fps=self.max_stream_fps)

    def setUp(self):
        super().setUp()
        if self.camera_fps:
            self.capture.start()

    def tearDown(self):
        self.capture.stop()
        super().tearDown()

    async def connect(self, headers=None):
        request = tornado.httpclient.HTTPRequest(
            self.get_url("/websocket").replace("http", "ws"), headers=headers or {}
        )
        return await tornado.websocket.websocket_connect(request)

    async def read(self, ws, timeout=5.0):
        return await asyncio.wait_for(ws.read_message(), timeout)

    async def nothing_arrives(self, ws, seconds):
        try:
            msg = await asyncio.wait_for(ws.read_message(), seconds)
        except asyncio.TimeoutError:
            return True
        raise AssertionError(f"unexpected message {msg!r}")


class TestFlowControl(LiveViewTestCase):
    @tornado.testing.gen_test(timeout=20)
    async def test_nothing_is_sent_until_asked_then_one_frame_per_ask(self):
        ws = await self.connect()
        await asyncio.sleep(0.05)
        for _ in range(5):
            self.capture.publish()
        await self.nothing_arrives(ws, 0.5)
        await ws.write_message("read_frame")
        first = await self.read(ws)
        assert frame_number(first) == 5
        for _ in range(3):
            self.capture.publish()
        await self.nothing_arrives(ws, 0.5)
        await ws.write_message("read_frame")
        assert frame_number(await self.read(ws)) == 8
        ws.close()

    @tornado.testing.gen_test(timeout=20)
    async def test_never_the_same_frame_twice_the_answer_waits_for_a_new_one(self):
        ws = await self.connect()
        await asyncio.sleep(0.05)
        self.capture.publish()
        await ws.write_message("read_frame")
        assert frame_number(await self.read(ws)) == 1
        await ws.write_message("read_frame")
        await self.nothing_arrives(ws, 0.5)  # the browser is faster than the camera
        self.capture.publish()
        assert frame_number(await self.read(ws)) == 2
        ws.close()

    @tornado.testing.gen_test(timeout=20)
    async def test_repeated_asks_before_an_answer_give_one_frame(self):
        ws = await self.connect()
        await asyncio.sleep(0.05)
        for _ in range(3):
            await ws.write_message("read_frame")
        await asyncio.sleep(0.2)
        self.capture.publish()
        self.capture.publish()
        assert frame_number(await self.read(ws)) == 1
        await self.nothing_arrives(ws, 0.5)
        ws.close()

    @tornado.testing.gen_test(timeout=20)
    async def test_junk_closes_only_that_connection(self):
        good, bad, bad_binary = await self.connect(), await self.connect(), await self.connect()
        await asyncio.sleep(0.05)
        await bad.write_message("hello")
        await bad_binary.write_message(b"\x00\x01read_frame", binary=True)
        assert await self.read(bad) is None
        assert await self.read(bad_binary) is None
        assert bad.close_code == 1003
        self.capture.publish()
        await good.write_message("read_frame")
        assert frame_number(await self.read(good)) == 1
        good.close()

    @tornado.testing.gen_test(timeout=20)
    async def test_jpeg_is_encoded_only_while_someone_watches(self):
        self.capture.publish()
        assert self.capture.encoded == 0
        ws = await self.connect()
        await asyncio.sleep(0.05)
        self.capture.publish()
        assert self.capture.encoded == 1
        ws.close()
        for _ in range(50):
            if not self.broadcaster.wants_frame():
                break
            await asyncio.sleep(0.02)
        self.capture.publish()
        assert self.capture.encoded == 1


class TestClockJumps(LiveViewTestCase):
    max_stream_fps = 10.0

    @tornado.testing.gen_test(timeout=20)
    async def test_frames_keep_coming_when_the_wall_clock_jumps(self):
        """The cap runs on capture times on the monotonic clock: wall steps do not matter."""
        ws = await self.connect()
        await asyncio.sleep(0.05)
        now, start = time.time(), time.monotonic()
        # an hour back (a Pi without a clock syncing late), then two hours forward
        walls = (now, now - 3600, now - 3600 + 0.2, now + 3600, now + 3600 + 0.2)
        for n, wall in enumerate(walls):
            # captured 0.2 s apart: one frame per slot of the 10 fps cap
            self.capture.publish(start + n * 0.2, wall)
            await ws.write_message("read_frame")
            assert frame_number(await self.read(ws)) == n + 1
        ws.close()


class TestRateCap(LiveViewTestCase):
    max_stream_fps = 5.0
    camera_fps = 50

    @tornado.testing.gen_test(timeout=30)
    async def test_a_fast_browser_gets_at_most_max_stream_fps(self):
        ws = await self.connect()
        received = []
        start = time.monotonic()
        while time.monotonic() - start < 2.0:
            await ws.write_message("read_frame")
            msg = await self.read(ws)
            received.append((time.monotonic(), frame_number(msg)))
        elapsed = received[-1][0] - start
        # one frame per slot of 1/max_stream_fps, a slot taken at most SLOT_SLACK early
        assert len(received) <= self.max_stream_fps * elapsed + 1 + live.SLOT_SLACK
        gaps = [b[0] - a[0] for a, b in zip(received, received[1:])]
        assert min(gaps) >= live.BURST_GUARD / self.max_stream_fps - 0.01
        assert len(received) >= 3
        numbers = [n for _, n in received]
        assert numbers == sorted(set(numbers)), "a frame was sent twice or out of order"
        ws.close()


class TestFiftyViewers(LiveViewTestCase):
    camera_fps = 30

    @tornado.testing.gen_test(timeout=60)
    async def test_every_viewer_gets_fresh_distinct_frames(self):
        sockets = [await self.connect() for _ in range(50)]

        async def watch(ws):
            seen = []
            for _ in range(5):
                await ws.write_message("read_frame")
                seen.append(frame_number(await self.read(ws, timeout=20)))
            return seen

        results = await asyncio.gather(*(watch(ws) for ws in sockets))
        for seen in results:
            assert seen == sorted(set(seen))
        for ws in sockets:
            ws.close()
