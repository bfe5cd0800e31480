"""config: the flags become one frozen, checked PancakeConfig (in-process)."""

from __future__ import annotations

import dataclasses

import pytest

from raspberry_pancake.config import parse_config
from raspberry_pancake.exc import ConfigError


def test_defaults_are_the_original_projects():
    config = parse_config([])
    assert config.camera.resolution == (320, 240) and config.camera.fps == 12
    assert config.web.port == 8000 and config.web.max_stream_fps == 10
    assert config.backend == "auto" and config.emit is None and config.detection is None
    assert not config.recording.enabled


def test_the_config_is_frozen_all_the_way_down(tmp_path):
    config = parse_config(["--record-continuous", str(tmp_path), "--allow-host", "cam"])
    for part in (config, config.camera, config.web, config.recording):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(part, next(iter(dataclasses.asdict(part))), None)
    assert config.web.allow_hosts == ("cam",)


def test_recording_and_detection_are_resolved(tmp_path):
    config = parse_config(
        [
            "--fps", "20",
            "--record-continuous", str(tmp_path / "."),
            "--record-detection", "all", str(tmp_path),
            "--record-resize", "640", "480",
            "--detect", "image",
            "--detect-resize", "64", "48",
        ]
    )  # fmt: skip
    assert config.recording.directories() == [
        ("continuous", str(tmp_path)),
        ("detection", str(tmp_path)),
    ]
    assert config.recording.detection_mode == "all" and config.recording.resize == (640, 480)
    assert config.detection.mode == "image" and config.detection.resize == (64, 48)
    assert config.detection.interval == pytest.approx(1 / 20)  # one call per frame by default


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--record-continuous", "{tmp}", "--record-resize", "641", "480"], "even"),
        (["--detect", "image", "--detect-resize", "8", "8"], "between 16 and 4096"),
        (["--detect", "no-image", "--detect-resize", "64", "48"], "--detect image"),
        (["--detect-interval", "1"], "needs --detect"),
        (["--trusted-proxy", "proxy.lan"], "not an IP address"),
        (["--allow-host", "a/b"], "not a host name"),
        (["--emit", "", "--detect", "no-image"], "needs a socket name"),
    ],
)
def test_mistakes_are_one_config_error(tmp_path, argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_config([a.replace("{tmp}", str(tmp_path)) for a in argv])
