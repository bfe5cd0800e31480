"""Publish postproc's state and events to an MQTT broker, with Home Assistant discovery.

One thread ("mqtt") owns the paho client and drives its socket with paho's
external-loop calls (``loop_read``/``loop_write``/``loop_misc``), so DNS, TCP and
TLS handshakes, keepalives and reconnections all happen there. The event methods,
called by the daemon and the workers, only note the event under a lock and wake
that thread: a broker that is slow, down or gone never holds up a conversion, an
upload or a notification. While the broker is away, states are kept as their latest
value and events in a bounded queue (the oldest go first when it is full); on every
connection, and whenever Home Assistant announces itself, the discovery configs and
the states are published again, retained.

paho-mqtt is optional: it is imported only when ``--mqtt`` is given. Both the 1.6
API (Debian 12) and the 2.x API (``CallbackAPIVersion``) are supported.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Callable, Deque, Dict, Optional, Tuple, Union

from ..exc import ConfigError
from . import homeassistant, secrets
from . import mqtt_messages as msg
from .events import Events

logger = logging.getLogger(__name__)

#: Events kept while the broker is unreachable; older ones are dropped first.
MAX_QUEUED = 200
#: Seconds between connection attempts: doubling from the first to the last.
RETRY_DELAYS = (1.0, 16.0)
#: Seconds the broker gets to acknowledge "offline" when postproc stops.
GOODBYE_SECONDS = 3.0
#: Seconds between two announcements asked for by Home Assistant's birth messages.
ANNOUNCE_GAP = 2.0
#: While the broker stays unreachable, a reminder in the log this often (seconds).
REMIND_EVERY = 600.0
KEEPALIVE = 60
QOS = 1


# -- settings and flags ----------------------------------------------------------------


@dataclass
class MqttSettings:
    """The checked ``--mqtt*`` flags; built on the main thread, read by the MQTT thread."""

    host: str
    port: int
    base_topic: str
    discovery_prefix: str = homeassistant.DEFAULT_PREFIX
    user: Optional[str] = None
    password: Optional[str] = None
    tls: Optional[ssl.SSLContext] = None

    @property
    def client_id(self) -> str:
        """Fixed per base topic: a restarted postproc takes over its old session at once."""
        return "raspberry-pancake-" + homeassistant.node_id(self.base_topic)

    @property
    def device_name(self) -> str:
        return "Raspberry Pancake " + self.base_topic.rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"{scheme}://{self.host}:{self.port}/{self.base_topic}"


def default_base_topic() -> str:
    host = "".join(c for c in socket.gethostname() if c not in "/+#\0") or "localhost"
    return f"raspberry-pancake/{host}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--mqtt*`` flags, next to the other flags of postproc.py."""
    parser.add_argument(
        "--mqtt",
        nargs=2,
        metavar=("host", "port"),
        help="publish state and events to this MQTT broker, with Home Assistant discovery",
    )
    parser.add_argument("--mqtt-user", metavar="USER", help="user name for the broker")
    parser.add_argument(
        "--mqtt-password-file",
        metavar="FILE",
        help="file holding the broker password (first line); keep it mode 0600",
    )
    parser.add_argument(
        "--mqtt-ca",
        metavar="FILE",
        help="connect with TLS, trusting the CA certificate(s) in this PEM file",
    )
    parser.add_argument(
        "--mqtt-topic",
        metavar="BASE",
        help="base topic (default: raspberry-pancake/<hostname>)",
    )
    parser.add_argument(
        "--mqtt-discovery-prefix",
        metavar="PREFIX",
        default=homeassistant.DEFAULT_PREFIX,
        help=f"Home Assistant discovery prefix (default: {homeassistant.DEFAULT_PREFIX})",
    )


