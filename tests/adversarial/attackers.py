"""Hostile and ordinary web clients for the adversarial tests and ``bench/web_attacks.py``.

Plain sockets and ``http.client``: nothing of the project's own code talks to
pancake.py here. Every client stays on loopback; a source address in 127.0.0.0/8
stands for another machine on the LAN.
"""

from __future__ import annotations

import asyncio
import errno
import http.client
import select
import socket
import struct
import threading
import time
import urllib.parse
from typing import Dict, List, Optional, Tuple

COOKIE = "pancake_session"
#: SO_LINGER with a zero timeout: closing sends a reset and leaves no TIME-WAIT behind.
#: Thousands of TIME-WAITs on 127.0.0.x ports would make other tests' servers
#: fail to bind 0.0.0.0 on a "free" port for a minute.
NO_LINGER = struct.pack("ii", 1, 0)


def no_time_wait(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, NO_LINGER)


class Reply:
    """What a request got: status, headers (all values per name, lower-case), body."""

    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes):
        self.status = status
        self.headers: Dict[str, List[str]] = {}
        for name, value in headers:
            self.headers.setdefault(name.lower(), []).append(value)
        self.body = body

    def header(self, name: str) -> Optional[str]:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def cookies(self) -> Dict[str, str]:
        out = {}
        for line in self.headers.get("set-cookie", []):
            name, _, rest = line.partition("=")
            out[name] = rest.split(";")[0]
        return out

    def cookie_line(self, name: str) -> Optional[str]:
        for line in self.headers.get("set-cookie", []):
            if line.startswith(name + "="):
                return line
        return None


def request(
    port: int,
    method: str,
    path: str,
    headers: Optional[dict] = None,
    body: Optional[bytes] = None,
    source: Optional[str] = None,
    timeout: float = 30.0,
) -> Reply:
    conn = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        conn.connect()
        no_time_wait(conn.sock)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


def login(
    port: int, password: str, source: Optional[str] = None, headers: Optional[dict] = None
) -> Reply:
    """The login form as a browser posts it: GET for the XSRF cookie, then POST."""
    page = request(port, "GET", "/login", headers=headers, source=source)
    token = page.cookies()["_xsrf"]
    body = urllib.parse.urlencode({"_xsrf": token, "password": password}).encode()
    post_headers = {
        **(headers or {}),
        "Cookie": f"_xsrf={token}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return request(port, "POST", "/login", headers=post_headers, body=body, source=source)


def status_of(call, *args, **kwargs):
    """The status a request got, or "closed" when the server closed the connection."""
    try:
        return call(*args, **kwargs).status
    except (OSError, http.client.HTTPException):
        return "closed"


def guess_until(port: int, source: str, until: float) -> list:
    """Wrong passwords from ``source``, one after the other until ``until``; their statuses."""
    statuses = []
    while time.monotonic() < until:
        statuses.append(status_of(login, port, "not the password", source=source))
    return statuses


def read_frames(url: str, count: int, headers: Optional[dict] = None, timeout: float = 30.0):
    """Open the live view and ask for ``count`` frames; returns them (raises if refused)."""
    import tornado.httpclient
    import tornado.websocket

    async def run():
        req = tornado.httpclient.HTTPRequest(url, headers=headers or {})
        ws = await asyncio.wait_for(tornado.websocket.websocket_connect(req), timeout)
        frames = []
        try:
            for _ in range(count):
                await ws.write_message("read_frame")
                frame = await asyncio.wait_for(ws.read_message(), timeout)
                if frame is None:
                    break
                frames.append(frame)
        finally:
            ws.close()
        return frames

    return asyncio.run(run())


class Watcher(threading.Thread):
    """A live-view viewer on its own thread, noting when each frame arrives."""

    def __init__(self, url: str, headers: Optional[dict] = None):
        super().__init__(daemon=True)
        self.url = url
        self.headers = headers or {}
        self.arrivals: List[float] = []
        self.error: Optional[BaseException] = None
        self._halt = threading.Event()
        self.connected = threading.Event()

    def run(self) -> None:
        import tornado.httpclient
        import tornado.websocket

        async def watch():
            req = tornado.httpclient.HTTPRequest(self.url, headers=self.headers)
            ws = await tornado.websocket.websocket_connect(req)
            self.connected.set()
            try:
                while not self._halt.is_set():
                    await ws.write_message("read_frame")
                    frame = await asyncio.wait_for(ws.read_message(), 30)
                    if frame is None:
                        raise ConnectionError("the live view closed")
                    self.arrivals.append(time.monotonic())
            finally:
                ws.close()

        try:
            asyncio.run(watch())
        except BaseException as e:  # reported to the test through .error
            self.error = e
            self.connected.set()

    def stop(self) -> None:
        self._halt.set()
        self.join(60)

    def frames_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.arrivals if start <= t <= end)

    def longest_gap(self, start: float, end: float) -> float:
        times = [start] + [t for t in self.arrivals if start <= t <= end] + [end]
        return max(b - a for a, b in zip(times, times[1:]))


