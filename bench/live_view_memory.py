#!/usr/bin/env python3
"""Resident memory of ``pancake.py --camera sim`` at 640x480, 30 fps, with 0 and 10 viewers.

Each case starts a fresh pancake.py, lets it settle, then samples VmRSS from
/proc every half second for ``--duration`` seconds while the viewers (in this
process) ask for frames as fast as they come; VmHWM is the peak the kernel saw
over the process's whole life. With 0 viewers the sim camera draws but does not
encode JPEG, which is the reference.

Usage: python3 bench/live_view_memory.py [--duration 20] [--viewers 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from typing import Dict, List, Optional

import common

HOST = "127.0.0.1"
SETTLE = 3.0
SAMPLE_EVERY = 0.5


async def measure(viewers: int, duration: float, extra: List[str]) -> Dict[str, float]:
    port = common.free_port()
    args = ["pancake.py", "--camera", "sim", "--port", str(port)]
    args += ["--resolution", "640", "480", "--fps", "30", *extra]
    log = tempfile.TemporaryFile()  # pancake.py logs each viewer: keep it out of the table
    server = common.spawn(args, log=log)
    watchers: Optional[common.Viewers] = None
    try:
        common.wait_for_port(HOST, port, server)
        if viewers:
            watchers = common.Viewers(f"ws://{HOST}:{port}/websocket", viewers)
            await watchers.start()
        await asyncio.sleep(SETTLE)
        first = common.memory_kib(server.pid)["VmRSS"]
        frames0 = watchers.frames if watchers else 0
        samples: List[int] = []
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            samples.append(common.memory_kib(server.pid)["VmRSS"])
            await asyncio.sleep(SAMPLE_EVERY)
        final = common.memory_kib(server.pid)
        frames = (watchers.frames if watchers else 0) - frames0
        if watchers and watchers.failures:
            raise RuntimeError(f"viewers failed: {watchers.failures[:3]}")
    finally:
        if watchers is not None:
            await watchers.close()
        common.stop(server)
        if server.returncode not in (0, -15):
            log.seek(0)
            sys.stderr.write(log.read()[-2000:].decode(errors="replace"))
        log.close()
    return {
        "rss_first": first / 1024,
        "rss_last": final["VmRSS"] / 1024,
        "rss_max": max(samples) / 1024,
        "hwm": final["VmHWM"] / 1024,
        "fps_per_viewer": frames / duration / viewers if viewers else 0.0,
    }


async def run_all(viewer_count: int, duration: float, extra: List[str]) -> None:
    print("live view memory: pancake.py --camera sim --resolution 640 480 --fps 30", *extra)
    print(f"{duration:g} s sampled after {SETTLE:g} s; load {common.load_average()}")
    print()
    print(
        f"{'viewers':>7}  {'RSS start MiB':>13}  {'RSS end MiB':>11}  {'RSS max MiB':>11}  "
        f"{'VmHWM MiB':>9}  {'fps/viewer':>10}"
    )
    results = {}
    for count in (0, viewer_count):
        r = results[count] = await measure(count, duration, extra)
        print(
            f"{count:>7}  {r['rss_first']:>13.1f}  {r['rss_last']:>11.1f}  {r['rss_max']:>11.1f}  "
            f"{r['hwm']:>9.1f}  {r['fps_per_viewer']:>10.1f}",
            flush=True,
        )
    ratio = results[viewer_count]["hwm"] / results[0]["hwm"]
    extra = results[viewer_count]["hwm"] - results[0]["hwm"]
    print()
    print(f"VmHWM with {viewer_count} viewers / with 0: {ratio:.2f} ({extra:+.1f} MiB)")


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds sampled")
    parser.add_argument("--viewers", type=int, default=10)
    parser.add_argument(
        "--max-stream-fps", help="passed to pancake.py (default: pancake.py's own, 10)"
    )
    args = parser.parse_args(argv)
    extra = ["--max-stream-fps", args.max_stream_fps] if args.max_stream_fps else []
    asyncio.run(run_all(args.viewers, args.duration, extra))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
