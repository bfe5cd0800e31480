"""Login, sessions, Basic auth, the guess budget, Host names and odd requests.

Each test runs the real application behind the real (guarded) HTTP server on a
loopback port, with tornado's own HTTP and websocket clients.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import urllib.parse

import tornado.httpclient
import tornado.testing
import tornado.web

from raspberry_pancake.web import app as webapp
from raspberry_pancake.web.access import COOKIE, Auth
from raspberry_pancake.web.auth import hash_password
from raspberry_pancake.web.base import BaseHandler
from raspberry_pancake.web.hosts import HostPolicy
from raspberry_pancake.web.password_file import PasswordFile
from raspberry_pancake.web.proxy import TrustedProxies
from raspberry_pancake.web.server import GuardedHTTPServer
from raspberry_pancake.web.throttle import GuessThrottle
from raspberry_pancake.web.verifier import PasswordVerifier
from tests.web.test_live_view import LiveViewTestCase, frame_number

PASSWORD = "open sesame"
#: scrypt lines are slow to make; one for the whole module
SCRYPT_LINE = hash_password(PASSWORD)


class Probe(BaseHandler):
    """An endpoint for non-browser clients, as /snapshot.jpg will be."""

    allow_basic_auth = True

    def get(self):
        self.write("probe ok")


class Whoami(BaseHandler):
    """An endpoint open to all that tells callers apart, as /health will."""

    login_required = False
    allow_basic_auth = True

    def get(self):
        self.write("viewer" if self.current_user else "anonymous")


class LoginTestCase(LiveViewTestCase):
    hash_line = SCRYPT_LINE
    trusted_proxies = ()
    allowed_hosts = ()
    #: seconds between guesses of one address; 0 takes the per-address budget out of a test
    per_address_interval = 0.0

    def get_app(self):
        self.tmpdir = tempfile.mkdtemp(prefix="pancake-login-")
        self.password_path = os.path.join(self.tmpdir, "password.txt")
        with open(self.password_path, "w") as f:
            f.write(self.hash_line + "\n")
        from raspberry_pancake.web.auth import load_password_file

        self.password_file = PasswordFile(
            self.password_path, load_password_file(self.password_path)
        )
        self.auth = Auth(
            self.password_file,
            throttle=GuessThrottle(self.per_address_interval),
            **self.auth_kwargs(),
        )
        super().get_app()  # the broadcaster and the capture
        app = webapp.make_app(
            self.broadcaster,
            self.auth,
            max_stream_fps=self.max_stream_fps,
            hosts=HostPolicy(self.allowed_hosts, hostname="pancakecam"),
            proxies=TrustedProxies(self.trusted_proxies),
        )
        app.add_handlers(
            ".*",
            [(r"/probe", Probe, {"auth": self.auth}), (r"/whoami", Whoami, {"auth": self.auth})],
        )
        return app

    def auth_kwargs(self) -> dict:
        return {}

    def get_http_server(self):
        return GuardedHTTPServer(self._app, **self.get_httpserver_options())

    def setUp(self):
        super().setUp()
        self.http_client = tornado.httpclient.AsyncHTTPClient()

    def tearDown(self):
        self.auth.close()
        super().tearDown()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    async def fetch(self, path, **kwargs):
        kwargs.setdefault("follow_redirects", False)
        kwargs.setdefault("raise_error", False)
        return await self.http_client.fetch(self.get_url(path), **kwargs)

    async def login(self, password, headers=None):
        """Post the login form as a browser would: with the form's xsrf token and cookie."""
        page = await self.fetch("/login", headers=headers)
        token = _cookies(page)["_xsrf"]
        body = urllib.parse.urlencode({"password": password, "_xsrf": token})
        headers = {**(headers or {}), "Cookie": f"_xsrf={token}"}
        return await self.fetch("/login", method="POST", body=body, headers=headers)

    async def session(self) -> str:
        r = await self.login(PASSWORD)
        assert r.code == 302, r.body
        return _cookies(r)[COOKIE]


def _cookies(response) -> dict:
    out = {}
    for header in response.headers.get_list("Set-Cookie"):
        name, _, rest = header.partition("=")
        out[name] = rest.split(";")[0]
    return out


def _set_cookie(response, name) -> str:
    found = [c for c in response.headers.get_list("Set-Cookie") if c.startswith(name + "=")]
    assert found, f"no {name} cookie in {response.headers.get_list('Set-Cookie')}"
    return found[0].lower()


