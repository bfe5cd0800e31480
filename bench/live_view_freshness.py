#!/usr/bin/env python3
"""Age of live-view frames on a slow link (about 2 Mbit/s), against MJPEG push servers.

Four servers play the same pre-encoded 640x480 JPEGs (~38 KB, sensor-like grain)
at 30 fps, each frame stamped with its index and capture time in a JPEG comment
segment, so every server carries the stamp identically:

- ours-ws: the project's live view (FrameBroadcaster + make_app, read_frame protocol
  on the websocket);
- ours-mjpeg: the same application's ``/stream.mjpg``, which sends the newest frame
  once the client has acknowledged the previous part;
- push: multipart/x-mixed-replace over HTTP, every frame written to every viewer
  as the camera produces it (tornado buffers what the link cannot carry yet);
- push-latest: the same stream, but the server waits for each write to reach the
  kernel and then sends the newest frame, skipping the ones in between (the best
  a push server can do by watching its writes alone).

Each server gets its own viewer on its own slow link, all four at once. The link
is, when this runs as root and ``ip netns`` works, a veth pair into a network
namespace shaped by ``tc qdisc ... tbf rate 2mbit burst 32kbit latency 400ms``;
otherwise a viewer on loopback that reads through a 2 Mbit/s token bucket with a
small SO_RCVBUF. The table says which one was used. A frame's age is the time the
viewer has its last byte minus the capture time in its stamp.

Usage: python3 bench/live_view_freshness.py [--duration 60] [--link auto|netns|slow-reader]
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import common

SIZE = (640, 480)
FPS = 30
DISTINCT_FRAMES = 30
QUALITY = 80
GRAIN = 6.0
RATE_BITS = 2_000_000
SERVERS = ("ours-ws", "ours-mjpeg", "push", "push-latest")
#: the URL path of each server's stream
PATHS = {"ours-ws": "/websocket", "ours-mjpeg": "/stream.mjpg"}
BOUNDARY = b"pancakeframe"
SLOW_READER_RCVBUF = 16 * 1024
WINDOW = 10.0
#: ours-mjpeg's p95 may exceed ours-ws's by this fraction
MJPEG_MARGIN = 0.10
#: a p95 that rises by more than this fraction from the first to the last window grows
GROWTH_MARGIN = 0.10

logger = logging.getLogger("live_view_freshness")


def bench_frames() -> List[bytes]:
    return common.encode_frames(DISTINCT_FRAMES, SIZE, quality=QUALITY, noise=GRAIN)


# --- the MJPEG push servers (each in a process of its own) -----------------


def serve_push(host: str, port: int, frames: List[bytes], newest_only: bool) -> None:
    """multipart/x-mixed-replace; every frame to every viewer, or the newest after each write."""
    import tornado.ioloop
    import tornado.iostream
    import tornado.locks
    import tornado.web

    loop = tornado.ioloop.IOLoop.current()
    viewers = set()
    newest: Dict[str, object] = {"index": -1, "data": b""}
    new_frame = tornado.locks.Condition()

    def part(data: bytes) -> bytes:
        head = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
        return head % (BOUNDARY, len(data)) + data + b"\r\n"

    class MjpegHandler(tornado.web.RequestHandler):
        """One viewer's endless multipart response; runs on the IOLoop."""

        async def get(self):
            self.set_header("Content-Type", "multipart/x-mixed-replace; boundary=pancakeframe")
            self.set_header("Cache-Control", "no-store")
            self.gone = tornado.locks.Event()
            if not newest_only:
                viewers.add(self)
                await self.gone.wait()
                return
            sent = -1
            while not self.gone.is_set():
                if newest["index"] <= sent:
                    await new_frame.wait()
                    continue
                sent = newest["index"]
                self.write(part(newest["data"]))
                try:
                    await self.flush()  # done when the kernel has taken it all
                except tornado.iostream.StreamClosedError:
                    return

        def on_connection_close(self):
            viewers.discard(self)
            self.gone.set()
            new_frame.notify_all()

    def on_frame(data: bytes, index: int) -> None:
        newest["index"], newest["data"] = index, data
        new_frame.notify_all()
        for viewer in list(viewers):
            viewer.write(part(data))
            viewer.flush()  # not awaited: what the link cannot take piles up in tornado

    def publish(data: bytes, index: int, when: float) -> None:
        loop.add_callback(on_frame, data, index)

    app = tornado.web.Application([(r"/stream", MjpegHandler)])
    app.listen(port, address=host)
    common.run_until_terminated(loop, common.FrameSource(frames, FPS, publish))


