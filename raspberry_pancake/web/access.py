"""Who may watch: everyone without ``--login``; with it, whoever shows the password.

A browser shows it once, in the login form, and then holds a session cookie. A
client that cannot fill in a form (Home Assistant, VLC, an NVR) may send it
with HTTP Basic auth on the handlers that allow it. Every password check, from
either, goes through the same guess budget (``throttle``) and the same worker
thread (``verifier``); a request over the budget, or that finds the worker's
queue full, is answered 429 at once. Both keep a share for addresses with no
recent wrong guess, so that the owner gets in while someone else guesses.

For a handler's point of view (``login_required``, ``allow_basic_auth``,
``current_user``), see ``base.py``.
"""

from __future__ import annotations

import base64
import binascii
import collections
import enum
import hashlib
import hmac
import logging
import secrets
from typing import Dict, Optional

import tornado.web

from .logsummary import LogSummary
from .password_file import PasswordFile
from .sessions import SESSION_DAYS, SessionStore
from .throttle import GuessThrottle
from .verifier import PasswordVerifier

logger = logging.getLogger(__name__)

COOKIE = "pancake_session"
BASIC_REALM = "Raspberry Pancake"
#: seconds a client over the guess budget is asked to wait
RETRY_AFTER = 1
#: Basic auth headers already checked and right, remembered at most
MAX_VERIFIED_HEADERS = 16


class Verdict(enum.Enum):
    GRANTED = "granted"
    DENIED = "denied"
    BUSY = "busy"  # over the guess budget, or the worker's queue is full: try later


class TooManyGuesses(tornado.web.HTTPError):
    """Raised from a handler's ``prepare``: the answer is 429 with ``Retry-After``."""

    def __init__(self):
        super().__init__(429)


class Auth:
    """The login policy and its state. Every method runs on the IOLoop."""

    def __init__(
        self,
        password_file: Optional[PasswordFile] = None,
        throttle: Optional[GuessThrottle] = None,
        verifier: Optional[PasswordVerifier] = None,
    ):
        self.password_file = password_file
        self.throttle = throttle or GuessThrottle()
        self.verifier = verifier or PasswordVerifier()
        self.sessions = SessionStore()
        self._generation = password_file.generation if password_file else 0
        # HMACs of Authorization headers already found right, so that a camera
        # viewer polling /snapshot.jpg costs one scrypt check, not one a poll
        self._header_key = secrets.token_bytes(32)
        self._verified_headers: Dict[bytes, None] = collections.OrderedDict()
        self._refusals = LogSummary(logger, "refused password attempts over the guess budget")
        self._wrong_passwords = LogSummary(logger, "wrong password", period=10.0)

    @property
    def required(self) -> bool:
        return self.password_file is not None

    def close(self) -> None:
        self.verifier.close()

    # the password file

    def _current_hash(self):
        """The hash in force; a changed file ends every session and remembered header."""
        current = self.password_file.refresh()
        if self.password_file.generation != self._generation:
            self._generation = self.password_file.generation
            self.sessions.revoke_all()
            self._verified_headers.clear()
        return current

    # password checks

    async def check_password(self, address: str, password: str) -> Verdict:
        """One guess, within the budget, on the worker thread."""
        current = self._current_hash()
        clean = self.throttle.is_clean(address)
        if not self.verifier.has_room(clean) or not self.throttle.admit(address):
            self._refusals.note()
            return Verdict.BUSY
        if current is None:
            return Verdict.DENIED  # the file is broken: every password is refused
        future = self.verifier.submit(current, password)
        try:
            right = await future
        except Exception:
            logger.exception("password check failed")
            right = False
        if right and self._current_hash() is current:
            return Verdict.GRANTED
        self.throttle.failed(address)
        self._wrong_passwords.note(f"from {address}")
        return Verdict.DENIED

    # who is asking

    def is_authenticated(self, handler: tornado.web.RequestHandler) -> bool:
        """A live session cookie (or no ``--login``). Never checks a password."""
        if not self.required:
            return True
        self._current_hash()
        return self.sessions.valid(handler.get_cookie(COOKIE))

    async def identify(
        self, handler: tornado.web.RequestHandler, allow_basic: bool = False
    ) -> Optional[str]:
        """Who is asking: "viewer" if they may watch, None if not; may raise TooManyGuesses."""
        if self.is_authenticated(handler):
            return "viewer"
        if not allow_basic:
            return None
        header = handler.request.headers.get("Authorization", "")
        if header[:6].lower() != "basic ":
            return None
        key = hmac.new(self._header_key, header.encode("utf-8", "surrogateescape"), hashlib.sha256)
        digest = key.digest()
        if digest in self._verified_headers:
            return "viewer"
        password = basic_password(header)
        if password is None:
            return None
        verdict = await self.check_password(handler.request.remote_ip, password)
        if verdict is Verdict.BUSY:
            raise TooManyGuesses()
        if verdict is Verdict.DENIED:
            return None
        self._verified_headers[digest] = None
        while len(self._verified_headers) > MAX_VERIFIED_HEADERS:
            self._verified_headers.pop(next(iter(self._verified_headers)))
        return "viewer"

    # sessions

    def open_session(self, handler: tornado.web.RequestHandler) -> None:
        handler.set_cookie(
            COOKIE,
            self.sessions.open(),
            expires_days=SESSION_DAYS,
            httponly=True,
            samesite="Strict",
        )

    def close_session(self, handler: tornado.web.RequestHandler) -> None:
        self.sessions.revoke(handler.get_cookie(COOKIE))
        handler.clear_cookie(COOKIE)


def basic_password(header: str) -> Optional[str]:
    """The password of an ``Authorization: Basic`` header (any user name), or None."""
    try:
        text = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, binascii.Error):
        return None
    _user, colon, password = text.partition(":")
    return password if colon else None
