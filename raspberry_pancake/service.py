"""pancake.py's composition root: it builds every part from the config, registers
every camera output, and owns the order in which the parts start and stop.

Everything runs on the asyncio loop of the main thread (tornado's IOLoop wraps
it) except the camera's capture thread and the threads of the disk writer, the
detection and the emitter; those reach the loop only through
``IOLoop.add_callback``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
from typing import Callable, List, Optional

import tornado.ioloop

from .camera import open_camera
from .config import PancakeConfig
from .detection.edges import Edge, EdgeInbox
from .detection.loader import load_detect
from .detection.slot import RgbSlot
from .detection.thread import DetectionThread
from .emitter import Emitter
from .exc import AddressInUseError, ConfigError
from .messages import Message
from .recording.actions import Recorder
from .recording.continuous import ContinuousRecorder
from .recording.fanout import RecordingFanout
from .recording.recovery import recover
from .recording.triggered import AllRecorder, EdgeRecorder
from .recording.writer import DiskWriter
from .sdnotify import Notifier
from .watchdog import Watchdog
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

#: At shutdown: how long detect() may take to return...
DETECTION_STOP_SECONDS = 2.0
#: ...how long the disk may take to finish the files (past it, they are announced
#: as written so far; systemd's TimeoutStopSec is 30 s and issue 10 asks for 20)...
DISK_FINISH_SECONDS = 8.0
#: ...how long the last messages may wait for a receiver...
EMIT_STOP_SECONDS = 3.0
#: ...and how long removing the markers of what was sent may take.
FORGET_SECONDS = 1.0


def _log_only(message: Message, done: Optional[Callable[[], None]] = None) -> None:
    logger.debug("no --emit: %s not sent", message)
    if done is not None:
        done()


class PancakeService:
    """The parts of one pancake.py process; used from the main thread only.

    Building it checks the user's files (the password file, customize.py) before
    the camera is touched, and releases the camera if anything after it fails.
    """

    def __init__(self, config: PancakeConfig):
        self.config = config
        self.password = load_password_file(config.web.login) if config.web.login else None
        detection = config.detection
        detect = load_detect(detection.customize, detection.mode) if detection else None
        self.camera = open_camera(config.backend, config.camera)
        try:
            self._build(detect)
        except BaseException:
            self.camera.close()  # a Pi camera stays locked until closed
            raise
        self._stopping: Optional[asyncio.Event] = None

    # building

    def _build(self, detect: Optional[Callable]) -> None:
        config = self.config
        self.broadcaster = FrameBroadcaster()
        self.emitter = Emitter(config.emit) if config.emit else None
        self.announce = self.emitter.send if self.emitter is not None else _log_only
        recorders, inbox = self._recorders()
        self.writer = DiskWriter(self.announce) if recorders else None
        self.fanout = RecordingFanout(recorders, self.writer) if recorders else None
        self.rgb_slot = None
        self.detection = None
        if detect is not None:
            if config.detection.mode == "image":
                self.rgb_slot = RgbSlot()
            on_edge = inbox.put if inbox is not None else self._announce_edge
            self.detection = DetectionThread(
                detect, config.detection.interval, on_edge, self.rgb_slot
            )
        self._register_outputs()
        self.notifier = Notifier()
        self.watchdog = Watchdog(self.camera, self.notifier, config.camera.fps)
        password_file = PasswordFile(config.web.login, self.password) if self.password else None
        self.auth = Auth(password_file)
        self.server: Optional[GuardedHTTPServer] = None

    def _recorders(self):
        """The recorders the flags ask for, and the inbox that feeds a detection recorder."""
        recording = self.config.recording
        recorders: List[Recorder] = []
        inbox = None
        if recording.continuous_dir is not None:
            recorders.append(ContinuousRecorder(recording.continuous_dir))
        if recording.detection_dir is not None:
            inbox = EdgeInbox()
            kind = EdgeRecorder if recording.detection_mode == "edge" else AllRecorder
            recorders.append(kind(recording.detection_dir, inbox))
        return recorders, inbox

    def _announce_edge(self, edge: Edge) -> None:
        """Without a detection recorder, an edge goes straight to the post-processor."""
        self.announce(Message(detection=edge.state))

    def _register_outputs(self) -> None:
        """Every consumer of the camera's frames, registered here and nowhere else."""
        self.camera.set_jpeg_output(self.broadcaster)
        if self.fanout is not None:
            self.camera.set_h264_output(self.fanout, self.config.recording.resize)
        if self.rgb_slot is not None:
            self.camera.set_rgb_output(self.rgb_slot, self.config.detection.resize)

    def _make_server(self) -> GuardedHTTPServer:
        """The web server: pages behind the login, the Host check and the connection cap."""
        web = self.config.web
        health = HealthReport(
            self.camera,
            self.broadcaster,
            web.max_stream_fps,
            writer=self.writer,
            emitter=self.emitter,
            directories=self.config.recording.directories(),
        )
        app = make_app(
            self.broadcaster,
            self.auth,
            max_stream_fps=web.max_stream_fps,
            hosts=HostPolicy(list(web.allow_hosts)),
            proxies=TrustedProxies(list(web.trusted_proxies)),
            health=health,
        )
        return GuardedHTTPServer(app)

    # running

    async def run(self) -> int:
        """Start, serve until SIGTERM or SIGINT, then stop; the process's whole life."""
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        # before start(): a SIGTERM while it opens recordings must close them, not kill
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_stop_signal, signum)
        try:
            self.start()
            settings = self.config.camera
            logger.info(
                "serving the %s camera on port %d (%dx%d at %d fps)",
                self.camera.name,
                self.config.web.port,
                *settings.resolution,
                settings.fps,
            )
            self.notifier.ready(f"serving on port {self.config.web.port}")
            await self._stopping.wait()
        finally:
            self.stop()  # a second SIGTERM meanwhile finds the handler, which ignores it
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
                signal.signal(signum, signal.SIG_IGN)  # the work is done: exit with 0
        return 0

    def start(self) -> None:
        """The order of start: the web server, the threads that take frames, then the
        camera, then the watchdog. What an earlier run left unannounced is announced
        once the emitter and the writer run."""
        self.broadcaster.attach(tornado.ioloop.IOLoop.current())
        self.server = self._make_server()
        self._listen()
        if self.emitter is not None:
            self.emitter.start()
        if self.writer is not None:
            self.writer.start()
            directories = [path for _, path in self.config.recording.directories()]
            recover(directories, self.announce, self.writer.forget)
        if self.detection is not None:
            self.detection.start()
        self.camera.start()
        self.watchdog.start()

    def stop(self) -> None:
        """The order of shutdown: no new visitors, no new frames, no new detections;
        then the recordings close and are announced, and the last messages leave.

        Every step is bounded, so a stalled disk or a detect() that never returns
        cannot keep pancake.py from stopping before systemd kills it. Safe after a
        start that failed half-way.
        """
        self.watchdog.stop()
        if self.server is not None:
            self.server.stop()
        self.auth.close()
        self.camera.stop()
        self.camera.close()
        if self.detection is not None:
            self.detection.close(DETECTION_STOP_SECONDS)
        if self.fanout is not None:
            self.fanout.finish()
        if self.writer is not None:
            self.writer.finish(DISK_FINISH_SECONDS)
        if self.emitter is not None:
            self.emitter.close(EMIT_STOP_SECONDS)
        if self.writer is not None:
            self.writer.close(FORGET_SECONDS)  # the markers of what was just sent
        self.notifier.close()
        logger.info("stopped")

    def _listen(self) -> None:
        port = self.config.web.port
        try:
            self.server.listen(port)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise AddressInUseError(
                    f"port {port} is already in use; choose another with --port"
                ) from None
            if e.errno == errno.EACCES:
                raise ConfigError(f"not allowed to listen on port {port}") from None
            raise

    def _on_stop_signal(self, signum: int) -> None:
        if self._stopping.is_set():
            return
        logger.info("%s received: closing recordings and stopping", signal.Signals(signum).name)
        self.notifier.stopping()
        self._stopping.set()
