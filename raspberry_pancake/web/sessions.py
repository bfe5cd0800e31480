"""Logged-in browsers, kept on the server so that logging out really ends a session.

The cookie holds only a random token (256 bits); the server keeps the SHA-256 of
each live token with its expiry. Logging out deletes it, a new password deletes
them all, and a restart forgets them. Nothing is signed, so the code is the same
on every tornado version (``get_signed_cookie`` is missing before tornado 6.3).
"""

from __future__ import annotations

import collections
import hashlib
import secrets
import time
from typing import Callable, Dict, Optional

SESSION_DAYS = 30
#: live sessions at most; logging in past it ends the oldest
MAX_SESSIONS = 256


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class SessionStore:
    """Tokens of logged-in browsers. Used on the IOLoop only, so it needs no lock."""

    def __init__(
        self, lifetime: float = SESSION_DAYS * 86400, clock: Callable[[], float] = time.monotonic
    ):
        self.lifetime = lifetime
        self.clock = clock
        self._expiry: Dict[bytes, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._expiry)

    def open(self) -> str:
        """A new session; returns the token for the cookie."""
        token = secrets.token_urlsafe(32)
        self._expiry[_digest(token)] = self.clock() + self.lifetime
        while len(self._expiry) > MAX_SESSIONS:
            self._expiry.pop(next(iter(self._expiry)))
        return token

    def valid(self, token: Optional[str]) -> bool:
        if not token:
            return False
        key = _digest(token)
        expiry = self._expiry.get(key)
        if expiry is None:
            return False
        if self.clock() >= expiry:
            del self._expiry[key]
            return False
        return True

    def revoke(self, token: Optional[str]) -> None:
        if token:
            self._expiry.pop(_digest(token), None)

    def revoke_all(self) -> None:
        self._expiry.clear()
