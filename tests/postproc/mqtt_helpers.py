"""A real Mosquitto broker for the tests, a recording subscriber, and a test CA.

The broker is Debian's ``mosquitto`` on a free loopback port with its own config,
password file and certificates under the test's ``tmp_path``; it can be stopped and
started again on the same port. The subscriber is a paho-mqtt client in the test
process (whichever paho is installed: 1.6 or 2.x).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import pytest

from tests.postproc.pp_helpers import WAIT, LoopbackServer

paho = pytest.importorskip("paho.mqtt.client")


def need_mosquitto() -> str:
    path = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if path is None:
        pytest.skip("needs Debian's mosquitto (apt install mosquitto; scripts/setup.sh --dev)")
    return path


# -- a test CA and a server certificate, made with the openssl command ------------------


@dataclass
class Certificates:
    ca: str
    server_cert: str
    server_key: str


def make_ca(directory: str, name: str = "ca") -> Certificates:
    """A CA and a server certificate for 127.0.0.1 and localhost, valid for two days."""
    os.makedirs(directory, exist_ok=True)
    d = lambda f: os.path.join(directory, f"{name}-{f}")  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl(
        "req", "-x509", *ec, "-keyout", d("ca.key"), "-out", d("ca.pem"), "-days", "2",
        "-subj", f"/CN=Raspberry Pancake test CA {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    openssl(
        "req", *ec, "-keyout", d("server.key"), "-out", d("server.csr"),
        "-subj", "/CN=127.0.0.1",
    )  # fmt: skip
    with open(d("server.ext"), "w") as f:
        f.write(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
        )
    openssl(
        "x509", "-req", "-in", d("server.csr"), "-CA", d("ca.pem"), "-CAkey", d("ca.key"),
        "-CAcreateserial", "-out", d("server.pem"), "-days", "2", "-extfile", d("server.ext"),
    )  # fmt: skip
    return Certificates(d("ca.pem"), d("server.pem"), d("server.key"))


# -- the broker --------------------------------------------------------------------------


class Mosquitto(LoopbackServer):
    """mosquitto on a free loopback port; anonymous, or users from a password file; TLS."""

    def __init__(
        self,
        base,
        users: Optional[Dict[str, str]] = None,
        tls: bool = False,
        port: Optional[int] = None,
    ):
        super().__init__()
        if port is not None:
            self.port = port
        self.binary = need_mosquitto()
        self.dir = str(base / f"mosquitto-{uuid.uuid4().hex[:8]}")
        os.makedirs(self.dir)
        self.log = os.path.join(self.dir, "mosquitto.log")
        self.users = dict(users or {})
        self.certs = make_ca(self.dir) if tls else None
        lines = [
            f"listener {self.port} 127.0.0.1",
            "persistence false",  # a restart forgets retained messages, as a crash would
            f"user {getpass.getuser()}",  # as root: stay root, to read files under tmp_path
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ]
        if self.users:
            passwd = os.path.join(self.dir, "passwd")
            for i, (user, password) in enumerate(self.users.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run(
                    ["mosquitto_passwd", *create, "-b", passwd, user, password],
                    check=True,
                    capture_output=True,
                    timeout=60,
                )
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if self.certs:
            lines += [
                f"cafile {self.certs.ca}",
                f"certfile {self.certs.server_cert}",
                f"keyfile {self.certs.server_key}",
            ]
        self.config = os.path.join(self.dir, "mosquitto.conf")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self) -> Mosquitto:
        self._spawn([self.binary, "-c", self.config], self.log)
        return self

    def restart(self) -> None:
        """Stop and start again on the same port; retained messages are gone."""
        self.stop()
        self.start()

    def flag(self) -> List[str]:
        return ["--mqtt", "127.0.0.1", str(self.port)]


# -- a subscriber ------------------------------------------------------------------------


@dataclass
class Received:
    topic: str
    payload: str
    retain: bool
    qos: int
    when: float  # time.monotonic() at arrival


def make_client(client_id: str):
    """A paho client with the callback API this paho version speaks natively."""
    if hasattr(paho, "CallbackAPIVersion"):
        return paho.Client(
            callback_api_version=paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
        )
    return paho.Client(client_id=client_id, protocol=paho.MQTTv311)


class Subscriber:
    """Subscribes to ``topics`` and records every message (paho's network thread appends).

    ``wait_for`` and ``find`` are for the test's thread; ``_cond`` guards ``messages``.
    """

    def __init__(
        self,
        broker: Mosquitto,
        topics=("#",),
        user: Optional[str] = None,
        password: Optional[str] = None,
        ca: Optional[str] = None,
    ):
        self.messages: List[Received] = []
        self._cond = threading.Condition()  # guards messages and _subscribed
        self._subscribed = False
        self.client = make_client(f"test-sub-{uuid.uuid4().hex[:12]}")
        if user is not None:
            self.client.username_pw_set(user, password)
        if ca is not None:
            self.client.tls_set_context(ssl.create_default_context(cafile=ca))
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect("127.0.0.1", broker.port, 30)
        self.client.subscribe([(t, 1) for t in topics])
        self.client.loop_start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._subscribed, WAIT):
                raise AssertionError("the test subscriber got no SUBACK")

    def _on_subscribe(self, *args) -> None:
        with self._cond:
            self._subscribed = True
            self._cond.notify_all()

    def _on_message(self, client, userdata, message) -> None:
        received = Received(
            message.topic,
            message.payload.decode("utf-8", "replace"),
            bool(message.retain),
            message.qos,
            time.monotonic(),
        )
        with self._cond:
            self.messages.append(received)
            self._cond.notify_all()

    def find(self, topic: str, predicate: Callable[[Received], bool] = lambda m: True):
        with self._cond:
            return [m for m in self.messages if m.topic == topic and predicate(m)]

    def wait_for(
        self,
        topic: str,
        predicate: Callable[[Received], bool] = lambda m: True,
        count: int = 1,
        timeout: float = WAIT,
    ) -> Received:
        """The ``count``-th message on ``topic`` that satisfies ``predicate``."""

        def matching():
            return [m for m in self.messages if m.topic == topic and predicate(m)]

        with self._cond:
            if not self._cond.wait_for(lambda: len(matching()) >= count, timeout):
                seen = [(m.topic, m.payload[:80], m.retain) for m in self.messages[-30:]]
                raise AssertionError(f"no message {count} on {topic!r}; last seen: {seen}")
            return matching()[count - 1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained(broker: Mosquitto, topics: List[str], **auth) -> Dict[str, Received]:
    """What a newcomer gets on each of ``topics`` at once: the retained messages."""
    sub = Subscriber(broker, topics, **auth)
    try:
        return {t: sub.wait_for(t) for t in topics}
    finally:
        sub.close()


# -- a gate between postproc and the broker ------------------------------------------------


class Gate:
    """A TCP relay on a free loopback port that the test opens and shuts.

    While shut, connections are accepted and closed at once (a broker that is
    down, seen from the client); ``cut`` also closes the relayed ones. Its own
    threads accept and relay; ``_lock`` guards ``_open`` and ``_links``.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._lock = threading.Lock()  # guards _open and _links
        self._open = False
        self._links: List[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, name="gate", daemon=True).start()

    def flag(self) -> List[str]:
        return ["--mqtt", "127.0.0.1", str(self.port)]

    def open(self) -> None:
        with self._lock:
            self._open = True

    def shut(self) -> None:
        with self._lock:
            self._open = False
            links, self._links = self._links, []
        for s in links:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.shut()
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                is_open = self._open
            if not is_open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), 10)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
