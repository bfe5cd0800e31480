"""pancake.py's running parts wired together: camera, live view, recording, systemd.

Everything runs on the tornado IOLoop of the main thread except the camera's
capture thread and the threads the recording pipeline owns; those reach the loop
only through ``IOLoop.add_callback``.
"""

from __future__ import annotations

import errno
import logging
import signal

import tornado.ioloop

from .camera import open_camera
from .exc import AddressInUseError, ConfigError
from .pipeline import build_pipeline
from .sdnotify import Notifier
from .web.access import Auth
from .web.app import make_app
from .web.auth import load_password_file
from .web.health import HealthReport
from .web.hosts import HostPolicy
from .web.live import FrameBroadcaster
from .web.password_file import PasswordFile
from .web.proxy import TrustedProxies
from .web.server import GuardedHTTPServer

logger = logging.getLogger(__name__)


class PancakeService:
    """Owns the parts of one pancake.py process; used from the main thread only."""

    def __init__(self, args):
        self.args = args
        # user errors first, before the camera is touched
        self.password = load_password_file(args.login) if args.login else None
        self.camera = open_camera(args.camera, args.settings)
        self.broadcaster = FrameBroadcaster()
        self.camera.set_jpeg_output(self.broadcaster)
        try:
            self.pipeline = build_pipeline(args, self.camera)
        except BaseException:
            self.camera.close()  # a Pi camera stays locked until closed
            raise
        self.notifier = Notifier()
        self.loop = None
        self.server = None
        self.auth = None
        self._stopping = False
        self._watchdog_withheld = False

    def run(self) -> int:
        self.loop = tornado.ioloop.IOLoop.current()
        self.broadcaster.attach(self.loop)
        self.server = self._make_server()
        try:
            self._listen()
            if self.pipeline is not None:
                self.pipeline.start()
            self.camera.start()
        except BaseException:
            self._shutdown()
            raise
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_stop_signal)
        if hasattr(self.camera, "freeze"):
            # rehearsals of the watchdog: a stuck camera, a frozen H.264 encoder
            signal.signal(signal.SIGUSR1, lambda *_: self.camera.freeze())
            signal.signal(signal.SIGUSR2, lambda *_: self.camera.freeze(output="h264"))
        self._start_watchdog()
        logger.info(
            "serving the %s camera on port %d (%dx%d at %d fps)",
            self.camera.name,
            self.args.port,
            *self.args.settings.resolution,
            self.args.settings.fps,
        )
        self.notifier.ready(f"serving on port {self.args.port}")
        try:
            self.loop.start()
        finally:
            self._shutdown()
        return 0

    def _make_server(self) -> GuardedHTTPServer:
        """The web server: pages behind the login, the Host check and the connection cap."""
        args = self.args
        password_file = PasswordFile(args.login, self.password) if self.password else None
        self.auth = Auth(password_file)
        app = make_app(
            self.broadcaster,
            self.auth,
            max_stream_fps=args.max_stream_fps,
            hosts=HostPolicy(args.allow_host),
            proxies=TrustedProxies(args.trusted_proxy),
            health=self._health_report(),
        )
        return GuardedHTTPServer(app)

    def _health_report(self) -> HealthReport:
        directories = []
        if self.args.record_continuous:
            directories.append(("continuous", self.args.record_continuous))
        if self.args.record_detection:
            directories.append(("detection", self.args.record_detection[1]))
        pipeline = self.pipeline
        return HealthReport(
            self.camera,
            self.broadcaster,
            self.args.max_stream_fps,
            writer=pipeline.writer if pipeline else None,
            emitter=pipeline.emitter if pipeline else None,
            directories=directories,
        )

    def _listen(self) -> None:
        try:
            self.server.listen(self.args.port)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise AddressInUseError(
                    f"port {self.args.port} is already in use; choose another with --port"
                ) from None
            if e.errno == errno.EACCES:
                raise ConfigError(f"not allowed to listen on port {self.args.port}") from None
            raise

    def _start_watchdog(self) -> None:
        """Ping systemd's watchdog while the camera captures and every output gets its frames.

        An output that asks for nothing (the live view without viewers, detection
        busy) is not waited for; one that asks and gets nothing for ``max_age``
        (a frozen encoder) stops the pings as surely as a stuck camera.
        """
        interval = self.notifier.watchdog_interval
        if interval is None:
            return
        max_age = max(interval, 3.0 / self.args.settings.fps)
        tornado.ioloop.PeriodicCallback(
            lambda: self._watchdog_ping(max_age), interval * 1000
        ).start()

    def _watchdog_ping(self, max_age: float) -> None:
        problems = self.camera.stalled(max_age)
        if not problems:
            if self._watchdog_withheld:
                self._watchdog_withheld = False
                logger.warning("frames flow again: pinging the watchdog again")
            self.notifier.watchdog()
        elif not self._watchdog_withheld:
            self._watchdog_withheld = True
            logger.error("not pinging the watchdog: %s", "; ".join(problems))

    def _on_stop_signal(self, signum, frame) -> None:
        self.loop.add_callback_from_signal(self._stop, signal.Signals(signum).name)

    def _stop(self, reason: str) -> None:
        if self._stopping:
            return
        self._stopping = True
        logger.info("%s received: closing recordings and stopping", reason)
        self.notifier.stopping()
        self.loop.stop()

    def _shutdown(self) -> None:
        """Stop frames first, then let recording close and announce its files."""
        if self.server is not None:
            self.server.stop()
        if self.auth is not None:
            self.auth.close()
        self.camera.stop()
        self.camera.close()
        if self.pipeline is not None:
            self.pipeline.close()
        self.notifier.close()
        logger.info("stopped")
