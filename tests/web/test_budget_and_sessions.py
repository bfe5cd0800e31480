"""The guess budget, sessions, Host names and log summaries, on a clock the test moves."""

from __future__ import annotations

import logging
import re

import pytest

from raspberry_pancake.web.hosts import HostPolicy, split_host
from raspberry_pancake.web.logsummary import LogSummary
from raspberry_pancake.web.sessions import SessionStore
from raspberry_pancake.web.throttle import GuessThrottle, address_key


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def test_one_guess_a_second_per_address(clock):
    t = GuessThrottle(clock=clock)
    assert t.admit("192.0.2.1")
    clock.now += 0.5
    assert not t.admit("192.0.2.1")
    assert t.admit("192.0.2.2")  # another address has its own
    clock.now += 0.5
    assert t.admit("192.0.2.1")


def test_ipv6_counts_per_64_and_mapped_ipv4_as_ipv4(clock):
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    t = GuessThrottle(clock=clock)
    assert t.admit("2001:db8:1:2::1")
    assert not t.admit("2001:db8:1:2::abcd")  # same machine, new address: same budget


def test_never_more_than_ten_in_any_second(clock):
    t = GuessThrottle(clock=clock)
    admitted = []
    for step in range(300):  # 300 addresses, one guess each, 100 a second
        clock.now += 0.01
        if t.admit(f"10.0.{step // 250}.{step % 250}"):
            admitted.append(clock.now)
    for i, start in enumerate(admitted):
        in_window = [x for x in admitted[i:] if x - start < 1.0]
        assert len(in_window) <= 10
    assert len(admitted) >= 25  # and the budget is really used


def test_the_reserve_is_kept_for_addresses_without_wrong_guesses(clock):
    t = GuessThrottle(clock=clock)
    attackers = [f"10.0.0.{i}" for i in range(1, 30)]
    for a in attackers:  # they all failed once already
        t.failed(a)
    admitted = [a for a in attackers if t.admit(a)]
    assert len(admitted) == 8  # the general share only
    assert t.admit("192.0.2.50")  # the owner, from a clean address
    assert t.admit("192.0.2.51")
    assert not t.admit("192.0.2.52")  # the whole budget is spent now
    clock.now += 1.0
    assert t.admit("192.0.2.52")


def test_a_failure_is_forgotten_after_a_while(clock):
    t = GuessThrottle(clock=clock)
    t.failed("10.0.0.1")
    assert not t.is_clean("10.0.0.1")
    clock.now += 601
    assert t.is_clean("10.0.0.1")


def test_sessions_expire_and_revoke(clock):
    store = SessionStore(lifetime=60, clock=clock)
    a, b = store.open(), store.open()
    assert store.valid(a) and store.valid(b) and a != b
    assert not store.valid("made-up") and not store.valid("") and not store.valid(None)
    store.revoke(a)
    assert not store.valid(a) and store.valid(b)
    clock.now += 60
    assert not store.valid(b)
    assert len(store) == 0
    c = store.open()
    store.revoke_all()
    assert not store.valid(c)


def test_sessions_are_bounded(clock):
    from raspberry_pancake.web import sessions

    store = SessionStore(clock=clock)
    first = store.open()
    for _ in range(sessions.MAX_SESSIONS):
        store.open()
    assert len(store) == sessions.MAX_SESSIONS and not store.valid(first)


@pytest.mark.parametrize(
    "header, name",
    [
        ("cam.local:8000", "cam.local"),
        ("CAM.Local.", "cam.local"),
        ("[::1]:8000", "::1"),
        ("[fe80::1]", "fe80::1"),
        ("192.0.2.1:80", "192.0.2.1"),
        ("::1", "::1"),
    ],
)
def test_host_headers_are_read_like_a_browser_writes_them(header, name):
    assert split_host(header) == name


def test_host_policy_names():
    policy = HostPolicy(["Cam.Example.org:8443"], hostname="pancake.lan")
    for host in ("localhost", "pancake.lan", "pancake", "pancake.local", "pancake.lan.local"):
        assert policy.allows(host), host
    assert policy.allows("cam.example.org:8000")
    for host in ("", "attacker.example", "pancake.attacker.example", "0.0.0.0", "224.0.0.1"):
        assert not policy.allows(host), host
    assert policy.allows("127.0.0.2") and policy.allows("[::1]:8000")


def test_a_repeated_warning_is_a_count(clock, caplog):
    summary = LogSummary(logging.getLogger("test.summary"), "out of things", period=60, clock=clock)
    with caplog.at_level(logging.WARNING, "test.summary"):
        for _ in range(100_000):
            summary.note()
            clock.now += 0.001  # 100 s in all
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "out of things"
    assert len(lines) == 2  # in 100 s: the first event, then one count a minute
    count = int(re.search(r"out of things: (\d+) times in the last 60 s", lines[1]).group(1))
    assert abs(count - 60_000) <= 2
