"""pancake.py's flags and their validation, into one frozen ``PancakeConfig``.

Every flag is declared and checked here and nowhere else: argparse checks each
value's form (a whole number, a port), ``config_from_args`` checks everything
else (ranges, sizes, directories, flags that need other flags). Downstream code
takes the frozen result and never sees argparse. What a particular camera can
do (a sensor's modes, the VC4 encoder's 1920-pixel limit) is not a flag's
validity: the backend that finds the camera checks it when it opens.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from . import __version__
from .camera import BACKENDS
from .camera.base import ROTATIONS, CameraSettings, Size
from .exc import ConfigError
from .terminal import ArgumentParser, positive_float, positive_int, program_name

DEFAULT_CUSTOMIZE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "customize.py"
)
FPS_RANGE = (1, 120)
TEXT_SIZE_RANGE = (6, 160)
SIDE_RANGE = (16, 4096)


@dataclass(frozen=True)
class RecordingConfig:
    """Where H.264 goes: ``continuous_dir`` and/or ``detection_dir`` in ``detection_mode``."""

    continuous_dir: Optional[str] = None
    detection_mode: Optional[str] = None  # "edge" or "all"
    detection_dir: Optional[str] = None
    resize: Optional[Size] = None

    @property
    def enabled(self) -> bool:
        return self.continuous_dir is not None or self.detection_dir is not None

    def directories(self) -> List[Tuple[str, str]]:
        """(kind, absolute path) of each recording directory, continuous first."""
        found = []
        if self.continuous_dir is not None:
            found.append(("continuous", self.continuous_dir))
        if self.detection_dir is not None:
            found.append(("detection", self.detection_dir))
        return found


@dataclass(frozen=True)
class DetectionConfig:
    """The user's ``detect()``: from ``customize``, called every ``interval`` seconds."""

    mode: str  # "image" calls detect(bytes), "no-image" calls detect()
    customize: str
    interval: float
    resize: Optional[Size] = None  # of the RGB picture, "image" mode only


@dataclass(frozen=True)
class WebConfig:
    """The web server: its port, the live view's cap, the login and the names it answers."""

    port: int = 8000
    max_stream_fps: float = 10.0
    login: Optional[str] = None  # the password hash file
    allow_hosts: Tuple[str, ...] = ()
    trusted_proxies: Tuple[str, ...] = ()


