#!/usr/bin/env python3
"""Server CPU per delivered live-view frame, against a bare tornado websocket server.

Both servers run side by side, as subprocesses fed by the same pre-encoded 640x480 JPEGs at
30 fps from a thread (as a capture thread would feed them) and speak the same
``read_frame`` protocol; the bare one just hands every new frame to whoever
asked, with no rate cap and no bookkeeping. The viewers live in this process and
ask again as soon as a frame arrives. The cost is the server process's CPU time
(read in nanoseconds from its CPU-time clock) divided by the frames its viewers received.

The machine this runs on is shared, so one long window is at the mercy of whatever
else runs during it. Instead the two servers stay up for the whole run and are
measured in several short rounds; each round connects N fresh viewers to each,
warms up, and measures both over the same few seconds. The rounds go through the
viewer counts forwards, then backwards, and alternate which server's viewers
connect first. Each round gives a ratio ours/bare; the table shows the median and
the spread. By default this process (the viewers) runs on one CPU and both servers
share another, so they meet the same neighbours and do not take CPU from the viewers.

For information it also measures the whole ``pancake.py --camera sim``, which
draws and encodes the JPEGs itself.

Usage: python3 bench/live_view_cost.py [--rounds 7] [--duration 4] [--viewers 1 10 50]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import common

HOST = "127.0.0.1"
SIZE = (640, 480)
FPS = 30
DISTINCT_FRAMES = 30
KINDS = ("bare", "ours")


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


def cpu_plan(pin: bool) -> Tuple[Optional[List[int]], Optional[List[int]]]:
    """(CPUs for this process, CPUs for the servers); (None, None) when not pinning.

    The viewers get the first CPU we may use and the servers the last, together.
    """
    usable = sorted(os.sched_getaffinity(0))
    if not pin or len(usable) < 2:
        return None, None
    return usable[:1], usable[-1:]


class Servers:
    """The servers under test, up for the whole run; used from the benchmark's loop."""

    def __init__(self, kinds: Sequence[str], cpus: Optional[List[int]]):
        self.kinds = list(kinds)
        self.cpus = cpus
        self.processes: Dict[str, subprocess.Popen] = {}
        self.urls: Dict[str, str] = {}
        # pancake.py logs every viewer at INFO: keep that out of the table
        self.log = tempfile.TemporaryFile()

    def start(self) -> None:
        for kind in self.kinds:
            port = common.free_port()
            process = common.spawn(server_args(kind, port), log=self.log, cpus=self.cpus)
            self.processes[kind] = process
            common.wait_for_port(HOST, port, process)
            self.urls[kind] = f"ws://{HOST}:{port}/websocket"

    def stop(self) -> None:
        for process in self.processes.values():
            common.stop(process)
        if any(p.returncode not in (0, -15) for p in self.processes.values()):
            self.log.seek(0)
            sys.stderr.write(self.log.read()[-2000:].decode(errors="replace"))
        self.log.close()


async def measure_round(
    servers: Servers, kinds: Sequence[str], viewers: int, warmup: float, duration: float
) -> Dict[str, Dict[str, float]]:
    """Connect ``viewers`` to each server in ``kinds`` order, measure all over one window."""
    watchers: Dict[str, common.Viewers] = {}
    try:
        for kind in kinds:
            watchers[kind] = common.Viewers(servers.urls[kind], viewers)
            await watchers[kind].start()
        await asyncio.sleep(warmup)
        pids = {kind: servers.processes[kind].pid for kind in kinds}
        viewers_cpu0 = time.process_time()
        before = {k: (common.cpu_seconds(pids[k]), watchers[k].frames) for k in kinds}
        t0 = time.monotonic()
        await asyncio.sleep(duration)
        after = {k: (common.cpu_seconds(pids[k]), watchers[k].frames) for k in kinds}
        elapsed = time.monotonic() - t0
        viewers_cpu = time.process_time() - viewers_cpu0
        for kind, group in watchers.items():
            if group.failures:
                raise RuntimeError(f"{kind}: viewers failed: {group.failures[:3]}")
    finally:
        for group in watchers.values():
            await group.close()
    results = {}
    for kind in kinds:
        cpu = after[kind][0] - before[kind][0]
        frames = after[kind][1] - before[kind][1]
        results[kind] = {
            "cpu_per_frame_us": 1e6 * cpu / max(frames, 1),
            "cpu_percent": 100 * cpu / elapsed,
            "fps_per_viewer": frames / elapsed / viewers,
            "viewers_cpu_percent": 100 * viewers_cpu / elapsed,
        }
    return results


def median(rounds: List[Dict[str, Dict[str, float]]], kind: str, key: str) -> float:
    return statistics.median(r[kind][key] for r in rounds)


