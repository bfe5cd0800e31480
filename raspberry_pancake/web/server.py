"""The HTTP server, bounded so that no visitor can take what recording needs.

The audit held 1,100 idle connections open: every file descriptor went to them,
recording lost clips to "Too many open files", and tornado logged EMFILE
226,000 times. Here:

- Headers must arrive within ``IDLE_TIMEOUT`` (all of them, not byte by byte),
  a kept-alive connection is closed after as long without a request, and a body
  must arrive within ``BODY_TIMEOUT``. Headers and bodies are capped in size.
- At most ``max_connections`` sockets are open at once, and never more than the
  file descriptor limit leaves after ``FD_RESERVE`` for recording, the camera,
  the log and the emitter. At the cap, a connection that has not sent a whole
  request is closed to let the newcomer in: the longest-waiting one of the
  address that holds the most such connections, so that an attacker reopening
  hundreds of them churns only its own, and a visitor on a slow link (whose
  request is still on its way) keeps its place. When every connection is busy
  (a request, a live view), the newcomer is closed instead.
- If accepting fails for lack of descriptors all the same, accepting pauses for
  a second at a time; each of these is logged at most once a minute.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
from typing import Dict, List, Optional

import tornado.httpserver
import tornado.httputil
import tornado.ioloop
import tornado.iostream

from .logsummary import LogSummary

logger = logging.getLogger(__name__)

IDLE_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0
MAX_HEADER_SIZE = 16 * 1024
#: a login form is well under 1 KiB; nothing here takes uploads
MAX_BODY_SIZE = 8 * 1024
MAX_BUFFER_SIZE = 64 * 1024
MAX_CONNECTIONS = 128
FD_RESERVE = 128
#: the soft descriptor limit is raised to at most this (epoll does not mind)
FD_LIMIT_TARGET = 8192
OUT_OF_FDS_PAUSE = 1.0
#: connections taken from the accept queue per wake-up, so other work interleaves
ACCEPTS_PER_WAKEUP = 16


def raise_fd_limit(target: int = FD_LIMIT_TARGET) -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard one; return the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as e:
            logger.debug("cannot raise the file descriptor limit: %s", e)
    return soft if soft != resource.RLIM_INFINITY else target


def open_fd_count() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 32


def connection_cap(fd_limit: int, wanted: int = MAX_CONNECTIONS) -> int:
    """Connections allowed when ``fd_limit`` descriptors exist and some are already in use."""
    return max(4, min(wanted, fd_limit - FD_RESERVE - open_fd_count()))


class _TrackedStream(tornado.iostream.IOStream):
    """An IOStream that tells the server when it closes, whichever way it closes."""

    def __init__(self, sock, server: GuardedHTTPServer, **kwargs):
        super().__init__(sock, **kwargs)
        self._server = server

    def close(self, exc_info=False):
        if not self.closed():
            self._server._forget(self)
        super().close(exc_info)


class _HeadersWatch(tornado.httputil.HTTPMessageDelegate):
    """Marks a connection busy once a request's headers have all arrived."""

    def __init__(self, inner: tornado.httputil.HTTPMessageDelegate, server, stream):
        self._inner = inner
        self._server = server
        self._stream = stream

    def headers_received(self, start_line, headers):
        self._server._busy(self._stream)
        return self._inner.headers_received(start_line, headers)

    def data_received(self, chunk):
        return self._inner.data_received(chunk)

    def finish(self):
        return self._inner.finish()

    def on_connection_close(self):
        return self._inner.on_connection_close()