@dataclass(frozen=True)
class PancakeConfig:
    """Everything one pancake.py run was asked to do, checked."""

    camera: CameraSettings
    backend: str = "auto"
    web: WebConfig = WebConfig()
    recording: RecordingConfig = RecordingConfig()
    detection: Optional[DetectionConfig] = None
    emit: Optional[str] = None  # the post-processor's socket


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The flags of the original project, plus this one's own (see the README)."""
    p = ArgumentParser(
        # named as started: "pancake.py" from a checkout, "pancake" when installed
        prog=program_name("pancake.py"),
        description="Raspberry Pancake: live view, recording and detection for a Pi camera.",
    )
    p.add_argument(
        "--port",
        type=port_number,
        default=8000,
        metavar="8000",
        help="webserver port hosting the camera live view",
    )
    p.add_argument(
        "--resolution",
        type=positive_int,
        nargs=2,
        default=[320, 240],
        metavar=("320", "240"),
        help="resolution of camera live view",
    )
    p.add_argument("--fps", type=positive_int, default=12, metavar="12", help="camera framerate")
    p.add_argument("--vflip", action="store_true")
    p.add_argument("--hflip", action="store_true")
    p.add_argument("--rotation", type=int, choices=ROTATIONS, default=0)
    p.add_argument("--annotate-text-size", type=positive_int, default=24, metavar="24")
    p.add_argument(
        "--max-stream-fps",
        type=positive_float,
        default=10,
        metavar="10",
        help="max streaming framerate",
    )
    p.add_argument(
        "--record-continuous",
        metavar="h264_dir",
        help="record video into h264_dir, 15 minutes apiece",
    )
    p.add_argument(
        "--record-detection",
        nargs=2,
        metavar=("{edge,all}", "h264_dir"),
        help="on detection, record video into h264_dir",
    )
    p.add_argument(
        "--record-resize",
        type=positive_int,
        nargs=2,
        metavar=("w", "h"),
        help="resize image for video recording",
    )
    p.add_argument("--detect", choices=["no-image", "image"], help="detect() or detect(bytes)?")
    p.add_argument(
        "--detect-resize",
        type=positive_int,
        nargs=2,
        metavar=("w", "h"),
        help="resize image for detection",
    )
    p.add_argument(
        "--detect-interval",
        type=positive_float,
        metavar="seconds",
        help="time between detect() calls",
    )
    p.add_argument("--emit", metavar="socket_address", help="unix domain socket to post-processor")
    p.add_argument(
        "--login", metavar="password_hash_file", help="password-protect streaming webpage"
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests for this host name (as typed in the browser; may be "
        "repeated); localhost, this machine's addresses, its host name and "
        "<hostname>.local are always allowed",
    )
    p.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="IP address of an HTTPS reverse proxy whose X-Forwarded-For and "
        "X-Forwarded-Proto headers are believed (may be repeated)",
    )
    p.add_argument(
        "--camera",
        choices=BACKENDS,
        default="auto",
        help="camera backend; 'sim' draws a test scene on any machine (default: auto)",
    )
    p.add_argument(
        "--customize",
        metavar="FILE",
        default=DEFAULT_CUSTOMIZE,
        help="file defining detect() (default: customize.py beside pancake.py)",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def parse_config(argv: Optional[Sequence[str]] = None) -> PancakeConfig:
    """The command line, parsed and checked; a mistake raises one line."""
    return config_from_args(build_parser().parse_args(argv))


def config_from_args(args: argparse.Namespace) -> PancakeConfig:
    """Check what argparse cannot; raise ConfigError with one line saying what is wrong."""
    camera = _camera_settings(args)
    recording = _recording(args)
    detection = _detection(args, camera.fps)
    if recording.detection_dir is not None and detection is None:
        raise ConfigError("--record-detection needs --detect")
    if args.emit is not None:
        if not args.emit:
            raise ConfigError("--emit needs a socket name")
        if not (recording.enabled or detection):
            raise ConfigError(
                "--emit needs --record-continuous, --record-detection or --detect: "
                "otherwise there is nothing to announce"
            )
    return PancakeConfig(
        camera=camera,
        backend=args.camera,
        web=_web(args),
        recording=recording,
        detection=detection,
        emit=args.emit,
    )


def _camera_settings(args: argparse.Namespace) -> CameraSettings:
    resolution = _size(args.resolution, "--resolution")
    _within(args.fps, FPS_RANGE, "--fps")
    _within(args.annotate_text_size, TEXT_SIZE_RANGE, "--annotate-text-size")
    return CameraSettings(
        resolution=resolution,
        fps=args.fps,
        vflip=args.vflip,
        hflip=args.hflip,
        rotation=args.rotation,
        annotate_text_size=args.annotate_text_size,
    )


def _recording(args: argparse.Namespace) -> RecordingConfig:
    mode = directory = None
    if args.record_detection is not None:
        mode, directory = args.record_detection
        if mode not in ("edge", "all"):
            raise ConfigError(f"--record-detection: mode must be 'edge' or 'all', not {mode!r}")
        directory = _writable_dir(directory, "--record-detection")
    continuous = None
    if args.record_continuous is not None:
        continuous = _writable_dir(args.record_continuous, "--record-continuous")
    resize = None
    if args.record_resize is not None:
        if continuous is None and directory is None:
            raise ConfigError("--record-resize needs --record-continuous or --record-detection")
        resize = _size(args.record_resize, "--record-resize")
    return RecordingConfig(continuous, mode, directory, resize)


def _detection(args: argparse.Namespace, fps: int) -> Optional[DetectionConfig]:
    if args.detect is None:
        for flag in ("detect_resize", "detect_interval"):
            if getattr(args, flag) is not None:
                raise ConfigError(f"--{flag.replace('_', '-')} needs --detect")
        return None
    resize = None
    if args.detect_resize is not None:
        if args.detect != "image":
            raise ConfigError("--detect-resize needs --detect image")
        resize = _size(args.detect_resize, "--detect-resize")
    interval = args.detect_interval if args.detect_interval is not None else 1.0 / fps
    return DetectionConfig(args.detect, args.customize, interval, resize)


def _web(args: argparse.Namespace) -> WebConfig:
    for name in args.allow_host:
        if not name.strip() or any(c in name for c in " /\\@?#"):
            raise ConfigError(f"--allow-host: {name!r} is not a host name")
    for address in args.trusted_proxy:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(f"--trusted-proxy: {address!r} is not an IP address") from None
    return WebConfig(
        port=args.port,
        max_stream_fps=args.max_stream_fps,
        login=args.login,
        allow_hosts=tuple(args.allow_host),
        trusted_proxies=tuple(args.trusted_proxy),
    )


def _within(value: int, bounds: Tuple[int, int], flag: str) -> None:
    low, high = bounds
    if not low <= value <= high:
        raise ConfigError(f"{flag} must be between {low} and {high}, not {value}")


def _size(size: Sequence[int], flag: str) -> Size:
    """A picture size every encoder accepts: H.264 4:2:0 needs even sides."""
    w, h = size
    low, high = SIDE_RANGE
    if not (low <= w <= high and low <= h <= high):
        raise ConfigError(f"{flag} {w} {h}: each side must be between {low} and {high} pixels")
    if w % 2 or h % 2:
        raise ConfigError(f"{flag} {w} {h}: width and height must be even numbers")
    return (w, h)


def _writable_dir(path: str, flag: str) -> str:
    if not os.path.isdir(path):
        raise ConfigError(f"{flag}: directory {path!r} does not exist")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag}: directory {path!r} is not writable")
    return os.path.abspath(path)
