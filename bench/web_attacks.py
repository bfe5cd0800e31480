"""The audit's network attacks on pancake.py, measured: run it on two checkouts to compare.

    python3 bench/web_attacks.py                      # this checkout
    python3 bench/web_attacks.py --root /tmp/before   # another checkout (say, main before a fix)

Each attack starts ``ROOT/pancake.py --camera sim`` afresh (with this Python) and
attacks it over loopback, from this process:

- slowloris: 1,100 connections (half idle, half dribbling a header byte a second,
  reopened when closed) for 30 s while detection clips are recorded, with the
  process limited to 256 file descriptors; a visitor asks for the page every 2 s
  and one viewer watches the live view throughout;
- bodies: three 95 MB POSTs at once to /login, and pancake's peak RSS (VmHWM);
- login flood: 300 concurrent wrong logins from 30 addresses, three times; the
  loop's stalls are read from watchdog pings asked for every 50 ms (stall =
  longest gap - 50 ms), against two quiet seconds of the same server before each;
- guessing: one address, then forty, guessing as fast as they can for 4 s;
- rebinding: frames a page on a rebound name gets from the live view (no --login);
- odd path and logout: what ``/static/live.js%00.css`` and a logged-out cookie get.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.adversarial.attackers import (  # noqa: E402
    COOKIE,
    NotifyListener,
    SlowLoris,
    Watcher,
    guess_until,
    login,
    read_frames,
    request,
    rss_kib,
    send_big_body,
    status_of,
)
from tests.helpers import Receiver, free_port, scripted_customize, wait_for_port  # noqa: E402

PASSWORD = "correct horse battery"


class Server:
    """pancake.py from ``root``, logging to a file."""

    def __init__(self, root, workdir, *args, env=None, nofile=None, cpus=None):
        self.port = free_port()
        self.log_path = os.path.join(workdir, f"pancake-{self.port}.log")
        cpus = cpus if cpus and set(cpus) <= os.sched_getaffinity(0) else None

        def limit():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            if cpus:
                os.sched_setaffinity(0, cpus)

        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(root, "pancake.py"), "--port", str(self.port)]
                + ["--camera", "sim", "--fps", "12", *args],
                cwd=root,
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=limit,
            )
        wait_for_port(self.port, self.proc)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with open(self.log_path, errors="replace") as f:
            return f.read()


def password_file(workdir: str) -> str:
    path = os.path.join(workdir, "password.txt")
    from raspberry_pancake.web.auth import hash_password

    with open(path, "w") as f:
        f.write(hash_password(PASSWORD) + "\n")
    return path


def slowloris(root, workdir):
    rec = os.path.join(workdir, "h264")
    os.makedirs(rec, exist_ok=True)
    from pathlib import Path

    customize, _ = scripted_customize(Path(workdir), [(8.0, 12.0), (20.0, 24.0)], name="sl.py")
    rx = Receiver().start()
    server = Server(
        root,
        workdir,
        "--record-detection", "edge", rec,
        "--detect", "no-image", "--detect-interval", "0.1", "--customize", customize,
        "--emit", rx.name,
        nofile=256,
    )  # fmt: skip
    watcher = Watcher(f"ws://127.0.0.1:{server.port}/websocket")
    watcher.start()
    watcher.connected.wait(30)
    attack = SlowLoris(server.port, 1100)
    start = time.monotonic()
    attack.start()
    visits = []
    while time.monotonic() - start < 30:
        began = time.monotonic()
        try:
            status = request(server.port, "GET", "/", timeout=10).status
        except OSError as e:
            status = type(e).__name__
        visits.append((status, time.monotonic() - began))
        time.sleep(2)
    end = time.monotonic()
    time.sleep(8)  # the last clip closes about 3 s after its edge
    attack.stop()
    watcher.stop()
    log = server.stop()
    rx.stop()
    clips = [m for m in rx.messages if "h264" in m]
    served = [t for s, t in visits if s == 200]
    return {
        "visitors served": f"{len(served)} of {len(visits)}",
        "slowest visitor (s)": round(max(t for _, t in visits), 2),
        "live view frames in 30 s": watcher.frames_between(start, end),
        "live view longest gap (s)": round(watcher.longest_gap(start, end), 2),
        "detection clips announced (of 4)": len(clips),
        "'Too many open files' in the log": log.count("Too many open files"),
        "log size (KiB)": len(log) // 1024,
    }


def bodies(root, workdir):
    server = Server(root, workdir, "--login", password_file(workdir))
    request(server.port, "GET", "/login")
    before = rss_kib(server.proc.pid, "VmHWM")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(lambda _: send_big_body(server.port, 95), range(3)))
    peak = rss_kib(server.proc.pid, "VmHWM") if server.proc.poll() is None else 0
    server.stop()
    return {
        "peak RSS before (MiB)": round(before / 1024, 1),
        "peak RSS after three 95 MB POSTs at once (MiB)": round(peak / 1024, 1),
        "first answer": outcomes[0][:40],
    }


def login_flood(root, workdir, rounds=3):
    """Loop stalls during 300 wrong logins, against the same server's quiet seconds.

    The stall is the longest gap between watchdog pings (asked for every 50 ms)
    minus 50 ms. The server runs on CPU 1 and the attackers on CPU 0 where there
    are two, so that the flood's own clients do not take the server's CPU.
    """
    notify = NotifyListener(os.path.join(workdir, f"notify-{time.monotonic_ns()}.sock"))
    notify.start()
    server = Server(
        root,
        workdir,
        "--login",
        password_file(workdir),
        env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "100000"},
        cpus={1},
    )
    cookie = login(server.port, PASSWORD).cookies()[COOKIE]
    watcher = Watcher(f"ws://127.0.0.1:{server.port}/websocket", {"Cookie": f"{COOKIE}={cookie}"})
    watcher.start()
    watcher.connected.wait(30)
    quiet, flood, statuses, live = [], [], [], []
    for r in range(rounds):
        time.sleep(1)
        start = time.monotonic()
        time.sleep(2)
        quiet.append(notify.longest_gap(start, time.monotonic()) - 0.05)
        sources = [f"127.0.{r}.{2 + i % 30}" for i in range(300)]
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(300) as pool:
            statuses += pool.map(
                lambda s: status_of(login, server.port, "wrong", source=s), sources
            )
        end = time.monotonic()
        flood.append(notify.longest_gap(start, end) - 0.05)
        live.append(watcher.longest_gap(start, end))
    watcher.stop()
    server.stop()
    notify.close()

    def ms(values):
        return " / ".join(str(round(v * 1000)) for v in values)

    return {
        "answers 403 / 429 / closed (all rounds)": f"{statuses.count(403)} / "
        f"{statuses.count(429)} / {statuses.count('closed')}",
        "loop stall, quiet 2 s, per round (ms)": ms(quiet),
        "loop stall, 300 logins, per round (ms)": ms(flood),
        "live view longest gap in the flood (ms)": ms(live),
    }


def guessing(root, workdir, duration=4.0):
    server = Server(root, workdir, "--login", password_file(workdir))
    alone = guess_until(server.port, "127.0.0.2", time.monotonic() + duration)
    until = time.monotonic() + duration
    with concurrent.futures.ThreadPoolExecutor(40) as pool:
        many = list(
            pool.map(lambda i: guess_until(server.port, f"127.0.1.{i}", until), range(1, 41))
        )
    server.stop()
    return {
        "one address: checks/s": round(alone.count(403) / duration, 1),
        "forty addresses: checks/s": round(sum(m.count(403) for m in many) / duration, 1),
    }


def rebinding(root, workdir):
    server = Server(root, workdir)
    evil = {
        "Host": f"attacker.example:{server.port}",
        "Origin": f"http://attacker.example:{server.port}",
    }
    try:
        frames = len(read_frames(f"ws://127.0.0.1:{server.port}/websocket", 5, headers=evil))
    except Exception as e:
        frames = f"0 ({str(e)[:30]})"
    page = request(server.port, "GET", "/", headers=evil).status
    odd = request(server.port, "GET", "/static/live.js%00.css")
    log = server.stop()
    return {
        "frames to a rebound page": frames,
        "page for a rebound name": page,
        "/static/live.js%00.css": odd.status,
        "tracebacks in the log": log.count("Traceback"),
        "Server header": odd.header("Server") or "none",
    }


def logout(root, workdir):
    server = Server(root, workdir, "--login", password_file(workdir))
    session = login(server.port, PASSWORD).cookies()[COOKIE]
    token = request(server.port, "GET", "/login").cookies()["_xsrf"]
    request(
        server.port,
        "POST",
        "/logout",
        headers={
            "Cookie": f"{COOKIE}={session}; _xsrf={token}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body=f"_xsrf={token}".encode(),
    )
    replay = request(server.port, "GET", "/", headers={"Cookie": f"{COOKIE}={session}"}).status
    server.stop()
    return {"old cookie after logout": "page (200)" if replay == 200 else f"refused ({replay})"}


ATTACKS = {
    "slowloris": slowloris,
    "bodies": bodies,
    "login-flood": login_flood,
    "guessing": guessing,
    "rebinding": rebinding,
    "logout": logout,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=ROOT, help="checkout whose pancake.py is attacked")
    parser.add_argument("--only", nargs="*", choices=sorted(ATTACKS), help="attacks to run")
    args = parser.parse_args()
    root = os.path.abspath(args.root)
    if {0, 1} <= os.sched_getaffinity(0):
        os.sched_setaffinity(0, {0})  # the attackers; servers that ask for CPU 1 get it alone
    commit = subprocess.run(
        ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(f"pancake.py from {root} ({commit or hashlib.sha1(root.encode()).hexdigest()[:7]})")
    for name in args.only or ATTACKS:
        with tempfile.TemporaryDirectory(prefix="web-attacks-") as workdir:
            results = ATTACKS[name](root, workdir)
        print(f"\n{name}")
        for key, value in results.items():
            print(f"  {key:48} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