async def compare(
    counts: List[int], rounds: int, warmup: float, duration: float, pin: bool
) -> None:
    """Bare and ours side by side, ``rounds`` short rounds per viewer count."""
    client_cpus, server_cpus = cpu_plan(pin)
    allowed = os.sched_getaffinity(0)
    if client_cpus is not None:
        os.sched_setaffinity(0, client_cpus)
    where = (
        f"viewers on CPU {client_cpus[0]}, both servers on CPU {server_cpus[0]}"
        if client_cpus is not None
        else "no CPU pinning"
    )
    print(
        f"live view cost: {SIZE[0]}x{SIZE[1]} at {FPS} fps, --max-stream-fps {FPS}; bare and ours"
    )
    print(
        f"side by side, {rounds} rounds of {duration:g} s (after {warmup:g} s warm-up) per "
        f"viewer count; {where}; load {common.load_average()}"
    )
    samples: Dict[int, List[Dict[str, Dict[str, float]]]] = {count: [] for count in counts}
    servers = Servers(KINDS, server_cpus)
    started = time.monotonic()
    try:
        servers.start()
        for number in range(rounds):
            order = counts if number % 2 == 0 else counts[::-1]
            kinds = KINDS if number % 2 == 0 else KINDS[::-1]
            for count in order:
                samples[count].append(await measure_round(servers, kinds, count, warmup, duration))
    finally:
        servers.stop()
        os.sched_setaffinity(0, allowed)
    print(f"({time.monotonic() - started:.0f} s, load {common.load_average()} at the end)")
    print()
    print(
        f"{'viewers':>7}  {'bare us/frame':>13}  {'ours us/frame':>13}  {'ratio':>5}  "
        f"{'min-max':>9}  {'bare CPU%':>9}  {'ours CPU%':>9}  {'fps/viewer bare/ours':>20}  "
        f"{'viewers CPU%':>12}"
    )
    for count in counts:
        done = samples[count]
        ratios = [r["ours"]["cpu_per_frame_us"] / r["bare"]["cpu_per_frame_us"] for r in done]
        print(
            f"{count:>7}  {median(done, 'bare', 'cpu_per_frame_us'):>13.0f}  "
            f"{median(done, 'ours', 'cpu_per_frame_us'):>13.0f}  "
            f"{statistics.median(ratios):>5.2f}  "
            f"{min(ratios):>4.2f}-{max(ratios):<4.2f}  "
            f"{median(done, 'bare', 'cpu_percent'):>9.1f}  "
            f"{median(done, 'ours', 'cpu_percent'):>9.1f}  "
            f"{median(done, 'bare', 'fps_per_viewer'):>9.1f} / "
            f"{median(done, 'ours', 'fps_per_viewer'):<8.1f}  "
            f"{median(done, 'bare', 'viewers_cpu_percent'):>12.0f}"
        )
    print()
    print("each round, in the order measured: ratio (bare us/frame / ours us/frame)")
    for count in counts:
        cells = [
            f"{r['ours']['cpu_per_frame_us'] / r['bare']['cpu_per_frame_us']:.2f} "
            f"({r['bare']['cpu_per_frame_us']:.0f}/{r['ours']['cpu_per_frame_us']:.0f})"
            for r in samples[count]
        ]
        print(f"{count:>7}  " + "  ".join(cells))


async def whole_pancake(counts: List[int], warmup: float, duration: float) -> None:
    """The whole pancake.py --camera sim, alone, one window per viewer count."""
    print()
    print("for information: the whole pancake.py --camera sim (draws and encodes the JPEGs), alone")
    print(f"{'viewers':>7}  {'us/frame':>9}  {'CPU%':>6}  {'fps/viewer':>10}")
    for count in counts:
        servers = Servers(["pancake"], None)
        try:
            servers.start()
            whole = (await measure_round(servers, ["pancake"], count, warmup, duration))["pancake"]
        finally:
            servers.stop()
        print(
            f"{count:>7}  {whole['cpu_per_frame_us']:>9.0f}  {whole['cpu_percent']:>6.1f}  "
            f"{whole['fps_per_viewer']:>10.1f}",
            flush=True,
        )


async def run_all(args: argparse.Namespace) -> None:
    await compare(args.viewers, args.rounds, args.warmup, args.duration, not args.no_pin)
    if not args.no_full:
        await whole_pancake(args.viewers, args.warmup, args.full_duration)
    print()
    print(
        "us/frame: server CPU (user+system, all threads) per frame received by its viewers; "
        "ratio: median of the rounds' ours/bare; goal ratio <= 1.3"
    )


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    serve_parser = sub.add_parser("serve", help="(internal) run one server under test")
    serve_parser.add_argument("kind", choices=["bare", "ours"])
    serve_parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rounds", type=int, default=7, help="rounds per viewer count")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds measured per round")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    parser.add_argument("--viewers", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument(
        "--no-pin", action="store_true", help="let the scheduler place servers and viewers"
    )
    parser.add_argument(
        "--no-full", action="store_true", help="skip the whole-pancake.py measurement"
    )
    parser.add_argument(
        "--full-duration", type=float, default=10.0, help="seconds measured for pancake.py"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.command == "serve":
        serve(args.kind, args.port)
        return 0
    asyncio.run(run_all(args))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