def settings_from_args(args) -> Optional[MqttSettings]:
    """Check the ``--mqtt*`` flags; None without ``--mqtt``. Raises ``ConfigError``."""
    if args.mqtt is None:
        for flag, value in (
            ("--mqtt-user", args.mqtt_user),
            ("--mqtt-password-file", args.mqtt_password_file),
            ("--mqtt-ca", args.mqtt_ca),
            ("--mqtt-topic", args.mqtt_topic),
        ):
            if value is not None:
                raise ConfigError(f"{flag} needs --mqtt host port")
        if args.mqtt_discovery_prefix != homeassistant.DEFAULT_PREFIX:
            raise ConfigError("--mqtt-discovery-prefix needs --mqtt host port")
        return None
    from .cli import _port  # the one port check of postproc's flags (cli imports this module)

    host, port_text = args.mqtt
    if not host or host.startswith("-") or any(c.isspace() for c in host):
        raise ConfigError(f"--mqtt: {host!r} is not a host name")
    port = _port("--mqtt", port_text)
    if args.mqtt_password_file is not None and args.mqtt_user is None:
        raise ConfigError("--mqtt-password-file needs --mqtt-user")
    if args.mqtt_user is not None:
        if not args.mqtt_user:
            raise ConfigError("--mqtt-user must not be empty")
        try:
            args.mqtt_user.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigError(f"--mqtt-user: {args.mqtt_user!r} is not valid UTF-8") from None
    password = None
    if args.mqtt_password_file is not None:
        # the same rules as every other secret: a file only its owner can read
        path = args.mqtt_password_file
        password = secrets.read_secret_file("--mqtt-password-file", path)
        if not password:
            raise ConfigError(f"--mqtt-password-file: the first line of {path!r} is empty")
    base = args.mqtt_topic if args.mqtt_topic is not None else default_base_topic()
    check_topic("--mqtt-topic", base)
    check_topic("--mqtt-discovery-prefix", args.mqtt_discovery_prefix)
    tls = None if args.mqtt_ca is None else tls_context("--mqtt-ca", args.mqtt_ca)
    load_paho()  # fail now, in one line, rather than on the MQTT thread
    return MqttSettings(
        host=host,
        port=port,
        base_topic=base,
        discovery_prefix=args.mqtt_discovery_prefix,
        user=args.mqtt_user,
        password=password,
        tls=tls,
    )


def check_topic(flag: str, topic: str) -> None:
    """A topic we publish under: no wildcards, no ``$`` start, no empty or trailing level."""
    if not topic:
        raise ConfigError(f"{flag} must not be empty")
    bad = sorted(set(topic) & {"+", "#", "\0"})
    if bad:
        raise ConfigError(f"{flag}: {topic!r} must not contain {bad[0]!r}")
    if topic.startswith("$"):
        raise ConfigError(f"{flag}: {topic!r} must not start with '$' (reserved by brokers)")
    if topic.startswith("/") or topic.endswith("/") or "//" in topic:
        raise ConfigError(f"{flag}: {topic!r} has an empty level (a '/' too many)")
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        raise ConfigError(f"{flag}: {topic!r} is not valid UTF-8") from None
    if size > 1000:
        raise ConfigError(f"{flag}: {topic!r} is too long")


def tls_context(flag: str, ca_file: str) -> ssl.SSLContext:
    """Verify the broker against ``ca_file``, host name included."""
    if not os.path.isfile(ca_file):
        raise ConfigError(f"{flag}: file {ca_file!r} does not exist")
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (ssl.SSLError, OSError, ValueError) as e:
        raise ConfigError(f"{flag}: {ca_file!r} holds no usable PEM certificate ({e})") from None


def load_paho():
    """``paho.mqtt.client``, or a ``ConfigError`` saying how to install it."""
    try:
        import paho.mqtt.client as paho
    except ImportError:
        raise ConfigError(
            "--mqtt needs paho-mqtt: apt install python3-paho-mqtt, or pip install paho-mqtt"
        ) from None
    return paho


# -- the publisher ---------------------------------------------------------------------


class _Lazy:
    """A payload built once, when first published (on the MQTT thread)."""

    def __init__(self, build: Callable[[], str]):
        self._build = build
        self._text: Optional[str] = None

    def __call__(self) -> str:
        if self._text is None:
            self._text = self._build()
        return self._text


Payload = Union[str, _Lazy]


def _text(payload: Payload) -> str:
    return payload() if isinstance(payload, _Lazy) else payload


