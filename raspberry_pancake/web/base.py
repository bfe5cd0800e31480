"""The base of every page and endpoint: the login policy, safe headers, safe errors.

A handler says what it wants with two class attributes:

- ``login_required`` (default True): with ``--login``, refuse whoever has not
  shown the password. Set it False to decide inside the handler, from
  ``self.current_user`` (None for an anonymous caller).
- ``allow_basic_auth`` (default False): also accept the password through HTTP
  Basic auth (any user name), for clients that cannot fill in a form. They are
  then refused with 401 and a ``WWW-Authenticate`` challenge instead of being
  sent to the login page.

For example, an endpoint for Home Assistant::

    class SnapshotHandler(BaseHandler):
        allow_basic_auth = True

        def initialize(self, auth, broadcaster):
            super().initialize(auth)
            self.broadcaster = broadcaster

registered with ``{"auth": auth, "broadcaster": ...}`` in ``make_app``.
"""

from __future__ import annotations

import tornado.web

from .access import BASIC_REALM, RETRY_AFTER, Auth


class BaseHandler(tornado.web.RequestHandler):
    """Runs on the IOLoop, like every tornado handler."""

    login_required = True
    allow_basic_auth = False

    def initialize(self, auth: Auth, **kwargs):
        self.auth = auth

    def set_default_headers(self):
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self):
        self.current_user = await self.auth.identify(self, allow_basic=self.allow_basic_auth)
        if self.current_user is None and self.login_required:
            self.refuse()

    def refuse(self) -> None:
        """Answer a caller who has not logged in, and stop the request."""
        if self.allow_basic_auth:
            raise tornado.web.HTTPError(401)  # write_error adds the challenge
        if self.request.method in ("GET", "HEAD"):
            self.redirect("/login")
            raise tornado.web.Finish()
        raise tornado.web.HTTPError(403)

    def set_cookie(self, name, value, *args, **kwargs):
        # behind a trusted HTTPS proxy, cookies never travel in clear
        if self.request.protocol == "https":
            kwargs.setdefault("secure", True)
        super().set_cookie(name, value, *args, **kwargs)

    def write_error(self, status_code: int, **kwargs) -> None:
        """A short page for every error; never a traceback, even for a bug."""
        if status_code == 429:
            self.set_header("Retry-After", str(RETRY_AFTER))
        if status_code == 401 and self.allow_basic_auth:
            self.set_header("WWW-Authenticate", f'Basic realm="{BASIC_REALM}", charset="UTF-8"')
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish(f"{status_code} {self._reason}\n")
