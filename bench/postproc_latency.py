"""From a message's arrival to the mp4 being ready and to the Telegram request, 5 s clip.

A real postproc.py subprocess converts a 5 s 1280x720 30 fps edge clip and sends it
to a Bot API stand-in on loopback. The baselines, measured in the same run: the
same conversion done in-process (the work itself, no daemon around it) and a cp of
the clip. Run from the project root:

    python3 bench/postproc_latency.py [--repeat 7] [--converter builtin ffmpeg]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from raspberry_pancake.postproc import convert  # noqa: E402

FPS = 30


class BotApiStandIn:
    """Notes when each request starts arriving (server threads; the list is append-only)."""

    def __init__(self):
        self.arrivals = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                outer.arrivals.append((time.perf_counter(), self.path.rsplit("/", 1)[-1]))
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.dumps({"ok": True, "result": {}}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def make_clip(path: str) -> None:
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
            "-i", f"testsrc2=size=1280x720:rate={FPS}", "-frames:v", str(5 * FPS),
            "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "6M", "-g", str(FPS),
            "-bf", "0", "-f", "h264", path,
        ],
        check=True,
    )  # fmt: skip


def wait_for(predicate, timeout=60.0):
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if predicate():
            return time.perf_counter()
        time.sleep(0.001)
    raise TimeoutError("timed out")


def measure_daemon(work: str, clip: str, converter: str, repeat: int):
    api = BotApiStandIn()
    mp4_dir = os.path.join(work, f"mp4-{converter}")
    os.makedirs(mp4_dir)
    name = f"pp-bench-{uuid.uuid4().hex}"
    log = os.path.join(work, f"postproc-{converter}.log")
    proc = subprocess.Popen(
        [
            sys.executable, os.path.join(ROOT, "postproc.py"), name,
            "--convert", mp4_dir, str(FPS), "--converter", converter,
            "--notify-telegram", "123:bench", "1", "--telegram-api-url", api.url,
            "--state", os.path.join(work, f"state-{converter}.sqlite"), "--log", log,
        ],
        cwd=ROOT,
    )  # fmt: skip
    try:
        wait_for(lambda: os.path.exists(log) and "ready" in open(log).read())
        to_mp4, to_request = [], []
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        for i in range(repeat):
            h264 = os.path.join(work, f"20240102-0300{i:02d}-{converter}.h264")
            shutil.copyfile(clip, h264)
            mp4 = os.path.join(mp4_dir, convert.mp4_name(h264))
            seen = len(api.arrivals)
            start = time.perf_counter()
            sender.sendto(json.dumps({"h264": h264, "detection": True}).encode(), "\0" + name)
            ready = wait_for(lambda mp4=mp4: os.path.exists(mp4))
            wait_for(lambda seen=seen: len(api.arrivals) > seen)
            arrived, method = api.arrivals[seen]
            assert method == "sendVideo", method
            to_mp4.append(ready - start)
            to_request.append(arrived - start)
            time.sleep(0.2)  # let the notify thread finish before the next clip
        return statistics.median(to_mp4), statistics.median(to_request)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        api.server.shutdown()


def measure_baselines(work: str, clip: str, repeat: int):
    conv, cp = [], []
    out = os.path.join(work, "baseline")
    os.makedirs(out)
    for _ in range(repeat):
        start = time.perf_counter()
        convert.convert_file(convert.BuiltinConverter(), clip, out, Fraction(FPS))
        conv.append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run(["cp", clip, os.path.join(out, "copy.h264")], check=True)
        cp.append(time.perf_counter() - start)
    return statistics.median(conv), statistics.median(cp)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--converter", nargs="+", default=["builtin", "ffmpeg"])
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="pp-latency-") as work:
        clip = os.path.join(work, "clip.h264")
        make_clip(clip)
        base_conv, base_cp = measure_baselines(work, clip, args.repeat)
        size = os.path.getsize(clip) / 1e6
        print(f"5 s clip, 1280x720 at {FPS} fps, {size:.1f} MB; medians of {args.repeat} runs")
        print(f"baseline: in-process builtin remux {base_conv * 1e3:.1f} ms,", end=" ")
        print(f"cp {base_cp * 1e3:.1f} ms")
        header = ("converter", "to mp4 ms", "x remux", "to Telegram ms", "x remux")
        print("{:10} {:>10} {:>8} {:>15} {:>8}".format(*header))
        for name in args.converter:
            try:
                convert.select_converter(name)
            except Exception as e:
                print(f"{name}: skipped ({e})")
                continue
            to_mp4, to_tg = measure_daemon(work, clip, name, args.repeat)
            print(
                f"{name:10} {to_mp4 * 1e3:10.1f} {to_mp4 / base_conv:8.2f}"
                f" {to_tg * 1e3:15.1f} {to_tg / base_conv:8.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
