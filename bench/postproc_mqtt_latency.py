"""From a detection datagram's arrival to the MQTT message, against the Telegram request.

A real postproc.py with ``--mqtt`` and ``--notify-telegram`` gets ``{"detection": ...}``
datagrams, one at a time. For each, the script times when a subscriber receives the
detection state from Mosquitto and when a Bot API stand-in receives the
sendMessage, both on loopback, measured in the same run. Three more figures frame
them:

- the transport floor: a publish from this process to the same subscriber through
  the same broker (what MQTT costs with no postproc in the way);
- Telegram without ``--mqtt`` (does the MQTT thread slow the notifier?);
- Telegram with the broker frozen by SIGSTOP (does a stuck broker block it?).

Needs Debian's mosquitto and paho-mqtt. Run from the project root:

    python3 bench/postproc_mqtt_latency.py [--repeat 40]
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from common import free_port, percentile, stop, wait_for_port
from postproc_latency import ROOT, BotApiStandIn, wait_for


def start_broker(work: str):
    port = free_port()
    config = os.path.join(work, "mosquitto.conf")
    with open(config, "w") as f:
        f.write(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"user {getpass.getuser()}\nlog_dest none\n"
        )
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", config])
    wait_for_port("127.0.0.1", port, proc)
    return proc, port


class Subscriber:
    """Notes when each message arrives (paho's thread appends; the list only grows)."""

    def __init__(self, port: int, topic: str):
        import paho.mqtt.client as paho

        kwargs = {"client_id": f"bench-{uuid.uuid4().hex[:8]}"}
        if hasattr(paho, "CallbackAPIVersion"):
            kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION2
        self.arrivals = []
        self.subscribed = threading.Event()
        self.client = paho.Client(**kwargs)
        self.client.on_message = lambda c, u, m: self.arrivals.append(
            (time.perf_counter(), m.payload)
        )
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect("127.0.0.1", port, 60)
        self.client.subscribe(topic, 1)
        self.client.loop_start()
        if not self.subscribed.wait(30):
            raise RuntimeError("no SUBACK")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_postproc(work: str, name: str, api_url: str, mqtt_args):
    mp4 = os.path.join(work, f"mp4-{name}")
    os.makedirs(mp4)
    log = os.path.join(work, f"postproc-{name}.log")
    socket_name = f"pp-bench-{uuid.uuid4().hex}"
    proc = subprocess.Popen(
        [
            sys.executable, os.path.join(ROOT, "postproc.py"), socket_name,
            "--convert", mp4, "12", "--notify-telegram", "123:bench", "1",
            "--telegram-api-url", api_url, "--state", os.path.join(work, f"{name}.sqlite"),
            "--log", log, *mqtt_args,
        ],
        cwd=ROOT,
    )  # fmt: skip
    wait_for(lambda: os.path.exists(log) and "ready" in open(log).read())
    if mqtt_args:
        wait_for(lambda: "MQTT: connected" in open(log).read())
    return proc, socket_name


def measure(socket_name: str, api: BotApiStandIn, sub, repeat: int):
    """Send ``repeat`` detection edges; return (to MQTT, to Telegram) latencies in seconds."""
    to_mqtt, to_telegram = [], []
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    state = False
    for _ in range(repeat):
        state = not state
        seen_api = len(api.arrivals)
        seen_mqtt = len(sub.arrivals) if sub else 0
        start = time.perf_counter()
        sender.sendto(json.dumps({"detection": state}).encode(), "\0" + socket_name)
        wait_for(lambda seen_api=seen_api: len(api.arrivals) > seen_api)
        to_telegram.append(api.arrivals[seen_api][0] - start)
        if sub is not None:
            wait_for(lambda seen_mqtt=seen_mqtt: len(sub.arrivals) > seen_mqtt)
            arrived, payload = sub.arrivals[seen_mqtt]
            assert payload == (b"ON" if state else b"OFF"), payload
            to_mqtt.append(arrived - start)
        time.sleep(0.1)  # let both threads go idle before the next edge
    sender.close()
    return to_mqtt, to_telegram


def measure_floor(port: int, repeat: int):
    """Publish from this process to the subscriber through the same broker."""
    import paho.mqtt.client as paho

    topic = f"bench/floor/{uuid.uuid4().hex[:8]}"
    sub = Subscriber(port, topic)
    kwargs = {"client_id": f"bench-pub-{uuid.uuid4().hex[:8]}"}
    if hasattr(paho, "CallbackAPIVersion"):
        kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION2
    pub = paho.Client(**kwargs)
    pub.connect("127.0.0.1", port, 60)
    pub.loop_start()
    times = []
    try:
        for i in range(repeat):
            seen = len(sub.arrivals)
            start = time.perf_counter()
            pub.publish(topic, b"ON" if i % 2 else b"OFF", qos=1, retain=True)
            wait_for(lambda seen=seen: len(sub.arrivals) > seen)
            times.append(sub.arrivals[seen][0] - start)
            time.sleep(0.02)
    finally:
        pub.disconnect()
        pub.loop_stop()
        sub.close()
    return times


def line(label: str, values, telegram: float = 0.0) -> str:
    median, p95 = statistics.median(values), percentile(values, 0.95)
    text = f"{label:44} {median * 1e3:8.2f} {p95 * 1e3:8.2f}"
    if telegram:
        text += f" {median / telegram:11.2f}"
    return text


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=40)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="pp-mqtt-latency-") as work:
        broker, port = start_broker(work)
        api = BotApiStandIn()
        procs = []
        try:
            base = f"bench/{uuid.uuid4().hex[:8]}"
            floor = measure_floor(port, args.repeat)

            plain, plain_name = start_postproc(work, "plain", api.url, [])
            procs.append(plain)
            _, tg_plain = measure(plain_name, api, None, args.repeat)
            stop(plain)

            mqtt_args = ["--mqtt", "127.0.0.1", str(port), "--mqtt-topic", base]
            with_mqtt, name = start_postproc(work, "mqtt", api.url, mqtt_args)
            procs.append(with_mqtt)
            sub = Subscriber(port, f"{base}/detection")
            to_mqtt, tg_mqtt = measure(name, api, sub, args.repeat)

            os.kill(broker.pid, signal.SIGSTOP)
            try:
                _, tg_frozen = measure(name, api, None, args.repeat)
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            sub.close()
            stop(with_mqtt)
        finally:
            for proc in procs:
                stop(proc)
            stop(broker)
            api.server.shutdown()

    tg = statistics.median(tg_mqtt)
    print(f"detection datagram -> first byte at the receiver; {args.repeat} edges each")
    print(f"{'':44} {'median':>8} {'p95':>8} {'x Telegram':>11}")
    print(line("MQTT detection message (postproc --mqtt)", to_mqtt, telegram=tg))
    print(line("Telegram sendMessage, same run", tg_mqtt, telegram=tg))
    print(line("Telegram sendMessage, postproc without --mqtt", tg_plain, telegram=tg))
    print(line("Telegram sendMessage, broker frozen (SIGSTOP)", tg_frozen, telegram=tg))
    print(line("floor: publish -> subscriber via the broker", floor, telegram=tg))
    print("(milliseconds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