def serve(kind: str, host: str, port: int) -> None:
    frames = bench_frames()
    if kind.startswith("ours"):
        common.serve_ours(host, port, frames, FPS, max_stream_fps=FPS)
    else:
        serve_push(host, port, frames, newest_only=(kind == "push-latest"))


# --- the viewer (plain sockets, so that its reading can be slowed down) -----


class LinkReader:
    """Buffered reads from a socket, optionally through a token bucket of ``rate`` bytes/s."""

    def __init__(self, sock: socket.socket, rate: Optional[float]):
        self.sock = sock
        self.rate = rate
        self.buffer = bytearray()
        self.tokens = 0.0
        self.refilled = time.monotonic()

    def _fill(self) -> None:
        want = 65536
        if self.rate:
            now = time.monotonic()
            # a burst of at most 4 KB, like the tbf's 32 kbit
            self.tokens = min(4096.0, self.tokens + (now - self.refilled) * self.rate)
            self.refilled = now
            if self.tokens < 1024:
                time.sleep((1024 - self.tokens) / self.rate)
                return
            want = int(self.tokens)
        chunk = self.sock.recv(want)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.tokens -= len(chunk)
        self.buffer += chunk

    def read_exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._fill()
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def read_until(self, delimiter: bytes) -> bytes:
        while True:
            at = self.buffer.find(delimiter)
            if at >= 0:
                return self.read_exactly(at + len(delimiter))
            self._fill()


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client-to-server websocket frame (clients must mask, RFC 6455 5.3)."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


def watch_websocket(sock: socket.socket, reader: LinkReader, host: str, port: int, until: float):
    """Yield each binary message of the read_frame protocol, asking for the next one each time."""
    key = base64.b64encode(os.urandom(16))
    sock.sendall(
        b"GET /websocket HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
        % (host.encode(), port, key)
    )
    status = reader.read_until(b"\r\n\r\n")
    if b" 101 " not in status.split(b"\r\n", 1)[0]:
        raise ConnectionError(f"websocket refused: {status[:80]!r}")
    while time.time() < until:
        sock.sendall(masked_frame(0x1, b"read_frame"))
        while True:
            head = reader.read_exactly(2)
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", reader.read_exactly(2))
            elif length == 127:
                (length,) = struct.unpack(">Q", reader.read_exactly(8))
            payload = reader.read_exactly(length)
            if opcode == 0x9:  # ping: answer, then keep waiting for the picture
                sock.sendall(masked_frame(0xA, payload))
                continue
            if opcode == 0x8:
                raise ConnectionError("server closed the websocket")
            if opcode == 0x2:
                yield payload
                break


def watch_mjpeg(
    sock: socket.socket, reader: LinkReader, host: str, port: int, until: float, path: str
):
    """Yield each JPEG of a multipart/x-mixed-replace response.

    HTTP/1.0, so that the parts come without chunked-encoding lines between them.
    """
    request = b"GET %s HTTP/1.0\r\nHost: %s:%d\r\n\r\n" % (path.encode(), host.encode(), port)
    sock.sendall(request)
    status = reader.read_until(b"\r\n\r\n")
    if b" 200 " not in status.split(b"\r\n", 1)[0]:
        raise ConnectionError(f"stream refused: {status[:80]!r}")
    while time.time() < until:
        headers = reader.read_until(b"\r\n\r\n")
        length = None
        for line in headers.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            continue  # chunked-encoding line or preamble: look for the next part header
        yield reader.read_exactly(length)


def view(kind: str, host: str, port: int, duration: float, out: str, slow: bool) -> None:
    """Watch one server for ``duration`` s and write (received, captured, index, bytes) rows."""
    sock = socket.socket()
    if slow:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_READER_RCVBUF)
    sock.connect((host, port))
    reader = LinkReader(sock, RATE_BITS / 8 if slow else None)
    start = time.time()
    if kind == "ours-ws":
        frames = watch_websocket(sock, reader, host, port, start + duration)
    else:
        path = PATHS.get(kind, "/stream")
        frames = watch_mjpeg(sock, reader, host, port, start + duration, path)
    rows: List[Tuple[float, float, int, int]] = []
    try:
        for jpeg in frames:
            received = time.time()
            stamped = common.read_stamp(jpeg)
            if stamped is None:
                raise ValueError("a frame came without its stamp")
            rows.append((received, stamped[1], stamped[0], len(jpeg)))
    finally:
        sock.close()
        with open(out, "w") as f:
            json.dump({"start": start, "rows": rows}, f)


