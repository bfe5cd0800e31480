"""The tornado application: the page, the login, the live-view socket, static files.

Handlers get what they need through ``initialize`` keyword arguments, never
module globals, so the tests can build an app around any broadcaster.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from typing import Optional

import tornado.web

from .auth import PasswordHash
from .live import FrameBroadcaster, LiveViewSocket

logger = logging.getLogger(__name__)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COOKIE = "pancake_session"
COOKIE_DAYS = 30
#: a wrong password is answered after this long, to slow down guessing
WRONG_PASSWORD_DELAY = 3.0


class Auth:
    """Who may watch: everyone without ``--login``, else holders of a signed cookie."""

    def __init__(self, password: Optional[PasswordHash]):
        self.password = password

    @property
    def required(self) -> bool:
        return self.password is not None

    def is_authenticated(self, handler: tornado.web.RequestHandler) -> bool:
        if self.password is None:
            return True
        value = handler.get_signed_cookie(COOKIE, max_age_days=COOKIE_DAYS)
        return value == b"viewer"

    def grant(self, handler: tornado.web.RequestHandler) -> None:
        handler.set_signed_cookie(
            COOKIE, "viewer", expires_days=COOKIE_DAYS, httponly=True, samesite="Strict"
        )


class BaseHandler(tornado.web.RequestHandler):
    def initialize(self, auth: Auth, **kwargs):
        self.auth = auth

    def set_default_headers(self):
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")


class IndexHandler(BaseHandler):
    def get(self):
        if not self.auth.is_authenticated(self):
            self.redirect("/login")
            return
        self.render("index.html", login_required=self.auth.required)


class LoginHandler(BaseHandler):
    def get(self):
        if not self.auth.required:
            self.redirect("/")
            return
        self.render("login.html", error=None)

    async def post(self):
        if not self.auth.required:
            self.redirect("/")
            return
        password = self.get_body_argument("password", default="")
        if self.auth.password.verify(password):
            logger.info("login from %s", self.request.remote_ip)
            self.auth.grant(self)
            self.redirect("/")
            return
        logger.warning("wrong password from %s", self.request.remote_ip)
        await asyncio.sleep(WRONG_PASSWORD_DELAY)
        self.set_status(403)
        self.render("login.html", error="Wrong password.")


class LogoutHandler(BaseHandler):
    def post(self):
        self.clear_cookie(COOKIE)
        self.redirect("/login" if self.auth.required else "/")


def make_app(
    broadcaster: FrameBroadcaster,
    password: Optional[PasswordHash],
    max_stream_fps: float = 10,
    root: str = ROOT,
) -> tornado.web.Application:
    auth = Auth(password)
    return tornado.web.Application(
        [
            (r"/", IndexHandler, {"auth": auth}),
            (r"/login", LoginHandler, {"auth": auth}),
            (r"/logout", LogoutHandler, {"auth": auth}),
            (
                r"/websocket",
                LiveViewSocket,
                {"broadcaster": broadcaster, "max_stream_fps": max_stream_fps, "auth": auth},
            ),
        ],
        template_path=root,
        static_path=os.path.join(root, "static"),
        # a new secret at each start: a restart asks viewers to log in again
        cookie_secret=secrets.token_hex(32),
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"httponly": True, "samesite": "Strict"},
        websocket_ping_interval=20,
    )