class GuardedHTTPServer(tornado.httpserver.HTTPServer):
    """tornado's HTTPServer with its own accept loop and a cap; runs on the IOLoop."""

    def initialize(self, request_callback, max_connections: Optional[int] = None, **kwargs):
        fd_limit = raise_fd_limit()
        wanted = max_connections or MAX_CONNECTIONS
        self.max_connections = connection_cap(fd_limit, wanted)
        if self.max_connections < min(wanted, 16):
            logger.warning(
                "only %d file descriptors: at most %d web connections at once",
                fd_limit,
                self.max_connections,
            )
        settings = dict(
            idle_connection_timeout=IDLE_TIMEOUT,
            body_timeout=BODY_TIMEOUT,
            max_header_size=MAX_HEADER_SIZE,
            max_body_size=MAX_BODY_SIZE,
            max_buffer_size=MAX_BUFFER_SIZE,
        )
        settings.update(kwargs)
        super().initialize(request_callback, **settings)
        self._listeners: List[socket.socket] = []
        self._open: Dict[tornado.iostream.IOStream, str] = {}  # each one's peer address
        # connections waiting for a request's headers, by peer address, the
        # longest-waiting first; an address with none left is removed
        self._waiting: Dict[str, Dict[tornado.iostream.IOStream, None]] = {}
        self._at_cap = LogSummary(
            logger,
            f"{self.max_connections} web connections open: closing the longest-idle ones "
            "and refusing newcomers while all are busy",
        )
        self._out_of_fds = LogSummary(
            logger,
            "out of file descriptors: not accepting web connections for a second",
        )

    @property
    def connections(self) -> int:
        return len(self._open)

    # accepting

    def add_sockets(self, sockets) -> None:
        loop = tornado.ioloop.IOLoop.current()
        for sock in sockets:
            sock.setblocking(False)
            self._listeners.append(sock)
            loop.add_handler(sock, self._on_acceptable, tornado.ioloop.IOLoop.READ)

    def stop(self) -> None:
        loop = tornado.ioloop.IOLoop.current()
        for sock in self._listeners:
            try:
                loop.remove_handler(sock)
            except (KeyError, ValueError):
                pass  # paused for lack of descriptors
            sock.close()
        self._listeners = []
        super().stop()

    def _on_acceptable(self, sock: socket.socket, _events: int) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                connection, address = sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause(sock)
                    return
                logger.error("accepting a web connection failed: %s", e)
                return
            self._admit(connection, address)

    def _pause(self, sock: socket.socket) -> None:
        self._out_of_fds.note()
        loop = tornado.ioloop.IOLoop.current()
        loop.remove_handler(sock)

        def resume():
            if sock in self._listeners:
                loop.add_handler(sock, self._on_acceptable, tornado.ioloop.IOLoop.READ)

        loop.call_later(OUT_OF_FDS_PAUSE, resume)

    def _admit(self, connection: socket.socket, address) -> None:
        if len(self._open) >= self.max_connections:
            self._at_cap.note()
            if not self._waiting:
                connection.close()
                return
            # one pass over the addresses: a handful, even under attack from a LAN
            crowded = max(self._waiting.values(), key=len)
            next(iter(crowded)).close()  # its longest-waiting one; close() forgets it
        stream = _TrackedStream(connection, self, max_buffer_size=MAX_BUFFER_SIZE)
        peer = address[0] if isinstance(address, tuple) and address else str(address)
        self._open[stream] = peer
        self._wait(stream)
        self.handle_stream(stream, address)

    def _wait(self, stream) -> None:
        """``stream`` now waits for a request's headers: last in its address's line."""
        peer = self._open[stream]
        self._busy(stream)
        self._waiting.setdefault(peer, {})[stream] = None  # a dict keeps insertion order

    def _busy(self, stream) -> None:
        """``stream`` has a request (or is gone): it is no longer one to close at the cap."""
        peer = self._open.get(stream)
        line = self._waiting.get(peer)
        if line is None:
            return
        line.pop(stream, None)
        if not line:
            del self._waiting[peer]

    def _forget(self, stream) -> None:
        self._busy(stream)
        self._open.pop(stream, None)

    # which connections wait for a request

    def start_request(self, server_conn, request_conn):
        stream = getattr(server_conn, "stream", None)
        if stream in self._open:
            self._wait(stream)
        delegate = super().start_request(server_conn, request_conn)
        return _HeadersWatch(delegate, self, stream)