# --- the slow links --------------------------------------------------------


class NetnsLinks:
    """veth pairs into network namespaces, shaped to 2 Mbit/s towards the namespace."""

    def __init__(self, count: int):
        self.tag = f"rpb{os.getpid() % 100000}"
        self.count = count
        self.created: List[str] = []

    def names(self, i: int) -> Tuple[str, str, str]:
        return f"{self.tag}n{i}", f"{self.tag}h{i}", f"{self.tag}v{i}"

    def addresses(self, i: int) -> Tuple[str, str]:
        subnet = 200 + (os.getpid() + i) % 50
        return f"10.213.{subnet}.1", f"10.213.{subnet}.2"

    def setup(self) -> None:
        for i in range(self.count):
            ns, host_if, ns_if = self.names(i)
            host_ip, ns_ip = self.addresses(i)
            self._ip("netns", "add", ns)
            self.created.append(ns)
            self._ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            self._ip("link", "set", ns_if, "netns", ns)
            self._ip("addr", "add", f"{host_ip}/24", "dev", host_if)
            self._ip("link", "set", host_if, "up")
            self._ip("-n", ns, "addr", "add", f"{ns_ip}/24", "dev", ns_if)
            self._ip("-n", ns, "link", "set", ns_if, "up")
            self._ip("-n", ns, "link", "set", "lo", "up")
            shape = "root tbf rate 2mbit burst 32kbit latency 400ms".split()
            run_quietly(["tc", "qdisc", "add", "dev", host_if, *shape])

    def prefix(self, i: int) -> List[str]:
        return ["ip", "netns", "exec", self.names(i)[0]]

    def teardown(self) -> None:
        for ns in self.created:
            # deleting the namespace deletes its veth end, and with it the pair
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        self.created = []

    @staticmethod
    def _ip(*args: str) -> None:
        run_quietly(["ip", *args])


def run_quietly(command: List[str]) -> None:
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {result.stdout.decode().strip()}")


# --- the driver -------------------------------------------------------------


def run_once(duration: float, links: Optional[NetnsLinks], workdir: str) -> Dict[str, dict]:
    servers, viewers, outputs, started = [], [], {}, []
    try:
        for i, kind in enumerate(SERVERS):
            host = links.addresses(i)[0] if links else "127.0.0.1"
            port = common.free_port(host)
            server = common.spawn([__file__, "serve", kind, "--host", host, "--port", str(port)])
            servers.append(server)
            common.wait_for_port(host, port, server)
            outputs[kind] = os.path.join(workdir, f"{kind}.json")
            args = [__file__, "view", kind, "--host", host, "--port", str(port)]
            args += ["--duration", str(duration), "--out", outputs[kind]]
            if not links:
                args.append("--slow")
            viewers.append((kind, args, links.prefix(i) if links else []))
        started = [common.spawn(args, prefix=prefix) for _, args, prefix in viewers]
        for process in started:
            process.wait(timeout=duration + 60)
    finally:
        for process in started + servers:
            common.stop(process)
    results = {}
    for kind, path in outputs.items():
        with open(path) as f:
            results[kind] = json.load(f)
    return results