def basic(password, user="homeassistant") -> dict:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class TestLogin(LoginTestCase):
    @tornado.testing.gen_test(timeout=30)
    async def test_index_redirects_to_login_until_logged_in(self):
        r = await self.fetch("/")
        assert r.code == 302 and r.headers["Location"] == "/login"
        r = await self.login(PASSWORD)
        assert r.code == 302 and r.headers["Location"] == "/"
        attributes = _set_cookie(r, COOKIE)
        assert "httponly" in attributes and "samesite=strict" in attributes
        assert "secure" not in attributes  # plain HTTP, no trusted proxy
        session = _cookies(r)[COOKIE]
        page = await self.fetch("/", headers={"Cookie": f"{COOKIE}={session}"})
        assert page.code == 200 and b"live-view" in page.body
        ws = await self.connect(headers={"Cookie": f"{COOKIE}={session}"})
        await asyncio.sleep(0.05)
        self.capture.publish()
        await ws.write_message("read_frame")
        assert frame_number(await self.read(ws)) == 1
        ws.close()

    @tornado.testing.gen_test(timeout=30)
    async def test_websocket_refused_at_open_without_a_valid_cookie(self):
        for headers in ({}, {"Cookie": f"{COOKIE}=viewer"}, basic(PASSWORD)):
            try:
                await self.connect(headers=headers)
            except tornado.httpclient.HTTPClientError as e:
                assert e.code == 403
            else:
                raise AssertionError("an unauthenticated websocket was accepted")

    @tornado.testing.gen_test(timeout=30)
    async def test_wrong_password_is_refused_and_gives_no_session(self):
        r = await self.login("guess")
        assert r.code == 403 and b"Wrong password" in r.body
        assert COOKIE not in _cookies(r)

    @tornado.testing.gen_test(timeout=30)
    async def test_cross_site_post_without_xsrf_token_is_refused(self):
        body = urllib.parse.urlencode({"password": PASSWORD})
        r = await self.fetch("/login", method="POST", body=body)
        assert r.code == 403
        assert COOKIE not in _cookies(r)

    @tornado.testing.gen_test(timeout=30)
    async def test_logout_revokes_the_session_on_the_server(self):
        session = await self.session()
        cookie = {"Cookie": f"{COOKIE}={session}"}
        assert (await self.fetch("/", headers=cookie)).code == 200
        page = await self.fetch("/", headers=cookie)
        token = _cookies(await self.fetch("/login"))["_xsrf"]
        r = await self.fetch(
            "/logout",
            method="POST",
            body=urllib.parse.urlencode({"_xsrf": token}),
            headers={"Cookie": f"{COOKIE}={session}; _xsrf={token}"},
        )
        assert r.code == 302 and page.code == 200
        # a copy of the old cookie, kept by an attacker, is worth nothing now
        r = await self.fetch("/", headers=cookie)
        assert r.code == 302 and r.headers["Location"] == "/login"
        try:
            await self.connect(headers=cookie)
        except tornado.httpclient.HTTPClientError as e:
            assert e.code == 403
        else:
            raise AssertionError("a revoked session opened the live view")
        assert len(self.auth.sessions) == 0

    @tornado.testing.gen_test(timeout=60)
    async def test_a_new_password_file_ends_old_sessions_and_the_old_password(self):
        session = await self.session()
        cookie = {"Cookie": f"{COOKIE}={session}"}
        assert (await self.fetch("/probe", headers=basic(PASSWORD))).code == 200
        tmp = self.password_path + ".new"
        with open(tmp, "w") as f:
            f.write(hash_password("a brand new one") + "\n")
        os.replace(tmp, self.password_path)  # as set_password.py writes it
        assert (await self.fetch("/", headers=cookie)).code == 302
        assert (await self.fetch("/probe", headers=basic(PASSWORD))).code == 401
        assert (await self.login(PASSWORD)).code == 403
        assert (await self.login("a brand new one")).code == 302

    @tornado.testing.gen_test(timeout=60)
    async def test_a_broken_password_file_refuses_every_password(self):
        with self.assertLogs("raspberry_pancake.web", logging.ERROR) as logs:
            with open(self.password_path, "w") as f:
                f.write("not a hash\n")
            assert (await self.login(PASSWORD)).code == 403
        assert any("refused until it is fixed" in line for line in logs.output)
        with open(self.password_path, "w") as f:
            f.write(SCRYPT_LINE + "\n")
        assert (await self.login(PASSWORD)).code == 302


class TestOriginalHash(LoginTestCase):
    hash_line = hashlib.sha512(PASSWORD.encode()).hexdigest()

    def get_app(self):
        with self.assertLogs("raspberry_pancake.web", logging.WARNING) as logs:
            app = super().get_app()
        assert any("set_password.py" in line for line in logs.output), logs.output
        return app

    @tornado.testing.gen_test(timeout=30)
    async def test_original_sha512_hash_logs_in(self):
        r = await self.login(PASSWORD)
        assert r.code == 302 and COOKIE in _cookies(r)


