"""Home Assistant MQTT discovery: postproc announces itself as one device.

Three entities, one config topic each (``<prefix>/<component>/<node>/<object>/config``,
the per-entity form every Home Assistant version with discovery understands):

- ``binary_sensor`` "Motion" (device class ``motion``) on the detection topic;
- ``sensor`` "Last recording" (device class ``timestamp``) reading the time out of
  the retained recording JSON, whose other fields become its attributes;
- ``sensor`` "Upload backlog" (state class ``measurement``), files waiting.

All share the availability topic and the device block, so they go unavailable
together when postproc stops or dies. Full key names, no abbreviations: the
payloads are sent a few times a day, and readable ones are easier to check.
Built on the MQTT thread; plain data, no state.
"""

from __future__ import annotations

import json
import re
from typing import List, Tuple

from .. import __version__
from . import mqtt_messages as msg

#: Home Assistant's default discovery prefix; it publishes its birth message under it.
DEFAULT_PREFIX = "homeassistant"


def node_id(base_topic: str) -> str:
    """The base topic made into an id (``[a-zA-Z0-9_-]`` only, as discovery requires).

    Two postproc instances on one broker need two base topics anyway, so this is
    unique wherever the topics are.
    """
    return re.sub(r"[^A-Za-z0-9_-]", "_", base_topic)


def birth_topic(prefix: str) -> str:
    """Where Home Assistant says ``online`` when it (re)starts."""
    return f"{prefix}/status"


def discovery_messages(prefix: str, base_topic: str, device_name: str) -> List[Tuple[str, str]]:
    """(topic, JSON payload) of every config message, to be published retained."""
    node = node_id(base_topic)
    shared = {
        "availability_topic": f"{base_topic}/{msg.AVAILABILITY}",
        "payload_available": msg.ONLINE,
        "payload_not_available": msg.OFFLINE,
        "qos": 1,
        "device": {
            "identifiers": [node],
            "name": device_name,
            "manufacturer": "Raspberry Pancake",
            "model": "postproc.py",
            "sw_version": __version__,
        },
        "origin": {"name": "Raspberry Pancake", "sw_version": __version__},
    }
    recording_topic = f"{base_topic}/{msg.RECORDING}"
    entities = [
        (
            "binary_sensor",
            "motion",
            {
                "name": "Motion",
                "device_class": "motion",
                "state_topic": f"{base_topic}/{msg.DETECTION}",
                "payload_on": msg.ON,
                "payload_off": msg.OFF,
            },
        ),
        (
            "sensor",
            "last_recording",
            {
                "name": "Last recording",
                "device_class": "timestamp",
                "state_topic": recording_topic,
                "value_template": "{{ value_json.time }}",
                "json_attributes_topic": recording_topic,
                "icon": "mdi:filmstrip",
            },
        ),
        (
            "sensor",
            "upload_backlog",
            {
                "name": "Upload backlog",
                "state_class": "measurement",
                "unit_of_measurement": "files",
                "state_topic": f"{base_topic}/{msg.UPLOAD_BACKLOG}",
                "icon": "mdi:cloud-upload",
            },
        ),
    ]
    messages = []
    for component, object_id, config in entities:
        payload = {**config, "unique_id": f"{node}_{object_id}", **shared}
        messages.append((f"{prefix}/{component}/{node}/{object_id}/config", json.dumps(payload)))
    return messages
