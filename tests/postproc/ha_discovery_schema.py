"""Home Assistant's MQTT discovery rules, for checking what postproc announces.

Written from Home Assistant's documentation (integrations/mqtt: "Discovery topic",
"Discovery payload", the abbreviation table; binary_sensor.mqtt; sensor.mqtt; the
binary sensor and sensor device classes) and from the schemas in HA core's
``homeassistant/components/mqtt`` (schemas.py: MQTT_ENTITY_COMMON_SCHEMA,
MQTT_ENTITY_DEVICE_INFO_SCHEMA with "at least one identifier or connection";
sensor.py: the state class and non-numeric device class rules). Home Assistant
itself does not run here; this is a faithful, stricter subset: HA ignores unknown
keys, we report them, because a misspelt key would silently do nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Dict, List

TOPIC = re.compile(
    r"^(?P<prefix>[^#+]+?)/(?P<component>[a-z_]+)/(?:(?P<node>[a-zA-Z0-9_-]+)/)?"
    r"(?P<object>[a-zA-Z0-9_-]+)/config$"
)

#: The entries of HA's abbreviation table that concern these two platforms.
ABBREVIATIONS = {
    "avty": "availability",
    "avty_mode": "availability_mode",
    "avty_t": "availability_topic",
    "avty_tpl": "availability_template",
    "dev": "device",
    "dev_cla": "device_class",
    "en": "enabled_by_default",
    "ent_cat": "entity_category",
    "exp_aft": "expire_after",
    "frc_upd": "force_update",
    "ic": "icon",
    "json_attr_t": "json_attributes_topic",
    "json_attr_tpl": "json_attributes_template",
    "o": "origin",
    "obj_id": "object_id",
    "off_dly": "off_delay",
    "pl_avail": "payload_available",
    "pl_not_avail": "payload_not_available",
    "pl_off": "payload_off",
    "pl_on": "payload_on",
    "stat_cla": "state_class",
    "stat_t": "state_topic",
    "sug_dsp_prc": "suggested_display_precision",
    "uniq_id": "unique_id",
    "unit_of_meas": "unit_of_measurement",
    "val_tpl": "value_template",
}
DEVICE_ABBREVIATIONS = {
    "cu": "configuration_url",
    "cns": "connections",
    "ids": "identifiers",
    "mf": "manufacturer",
    "mdl": "model",
    "mdl_id": "model_id",
    "hw": "hw_version",
    "sw": "sw_version",
    "sa": "suggested_area",
    "sn": "serial_number",
    "via_device": "via_device",
}
ORIGIN_ABBREVIATIONS = {"sw": "sw_version", "url": "support_url"}

COMMON_KEYS = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "default_entity_id",
    "device",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "object_id",
    "origin",
    "payload_available",
    "payload_not_available",
    "qos",
    "state_topic",
    "unique_id",
    "value_template",
}
PLATFORM_KEYS = {
    "binary_sensor": {
        "device_class",
        "expire_after",
        "force_update",
        "off_delay",
        "payload_off",
        "payload_on",
    },
    "sensor": {
        "device_class",
        "expire_after",
        "force_update",
        "last_reset_value_template",
        "options",
        "state_class",
        "suggested_display_precision",
        "unit_of_measurement",
    },
}
DEVICE_KEYS = {
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
}

BINARY_SENSOR_DEVICE_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving",
    "occupancy", "opening", "plug", "power", "presence", "problem", "running", "safety",
    "smoke", "sound", "tamper", "update", "vibration", "window",
}  # fmt: skip
SENSOR_DEVICE_CLASSES = {
    "absolute_humidity", "apparent_power", "aqi", "area", "atmospheric_pressure",
    "battery", "blood_glucose_concentration", "carbon_dioxide", "carbon_monoxide",
    "conductivity", "current", "data_rate", "data_size", "date", "distance", "duration",
    "energy", "energy_distance", "energy_storage", "enum", "frequency", "gas", "humidity",
    "illuminance", "irradiance", "moisture", "monetary", "nitrogen_dioxide",
    "nitrogen_monoxide", "nitrous_oxide", "ozone", "ph", "pm1", "pm10", "pm25",
    "power", "power_factor", "precipitation", "precipitation_intensity", "pressure",
    "reactive_energy", "reactive_power", "signal_strength", "sound_pressure", "speed",
    "sulphur_dioxide", "temperature", "timestamp", "volatile_organic_compounds",
    "volatile_organic_compounds_parts", "voltage", "volume", "volume_flow_rate",
    "volume_storage", "water", "weight", "wind_direction", "wind_speed",
}  # fmt: skip
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
#: Device classes whose state is not a number: no state class, no unit (sensor.py).
NON_NUMERIC = {"date", "enum", "timestamp"}


def _expand(payload: dict, table: Dict[str, str]) -> dict:
    return {table.get(k, k): v for k, v in payload.items()}


def _valid_topic(topic) -> bool:
    return isinstance(topic, str) and bool(topic) and "\0" not in topic and len(topic) < 65536


def check_discovery(topic: str, payload: str) -> List[str]:
    """Every way the config message breaks the rules ([] when Home Assistant accepts it)."""
    problems = []
    match = TOPIC.match(topic)
    if not match:
        return [f"{topic}: not <prefix>/<component>/[<node_id>/]<object_id>/config"]
    component = match["component"]
    if component not in PLATFORM_KEYS:
        return [f"{topic}: component {component!r} is not checked here"]
    try:
        config = json.loads(payload)
    except ValueError:
        return [f"{topic}: payload is not JSON"]
    if not isinstance(config, dict):
        return [f"{topic}: payload is not a JSON object"]
    config = _expand(config, ABBREVIATIONS)
    unknown = set(config) - COMMON_KEYS - PLATFORM_KEYS[component]
    if unknown:
        problems.append(f"{topic}: unknown keys {sorted(unknown)}")
    if not _valid_topic(config.get("state_topic")) or set("+#") & set(config["state_topic"]):
        problems.append(f"{topic}: state_topic is required and must be a plain topic")
    for key in ("availability_topic", "json_attributes_topic"):
        if key in config and not _valid_topic(config[key]):
            problems.append(f"{topic}: {key} is not a topic")
    if not isinstance(config.get("unique_id"), str) or not config["unique_id"]:
        problems.append(f"{topic}: no unique_id (without it the device block is ignored)")
    if config.get("qos", 0) not in (0, 1, 2):
        problems.append(f"{topic}: qos must be 0, 1 or 2")
    for key in ("name", "icon", "value_template", "payload_on", "payload_off"):
        if key in config and not isinstance(config[key], str):
            problems.append(f"{topic}: {key} must be a string")
    if "icon" in config and not re.match(r"^[a-z0-9_-]+:[a-z0-9_-]+$", config["icon"]):
        problems.append(f"{topic}: icon {config['icon']!r} is not prefix:name")
    problems += _check_device(topic, config)
    device_class = config.get("device_class")
    if component == "binary_sensor":
        if device_class is not None and device_class not in BINARY_SENSOR_DEVICE_CLASSES:
            problems.append(f"{topic}: binary_sensor device_class {device_class!r} unknown")
    else:
        if device_class is not None and device_class not in SENSOR_DEVICE_CLASSES:
            problems.append(f"{topic}: sensor device_class {device_class!r} unknown")
        state_class = config.get("state_class")
        if state_class is not None and state_class not in STATE_CLASSES:
            problems.append(f"{topic}: state_class {state_class!r} unknown")
        if device_class in NON_NUMERIC and (state_class or config.get("unit_of_measurement")):
            problems.append(f"{topic}: {device_class} sensors take no state_class and no unit")
    return problems


def _check_device(topic: str, config: dict) -> List[str]:
    problems = []
    device = config.get("device")
    if device is None:
        return [f"{topic}: no device block (the entities would not form one device)"]
    if not isinstance(device, dict):
        return [f"{topic}: device must be an object"]
    device = _expand(device, DEVICE_ABBREVIATIONS)
    if set(device) - DEVICE_KEYS:
        problems.append(f"{topic}: unknown device keys {sorted(set(device) - DEVICE_KEYS)}")
    identifiers = device.get("identifiers")
    if isinstance(identifiers, str):
        identifiers = [identifiers]
    if not identifiers and not device.get("connections"):
        problems.append(f"{topic}: a device needs identifiers or connections")
    elif identifiers and not all(isinstance(i, str) and i for i in identifiers):
        problems.append(f"{topic}: device identifiers must be non-empty strings")
    name = config.get("name")
    if isinstance(name, str) and isinstance(device.get("name"), str):
        if name.lower().startswith(device["name"].lower()):
            problems.append(f"{topic}: entity name repeats the device name (HA strips it)")
    origin = config.get("origin")
    if origin is not None:
        origin = _expand(origin, ORIGIN_ABBREVIATIONS) if isinstance(origin, dict) else None
        if not origin or not isinstance(origin.get("name"), str):
            problems.append(f"{topic}: origin needs a name")
    return problems


def render_value(config: dict, payload: str) -> str:
    """What ``value_template`` makes of a state payload, for the one form we use.

    Only ``{{ value_json.<key> }}`` is understood; anything else fails the test.
    """
    template = config.get("value_template")
    if template is None:
        return payload
    match = re.fullmatch(r"\{\{\s*value_json\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", template)
    assert match, f"value_template {template!r} is beyond this checker"
    return str(json.loads(payload)[match.group(1)])


def check_state(component: str, config: dict, payload: str) -> List[str]:
    """Whether Home Assistant would take ``payload`` as this entity's state."""
    value = render_value(config, payload)
    if component == "binary_sensor":
        allowed = {config.get("payload_on", "ON"), config.get("payload_off", "OFF")}
        return [] if value in allowed else [f"binary_sensor state {value!r} not in {allowed}"]
    device_class = config.get("device_class")
    if device_class == "timestamp":
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError:
            return [f"timestamp state {value!r} is not ISO 8601"]
        return [] if when.tzinfo else [f"timestamp state {value!r} has no time zone"]
    if config.get("state_class"):
        try:
            float(value)
        except ValueError:
            return [f"state {value!r} of a {config['state_class']} sensor is not a number"]
    return []
