"""How many password guesses may be tried: per address, and for the whole server.

A guess is any password check, from the login form or from HTTP Basic auth, right
or wrong. Guesses over the budget are refused before any hashing (429), so a
flood costs the server nothing but the refusal.

- One address gets at most one guess per ``PER_ADDRESS_INTERVAL``. IPv6 clients
  count per /64, since one machine easily holds a whole /64.
- The server takes at most ``OVERALL_PER_SECOND`` guesses in any one second. The
  last ``RESERVED_FOR_CLEAN`` of those are kept for addresses with no wrong
  guess in the last ``DIRTY_FOR`` seconds: an attacker who fills the budget from
  many addresses must burn a fresh address for every guess it takes from that
  reserve, so the owner, typing from an address of their own, still gets in.
"""

from __future__ import annotations

import collections
import ipaddress
import time
from typing import Callable, Deque, Dict

PER_ADDRESS_INTERVAL = 1.0
OVERALL_PER_SECOND = 10
RESERVED_FOR_CLEAN = 2
DIRTY_FOR = 600.0
#: addresses remembered at most; the oldest are forgotten first
MAX_ADDRESSES = 4096


def address_key(address: str) -> str:
    """The unit of "one address": IPv4 as is, IPv6 by its /64, mapped IPv4 as IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class GuessThrottle:
    """The guess budget. Called on the IOLoop only, so it needs no lock."""

    def __init__(
        self,
        per_address_interval: float = PER_ADDRESS_INTERVAL,
        overall_per_second: int = OVERALL_PER_SECOND,
        reserved_for_clean: int = RESERVED_FOR_CLEAN,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.per_address_interval = per_address_interval
        self.overall = overall_per_second
        self.reserved = reserved_for_clean
        self.clock = clock
        self._last_guess: Dict[str, float] = collections.OrderedDict()
        self._last_failure: Dict[str, float] = collections.OrderedDict()
        self._recent: Deque[float] = collections.deque()  # admitted guesses, last second
        self.refused = 0  # since the last summary in the log

    def admit(self, address: str) -> bool:
        """Take one guess from the budget for ``address``; False when it is spent."""
        now = self.clock()
        key = address_key(address)
        last = self._last_guess.get(key)
        if last is not None and now - last < self.per_address_interval:
            self.refused += 1
            return False
        while self._recent and now - self._recent[0] >= 1.0:
            self._recent.popleft()
        limit = self.overall if self.is_clean(address) else self.overall - self.reserved
        if len(self._recent) >= limit:
            self.refused += 1
            return False
        self._recent.append(now)
        _remember(self._last_guess, key, now)
        return True

    def failed(self, address: str) -> None:
        """A wrong guess: the address loses its share of the reserve for a while."""
        _remember(self._last_failure, address_key(address), self.clock())

    def is_clean(self, address: str) -> bool:
        """No wrong guess from this address for a while."""
        failure = self._last_failure.get(address_key(address))
        return failure is None or self.clock() - failure >= DIRTY_FOR


def _remember(table: Dict[str, float], key: str, now: float) -> None:
    table.pop(key, None)
    table[key] = now
    while len(table) > MAX_ADDRESSES:
        table.pop(next(iter(table)))