class SlowLoris(threading.Thread):
    """Holds ``count`` connections open: some send nothing, some dribble headers.

    Every ``tick`` seconds each half-sent connection gets one more byte of an
    endless header, and every connection the server closed is opened again, as a
    persistent attacker does. Connects are non-blocking, so a full accept queue
    never stalls the attacker.
    """

    REQUEST_START = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "

    def __init__(self, port: int, count: int, half_sent: float = 0.5, tick: float = 1.0):
        super().__init__(daemon=True)
        self.port = port
        self.count = count
        self.half_sent = int(count * half_sent)
        self.tick = tick
        self.sockets: List[Optional[socket.socket]] = [None] * count
        self.reopened = 0
        self.connect_errors = 0
        self._halt = threading.Event()

    def _open(self, i: int) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        no_time_wait(s)
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", self.port))
        if err not in (0, errno.EINPROGRESS):
            self.connect_errors += 1
            s.close()
            self.sockets[i] = None
            return
        self.sockets[i] = s

    def _send(self, i: int, data: bytes) -> None:
        s = self.sockets[i]
        try:
            s.send(data)
        except BlockingIOError:
            pass
        except OSError:
            self._reopen(i)

    def _reopen(self, i: int) -> None:
        s = self.sockets[i]
        if s is not None:
            s.close()
        self.reopened += 1
        self._open(i)

    def run(self) -> None:
        for i in range(self.count):
            self._open(i)
        started = [False] * self.count
        while not self._halt.wait(self.tick):
            poller = select.poll()
            for i, s in enumerate(self.sockets):
                if s is None:
                    self._open(i)
                elif s.fileno() >= 0:
                    poller.register(s.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
            by_fd = {s.fileno(): i for i, s in enumerate(self.sockets) if s is not None}
            for fd, _events in poller.poll(0):
                i = by_fd[fd]
                try:
                    data = self.sockets[i].recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._reopen(i)
                    started[i] = False
            for i in range(self.half_sent):
                if self.sockets[i] is None:
                    continue
                if not started[i]:
                    self._send(i, self.REQUEST_START)
                    started[i] = True
                else:
                    self._send(i, b"a")

    def stop(self) -> None:
        self._halt.set()
        self.join(60)
        for s in self.sockets:
            if s is not None:
                s.close()


class NotifyListener(threading.Thread):
    """Stands for systemd: receives sd_notify datagrams on a socket path, with their times."""

    def __init__(self, path: str):
        super().__init__(daemon=True)
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages: List[Tuple[float, str]] = []

    def run(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            if not data:
                return
            self.messages.append((time.monotonic(), data.decode(errors="replace")))

    def pings(self) -> List[float]:
        return [t for t, m in self.messages if "WATCHDOG=1" in m]

    def longest_gap(self, start: float, end: float) -> float:
        times = [start] + [t for t in self.pings() if start <= t <= end] + [end]
        return max(b - a for a, b in zip(times, times[1:]))

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident memory of a process now (VmRSS), or at its highest so far (VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def send_big_body(port: int, megabytes: int, chunked: bool = False) -> str:
    """POST ``megabytes`` MB to /login as fast as the server takes it; returns how it ended."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    no_time_wait(s)
    size = megabytes * 1024 * 1024
    head = "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "Content-Type: application/x-www-form-urlencoded\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {size}\r\n\r\n"
    chunk = b"a" * 65536
    sent = 0
    try:
        s.sendall(head.encode())
        while sent < size:
            data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
            s.sendall(data)
            sent += len(chunk)
        if chunked:
            s.sendall(b"0\r\n\r\n")
        answer = s.recv(200)
        return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
    except OSError as e:
        return f"cut off after {sent // 1024} KiB ({e.__class__.__name__})"
    finally:
        s.close()