def summarize(data: dict, duration: float) -> Dict[str, float]:
    start, rows = data["start"], data["rows"]
    ages = [(received - start, received - captured) for received, captured, _, _ in rows]
    first = [age for t, age in ages if t < WINDOW]
    last = [age for t, age in ages if t >= duration - WINDOW]
    total_bytes = sum(row[3] for row in rows)
    return {
        "frames": len(rows),
        "p95": common.percentile([age for _, age in ages], 0.95),
        "fps": len(rows) / duration,
        "kbit": total_bytes * 8 / duration / 1000,
        "first_p50": common.percentile(first, 0.5),
        "first_p95": common.percentile(first, 0.95),
        "last_p50": common.percentile(last, 0.5),
        "last_p95": common.percentile(last, 0.95),
    }


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    serve_parser = sub.add_parser("serve", help="(internal) run one server")
    serve_parser.add_argument("kind", choices=SERVERS)
    serve_parser.add_argument("--host", required=True)
    serve_parser.add_argument("--port", type=int, required=True)
    view_parser = sub.add_parser("view", help="(internal) watch one server")
    view_parser.add_argument("kind", choices=SERVERS)
    view_parser.add_argument("--host", required=True)
    view_parser.add_argument("--port", type=int, required=True)
    view_parser.add_argument("--duration", type=float, required=True)
    view_parser.add_argument("--out", required=True)
    view_parser.add_argument("--slow", action="store_true", help="read through a token bucket")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds watched")
    parser.add_argument("--link", choices=["auto", "netns", "slow-reader"], default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.command == "serve":
        serve(args.kind, args.host, args.port)
        return 0
    if args.command == "view":
        view(args.kind, args.host, args.port, args.duration, args.out, args.slow)
        return 0

    links: Optional[NetnsLinks] = None
    if args.link in ("auto", "netns"):
        links = NetnsLinks(len(SERVERS))
        try:
            links.setup()
        except (OSError, RuntimeError) as e:
            links.teardown()
            if args.link == "netns":
                print(f"cannot build the shaped link: {e}", file=sys.stderr)
                return 1
            print(f"(no network namespace here: {e}; using the slow-reading viewer)")
            links = None
    frames = bench_frames()
    mean_size = sum(map(len, frames)) / len(frames)
    transfer = mean_size * 8 / RATE_BITS
    bound = 2 * transfer + 1 / FPS
    link_name = (
        "veth + netns, tc tbf rate 2mbit burst 32kbit latency 400ms"
        if links
        else f"loopback, viewer reads at 2 Mbit/s, SO_RCVBUF {SLOW_READER_RCVBUF}"
    )
    print(
        f"live view freshness: {SIZE[0]}x{SIZE[1]} JPEGs of {mean_size / 1000:.1f} KB at {FPS} fps"
    )
    print(f"link: {link_name}; {args.duration:g} s, all four servers at once")
    print(
        f"frame-transfer time T = {transfer * 1000:.0f} ms; goals: ours-ws p95 < 2T + 1/fps = "
        f"{bound * 1000:.0f} ms, ours-mjpeg p95 within {MJPEG_MARGIN:.0%} of ours-ws; "
        "neither growing"
    )
    try:
        with tempfile.TemporaryDirectory() as workdir:
            results = run_once(args.duration, links, workdir)
    finally:
        if links:
            links.teardown()
    summaries = {kind: summarize(results[kind], args.duration) for kind in SERVERS}
    print()
    print(
        f"{'server':<12} {'frames':>6} {'fps':>5} {'kbit/s':>7}  {'p95 (ms)':>8}  "
        f"{'first 10 s p50/p95 (ms)':>24}  {'last 10 s p50/p95 (ms)':>23}  {'p95 last/first':>14}"
    )
    for kind in SERVERS:
        s = summaries[kind]
        print(
            f"{kind:<12} {s['frames']:>6} {s['fps']:>5.1f} {s['kbit']:>7.0f}  "
            f"{s['p95'] * 1000:>8.0f}  "
            f"{s['first_p50'] * 1000:>11.0f} / {s['first_p95'] * 1000:<10.0f}  "
            f"{s['last_p50'] * 1000:>10.0f} / {s['last_p95'] * 1000:<10.0f}  "
            f"{s['last_p95'] / s['first_p95']:>14.2f}"
        )
    ws, mjpeg = summaries["ours-ws"], summaries["ours-mjpeg"]
    print()
    verdict = "met" if ws["p95"] < bound and not growing(ws) else "missed"
    print(f"ours-ws: p95 {ws['p95'] * 1000:.0f} ms vs bound {bound * 1000:.0f} ms: goal {verdict}")
    ratio = mjpeg["p95"] / ws["p95"]
    verdict = "met" if ratio <= 1 + MJPEG_MARGIN and not growing(mjpeg) else "missed"
    print(
        f"ours-mjpeg: p95 {mjpeg['p95'] * 1000:.0f} ms, {ratio:.2f}x ours-ws "
        f"(p95 last/first {mjpeg['last_p95'] / mjpeg['first_p95']:.2f}): goal {verdict}"
    )
    return 0


def growing(summary: Dict[str, float]) -> bool:
    """The last 10 s are worse than the first 10 s by more than the noise allows."""
    return summary["last_p95"] > summary["first_p95"] * (1 + GROWTH_MARGIN)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