class TestBasicAuth(LoginTestCase):
    @tornado.testing.gen_test(timeout=30)
    async def test_anonymous_gets_a_basic_challenge(self):
        r = await self.fetch("/probe")
        assert r.code == 401
        assert r.headers["WWW-Authenticate"].startswith('Basic realm="Raspberry Pancake"')
        assert b"probe ok" not in r.body

    @tornado.testing.gen_test(timeout=30)
    async def test_any_user_name_with_the_password(self):
        for user in ("homeassistant", "", "ünïcode user"):
            r = await self.fetch("/probe", headers=basic(PASSWORD, user))
            assert r.code == 200 and r.body == b"probe ok", user

    @tornado.testing.gen_test(timeout=30)
    async def test_wrong_or_malformed_credentials_are_refused(self):
        for headers in (
            basic("open sesame!"),
            {"Authorization": "Basic !!!not base64"},
            {"Authorization": "Basic " + base64.b64encode(b"no colon").decode()},
            {"Authorization": "Basic " + base64.b64encode(b"u:\xff\xfe").decode()},
            {"Authorization": "Bearer " + PASSWORD},
        ):
            r = await self.fetch("/probe", headers=headers)
            assert r.code == 401, headers
            assert "WWW-Authenticate" in r.headers

    @tornado.testing.gen_test(timeout=30)
    async def test_a_logged_in_browser_cookie_works_too(self):
        session = await self.session()
        r = await self.fetch("/probe", headers={"Cookie": f"{COOKIE}={session}"})
        assert r.code == 200

    @tornado.testing.gen_test(timeout=30)
    async def test_pages_for_browsers_do_not_take_basic_auth(self):
        r = await self.fetch("/", headers=basic(PASSWORD))
        assert r.code == 302 and r.headers["Location"] == "/login"

    @tornado.testing.gen_test(timeout=30)
    async def test_an_open_endpoint_sees_who_is_asking(self):
        assert (await self.fetch("/whoami")).body == b"anonymous"
        assert (await self.fetch("/whoami", headers=basic("wrong"))).body == b"anonymous"
        assert (await self.fetch("/whoami", headers=basic(PASSWORD))).body == b"viewer"


class CountingHash:
    """Stands for a PasswordHash: counts checks, and can hold them until released."""

    def __init__(self, real):
        self.real = real
        self.checks = 0
        self.release = threading.Event()
        self.release.set()
        self.legacy = False

    def verify(self, password):
        self.checks += 1
        self.release.wait(30)
        return self.real.verify(password)


class TestBasicAuthPolling(LoginTestCase):
    per_address_interval = 60.0

    @tornado.testing.gen_test(timeout=30)
    async def test_a_polling_client_is_checked_once_not_throttled(self):
        counting = CountingHash(self.password_file.current)
        self.password_file.current = counting
        for _ in range(5):  # Home Assistant polling the snapshot
            assert (await self.fetch("/probe", headers=basic(PASSWORD))).code == 200
        assert counting.checks == 1


class TestGuessBudget(LoginTestCase):
    per_address_interval = 60.0

    @tornado.testing.gen_test(timeout=30)
    async def test_a_second_guess_from_the_same_address_is_429_at_once(self):
        assert (await self.login("first guess")).code == 403
        r = await self.login("second guess")
        assert r.code == 429 and r.headers["Retry-After"] == "1"
        assert b"Too many attempts" in r.body
        r = await self.fetch("/probe", headers=basic("third guess"))
        assert r.code == 429 and r.headers["Retry-After"] == "1"
        # even the right password waits for the budget: the guesser learns nothing
        assert (await self.login(PASSWORD)).code == 429


class TestBusyWorker(LoginTestCase):
    def auth_kwargs(self):
        return {"verifier": PasswordVerifier(max_pending=1)}

    @tornado.testing.gen_test(timeout=30)
    async def test_a_full_queue_answers_429_without_waiting(self):
        holding = CountingHash(self.password_file.current)
        holding.release.clear()
        self.password_file.current = holding
        first = asyncio.ensure_future(self.login("first"))
        while holding.checks == 0:
            await asyncio.sleep(0.01)
        r = await self.login("second")
        assert r.code == 429  # answered while the first check still runs
        page = await self.fetch("/login")  # and the pages still come
        assert page.code == 200
        assert not first.done()
        holding.release.set()
        assert (await first).code == 403
        assert holding.checks == 1


