"""Attacks on a real pancake.py over real sockets: what a LAN visitor or a web page can do.

Each test starts pancake.py with the sim camera as a subprocess and attacks it
from this process over loopback (source addresses in 127.0.0.0/8 stand for
other machines). Figures measured on the way (stalls, RSS, guesses) are
printed, and reported in docs/SECURITY.md by ``bench/web_attacks.py``; the
assertions are about behaviour, with wide margins for a shared machine.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from raspberry_pancake.web.auth import hash_password
from tests.adversarial.attackers import (
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
from tests.helpers import (
    ROOT,
    Pancake,
    Receiver,
    count_frames,
    scripted_customize,
    starts_with_keyframe,
)

PASSWORD = "correct horse battery"
FPS = 12
UNIT = os.path.join(ROOT, "systemd", "pancake.service")


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "password.txt"
    path.write_text(hash_password(PASSWORD) + "\n")
    return path


def start(pancake, tmp_path, *args, **kwargs) -> Pancake:
    """pancake.py with the sim camera, its log in a file (the conftest fixture stops it)."""
    log_path = str(tmp_path / f"pancake-{uuid.uuid4().hex}.log")
    return pancake("--camera", "sim", "--fps", str(FPS), *args, log_path=log_path, **kwargs)


def nofile_limit(soft: int, hard: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return apply


def ws_url(p: Pancake) -> str:
    return f"ws://127.0.0.1:{p.port}/websocket"


def session_cookie(p: Pancake, source=None) -> str:
    r = login(p.port, PASSWORD, source=source)
    assert r.status == 302, (r.status, r.body)
    return r.cookies()[COOKIE]


# --- connections --------------------------------------------------------------


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe")
def test_1100_idle_and_half_sent_connections_while_recording(tmp_path, pancake):
    """The audit's attack, with the descriptor limit low enough that it really bites.

    pancake.py gets only 256 descriptors, so 1,100 connections would take them all
    if it let them. Recording must lose no clip, the live view must go on, a new
    visitor must get the page, and "out of descriptors" must stay out of the log.
    """
    rec = tmp_path / "h264"
    rec.mkdir()
    customize, _ = scripted_customize(tmp_path, [(8.0, 12.0), (20.0, 24.0)])
    rx = Receiver().start()
    try:
        p = start(
            pancake,
            tmp_path,
            "--record-detection", "edge", str(rec),
            "--detect", "no-image", "--detect-interval", "0.1", "--customize", customize,
            "--emit", rx.name,
            preexec_fn=nofile_limit(256, 256),
        )  # fmt: skip
        watcher = Watcher(ws_url(p))
        watcher.start()
        assert watcher.connected.wait(30) and watcher.error is None, watcher.error
        attack = SlowLoris(p.port, 1100, half_sent=0.5)
        attack_start = time.monotonic()
        attack.start()
        visits = []
        try:
            while time.monotonic() - attack_start < 30:
                began = time.monotonic()
                # another machine than the attacker's, as a visitor is
                r = request(p.port, "GET", "/", source="127.0.0.2", timeout=30)
                visits.append((r.status, time.monotonic() - began))
                time.sleep(2)
            messages = rx.wait_for(4, timeout=90)
        finally:
            attack_end = time.monotonic()
            attack.stop()
            watcher.stop()
        log = p.stop()[1]
    finally:
        rx.stop()
    print(
        f"visitors: {[round(t, 2) for _, t in visits]} s; attacker reconnects: {attack.reopened}; "
        f"live view: {watcher.frames_between(attack_start, attack_end)} frames, longest gap "
        f"{watcher.longest_gap(attack_start, attack_end):.2f} s"
    )
    assert all(status == 200 for status, _ in visits), visits
    assert watcher.error is None, watcher.error
    assert watcher.frames_between(attack_start, attack_end) >= 30
    clips = [m for m in messages if "h264" in m]
    assert len(clips) == 4, messages
    for m in clips:
        assert count_frames(m["h264"]) >= 3 * FPS
        assert starts_with_keyframe(m["h264"])
    assert "Too many open files" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert len(re.findall("web connections open", log)) <= 3  # once, then once a minute
    assert len(log) < 50_000


def test_pancake_raises_its_descriptor_limit(tmp_path, pancake):
    p = start(pancake, tmp_path, preexec_fn=nofile_limit(512, 4096))
    with open(f"/proc/{p.proc.pid}/limits") as f:
        line = next(line for line in f if line.startswith("Max open files"))
    assert line.split()[3:5] == ["4096", "4096"], line


def test_the_unit_raises_the_descriptor_limit_and_caps_memory():
    text = open(UNIT).read()
    nofile = re.search(r"^LimitNOFILE=(\d+)$", text, re.M)
    assert nofile and int(nofile.group(1)) >= 4096
    memory = re.search(r"^MemoryMax=(\d+)M$", text, re.M)
    assert memory and int(memory.group(1)) <= 300  # a Pi Zero has 512 MB for everything


# --- sizes ------------------------------------------------------------------------


def memory_cgroup(limit_bytes: int):
    """A cgroup v1 memory group with a limit, or None where the machine has none."""
    base = "/sys/fs/cgroup/memory"
    if not os.access(base, os.W_OK):
        return None
    path = os.path.join(base, f"pancake-test-{uuid.uuid4().hex}")
    try:
        os.mkdir(path)
        with open(os.path.join(path, "memory.limit_in_bytes"), "w") as f:
            f.write(str(limit_bytes))
    except OSError:
        return None
    return path


def test_big_bodies_are_refused_and_pancake_fits_its_memory_limit(tmp_path, pancake, password_file):
    """Three 95 MB POSTs (the audit's) and a chunked one, under the unit's MemoryMax."""
    limit_mb = int(re.search(r"^MemoryMax=(\d+)M$", open(UNIT).read(), re.M).group(1))
    group = memory_cgroup(limit_mb * 1024 * 1024)

    def enter_group():
        if group:
            with open(os.path.join(group, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

    p = None
    try:
        p = start(pancake, tmp_path, "--login", str(password_file), preexec_fn=enter_group)
        assert request(p.port, "GET", "/login").status == 200
        before = rss_kib(p.proc.pid, "VmHWM")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(send_big_body, [p.port] * 3, [95] * 3))
            outcomes.append(send_big_body(p.port, 20, chunked=True))
        after = rss_kib(p.proc.pid, "VmHWM")
        print(f"peak RSS {before} KiB -> {after} KiB; outcomes {outcomes}")
        assert p.proc.poll() is None, "pancake.py died"
        assert after - before < 32 * 1024, (before, after)
        for outcome in outcomes:
            assert not outcome.startswith("HTTP/1.1 2") and not outcome.startswith("HTTP/1.1 3")
        # and the login still works afterwards
        session_cookie(p)
        if group:
            with open(os.path.join(group, "memory.max_usage_in_bytes")) as f:
                print(f"cgroup peak {int(f.read()) // 2**20} MiB of {limit_mb} MiB")
        log = p.stop()[1]
        assert "Traceback" not in log
    finally:
        if group:
            if p is not None:
                p.stop()  # the group can go once its process has
            os.rmdir(group)


# --- password guessing --------------------------------------------------------------


def test_300_concurrent_wrong_logins_never_stall_the_loop(tmp_path, pancake, password_file):
    """The watchdog keeps pinging and the live view keeps coming through a login flood."""
    notify = NotifyListener(str(tmp_path / "notify.sock"))
    notify.start()
    watchdog_usec = 2_000_000  # pings every second; systemd would act after 2 s
    p = start(
        pancake,
        tmp_path,
        "--login",
        str(password_file),
        env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": str(watchdog_usec)},
    )
    watcher = Watcher(ws_url(p), headers={"Cookie": f"{COOKIE}={session_cookie(p)}"})
    watcher.start()
    assert watcher.connected.wait(30) and watcher.error is None
    # 300 at once, from 30 addresses, as the audit did
    sources = [f"127.0.0.{2 + i % 30}" for i in range(300)]
    flood_start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(300) as pool:
        statuses = list(
            pool.map(lambda s: status_of(login, p.port, "wrong guess", source=s), sources)
        )
    flood_end = time.monotonic()
    time.sleep(1)
    watcher.stop()
    notify.close()
    gap = notify.longest_gap(flood_start, flood_end)
    print(
        f"flood {flood_end - flood_start:.1f} s: {statuses.count(403)} checked, "
        f"{statuses.count(429)} refused, {statuses.count('closed')} closed; "
        f"longest watchdog gap {gap:.2f} s, "
        f"longest live-view gap {watcher.longest_gap(flood_start, flood_end):.2f} s"
    )
    # past the connection cap (128), the longest-waiting connections are closed
    assert set(statuses) <= {403, 429, "closed"}
    assert statuses.count(429) > 0
    # no more real checks than the overall budget allows (10/s), with a second of slack
    assert statuses.count(403) <= 10 * (flood_end - flood_start + 1)
    assert gap < watchdog_usec / 1e6, "systemd's watchdog would have fired"
    assert watcher.error is None, watcher.error


def test_guesses_per_address_and_overall_and_the_owner_gets_in(tmp_path, pancake, password_file):
    p = start(pancake, tmp_path, "--login", str(password_file))
    duration = 4.0
    # one address, as fast as it can
    until = time.monotonic() + duration
    alone = guess_until(p.port, "127.0.0.2", until)
    checked = alone.count(403)
    print(f"one address: {len(alone)} tries, {checked} checked in {duration} s")
    assert checked <= duration + 1 and alone.count(429) > 0
    # forty addresses at once, each as fast as it can, while the owner logs in from another
    sources = [f"127.0.1.{i}" for i in range(1, 41)]
    until = time.monotonic() + duration
    with concurrent.futures.ThreadPoolExecutor(len(sources) + 1) as pool:
        futures = [pool.submit(guess_until, p.port, s, until) for s in sources]
        time.sleep(1)  # the attack is under way
        owner_tries = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = login(p.port, PASSWORD, source="127.0.2.1")
            owner_tries.append(r.status)
            if r.status == 302:
                break
            time.sleep(1)
        results = [f.result() for f in futures]
    overall = sum(r.count(403) for r in results)
    print(f"forty addresses: {overall} checked in {duration} s; the owner's tries: {owner_tries}")
    assert overall <= 10 * (duration + 1)
    # each fresh attacking address may take one guess from the reserve, so the owner
    # waits at most until the attacker's 40 addresses are spent (4 s at 10/s)
    assert owner_tries[-1] == 302 and len(owner_tries) <= 10, owner_tries


def test_legacy_hash_file_warns_and_suggests_set_password(tmp_path, pancake):
    import hashlib

    path = tmp_path / "old.txt"
    path.write_text(hashlib.sha512(PASSWORD.encode()).hexdigest() + "\n")
    p = start(pancake, tmp_path, "--login", str(path))
    session_cookie(p)
    log = p.stop()[1]
    assert re.search(r"WARNING .*SHA-512.*util/set_password\.py", log), log


# --- sessions ----------------------------------------------------------------------


def test_logout_revokes_the_cookie_on_the_server(tmp_path, pancake, password_file):
    p = start(pancake, tmp_path, "--login", str(password_file))
    session = session_cookie(p)
    cookie = {"Cookie": f"{COOKIE}={session}"}
    assert request(p.port, "GET", "/", headers=cookie).status == 200
    page = request(p.port, "GET", "/login")
    token = page.cookies()["_xsrf"]
    r = request(
        p.port,
        "POST",
        "/logout",
        headers={
            "Cookie": f"{COOKIE}={session}; _xsrf={token}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        body=f"_xsrf={token}".encode(),
    )
    assert r.status == 302
    # the old cookie, replayed as a thief would, opens nothing
    assert request(p.port, "GET", "/", headers=cookie).status == 302
    with pytest.raises(Exception, match="403"):
        read_frames(ws_url(p), 1, headers=cookie)


def test_rewriting_the_password_file_ends_the_old_password_and_cookies(
    tmp_path, pancake, password_file
):
    p = start(pancake, tmp_path, "--login", str(password_file))
    session = session_cookie(p)
    cookie = {"Cookie": f"{COOKIE}={session}"}
    assert len(read_frames(ws_url(p), 2, headers=cookie)) == 2
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "util", "set_password.py"), str(password_file)],
        input="another good password\n",
        text=True,
        check=True,
        capture_output=True,
    )
    assert request(p.port, "GET", "/", headers=cookie).status == 302
    with pytest.raises(Exception, match="403"):
        read_frames(ws_url(p), 1, headers=cookie)
    assert login(p.port, PASSWORD, source="127.0.0.3").status == 403
    assert login(p.port, "another good password", source="127.0.0.4").status == 302


def test_secure_cookie_only_through_a_trusted_https_proxy(tmp_path, pancake, password_file):
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.10"}
    plain = start(pancake, tmp_path, "--login", str(password_file))
    r = login(plain.port, PASSWORD, headers=https)
    assert r.status == 302 and "secure" not in r.cookie_line(COOKIE).lower()
    proxied = start(
        pancake, tmp_path, "--login", str(password_file), "--trusted-proxy", "127.0.0.1"
    )
    r = login(proxied.port, PASSWORD, headers=https)
    assert r.status == 302 and "secure" in r.cookie_line(COOKIE).lower()
    r = login(proxied.port, PASSWORD)  # the proxy's own plain HTTP
    assert r.status == 302 and "secure" not in r.cookie_line(COOKIE).lower()
    log = proxied.stop()[1]
    assert "login from 192.0.2.10" in log


# --- DNS rebinding -----------------------------------------------------------------


def test_rebound_host_names_get_no_page_and_no_frames(tmp_path, pancake):
    """Without --login, the audit's rebinding page got live frames."""
    p = start(pancake, tmp_path, "--allow-host", "cam.example.org")
    evil = {"Host": f"attacker.example:{p.port}", "Origin": f"http://attacker.example:{p.port}"}
    for path in ("/", "/login", "/static/live.js", "/websocket"):
        assert request(p.port, "GET", path, headers=evil).status == 403, path
    with pytest.raises(Exception, match="403"):
        read_frames(ws_url(p), 1, headers=evil)
    for host in (
        f"127.0.0.1:{p.port}",
        f"localhost:{p.port}",
        "cam.example.org",
        f"[::1]:{p.port}",
    ):
        assert request(p.port, "GET", "/", headers={"Host": host}).status == 200, host
    ok = {"Host": f"cam.example.org:{p.port}", "Origin": f"http://cam.example.org:{p.port}"}
    assert len(read_frames(ws_url(p), 2, headers=ok)) == 2
    log = p.stop()[1]
    assert log.count("attacker.example") == 1  # logged once, however often it comes


def test_bad_flags_are_one_line(tmp_path):
    from tests.helpers import run_cli

    for flags, message in (
        (["--trusted-proxy", "my-proxy"], "--trusted-proxy: 'my-proxy' is not an IP address"),
        (["--allow-host", "http://cam/"], "--allow-host: 'http://cam/' is not a host name"),
    ):
        r = run_cli("pancake.py", "--camera", "sim", *flags)
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


# --- odd requests ---------------------------------------------------------------------


def test_odd_paths_are_404_without_a_traceback_and_no_server_header(tmp_path, pancake):
    p = start(pancake, tmp_path)
    r = request(p.port, "GET", "/static/live.js%00.css")
    assert r.status == 404
    for path in ("/", "/static/live.js", "/nowhere"):
        assert request(p.port, "GET", path).header("Server") is None, path
    log = p.stop()[1]
    assert "Traceback" not in log and "ERROR" not in log, log
