#!/usr/bin/env python3
"""Server CPU per delivered live-view frame, against a bare tornado websocket server.

Both servers run side by side, as subprocesses fed by the same pre-encoded 640x480 JPEGs at
30 fps from a thread (as a capture thread would feed them) and speak the same
``read_frame`` protocol; the bare one just hands every new frame to whoever
asked, with no rate cap and no bookkeeping. The viewers live in this process and
ask again as soon as a frame arrives. The cost is the server process's CPU time
(utime + stime from /proc) divided by the frames the viewers received.

For information it also measures the whole ``pancake.py --camera sim``, which
draws and encodes the JPEGs itself.

Usage: python3 bench/live_view_cost.py [--duration 15] [--viewers 1 10 50]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

import common

HOST = "127.0.0.1"
SIZE = (640, 480)
FPS = 30
DISTINCT_FRAMES = 30


# --- the bare baseline server (runs in its own process) ---------------------


def serve_bare(port: int, frames: List[bytes], fps: float) -> None:
    """The least a tornado websocket server can do for the read_frame protocol."""
    import tornado.ioloop
    import tornado.web
    import tornado.websocket

    loop = tornado.ioloop.IOLoop.current()
    waiting: List[tornado.websocket.WebSocketHandler] = []

    class BareSocket(tornado.websocket.WebSocketHandler):
        """Queues itself for the next frame on each message; runs on the IOLoop."""

        def on_message(self, message):
            waiting.append(self)

    def send_to_waiting(data: bytes) -> None:
        askers = waiting[:]
        waiting.clear()
        for handler in askers:
            try:
                handler.write_message(data, binary=True)
            except tornado.websocket.WebSocketClosedError:
                pass

    def publish(data: bytes, index: int, when: float) -> None:
        loop.add_callback(send_to_waiting, data)

    app = tornado.web.Application([(r"/websocket", BareSocket)], websocket_ping_interval=20)
    app.listen(port, address=HOST)
    common.run_until_terminated(loop, common.FrameSource(frames, fps, publish))


def serve(kind: str, port: int) -> None:
    frames = common.encode_frames(DISTINCT_FRAMES, SIZE)
    if kind == "bare":
        serve_bare(port, frames, FPS)
    else:
        common.serve_ours(HOST, port, frames, FPS, max_stream_fps=FPS)


# --- the driver -------------------------------------------------------------


def server_args(kind: str, port: int) -> List[str]:
    if kind == "pancake":
        return [
            "pancake.py",
            "--camera",
            "sim",
            "--port",
            str(port),
            "--resolution",
            *map(str, SIZE),
            "--fps",
            str(FPS),
            "--max-stream-fps",
            str(FPS),
        ]
    return [__file__, "serve", kind, "--port", str(port)]


async def measure(
    kinds: List[str], viewers: int, warmup: float, duration: float
) -> Dict[str, Dict[str, float]]:
    """Run the servers side by side, each with its own viewers, over the same window.

    Side by side, whatever else loads the machine weighs on both alike.
    """
    servers: Dict[str, subprocess.Popen] = {}
    watchers: Dict[str, common.Viewers] = {}
    # pancake.py logs every viewer at INFO: keep that out of the table
    log = tempfile.TemporaryFile()
    try:
        for kind in kinds:
            port = common.free_port()
            servers[kind] = common.spawn(server_args(kind, port), log=log)
            common.wait_for_port(HOST, port, servers[kind])
            watchers[kind] = common.Viewers(f"ws://{HOST}:{port}/websocket", viewers)
            await watchers[kind].start()
        await asyncio.sleep(warmup)
        before = {k: (common.cpu_seconds(p.pid), watchers[k].frames) for k, p in servers.items()}
        t0 = time.monotonic()
        await asyncio.sleep(duration)
        after = {k: (common.cpu_seconds(p.pid), watchers[k].frames) for k, p in servers.items()}
        elapsed = time.monotonic() - t0
        for kind, group in watchers.items():
            if group.failures:
                raise RuntimeError(f"{kind}: viewers failed: {group.failures[:3]}")
    finally:
        for group in watchers.values():
            await group.close()
        for server in servers.values():
            common.stop(server)
        if any(server.returncode not in (0, -15) for server in servers.values()):
            log.seek(0)
            sys.stderr.write(log.read()[-2000:].decode(errors="replace"))
        log.close()
    results = {}
    for kind in kinds:
        cpu = after[kind][0] - before[kind][0]
        frames = after[kind][1] - before[kind][1]
        results[kind] = {
            "cpu_per_frame_us": 1e6 * cpu / max(frames, 1),
            "cpu_percent": 100 * cpu / elapsed,
            "fps_per_viewer": frames / elapsed / viewers,
        }
    return results


async def run_all(counts: List[int], warmup: float, duration: float, full: bool) -> None:
    print(
        f"live view cost: {SIZE[0]}x{SIZE[1]} at {FPS} fps, --max-stream-fps {FPS}; bare and ours"
    )
    print(
        f"side by side, {duration:g} s per viewer count after {warmup:g} s warm-up; "
        f"load {common.load_average()}"
    )
    print()
    header = (
        f"{'viewers':>7}  {'bare us/frame':>13}  {'ours us/frame':>13}  {'ratio':>5}  "
        f"{'bare CPU%':>9}  {'ours CPU%':>9}  {'fps/viewer bare/ours':>20}"
    )
    print(header)
    for count in counts:
        pair = await measure(["bare", "ours"], count, warmup, duration)
        bare, ours = pair["bare"], pair["ours"]
        ratio = ours["cpu_per_frame_us"] / bare["cpu_per_frame_us"]
        print(
            f"{count:>7}  {bare['cpu_per_frame_us']:>13.0f}  {ours['cpu_per_frame_us']:>13.0f}  "
            f"{ratio:>5.2f}  {bare['cpu_percent']:>9.1f}  {ours['cpu_percent']:>9.1f}  "
            f"{bare['fps_per_viewer']:>9.1f} / {ours['fps_per_viewer']:<8.1f}",
            flush=True,
        )
    if not full:
        return
    print()
    print("for information: the whole pancake.py --camera sim (draws and encodes the JPEGs), alone")
    print(f"{'viewers':>7}  {'us/frame':>9}  {'CPU%':>6}  {'fps/viewer':>10}")
    for count in counts:
        whole = (await measure(["pancake"], count, warmup, duration))["pancake"]
        print(
            f"{count:>7}  {whole['cpu_per_frame_us']:>9.0f}  {whole['cpu_percent']:>6.1f}  "
            f"{whole['fps_per_viewer']:>10.1f}",
            flush=True,
        )
    print()
    print("us/frame: server CPU (utime+stime) per frame received by the viewers; goal ratio <= 1.3")


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    serve_parser = sub.add_parser("serve", help="(internal) run one server under test")
    serve_parser.add_argument("kind", choices=["bare", "ours"])
    serve_parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--viewers", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument(
        "--no-full", action="store_true", help="skip the whole-pancake.py measurement"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.command == "serve":
        serve(args.kind, args.port)
        return 0
    asyncio.run(run_all(args.viewers, args.warmup, args.duration, not args.no_full))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