class TestTrustedProxy(LoginTestCase):
    trusted_proxies = ("127.0.0.1",)
    per_address_interval = 60.0

    @tornado.testing.gen_test(timeout=30)
    async def test_cookies_are_secure_behind_an_https_proxy(self):
        via_https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.7"}
        page = await self.fetch("/login", headers=via_https)
        assert "secure" in _set_cookie(page, "_xsrf")
        r = await self.login(PASSWORD, headers=via_https)
        assert r.code == 302
        assert "secure" in _set_cookie(r, COOKIE)

    @tornado.testing.gen_test(timeout=30)
    async def test_the_proxy_names_the_client_the_budget_counts(self):
        one = {"X-Forwarded-For": "192.0.2.1"}
        two = {"X-Forwarded-For": "spoofed, 192.0.2.2"}
        assert (await self.login("guess", headers=one)).code == 403
        assert (await self.login("guess", headers=one)).code == 429
        assert (await self.login("guess", headers=two)).code == 403  # another client


class TestUntrustedProxyHeaders(LoginTestCase):
    per_address_interval = 60.0

    @tornado.testing.gen_test(timeout=30)
    async def test_forwarded_headers_from_anyone_else_are_ignored(self):
        r = await self.login(PASSWORD, headers={"X-Forwarded-Proto": "https"})
        assert "secure" not in _set_cookie(r, COOKIE)
        await self.login("guess", headers={"X-Forwarded-For": "192.0.2.1"})
        # a new X-Forwarded-For does not buy a new budget
        r = await self.login("guess", headers={"X-Forwarded-For": "192.0.2.2"})
        assert r.code == 429


class TestHostNames(LoginTestCase):
    allowed_hosts = ("cam.example.org",)

    @tornado.testing.gen_test(timeout=30)
    async def test_only_the_camera_names_are_served(self):
        port = self.get_http_port()
        good = [
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            "LOCALHOST.",
            f"pancakecam:{port}",
            f"pancakecam.local:{port}",
            "cam.example.org",
            f"[::1]:{port}",
        ]
        bad = [
            "evil.example",
            f"evil.example:{port}",
            "pancakecam.evil.example",
            "0.0.0.0",
            "192.0.2.1",
        ]
        for host in good:
            r = await self.fetch("/login", headers={"Host": host})
            assert r.code == 200, host
        for host in bad:
            for path in ("/", "/login", "/static/live.js", "/probe", "/nowhere"):
                r = await self.fetch(path, headers={"Host": host})
                assert r.code == 403, (host, path, r.code)

    @tornado.testing.gen_test(timeout=30)
    async def test_the_live_view_refuses_a_rebound_name_even_with_a_session(self):
        session = await self.session()
        headers = {
            "Cookie": f"{COOKIE}={session}",
            "Host": "evil.example",
            "Origin": "http://evil.example",
        }
        try:
            await self.connect(headers=headers)
        except tornado.httpclient.HTTPClientError as e:
            assert e.code == 403
        else:
            raise AssertionError("the live view opened for a rebound host name")


class TestOddRequests(LoginTestCase):
    @tornado.testing.gen_test(timeout=30)
    async def test_odd_static_paths_are_not_found_and_nothing_is_logged_as_an_error(self):
        paths = [
            "/static/live.js%00.css",
            "/static/%00",
            "/static/..%2f..%2fetc%2fpasswd",
            "/static/%ff%fe",
        ]
        with self.assertLogs(level=logging.DEBUG) as logs:
            for path in paths:
                r = await self.fetch(path)
                assert r.code in (400, 403, 404), (path, r.code)
            logging.getLogger("test").debug("done")
        assert not [line for line in logs.output if line.startswith(("ERROR", "CRITICAL"))]

    @tornado.testing.gen_test(timeout=30)
    async def test_no_server_header_names_tornado(self):
        session = await self.session()
        for path, headers in (
            ("/login", {}),
            ("/", {}),
            ("/", {"Cookie": f"{COOKIE}={session}"}),
            ("/static/live.js", {}),
            ("/nowhere", {}),
            ("/probe", {}),
            ("/", {"Host": "evil.example"}),
        ):
            r = await self.fetch(path, headers=headers)
            assert "Server" not in r.headers, (path, r.headers.get("Server"))
        ws = await self.connect(headers={"Cookie": f"{COOKIE}={session}"})
        assert "Server" not in ws.headers
        ws.close()

    @tornado.testing.gen_test(timeout=30)
    async def test_a_big_body_is_refused_before_it_is_read(self):
        token = _cookies(await self.fetch("/login"))["_xsrf"]
        body = urllib.parse.urlencode({"_xsrf": token, "password": "x" * 100_000})
        r = await self.fetch(
            "/login", method="POST", body=body, headers={"Cookie": f"_xsrf={token}"}
        )
        assert r.code in (400, 413) or r.code == 599  # refused, or the connection closed
        assert (await self.fetch("/login")).code == 200
