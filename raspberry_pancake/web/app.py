"""The tornado application: the page, the login, the live-view socket, static files.

Handlers get what they need through ``initialize`` keyword arguments, never
module globals, so the tests can build an app around any broadcaster. Before
any handler runs, the application takes the client's address and scheme from a
trusted proxy and refuses Host headers that are not the camera's own names.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import tornado.web

from .access import RETRY_AFTER, Auth, Verdict
from .base import BaseHandler
from .health import HealthHandler, HealthReport
from .hosts import HostPolicy
from .live import FrameBroadcaster, LiveViewSocket
from .mjpeg import MjpegStreamHandler, SnapshotHandler
from .proxy import TrustedProxies

logger = logging.getLogger(__name__)

#: index.html, login.html and static/: in a checkout, links to the files at its top
#: (where the original project keeps them); in an installed package, copies of them
PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
#: the browser sends only "read_frame" on the live-view socket
MAX_WEBSOCKET_MESSAGE = 1024
#: distinct refused Host names logged at most (a rebinding page may try many)
MAX_LOGGED_HOSTS = 32


class IndexHandler(BaseHandler):
    def get(self):
        self.render("index.html", login_required=self.auth.required)


class LoginHandler(BaseHandler):
    login_required = False

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
        verdict = await self.auth.check_password(self.request.remote_ip, password)
        if verdict is Verdict.GRANTED:
            logger.info("login from %s", self.request.remote_ip)
            self.auth.open_session(self)
            self.redirect("/")
        elif verdict is Verdict.BUSY:
            self.set_status(429)
            self.set_header("Retry-After", str(RETRY_AFTER))
            self.render("login.html", error="Too many attempts: wait a second and try again.")
        else:
            self.set_status(403)
            self.render("login.html", error="Wrong password.")


class LogoutHandler(BaseHandler):
    login_required = False

    def post(self):
        self.auth.close_session(self)
        self.redirect("/login" if self.auth.required else "/")


class NotFoundHandler(BaseHandler):
    """Every unknown path: a plain 404, with the same headers as the pages."""

    login_required = False

    def prepare(self):
        raise tornado.web.HTTPError(404)


class UnknownHostHandler(NotFoundHandler):
    """A Host header that is not one of the camera's names: most likely DNS rebinding."""

    def prepare(self):
        raise tornado.web.HTTPError(403, reason="Unknown Host")


class StaticFiles(tornado.web.StaticFileHandler):
    """``static/``, where a path the file system cannot even name is simply not found."""

    def set_default_headers(self):
        self.set_header("X-Content-Type-Options", "nosniff")

    def parse_url_path(self, url_path: str) -> str:
        if "\x00" in url_path:
            raise tornado.web.HTTPError(404)
        return super().parse_url_path(url_path)


class WithoutServerHeader(tornado.web.OutputTransform):
    """Drops the ``Server: TornadoServer/<version>`` header from every answer."""

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        headers.pop("Server", None)
        return status_code, headers, chunk


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Server errors in the log; everything else only at debug level, so a flood stays out."""
    status = handler.get_status()
    log = logging.getLogger("tornado.access")
    level = logging.ERROR if status >= 500 else logging.DEBUG
    request = handler.request
    log.log(
        level,
        "%d %s %s (%s) %.1f ms",
        status,
        request.method,
        request.uri,
        request.remote_ip,
        request.request_time() * 1000,
    )


class PancakeApplication(tornado.web.Application):
    """The routes, behind the Host check and the trusted-proxy headers; used on the IOLoop."""

    def __init__(
        self, handlers, hosts: HostPolicy, proxies: TrustedProxies, auth: Auth, **settings
    ):
        super().__init__(handlers, transforms=[WithoutServerHeader], **settings)
        self.hosts = hosts
        self.proxies = proxies
        self.auth = auth
        self._logged_hosts = set()

    def find_handler(self, request, **kwargs):
        self.proxies.adapt(request)
        if not self.hosts.allows(request.host, _connected_to(request)):
            self._log_refused_host(request)
            return self.get_handler_delegate(request, UnknownHostHandler, {"auth": self.auth})
        return super().find_handler(request, **kwargs)

    def _log_refused_host(self, request) -> None:
        name = request.host[:100]
        if name in self._logged_hosts or len(self._logged_hosts) >= MAX_LOGGED_HOSTS:
            return
        self._logged_hosts.add(name)
        logger.warning(
            "refused a request from %s for host %r, not a name of this camera "
            "(DNS rebinding?); add it with --allow-host if it is yours",
            request.remote_ip,
            name,
        )


def _connected_to(request) -> Optional[str]:
    """The local address the client connected to, if the socket can still tell."""
    try:
        return request.connection.stream.socket.getsockname()[0]
    except (AttributeError, OSError, IndexError):
        return None


def make_app(
    broadcaster: FrameBroadcaster,
    auth: Optional[Auth] = None,
    max_stream_fps: float = 10,
    hosts: Optional[HostPolicy] = None,
    proxies: Optional[TrustedProxies] = None,
    root: str = PAGE,
    health: Optional[HealthReport] = None,
) -> tornado.web.Application:
    """The application; ``/health`` is served when ``health`` is given."""
    auth = auth or Auth()
    stream = {"broadcaster": broadcaster, "max_stream_fps": max_stream_fps, "auth": auth}
    routes = [
        (r"/", IndexHandler, {"auth": auth}),
        (r"/login", LoginHandler, {"auth": auth}),
        (r"/logout", LogoutHandler, {"auth": auth}),
        (r"/websocket", LiveViewSocket, stream),
        (r"/stream\.mjpg", MjpegStreamHandler, stream),
        (r"/snapshot\.jpg", SnapshotHandler, {"broadcaster": broadcaster, "auth": auth}),
    ]
    if health is not None:
        routes.append((r"/health", HealthHandler, {"report": health, "auth": auth}))
    return PancakeApplication(
        routes,
        hosts=hosts or HostPolicy(),
        proxies=proxies or TrustedProxies(),
        auth=auth,
        template_path=root,
        static_path=os.path.join(root, "static"),
        static_handler_class=StaticFiles,
        default_handler_class=NotFoundHandler,
        default_handler_args={"auth": auth},
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"httponly": True, "samesite": "Strict"},
        websocket_ping_interval=20,
        websocket_max_message_size=MAX_WEBSOCKET_MESSAGE,
        log_function=log_request,
    )