class MqttPublisher(Events):
    """postproc's MQTT client: events in from any thread, one thread ("mqtt") talks.

    ``backlog`` returns how many files wait for upload; it is called on the MQTT
    thread after recordings and uploads, and on every connection.
    """

    def __init__(self, settings: MqttSettings, backlog: Callable[[], int] = lambda: 0):
        self.settings = settings
        self._backlog = backlog
        self._paho = load_paho()
        self._lock = threading.Lock()  # guards _latest, _queue, _dropped, _backlog_stale, _closing
        self._latest: Dict[str, Payload] = {}  # subtopic -> newest payload of a retained state
        # (subtopic, payload, retain) of every event and state change not published yet
        self._queue: Deque[Tuple[str, Payload, bool]] = collections.deque()
        self._dropped = 0
        self._backlog_stale = True
        self._closing = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        # Only the MQTT thread touches what follows.
        self._client = None
        self._connected = False
        self._republish = False
        self._announce_at: Optional[float] = None  # a birth asked for an announcement then
        self._last_announce = float("-inf")
        self._refused: Optional[str] = None
        self._next_attempt = 0.0
        self._delay = RETRY_DELAYS[0]
        self._failing_since: Optional[float] = None
        self._last_reminder = 0.0

    # -- Events: any thread, never blocks ------------------------------------------------

    def start(self) -> None:
        logger.info("MQTT: publishing to %s", self.settings)
        self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._closing = True
        self._wake()
        if self._thread.ident is not None:
            self._thread.join(GOODBYE_SECONDS + 2.0)
            if self._thread.is_alive():
                logger.warning("MQTT: the client thread did not finish in time")
                return  # a daemon thread: it ends with the process; its sockets with it
        self._wake_r.close()
        self._wake_w.close()

    def detection(self, state: bool) -> None:
        self._enqueue(msg.DETECTION, msg.ON if state else msg.OFF, retain=True)

    def recording(self, h264: str, mp4: Optional[str], detection: Optional[bool]) -> None:
        finished = msg.now_iso()
        # The payload reads the files' sizes: built on the MQTT thread, not here.
        payload = _Lazy(lambda: msg.recording_payload(h264, mp4, detection, finished))
        self._enqueue(msg.RECORDING, payload, retain=True)

    def uploaded(self, mp4: str, destination: str, ok: bool, detail: str) -> None:
        self._enqueue(msg.UPLOAD, msg.upload_payload(mp4, destination, ok, detail), False)

    def notified(self, target: str, text: str, ok: bool, detail: str) -> None:
        self._enqueue(msg.NOTIFICATION, msg.notification_payload(target, text, ok, detail), False)

    def _enqueue(self, subtopic: str, payload: Payload, retain: bool) -> None:
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:
                self._queue.popleft()
                self._dropped += 1
                if self._dropped == 1:
                    logger.warning("MQTT: %s events waiting; dropping the oldest", MAX_QUEUED)
            self._queue.append((subtopic, payload, retain))
            if retain:
                self._latest[subtopic] = payload
            if subtopic in (msg.RECORDING, msg.UPLOAD):
                self._backlog_stale = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except (BlockingIOError, OSError):
            pass  # already woken, or closed at shutdown

    # -- the MQTT thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._client = self._make_client()
        except Exception:
            logger.exception("MQTT: cannot set up the client; postproc goes on without MQTT")
            return
        while not self._closing_now():
            try:
                if self._client.socket() is None and time.monotonic() >= self._next_attempt:
                    self._connect()
                self._wait_and_pump(self._timeout())
                if self._connected:
                    self._publish_pending()
            except Exception:  # a bug, or something paho did not expect: start afresh
                logger.exception("MQTT: unexpected error; starting a new connection")
                self._start_afresh()
        try:
            self._goodbye()
        except Exception:
            logger.exception("MQTT: could not say goodbye to the broker")

    def _start_afresh(self) -> None:
        old, self._client = self._client, self._make_client()
        self._connected = False
        try:
            sock = old.socket()
            if sock is not None:
                sock.close()  # without DISCONNECT: the broker publishes the last will
        except Exception:
            pass
        self._failed("unexpected error")

    def _closing_now(self) -> bool:
        with self._lock:
            return self._closing

    def _make_client(self):
        paho = self._paho
        kwargs = {"client_id": self.settings.client_id, "clean_session": True}
        if hasattr(paho, "CallbackAPIVersion"):  # paho-mqtt 2.x
            kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION2
        client = paho.Client(protocol=paho.MQTTv311, **kwargs)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.max_queued_messages_set(MAX_QUEUED)
        availability = self._topic(msg.AVAILABILITY)
        client.will_set(availability, msg.OFFLINE, qos=QOS, retain=True)
        if self.settings.user is not None:
            client.username_pw_set(self.settings.user, self.settings.password)
        if self.settings.tls is not None:
            client.tls_set_context(self.settings.tls)
        return client

    def _topic(self, subtopic: str) -> str:
        return f"{self.settings.base_topic}/{subtopic}"

    def _connect(self) -> None:
        s = self.settings
        try:
            self._client.connect(s.host, s.port, KEEPALIVE)
        except (OSError, ValueError) as e:  # refused, unreachable, DNS, TLS (ssl: OSError)
            self._failed(str(e) or type(e).__name__)

    def _failed(self, reason: str, level: int = logging.WARNING) -> None:
        """Schedule the next attempt; log the first failure, then a reminder now and then."""
        now = time.monotonic()
        self._next_attempt = now + self._delay
        self._delay = min(self._delay * 2, RETRY_DELAYS[1])
        if self._failing_since is None:
            self._failing_since = self._last_reminder = now
            logger.log(
                level,
                "MQTT: no connection to %s:%s (%s); retrying in the background",
                *self._where(),
                reason,
            )
        elif now - self._last_reminder >= REMIND_EVERY:
            self._last_reminder = now
            logger.log(
                level,
                "MQTT: still no connection to %s:%s after %.0f s (%s)",
                *self._where(),
                now - self._failing_since,
                reason,
            )

    def _timeout(self) -> float:
        if self._client.socket() is not None:
            if self._announce_at is not None:
                return min(1.0, max(0.0, self._announce_at - time.monotonic()))
            return 1.0  # keepalive checks
        return min(1.0, max(0.0, self._next_attempt - time.monotonic()))

    def _wait_and_pump(self, timeout: float) -> None:
        client = self._client
        sock = client.socket()
        readers = [self._wake_r] + ([sock] if sock is not None else [])
        writers = [sock] if sock is not None and client.want_write() else []
        readable, writable, _ = select.select(readers, writers, [], timeout)
        if self._wake_r in readable:
            try:
                while self._wake_r.recv(512):
                    pass
            except (BlockingIOError, OSError):
                pass
        if sock is not None and sock in readable:
            client.loop_read()
            # TLS may hold decrypted bytes that select() cannot see
            while client.socket() is sock and getattr(sock, "pending", lambda: 0)():
                client.loop_read()
        if sock is not None and sock in writable and client.socket() is sock:
            client.loop_write()
        if client.socket() is not None:
            client.loop_misc()

    # paho callbacks: on the MQTT thread, inside loop_read/loop_write/loop_misc.
    # Signatures fit both APIs: 1.6 passes (flags, rc), 2.x (flags, reason_code, properties).

    def _on_connect(self, client, userdata, flags, rc, properties=None) -> None:
        code = getattr(rc, "value", rc)
        if code != 0:  # paho closes the socket next: _on_disconnect schedules the retry
            self._refused = self._why(rc, connack=True)
            return
        if self._failing_since is not None:
            logger.info("MQTT: connected to %s:%s again", *self._where())
        else:
            logger.info("MQTT: connected to %s:%s", *self._where())
        self._connected = True
        self._republish = True
        self._delay = RETRY_DELAYS[0]
        self._failing_since = None
        client.subscribe(homeassistant.birth_topic(self.settings.discovery_prefix), qos=QOS)

    def _on_disconnect(self, client, userdata, *args) -> None:
        rc = args[0] if len(args) == 1 else args[1]  # 1.6: (rc); 2.x: (flags, rc, properties)
        was_connected, self._connected = self._connected, False
        if self._closing_now():
            return
        if was_connected:
            logger.warning(
                "MQTT: lost the connection to %s:%s (%s); reconnecting",
                *self._where(),
                self._why(rc),
            )
            self._delay = RETRY_DELAYS[0]
            self._failing_since = self._last_reminder = time.monotonic()
        if self._refused is not None:
            reason, self._refused = self._refused, None
            self._failed(f"the broker refused the connection: {reason}", logging.ERROR)
        else:
            self._failed(self._why(rc))

    def _on_message(self, client, userdata, message) -> None:
        # Anyone allowed on the broker can send this: a flood costs one announcement
        # every ANNOUNCE_GAP seconds at most.
        if message.payload == msg.ONLINE.encode() and self._announce_at is None:
            logger.info("MQTT: Home Assistant is online; announcing the device again")
            self._announce_at = max(time.monotonic(), self._last_announce + ANNOUNCE_GAP)

    def _where(self):
        return self.settings.host, self.settings.port

    def _why(self, rc, connack: bool = False) -> str:
        if hasattr(rc, "getName"):  # 2.x ReasonCode
            return str(rc)
        if connack:
            return self._paho.connack_string(rc)
        return self._paho.error_string(rc)

    # -- publishing (MQTT thread, connected) ---------------------------------------------

    def _publish(self, topic: str, payload: str, retain: bool) -> bool:
        """Hand one message to paho; False if paho's own queue is full (try later)."""
        info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        # NO_CONN: paho keeps a QoS 1 message and sends it after reconnecting.
        return info.rc != self._paho.MQTT_ERR_QUEUE_SIZE

    def _publish_pending(self) -> None:
        birth = self._announce_at is not None and time.monotonic() >= self._announce_at
        if self._republish or birth:
            self._republish = False
            self._announce_at = None
            self._last_announce = time.monotonic()
            self._announce()
        while self._connected:
            with self._lock:
                if not self._queue:
                    break
                item = self._queue[0]
            subtopic, payload, retain = item
            if not self._publish(self._topic(subtopic), _text(payload), retain):
                return
            with self._lock:
                if self._queue and self._queue[0] is item:
                    self._queue.popleft()
                dropped, self._dropped = self._dropped, 0
            if dropped:
                logger.warning("MQTT: %s event(s) dropped while the broker was away", dropped)
        if self._connected:
            self._publish_backlog(force=False)

    def _announce(self) -> None:
        """Discovery, availability, and every known state, all retained."""
        s = self.settings
        for topic, payload in homeassistant.discovery_messages(
            s.discovery_prefix, s.base_topic, s.device_name
        ):
            self._publish(topic, payload, True)
        self._publish(self._topic(msg.AVAILABILITY), msg.ONLINE, True)
        with self._lock:
            waiting = {item[0] for item in self._queue}
            latest = [(k, v) for k, v in self._latest.items() if k not in waiting]
        for subtopic, payload in latest:
            self._publish(self._topic(subtopic), _text(payload), True)
        self._publish_backlog(force=True)

    def _publish_backlog(self, force: bool) -> None:
        """The upload backlog, when a recording or an upload may have changed it."""
        with self._lock:
            stale, self._backlog_stale = self._backlog_stale, False
        if not (stale or force):
            return
        try:
            count = int(self._backlog())
        except Exception as e:  # the state store closes at shutdown
            logger.debug("MQTT: upload backlog unknown: %s", e)
            return
        # After every recording and upload, changed or not: a subscriber can rely on
        # a backlog message following each of those events.
        self._publish(self._topic(msg.UPLOAD_BACKLOG), str(count), True)

    def _goodbye(self) -> None:
        """On a clean stop: flush what waits, say "offline" (retained), disconnect."""
        if not self._connected:
            return
        self._publish_pending()
        info = self._client.publish(self._topic(msg.AVAILABILITY), msg.OFFLINE, QOS, True)
        deadline = time.monotonic() + GOODBYE_SECONDS
        while self._connected and not info.is_published() and time.monotonic() < deadline:
            self._wait_and_pump(0.05)
        self._client.disconnect()
        if self._client.socket() is not None:
            self._wait_and_pump(0.05)
        logger.info("MQTT: disconnected from %s:%s", *self._where())
