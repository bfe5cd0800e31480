"""The guarded HTTP server: the connection cap, who is closed at the cap, and real EMFILE."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import time

import tornado.httpclient
import tornado.testing
import tornado.web
import tornado.websocket

from raspberry_pancake.web import server as web_server
from raspberry_pancake.web.server import GuardedHTTPServer
from tests.adversarial.attackers import no_time_wait
from tests.helpers import ROOT


class Hello(tornado.web.RequestHandler):
    def get(self):
        self.write("hello")


class Echo(tornado.websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


CAP = 8


class CapTestCase(tornado.testing.AsyncHTTPTestCase):
    def get_app(self):
        return tornado.web.Application([(r"/", Hello), (r"/ws", Echo)])

    def get_http_server(self):
        self.server = GuardedHTTPServer(self._app, max_connections=CAP)
        return self.server

    def tearDown(self):
        for s in getattr(self, "idle", []):
            s.close()
        super().tearDown()

    def open_idle(self, count):
        """Connections that never send a byte."""
        self.idle = getattr(self, "idle", [])
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", self.get_http_port()))
            no_time_wait(s)
            self.idle.append(s)

    def knock(self) -> bytes:
        """A visitor's request on a plain socket (run off the loop); what came back."""
        late = socket.create_connection(("127.0.0.1", self.get_http_port()))
        no_time_wait(late)
        late.settimeout(10)
        try:
            late.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return late.recv(100)
        except (ConnectionResetError, BrokenPipeError):
            return b""
        finally:
            late.close()

    async def settle(self, condition, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "gave up waiting"
            await asyncio.sleep(0.01)

    @tornado.testing.gen_test(timeout=30)
    async def test_at_the_cap_the_longest_idle_connection_makes_room(self):
        self.open_idle(CAP + 5)
        await self.settle(lambda: self.server.connections == CAP)
        r = await tornado.httpclient.AsyncHTTPClient().fetch(self.get_url("/"))
        assert r.body == b"hello"
        assert self.server.connections <= CAP
        # the first idle ones were closed to let the others (and the visitor) in
        first = self.idle[0]
        first.settimeout(10)
        assert await asyncio.get_running_loop().run_in_executor(None, first.recv, 1) == b""

    @tornado.testing.gen_test(timeout=30)
    async def test_a_visitor_on_a_slow_link_keeps_its_place_while_an_attacker_churns(self):
        """The visitor has connected but its request is still on its way; meanwhile
        another address opens more idle connections than the cap holds."""
        visitor = socket.create_connection(
            ("127.0.0.1", self.get_http_port()), source_address=("127.0.0.2", 0)
        )
        no_time_wait(visitor)
        self.idle = [visitor]
        await self.settle(lambda: self.server.connections == 1)
        self.open_idle(3 * CAP)  # from 127.0.0.1
        await self.settle(lambda: self.server.connections == CAP)

        def ask() -> bytes:
            visitor.settimeout(10)
            visitor.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return visitor.recv(100)

        answer = await asyncio.get_running_loop().run_in_executor(None, ask)
        assert answer.startswith(b"HTTP/1.1 200"), answer

    @tornado.testing.gen_test(timeout=30)
    async def test_when_every_connection_is_busy_the_newcomer_is_closed(self):
        url = self.get_url("/ws").replace("http", "ws")
        viewers = [await tornado.websocket.websocket_connect(url) for _ in range(CAP)]
        await self.settle(lambda: self.server.connections == CAP)
        answer = await asyncio.get_running_loop().run_in_executor(None, self.knock)
        assert answer == b"", answer  # closed unanswered
        for ws in viewers:  # and the busy ones were left alone
            await ws.write_message("still here")
            assert await ws.read_message() == "still here"
            ws.close()
        await self.settle(lambda: self.server.connections == 0)


def test_header_timeout_and_sizes_are_short():
    """The figures the docs give, so that a change to them is a change to the docs."""
    assert web_server.IDLE_TIMEOUT <= 10 and web_server.BODY_TIMEOUT <= 10
    assert web_server.MAX_BODY_SIZE <= 16 * 1024 and web_server.MAX_HEADER_SIZE <= 16 * 1024


# Runs in a child with a real, low descriptor limit. Once the server listens, the
# child takes every descriptor left (as a leak elsewhere in the process would),
# so accept() fails with EMFILE; then it gives them back and serves again.
EMFILE_CHILD = textwrap.dedent("""
    import logging, os, resource, socket, sys, time
    sys.path.insert(0, {root!r})
    import tornado.ioloop, tornado.web
    from raspberry_pancake.web.server import GuardedHTTPServer

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(message)s")
    resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    class Hello(tornado.web.RequestHandler):
        def get(self):
            self.write("hello")

    server = GuardedHTTPServer(tornado.web.Application([(r"/", Hello)]))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server.add_sockets([sock])
    print("PORT", sock.getsockname()[1], flush=True)
    hogs = []
    while True:
        try:
            hogs.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            break
    loop = tornado.ioloop.IOLoop.current()

    def give_back():
        for fd in hogs:
            os.close(fd)
        print("GAVE BACK", flush=True)

    loop.call_later(float(sys.argv[1]), give_back)
    loop.call_later(float(sys.argv[1]) + 20, loop.stop)
    loop.start()
""")


def test_out_of_descriptors_pauses_accepting_and_logs_once(tmp_path):
    script = tmp_path / "emfile_child.py"
    script.write_text(EMFILE_CHILD.format(root=ROOT))
    hog_for = 4.0
    child = subprocess.Popen(
        [sys.executable, str(script), str(hog_for)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        port = int(child.stdout.readline().split()[1])
        # knock while every descriptor is taken: the kernel queues, accept() fails
        knocks = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            no_time_wait(s)
            knocks.append(s)
        # once they are given back, a request is answered
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        no_time_wait(s)
        s.settimeout(30)
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while b"hello" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        assert b"200 OK" in answer and b"hello" in answer, answer
        s.close()
        for k in knocks:
            k.close()
    finally:
        child.terminate()
        out, _ = child.communicate(timeout=60)
    assert "GAVE BACK" in out
    assert 1 <= out.count("out of file descriptors") <= 2, out  # once; again after a minute
    assert "Traceback" not in out and "Too many open files" not in out, out
    assert os.path.exists(script)
