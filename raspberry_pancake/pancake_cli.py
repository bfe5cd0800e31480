"""Command line of pancake.py: flags, their validation, and the run loop."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
from typing import Optional, Sequence

from . import __version__
from .camera import BACKENDS, CameraSettings
from .exc import ConfigError
from .terminal import ArgumentParser, configure_logging, positive_float, positive_int

logger = logging.getLogger(__name__)

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CUSTOMIZE = os.path.join(HERE, "customize.py")


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="pancake.py",
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
    p.add_argument("--rotation", type=int, choices=[0, 90, 180, 270], default=0)
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


def _existing_dir(path: str, flag: str) -> str:
    if not os.path.isdir(path):
        raise ConfigError(f"{flag}: directory {path!r} does not exist")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag}: directory {path!r} is not writable")
    return os.path.abspath(path)


def _check_web_flags(args: argparse.Namespace) -> None:
    for name in args.allow_host:
        if not name.strip() or any(c in name for c in " /\\@?#"):
            raise ConfigError(f"--allow-host: {name!r} is not a host name")
    for address in args.trusted_proxy:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(f"--trusted-proxy: {address!r} is not an IP address") from None


def validate(args: argparse.Namespace) -> argparse.Namespace:
    """Check combinations argparse cannot express; raise ConfigError with one line."""
    args.settings = CameraSettings(
        resolution=tuple(args.resolution),
        fps=args.fps,
        vflip=args.vflip,
        hflip=args.hflip,
        rotation=args.rotation,
        annotate_text_size=args.annotate_text_size,
    )
    if args.record_detection is not None:
        mode, directory = args.record_detection
        if mode not in ("edge", "all"):
            raise ConfigError(f"--record-detection: mode must be 'edge' or 'all', not {mode!r}")
        if args.detect is None:
            raise ConfigError("--record-detection needs --detect")
        args.record_detection = (mode, _existing_dir(directory, "--record-detection"))
    if args.record_continuous is not None:
        args.record_continuous = _existing_dir(args.record_continuous, "--record-continuous")
    recording = args.record_continuous is not None or args.record_detection is not None
    if args.record_resize is not None and not recording:
        raise ConfigError("--record-resize needs --record-continuous or --record-detection")
    if args.detect is None:
        for flag in ("detect_resize", "detect_interval"):
            if getattr(args, flag) is not None:
                raise ConfigError(f"--{flag.replace('_', '-')} needs --detect")
    elif args.detect_resize is not None and args.detect != "image":
        raise ConfigError("--detect-resize needs --detect image")
    if args.detect_interval is None:
        args.detect_interval = 1.0 / args.fps
    _check_web_flags(args)
    if args.emit is not None:
        if not args.emit:
            raise ConfigError("--emit needs a socket name")
        if not (recording or args.detect):
            raise ConfigError(
                "--emit needs --record-continuous, --record-detection or --detect: "
                "otherwise there is nothing to announce"
            )
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = validate(build_parser().parse_args(argv))
    configure_logging()
    from .service import PancakeService

    return PancakeService(args).run()
