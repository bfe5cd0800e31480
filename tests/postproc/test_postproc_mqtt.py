"""postproc.py --mqtt against a real Mosquitto broker on loopback.

A subscriber in the test process checks what arrives, with which retained flag;
a newcomer's view (``retained``) shows what Home Assistant gets when it (re)starts.
Discovery configs and the states they point at are checked against Home
Assistant's documented discovery schema (``ha_discovery_schema``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import struct
import time
import uuid
from fractions import Fraction

import pytest

from raspberry_pancake.postproc import convert, homeassistant
from raspberry_pancake.postproc import mqtt_messages as msg
from raspberry_pancake.postproc.mqtt import (
    MAX_QUEUED,
    MqttPublisher,
    MqttSettings,
    default_base_topic,
)
from tests.helpers import free_port, run_cli
from tests.postproc.ha_discovery_schema import check_discovery, check_state
from tests.postproc.mqtt_helpers import Gate, Mosquitto, Subscriber, make_ca, retained
from tests.postproc.pp_helpers import FtpServer, make_h264, probe, wait_until

TOKEN = "123456:SECRET-token-never-published"
STATES = [msg.AVAILABILITY, msg.DETECTION, msg.RECORDING, msg.UPLOAD_BACKLOG]


@pytest.fixture
def broker(tmp_path):
    started = []

    def make(**kwargs) -> Mosquitto:
        b = Mosquitto(tmp_path, **kwargs).start()
        started.append(b)
        return b

    yield make
    for b in started:
        if b.proc is not None and b.proc.poll() is None:
            os.kill(b.proc.pid, signal.SIGCONT)
        b.stop()


@pytest.fixture
def subscribers():
    made = []

    def make(*args, **kwargs) -> Subscriber:
        s = Subscriber(*args, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def discovery_topics(base: str, prefix: str = "homeassistant"):
    node = homeassistant.node_id(base)
    return {
        f"{prefix}/binary_sensor/{node}/motion/config": ("binary_sensor", msg.DETECTION),
        f"{prefix}/sensor/{node}/last_recording/config": ("sensor", msg.RECORDING),
        f"{prefix}/sensor/{node}/upload_backlog/config": ("sensor", msg.UPLOAD_BACKLOG),
    }


def check_announced(configs: dict, base: str, prefix: str = "homeassistant") -> dict:
    """Check the three config messages; return {state subtopic: (component, config)}."""
    expected = discovery_topics(base, prefix)
    assert set(configs) == set(expected)
    entities = {}
    identifiers = set()
    for topic, received in configs.items():
        assert check_discovery(topic, received.payload) == [], received.payload
        config = json.loads(received.payload)
        component, subtopic = expected[topic]
        assert config["state_topic"] == f"{base}/{subtopic}"
        assert config["availability_topic"] == f"{base}/{msg.AVAILABILITY}"
        identifiers.add(tuple(config["device"]["identifiers"]))
        entities[subtopic] = (component, config)
    assert len(identifiers) == 1, "the three entities must form one device"
    assert entities[msg.DETECTION][1]["device_class"] == "motion"
    assert entities[msg.RECORDING][1]["device_class"] == "timestamp"
    assert entities[msg.UPLOAD_BACKLOG][1]["state_class"] == "measurement"
    return entities


def assert_states_valid(entities: dict, states: dict) -> None:
    """Each entity would accept the state payload it reads."""
    for subtopic, (component, config) in entities.items():
        payload = states[subtopic].payload
        assert check_state(component, config, payload) == [], (subtopic, payload)
    assert states[msg.AVAILABILITY].payload in ("online", "offline")


def test_states_events_and_discovery(postproc, dirs, bot_api, tmp_path, broker, subscribers):
    h264, mp4 = dirs
    b = broker()
    sub = subscribers(b)
    ftpd = FtpServer(tmp_path)
    ftpd.start()
    try:
        pp = postproc(
            "--convert", str(mp4), "12", "--converter", "builtin",
            "--notify-telegram", TOKEN, "1001", "--telegram-api-url", bot_api.url,
            *ftpd.ftp_flag(), "--upload-after-convert", "1", *b.flag(),
        ).start()  # fmt: skip
        base = default_base_topic()
        assert base == f"raspberry-pancake/{socket.gethostname()}"
        t = lambda sub_: f"{base}/{sub_}"  # noqa: E731
        sub.wait_for(t(msg.AVAILABILITY), lambda m: m.payload == "online")

        pp.send({"detection": True})
        assert sub.wait_for(t(msg.DETECTION)).payload == "ON"
        note = json.loads(sub.wait_for(t(msg.NOTIFICATION)).payload)
        assert note["ok"] is True and note["error"] is None
        assert note["target"] == "telegram chat 1001"
        assert note["text"] == "Detection changed to True"
        assert note["sent"] == "message"

        clip = make_h264(str(h264 / "20240102-030405.h264"), 36, 12)
        pp.send({"h264": clip, "detection": False})
        assert sub.wait_for(t(msg.DETECTION), count=2).payload == "OFF"
        record = json.loads(sub.wait_for(t(msg.RECORDING)).payload)
        out = str(mp4 / "20240102-030405.mp4")
        assert record["name"] == "20240102-030405.h264"
        assert record["h264"] == clip
        assert record["size"] == os.path.getsize(clip)
        assert record["converted"] is True
        assert record["mp4"] == out
        assert record["mp4_size"] == os.path.getsize(out)
        assert record["duration"] == pytest.approx(probe(out)["duration"], abs=1e-3)
        assert record["duration"] == pytest.approx(3.0)
        assert record["detection"] is False
        started = dt.datetime.fromisoformat(record["time"])
        assert started.tzinfo is not None
        assert started == dt.datetime(2024, 1, 2, 3, 4, 5).astimezone()

        upload_message = sub.wait_for(t(msg.UPLOAD))
        upload = json.loads(upload_message.payload)
        assert upload == {
            "file": "20240102-030405.mp4",
            "mp4": out,
            "destination": f"ftp:{ftpd.user}@127.0.0.1:{ftpd.port}:backup/cam",
            "ok": True,
            "remote_dir": "backup/cam/2024/01/02",
            "error": None,
            "time": upload["time"],
        }
        assert os.path.isfile(os.path.join(ftpd.remote, "backup/cam/2024/01/02", upload["file"]))
        video = json.loads(sub.wait_for(t(msg.NOTIFICATION), count=2).payload)
        assert video["ok"] is True and video["sent"] == "video 20240102-030405.mp4"
        # Each upload result is followed by the backlog as it is then.
        after = sub.wait_for(t(msg.UPLOAD_BACKLOG), lambda m: m.when >= upload_message.when)
        assert after.payload == "0"

        # Nothing that was published names the bot token or the FTP password.
        for m in sub.messages:
            assert TOKEN not in m.payload and ftpd.password not in m.payload

        # What Home Assistant finds when it starts now: everything retained.
        configs = retained(b, list(discovery_topics(base)))
        entities = check_announced(configs, base)
        states = retained(b, [t(s) for s in STATES])
        assert all(m.retain for m in [*configs.values(), *states.values()])
        states = {s: states[t(s)] for s in STATES}
        assert states[msg.AVAILABILITY].payload == "online"
        assert states[msg.DETECTION].payload == "OFF"
        assert json.loads(states[msg.RECORDING].payload) == record
        assert states[msg.UPLOAD_BACKLOG].payload == "0"
        assert_states_valid(entities, states)
        # Events are not retained: a newcomer does not get old uploads or notifications.
        late = subscribers(b, [t(msg.UPLOAD), t(msg.NOTIFICATION), t(msg.AVAILABILITY)])
        late.wait_for(t(msg.AVAILABILITY))
        assert late.find(t(msg.UPLOAD)) == [] and late.find(t(msg.NOTIFICATION)) == []

        assert pp.stop() == 0
        assert sub.wait_for(t(msg.AVAILABILITY), lambda m: m.payload == "offline")
        assert "MQTT: disconnected from" in pp.log_text()
        assert "Traceback" not in pp.log_text()
    finally:
        ftpd.stop()


def test_failed_upload_and_unconverted_recording(postproc, dirs, tmp_path, broker, subscribers):
    h264, mp4 = dirs
    b = broker()
    base = f"rp-test/{uuid.uuid4().hex[:8]}"
    sub = subscribers(b, [f"{base}/#"])
    ftpd = FtpServer(tmp_path)
    ftpd.start()
    try:
        flag = ftpd.ftp_flag()
        flag[4] = "wrong-password"
        pp = postproc(
            "--convert", str(mp4), "12", *flag, "--upload-after-convert", "1",
            *b.flag(), "--mqtt-topic", base,
        ).start()  # fmt: skip
        clip = make_h264(str(h264 / "20240102-030405.h264"), 24, 12)
        pp.send({"h264": clip})
        upload_message = sub.wait_for(f"{base}/{msg.UPLOAD}")
        upload = json.loads(upload_message.payload)
        assert upload["ok"] is False and upload["remote_dir"] is None
        assert "ncftpput failed" in upload["error"]
        assert "wrong-password" not in json.dumps(upload)
        after = sub.wait_for(
            f"{base}/{msg.UPLOAD_BACKLOG}", lambda m: m.when >= upload_message.when
        )
        assert after.payload == "1"  # the file stays queued for the next trigger

        broken = h264 / "20240102-031000-1.h264"
        broken.write_bytes(b"not h264 at all" * 50)
        pp.send({"h264": str(broken)})
        record = json.loads(
            sub.wait_for(f"{base}/{msg.RECORDING}", lambda m: "031000" in m.payload).payload
        )
        assert record["converted"] is False and record["mp4"] is None
        assert record["duration"] is None and record["size"] == 750
        assert record["time"] == dt.datetime(2024, 1, 2, 3, 10).astimezone().isoformat()
    finally:
        ftpd.stop()


def test_last_will_on_kill9_and_state_after_restart(postproc, dirs, broker, subscribers):
    b = broker()
    base = f"rp-test/{uuid.uuid4().hex[:8]}"
    avail = f"{base}/{msg.AVAILABILITY}"
    sub = subscribers(b)
    args = ("--convert", str(dirs[1]), "12", *b.flag(), "--mqtt-topic", base)
    pp = postproc(*args).start()
    sub.wait_for(avail, lambda m: m.payload == "online")
    pp.send({"detection": True})
    sub.wait_for(f"{base}/{msg.DETECTION}", lambda m: m.payload == "ON")

    pp.kill9()
    # The broker publishes the last will: retained, so a newcomer sees it too.
    sub.wait_for(avail, lambda m: m.payload == "offline")
    assert retained(b, [avail])[avail].payload == "offline"
    assert retained(b, [avail])[avail].retain
    assert "MQTT: disconnected" not in pp.log_text()  # no goodbye: it was the will

    pp.start()
    sub.wait_for(avail, lambda m: m.payload == "online", count=2)
    configs = discovery_topics(base)
    for topic in configs:
        sub.wait_for(topic, count=2)  # announced again at the new connection
    states = retained(b, [avail, f"{base}/{msg.DETECTION}"])
    assert states[avail].payload == "online"
    # Not sent again by the new process (it has not seen a detection), kept by the broker.
    assert states[f"{base}/{msg.DETECTION}"].payload == "ON"


def test_reconnects_and_republishes_after_broker_restart(postproc, dirs, broker, subscribers):
    h264, mp4 = dirs
    b = broker()
    base = f"rp-test/{uuid.uuid4().hex[:8]}"
    t = lambda sub_: f"{base}/{sub_}"  # noqa: E731
    pp = postproc(
        "--convert", str(mp4), "12", "--converter", "builtin", *b.flag(), "--mqtt-topic", base
    ).start()
    sub = subscribers(b, [f"{base}/#"])
    sub.wait_for(t(msg.AVAILABILITY), lambda m: m.payload == "online")
    clip = make_h264(str(h264 / "20240102-030405.h264"), 24, 12)
    pp.send({"h264": clip, "detection": True})
    record = sub.wait_for(t(msg.RECORDING)).payload
    sub.close()

    b.stop()  # persistence is off: every retained message is gone with it
    pp.wait_log("MQTT: lost the connection")
    pp.send({"detection": False})  # while the broker is away
    pp.wait_log("Detection changed to False")
    b.start()  # same port
    pp.wait_log(f"connected to 127.0.0.1:{b.port} again")

    configs = retained(b, list(discovery_topics(base)))
    entities = check_announced(configs, base)
    states = retained(b, [t(s) for s in STATES])
    states = {s: states[t(s)] for s in STATES}
    assert states[msg.AVAILABILITY].payload == "online"
    assert states[msg.DETECTION].payload == "OFF"
    assert states[msg.RECORDING].payload == record
    assert states[msg.UPLOAD_BACKLOG].payload == "0"
    assert_states_valid(entities, states)
    assert "Traceback" not in pp.log_text()


def test_stalled_broker_never_blocks_the_work(postproc, dirs, bot_api, broker, subscribers):
    """A broker frozen by SIGSTOP: conversion and Telegram go on; MQTT catches up later."""
    h264, mp4 = dirs
    b = broker()
    base = f"rp-test/{uuid.uuid4().hex[:8]}"
    pp = postproc(
        "--convert", str(mp4), "12", "--converter", "builtin",
        "--notify-telegram", TOKEN, "7", "--telegram-api-url", bot_api.url,
        *b.flag(), "--mqtt-topic", base,
    ).start()  # fmt: skip
    sub = subscribers(b, [f"{base}/#"])
    sub.wait_for(f"{base}/{msg.AVAILABILITY}", lambda m: m.payload == "online")

    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        pp.send({"detection": True})
        clip = make_h264(str(h264 / "20240102-030405.h264"), 24, 12)
        pp.send({"h264": clip, "detection": False})
        wait_until(lambda: bot_api.of("sendMessage") and bot_api.of("sendVideo"), what="Telegram")
        assert os.path.isfile(mp4 / "20240102-030405.mp4")
        assert sub.find(f"{base}/{msg.DETECTION}") == []  # the broker is still frozen
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
    assert sub.wait_for(f"{base}/{msg.DETECTION}").payload == "ON"
    assert sub.wait_for(f"{base}/{msg.DETECTION}", count=2).payload == "OFF"
    assert json.loads(sub.wait_for(f"{base}/{msg.RECORDING}").payload)["converted"]
    assert sub.wait_for(f"{base}/{msg.NOTIFICATION}", count=2)

    # Stopping while the broker is frozen: the goodbye is not acknowledged, postproc
    # gives up on it after a few seconds and exits cleanly.
    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        assert pp.stop() == 0
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
    assert "stopping on SIGTERM" in pp.log_text()


def test_no_broker_at_start_then_one_appears(postproc, dirs, bot_api, broker, subscribers):
    port = free_port()
    base = f"rp-test/{uuid.uuid4().hex[:8]}"
    pp = postproc(
        "--convert", str(dirs[1]), "12",
        "--notify-telegram", TOKEN, "7", "--telegram-api-url", bot_api.url,
        "--mqtt", "127.0.0.1", str(port), "--mqtt-topic", base,
    ).start()  # fmt: skip
    pp.wait_log(f"MQTT: no connection to 127.0.0.1:{port}")
    pp.send({"detection": True})
    wait_until(lambda: bot_api.of("sendMessage"), what="Telegram without a broker")

    b = broker(port=port)
    pp.wait_log(f"MQTT: connected to 127.0.0.1:{port} again")
    states = retained(b, [f"{base}/{msg.AVAILABILITY}", f"{base}/{msg.DETECTION}"])
    assert states[f"{base}/{msg.AVAILABILITY}"].payload == "online"
    assert states[f"{base}/{msg.DETECTION}"].payload == "ON"
    assert pp.log_text().count("MQTT: no connection") == 1  # no log line per retry


def test_queue_is_bounded_while_the_broker_is_away(broker, subscribers):
    """The publisher keeps the newest MAX_QUEUED events and delivers them in order."""
    b = broker()
    gate = Gate(b.port)
    base = f"rp-test/{uuid.uuid4().hex[:8]}"
    sub = subscribers(b, [f"{base}/#"])
    publisher = MqttPublisher(MqttSettings("127.0.0.1", gate.port, base))
    publisher.start()
    try:
        total = MAX_QUEUED + 50
        for i in range(total):  # returns at once although no broker can be reached
            publisher.uploaded(f"/x/{i}.mp4", "ftp:test", True, "d")
        gate.open()
        newest = f'"/x/{total - 1}.mp4"'
        sub.wait_for(f"{base}/{msg.UPLOAD}", lambda m: newest in m.payload)
        got = [json.loads(m.payload)["mp4"] for m in sub.find(f"{base}/{msg.UPLOAD}")]
        assert got == [f"/x/{i}.mp4" for i in range(total - MAX_QUEUED, total)]
    finally:
        publisher.close()
        gate.close()


def test_an_unexpected_error_starts_a_new_connection(broker, subscribers, caplog):
    """A fault inside the client loop: logged, the will fires, a new connection follows."""
    b = broker()
    base = f"rp-test/{uuid.uuid4().hex[:8]}"
    avail = f"{base}/{msg.AVAILABILITY}"
    sub = subscribers(b, [f"{base}/#"])
    publisher = MqttPublisher(MqttSettings("127.0.0.1", b.port, base))
    publisher.start()
    try:
        sub.wait_for(avail, lambda m: m.payload == "online")
        client = publisher._client
        real = client.loop_misc
        faults = []

        def faulty():
            if not faults:
                faults.append(1)
                raise RuntimeError("injected fault")
            return real()

        client.loop_misc = faulty
        publisher._wake()
        sub.wait_for(avail, lambda m: m.payload == "offline")  # the will
        sub.wait_for(avail, lambda m: m.payload == "online", count=2)
        publisher.detection(True)
        assert sub.wait_for(f"{base}/{msg.DETECTION}").payload == "ON"
        assert publisher._client is not client
        assert "MQTT: unexpected error; starting a new connection" in caplog.text
    finally:
        publisher.close()


def password_file(tmp_path, password: str) -> str:
    path = tmp_path / f"mqtt-password-{uuid.uuid4().hex[:6]}"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return str(path)


def test_tls_and_password(postproc, dirs, tmp_path, broker, subscribers):
    h264, mp4 = dirs
    b = broker(users={"camera": "s3cret-mqtt", "ha": "ha-pass"}, tls=True)
    base = f"rp-test/{uuid.uuid4().hex[:8]}"
    avail = f"{base}/{msg.AVAILABILITY}"
    auth = {"user": "ha", "password": "ha-pass", "ca": b.certs.ca}
    sub = subscribers(b, ["#"], **auth)
    tls_flags = [*b.flag(), "--mqtt-topic", base, "--mqtt-ca", b.certs.ca]
    good = postproc(
        "--convert", str(mp4), "12", "--state", str(tmp_path / "good.sqlite"),
        *tls_flags, "--mqtt-user", "camera",
        "--mqtt-password-file", password_file(tmp_path, "s3cret-mqtt"),
    ).start()  # fmt: skip
    good.wait_log("MQTT: connected to")
    sub.wait_for(avail, lambda m: m.payload == "online")
    configs = retained(b, list(discovery_topics(base)), **auth)
    check_announced(configs, base)
    assert "s3cret-mqtt" not in good.log_text()
    assert good.stop() == 0
    sub.wait_for(avail, lambda m: m.payload == "offline")


@pytest.mark.parametrize("mistake", ["password", "ca"])
def test_refused_or_untrusted_broker_is_logged_and_work_goes_on(
    mistake, postproc, dirs, tmp_path, broker, subscribers
):
    h264, mp4 = dirs
    b = broker(users={"camera": "s3cret-mqtt"}, tls=True)
    base = f"rp-test/{uuid.uuid4().hex[:8]}"
    ca = b.certs.ca
    password = "s3cret-mqtt"
    if mistake == "password":
        password = "not-the-password"
    else:
        ca = make_ca(str(tmp_path / "other-ca"), "other").ca
    pp = postproc(
        "--convert", str(mp4), "12", "--converter", "builtin", *b.flag(),
        "--mqtt-topic", base, "--mqtt-ca", ca, "--mqtt-user", "camera",
        "--mqtt-password-file", password_file(tmp_path, password),
    ).start()  # fmt: skip
    if mistake == "password":
        pp.wait_log("the broker refused the connection")
        assert "not authori" in pp.log_text().lower()
        # It keeps trying, and says so once, not at every attempt.
        wait_until(lambda: open(b.log).read().count("not authorised") >= 3, what="3 attempts")
        assert pp.log_text().count("refused the connection") == 1
    else:
        pp.wait_log("MQTT: no connection to")
        assert "CERTIFICATE_VERIFY_FAILED" in pp.log_text()
    clip = make_h264(str(h264 / "20240102-030405.h264"), 24, 12)
    pp.send({"h264": clip})
    pp.wait_log("converted")
    assert os.path.isfile(mp4 / "20240102-030405.mp4")
    assert pp.proc.poll() is None
    assert "Traceback" not in pp.log_text()
    # Nothing reached the broker under postproc's topics.
    sub = subscribers(b, [f"{base}/#"], user="camera", password="s3cret-mqtt", ca=b.certs.ca)
    assert pp.stop() == 0
    assert sub.find(f"{base}/{msg.AVAILABILITY}") == []


def test_home_assistant_birth_announces_again(postproc, dirs, broker, subscribers):
    """HA restarted on an empty broker: its 'online' on <prefix>/status brings configs back."""
    b = broker()
    base = f"rp-test/{uuid.uuid4().hex[:8]}"
    prefix = "ha-test"
    pp = postproc(
        "--convert", str(dirs[1]), "12", *b.flag(), "--mqtt-topic", base,
        "--mqtt-discovery-prefix", prefix,
    ).start()  # fmt: skip
    sub = subscribers(b)
    configs = discovery_topics(base, prefix)
    for topic in configs:
        sub.wait_for(topic)
    # Remove the retained configs, as a broker that lost them would have none.
    for topic in configs:
        info = sub.client.publish(topic, b"", qos=1, retain=True)
        info.wait_for_publish()
    sub.client.publish(f"{prefix}/status", b"online", qos=1).wait_for_publish()
    pp.wait_log("Home Assistant is online")
    check_announced(retained(b, list(configs)), base, prefix)
    assert (
        sub.find(f"homeassistant/binary_sensor/{homeassistant.node_id(base)}/motion/config") == []
    )
    # Any other word on the status topic is not a birth.
    sub.client.publish(f"{prefix}/status", b"offline", qos=1).wait_for_publish()
    pp.send({"detection": True})
    sub.wait_for(f"{base}/{msg.DETECTION}")
    assert pp.log_text().count("Home Assistant is online") == 1
    # A stream of births (30 over 1.5 s or more) does not become 30 announcements.
    motion = next(iter(configs))
    before = len(sub.find(motion))
    for _ in range(30):
        sub.client.publish(f"{prefix}/status", b"online", qos=1).wait_for_publish()
        time.sleep(0.05)  # spreads the births out; nothing waits on it
    sub.wait_for(motion, count=before + 1)
    pp.send({"detection": False})
    sub.wait_for(f"{base}/{msg.DETECTION}", count=2)
    assert len(sub.find(motion)) - before <= 8


# -- the command line -------------------------------------------------------------------


def test_help_lists_the_mqtt_flags():
    result = run_cli("postproc.py", "--help")
    assert result.returncode == 0
    for flag in (
        "--mqtt host port", "--mqtt-user USER", "--mqtt-password-file FILE",
        "--mqtt-ca FILE", "--mqtt-topic BASE", "--mqtt-discovery-prefix PREFIX",
    ):  # fmt: skip
        assert flag in result.stdout, flag


def one_line_error(result, expected: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("postproc.py: error: "), lines
    assert expected in lines[0], lines
    assert "Traceback" not in result.stderr + result.stdout


MQTT = ["--mqtt", "127.0.0.1", "1883"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--mqtt", "127.0.0.1", "0"], "--mqtt: port '0' is not a number from 1 to 65535"),
        (["--mqtt", "127.0.0.1", "x"], "--mqtt: port 'x'"),
        (["--mqtt", "", "1883"], "--mqtt: '' is not a host name"),
        (["--mqtt", "127.0.0.1"], "--mqtt: expected 2 arguments"),
        (["--mqtt-user", "cam"], "--mqtt-user needs --mqtt host port"),
        (["--mqtt-topic", "cams/one"], "--mqtt-topic needs --mqtt host port"),
        (["--mqtt-ca", "/etc/hostname"], "--mqtt-ca needs --mqtt host port"),
        (["--mqtt-discovery-prefix", "ha"], "--mqtt-discovery-prefix needs --mqtt host port"),
        ([*MQTT, "--mqtt-user", ""], "--mqtt-user must not be empty"),
        ([*MQTT, "--mqtt-password-file", "PW"], "--mqtt-password-file needs --mqtt-user"),
        (
            [*MQTT, "--mqtt-user", "u", "--mqtt-password-file", "/nonexistent/pw"],
            "cannot read '/nonexistent/pw'",
        ),
        ([*MQTT, "--mqtt-user", "u", "--mqtt-password-file", "EMPTY"], "is empty"),
        ([*MQTT, "--mqtt-user", "u", "--mqtt-password-file", "DIR"], "cannot read"),
        ([*MQTT, "--mqtt-ca", "/nonexistent/ca.pem"], "--mqtt-ca: file '/nonexistent/ca.pem'"),
        ([*MQTT, "--mqtt-ca", "NOTPEM"], "holds no usable PEM certificate"),
        ([*MQTT, "--mqtt-topic", "cams/#"], "must not contain '#'"),
        ([*MQTT, "--mqtt-topic", "cams/+/one"], "must not contain '+'"),
        ([*MQTT, "--mqtt-topic", ""], "--mqtt-topic must not be empty"),
        ([*MQTT, "--mqtt-topic", "/cams"], "empty level"),
        ([*MQTT, "--mqtt-topic", "cams//one"], "empty level"),
        ([*MQTT, "--mqtt-topic", "$SYS/cam"], "must not start with '$'"),
        ([*MQTT, "--mqtt-discovery-prefix", "ha/"], "--mqtt-discovery-prefix: 'ha/'"),
        ([*MQTT, "--mqtt-topic", "cams/\udcff"], "is not valid UTF-8"),
        ([*MQTT, "--mqtt-user", "\udcff"], "--mqtt-user: '\\udcff' is not valid UTF-8"),
    ],
)
def test_flag_mistakes(base_args, tmp_path, extra, message):
    (tmp_path / "EMPTY").write_text("\n")
    (tmp_path / "PW").write_text("pw\n")
    for name in ("EMPTY", "PW"):
        (tmp_path / name).chmod(0o600)
    (tmp_path / "DIR").mkdir()
    (tmp_path / "NOTPEM").write_text("this is not a certificate\n")
    names = {"EMPTY", "PW", "DIR", "NOTPEM"}
    extra = [str(tmp_path / a) if a in names else a for a in extra]
    one_line_error(run_cli("postproc.py", *base_args, *extra), message)


@pytest.fixture
def without_paho(tmp_path):
    """An environment in which ``import paho`` fails, as on a Pi without the package."""
    blocker = tmp_path / "no-paho"
    (blocker / "paho").mkdir(parents=True)
    (blocker / "paho" / "__init__.py").write_text('raise ImportError("paho is hidden")\n')
    return {**os.environ, "PYTHONPATH": str(blocker)}


def test_without_paho_mqtt_is_a_one_line_error(base_args, without_paho):
    result = run_cli("postproc.py", *base_args, *MQTT, env=without_paho)
    one_line_error(result, "--mqtt needs paho-mqtt")


def test_without_paho_postproc_runs_when_mqtt_is_not_asked(postproc, dirs, without_paho):
    pp = postproc("--convert", str(dirs[1]), "12", env=without_paho).start()
    assert pp.stop() == 0
    assert "Traceback" not in pp.log_text()


def test_password_file_others_can_read_is_refused(base_args, tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("s3cret-mqtt\n")
    pw.chmod(0o644)
    flags = [*MQTT, "--mqtt-user", "camera", "--mqtt-password-file", str(pw)]
    result = run_cli("postproc.py", *base_args, *flags)
    one_line_error(result, f"can be read by other users (mode 0644): chmod 600 {pw}")
    assert "s3cret" not in result.stderr


# -- payload pieces -------------------------------------------------------------------------


@pytest.mark.parametrize("converter", ["builtin", "ffmpeg"])
def test_mp4_duration_matches_ffprobe(converter, dirs):
    h264, mp4 = dirs
    clip = make_h264(str(h264 / "clip.h264"), 30, 12)
    out = convert.convert_file(convert.select_converter(converter), clip, str(mp4), Fraction(12))
    assert msg.mp4_duration(out) == pytest.approx(probe(out)["duration"], abs=1e-3)
    assert msg.mp4_duration(out) == pytest.approx(2.5)


def _box(kind: bytes, body: bytes, large: bool = False) -> bytes:
    if large:
        return struct.pack(">I4sQ", 1, kind, 16 + len(body)) + body
    return struct.pack(">I4s", 8 + len(body), kind) + body


def test_mp4_duration_version1_header_and_64bit_box(tmp_path):
    mvhd = _box(b"mvhd", bytes([1, 0, 0, 0]) + struct.pack(">QQIQ", 0, 0, 90000, 90000 * 7))
    data = _box(b"ftyp", b"isom") + _box(b"mdat", b"\0" * 100, large=True)
    data += _box(b"moov", _box(b"free", b"") + mvhd)
    path = tmp_path / "v1.mp4"
    path.write_bytes(data)
    assert msg.mp4_duration(str(path)) == 7.0
    path.write_bytes(data[:-10])  # truncated
    assert msg.mp4_duration(str(path)) is None
    (tmp_path / "junk.mp4").write_bytes(b"\xff" * 64)
    assert msg.mp4_duration(str(tmp_path / "junk.mp4")) is None
    assert msg.mp4_duration(str(tmp_path / "missing.mp4")) is None


def test_recording_time_from_name_or_file(tmp_path):
    local = lambda *a: dt.datetime(*a).astimezone().isoformat()  # noqa: E731
    assert msg.recording_time("/x/20200623-1715.h264") == local(2020, 6, 23, 17, 15)
    assert msg.recording_time("/x/20200623-180511-2.h264") == local(2020, 6, 23, 18, 5, 11)
    odd = tmp_path / "20201399-1715.h264"  # no such date: the file's time instead
    odd.write_bytes(b"x")
    os.utime(odd, (1_600_000_000, 1_600_000_000))
    expected = dt.datetime.fromtimestamp(1_600_000_000).astimezone().isoformat()
    assert msg.recording_time(str(odd)) == expected
    assert msg.recording_time(str(tmp_path / "gone.h264")) is None


def test_the_schema_checker_catches_mistakes():
    """The checker used above refutes what Home Assistant would refuse."""
    topic, payload = homeassistant.discovery_messages(
        "homeassistant", "a/b", "Raspberry Pancake b"
    )[1]
    config = json.loads(payload)
    assert check_discovery(topic, payload) == []
    bad = [
        ({**config, "state_class": "measurement"}, "no state_class"),
        ({**config, "device": {"name": "x"}}, "identifiers or connections"),
        ({k: v for k, v in config.items() if k != "state_topic"}, "state_topic is required"),
        ({**config, "unique_id": ""}, "no unique_id"),
        ({**config, "device_class": "motion"}, "device_class 'motion' unknown"),
        ({**config, "stat_topic": "x"}, "unknown keys"),
        ({**config, "name": "Raspberry Pancake b time"}, "repeats the device name"),
    ]
    for wrong, problem in bad:
        found = check_discovery(topic, json.dumps(wrong))
        assert any(problem in p for p in found), (problem, found)
    assert check_discovery("homeassistant/sensor/a b/config", payload)
    short = {"stat_t": "a/b/recording", "uniq_id": "x", "dev": {"ids": "x"}, "dev_cla": "timestamp"}
    assert check_discovery(topic, json.dumps(short)) == []
    assert check_state("sensor", config, json.dumps({"time": "2024-01-02T03:04:05"}))
    assert check_state("sensor", config, json.dumps({"time": "2024-01-02T03:04:05+01:00"})) == []


def test_home_assistant_itself_accepts_what_postproc_publishes(postproc, dirs, broker):
    """Home Assistant's own schemas and template engine, where it is installed.

    Skipped unless ``homeassistant`` is importable (it is not a dependency: for a
    one-off check, ``pip install homeassistant`` into a scratch venv with the test
    requirements, and run this file there).
    """
    pytest.importorskip("homeassistant.components.persistent_notification")
    import asyncio

    from homeassistant.components.mqtt import binary_sensor, discovery, sensor
    from homeassistant.core import HomeAssistant
    from homeassistant.helpers.template import Template
    from homeassistant.util import dt as dt_util

    h264, mp4 = dirs
    b = broker()
    base = f"rp-test/{uuid.uuid4().hex[:8]}"
    pp = postproc(
        "--convert", str(mp4), "12", "--converter", "builtin", *b.flag(), "--mqtt-topic", base
    ).start()  # fmt: skip
    clip = make_h264(str(h264 / "20240102-030405.h264"), 24, 12)
    pp.send({"h264": clip, "detection": True})
    pp.wait_log("converted")
    configs = retained(b, list(discovery_topics(base)))
    states = retained(b, [f"{base}/{s}" for s in STATES])
    schemas = {"sensor": sensor.DISCOVERY_SCHEMA, "binary_sensor": binary_sensor.DISCOVERY_SCHEMA}

    async def check() -> None:
        hass = HomeAssistant(str(dirs[0]))
        try:
            for topic, received in configs.items():
                match = discovery.TOPIC_MATCHER.match(topic.split("/", 1)[1])
                assert match, topic
                sent = json.loads(received.payload)
                config = schemas[match["component"]](sent)  # raises if HA refuses it
                assert set(sent) <= set(config), "HA would drop keys it does not know"
                payload = states[config["state_topic"]].payload
                if "value_template" in config:
                    template = Template(sent["value_template"], hass)
                    payload = template.async_render_with_possible_json_value(payload)
                if config.get("device_class") == "timestamp":
                    assert dt_util.parse_datetime(payload).tzinfo is not None
                elif match["component"] == "binary_sensor":
                    assert payload in (config["payload_on"], config["payload_off"])
                else:
                    float(payload)
        finally:
            await hass.async_stop(force=True)

    asyncio.run(check())
